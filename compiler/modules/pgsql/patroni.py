"""Patroni: `/etc/patroni/patroni.yml` and its unit, which together start and fail over PostgreSQL.

The settings come from the `pg_conf` formulas (`tuning`) for this host's resources, split the way Patroni
needs: what must be equal on every member (max_connections ...) goes to the DCS section, computed from the
leader's resources, the rest to the instance's own `postgresql.parameters`. The pg_rto plan paces the DCS
timers, pg_rpo the failover lag and, at 0 (or with crit.yml), synchronous mode.
"""

from __future__ import annotations

from typing import Any

from ...bundle import DAEMON_RELOAD, Action, FileSpec, HostBundle, Port, Unit, restart
from ...contrib import Dcs
from ...model import Fleet, Host
from ...render import HEADER, RenderError, render, to_yaml
from . import tuning
from .backup import archive_parameters, patroni_pgbackrest
from .model import MODULE, PgCluster, PgInstance

PATRONI_RELOAD = Action("patroni-reload")
PATRONI_DCS = Action("patroni-dcs-config")


def pg_setting(value: Any) -> str:
    """A postgresql.conf value as Patroni writes it (booleans as on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _knobs(p) -> dict[str, Any]:
    """The inventory's tuning knobs, as the `tuning` functions take them."""
    return dict(
        pg_version=int(p["pg_version"]),
        max_conn=p["pg_max_conn"],
        shared_buffer_ratio=float(p["pg_shared_buffer_ratio"]),
        storage_type=str(p["pg_storage_type"]),
        libs=str(p["pg_libs"]),
        log_dir=str(p["pg_log_dir"]),
        io_method=str(p["pg_io_method"]),
        rpo_bytes=int(p["pg_rpo"]),
        checksum=bool(p["pg_checksum"]),
    )


def _tuned(host: Host, cluster: PgCluster, profile: str) -> tuple[dict[str, str], dict[str, str]]:
    """(DCS settings from the leader's resources, this host's own settings) as the formulas give them."""
    common = _knobs(host.params)
    try:
        leader = cluster.primary.host if cluster.primary else host
        res_leader = tuning.HostResources(leader.facts.cpu, leader.facts.mem_mb, leader.facts.disk_gb)
        res = tuning.HostResources(host.facts.cpu, host.facts.mem_mb, host.facts.disk_gb)
        return tuning.dcs_parameters(profile, res_leader, **common), tuning.postgres_parameters(profile, res, **common)
    except ValueError as exc:
        raise RenderError(str(exc)) from None


def parameters(host: Host, cluster: PgCluster, profile: str) -> tuple[dict[str, str], dict[str, str]]:
    """(DCS parameters, instance parameters): the formulas, then pg_parameters, then what sty decides."""
    p = host.params
    dcs_params, pg_params = _tuned(host, cluster, profile)
    # pg_parameters: settings Patroni keeps cluster-wide go to the DCS (from the cluster's definition)
    for k, v in (cluster.params().get("pg_parameters") or {}).items():
        if k in tuning.DCS_PARAMETER_NAMES:
            dcs_params[str(k)] = pg_setting(v)
    for k, v in (p.get("pg_parameters") or {}).items():
        if k not in tuning.DCS_PARAMETER_NAMES:
            pg_params[str(k)] = pg_setting(v)
    if "pg_cron" in str(p["pg_libs"]) and "cron.database_name" not in pg_params:
        pg_params["cron.database_name"] = str(p["pg_primary_db"])
    pg_params["hba_file"] = p["pg_hba_file"]
    pg_params["unix_socket_directories"] = p["pg_localhost"]
    pg_params["password_encryption"] = p["pg_pwd_enc"]
    if p["pgbackrest_enabled"]:
        pg_params.update(archive_parameters(cluster))
    return dcs_params, pg_params


def _bootstrap(p, timers: tuple[int, ...], dcs_params: dict[str, str], sync: bool) -> dict[str, Any]:
    """The DCS configuration Patroni writes when it creates the cluster, and how it runs initdb."""
    ttl, loop, retry, start = timers
    initdb: list[Any] = [
        {"encoding": p["pg_encoding"]},
        {"locale": p["pg_locale"]},
        {"lc-collate": p["pg_lc_collate"]},
        {"lc-ctype": p["pg_lc_ctype"]},
    ]
    if p["pg_checksum"]:
        initdb.append("data-checksums")
    return {
        "dcs": {
            "ttl": ttl,
            "loop_wait": loop,
            "retry_timeout": retry,
            "primary_start_timeout": start,
            "maximum_lag_on_failover": int(p["pg_rpo"]),
            "synchronous_mode": sync,
            "synchronous_mode_strict": False,
            "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": dcs_params},
        },
        "method": "initdb",
        "initdb": initdb,
        # Patroni 3.0 insists on this list; it is inert because hba_file points at pg_hba_file
        "pg_hba": [f"local all {p['pg_dbsu']} ident"],
    }


def _postgresql(host: Host, cluster: PgCluster, b: HostBundle, bin_dir: str, superuser: dict, pg_params: dict):
    """Patroni's `postgresql` section: where the instance lives, how Patroni logs in, how replicas are made."""
    p = host.params
    return {
        "listen": f"{p['pg_listen']}:{p['pg_port']}",
        "connect_address": f"{host.ip}:{p['pg_port']}",
        "data_dir": p["pg_data"],
        "bin_dir": bin_dir,
        "pgpass": "/pg/tmp/pgpass",
        "use_unix_socket": True,
        "use_unix_socket_repl": False,
        "authentication": {
            "superuser": superuser,
            "replication": {
                "username": p["pg_replication_username"],
                "password": b.secret(f"{cluster.name}/pg_replication_password", p["pg_replication_password"]),
            },
            "rewind": dict(superuser),
        },
        "parameters": pg_params,
        "create_replica_methods": ["basebackup"],
        "basebackup": [{"max-rate": "1000M"}, {"checkpoint": "fast"}],
        **patroni_pgbackrest(p, cluster),
    }


def patroni_config(host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle, bin_dir: str):
    """The whole patroni.yml document (secrets registered in the order the document names them)."""
    p = host.params
    # the pg_rto plan: DCS ttl, loop_wait, retry_timeout, primary_start_timeout, watchdog safety margin
    ttl, loop, retry, start, margin = (int(x) for x in list((p["pg_rto_plan"] or {})[p["pg_rto"]])[:5])
    profile = tuning.profile_name(str(p["pg_conf"]))
    dcs_params, pg_params = parameters(host, cluster, profile)
    sync = profile == "crit" or int(p["pg_rpo"]) == 0
    dcs = fleet.board.one(Dcs)  # published by the module that runs the DCS (ETCD)
    superuser: dict[str, Any] = {"username": p["pg_dbsu"]}
    if p.get("pg_dbsu_password"):
        superuser["password"] = b.secret(f"{cluster.name}/pg_dbsu_password", p["pg_dbsu_password"])
    doc = {
        "scope": cluster.name,
        "namespace": str(p["pg_namespace"]).rstrip("/") + "/",
        "name": inst.name,
        "log": {"dir": p["patroni_log_dir"], "level": "INFO", "file_num": 30, "file_size": 4194304},
        "restapi": {
            "listen": f"0.0.0.0:{p['patroni_port']}",
            "connect_address": f"{host.ip}:{p['patroni_port']}",
            "authentication": {
                "username": p["patroni_username"],
                "password": b.secret(f"{cluster.name}/patroni_password", p["patroni_password"]),
            },
        },
        "etcd3": {
            "hosts": dcs.client_endpoints() if dcs else [],
            "protocol": "http",
            "username": cluster.name,
            "password": b.secret(f"{cluster.name}/pg_etcd_password", p.get("pg_etcd_password") or cluster.name),
        },
        "bootstrap": _bootstrap(p, (ttl, loop, retry, start), dcs_params, sync),
        "postgresql": _postgresql(host, cluster, b, bin_dir, superuser, pg_params),
        "watchdog": {
            "mode": "off" if p["patroni_watchdog_mode"] in (False, "off") else p["patroni_watchdog_mode"],
            "device": "/dev/watchdog",
            "safety_margin": margin,
        },
        "tags": {
            "nofailover": inst.role == "offline",
            "noloadbalance": False,
            "clonefrom": True,
            "nosync": inst.role == "offline",
        },
    }
    if p["patroni_ssl_enabled"]:
        doc["restapi"]["certfile"] = "/pg/cert/server.crt"
        doc["restapi"]["keyfile"] = "/pg/cert/server.key"
    return doc


def render_patroni(host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle, bin_dir: str):
    p = host.params
    doc = patroni_config(host, fleet, inst, cluster, b, bin_dir)
    dbsu = p["pg_dbsu"]
    b.add(
        FileSpec(
            "/etc/patroni/patroni.yml",
            MODULE,
            to_yaml(doc, HEADER),
            "yaml",
            owner=dbsu,
            group=dbsu,
            mode="0600",
            actions=[PATRONI_RELOAD, PATRONI_DCS],
        )
    )
    unit = render("pgsql/patroni.service.j2", p=p, bin=host.platform.patroni_bin, dbsu=dbsu)
    b.add(
        FileSpec(
            "/etc/systemd/system/patroni.service",
            MODULE,
            unit,
            "systemd",
            actions=[DAEMON_RELOAD, restart("patroni.service")],
        )
    )
    b.units.add(Unit("patroni.service", MODULE, f"http://{host.ip}:{p['patroni_port']}/health"))
    b.ports.update({Port(p["pg_port"], "postgres", MODULE), Port(p["patroni_port"], "patroni", MODULE)})
    b.check("patroni", "/etc/patroni/patroni.yml", where="build")
    b.check("postgres-settings", "/etc/patroni/patroni.yml", where="build")
    b.check("systemd", "/etc/systemd/system/patroni.service")
