"""Patroni: `/etc/patroni/patroni.yml` and its unit, which together start and fail over PostgreSQL.

The settings come from the `pg_conf` formulas (`tuning`) for this host's resources, split the way Patroni
needs: what must be equal on every member (max_connections ...) goes to the DCS section, computed from the
leader's resources, the rest to the instance's own `postgresql.parameters`. The pg_rto plan paces the DCS
timers, pg_rpo the failover lag and, at 0 (or with crit.yml), synchronous mode.
"""

from __future__ import annotations

from typing import Any

from sty.contract.targets import sort_hosts

from ...bundle import DAEMON_RELOAD, Action, FileSpec, HostBundle, Port, Unit, restart
from ...contrib import Dcs
from ...model import Fleet, Host
from ...render import HEADER, RenderError, render, to_yaml
from ...shared import shared
from . import tuning
from .backup import archive_parameters, patroni_pgbackrest
from .model import MODULE, PgCluster, PgInstance
from .restart import postmaster_settings, render_restart_record
from .system import PG_CA

PATRONI_RELOAD = Action("patroni-reload")
PATRONI_DCS = Action("patroni-dcs-config")


def pg_setting(value: Any) -> str:
    """A postgresql.conf value as Patroni writes it (booleans as on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _max_conn(p, profile: str) -> int | str:
    """`pg_max_conn: auto` as Pigsty's oltp and crit templates read it: 1000 when clients reach PostgreSQL
    directly by default, the template's own figure (500) when they come through pgbouncer."""
    if p["pg_max_conn"] == "auto" and profile in ("oltp", "crit") and p["pg_default_service_dest"] == "postgres":
        return 1000
    return p["pg_max_conn"]


def _knobs(p, profile: str) -> dict[str, Any]:
    """The inventory's tuning knobs, as the `tuning` functions take them."""
    return dict(
        pg_version=int(p["pg_version"]),
        max_conn=_max_conn(p, profile),
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
    common = _knobs(host.params, profile)
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
    pg_params["unix_socket_directories"] = f"{p['pg_localhost']}, /tmp"  # as Pigsty: /tmp for tools that look there
    pg_params["password_encryption"] = p["pg_pwd_enc"]
    # TLS as Pigsty: every instance has a certificate from the fleet CA, so `hostssl` rules and sslmode=require work
    pg_params.update(
        ssl="on", ssl_cert_file="/pg/cert/server.crt", ssl_key_file="/pg/cert/server.key", ssl_ca_file=PG_CA
    )
    if p["pgbackrest_enabled"]:
        pg_params.update(archive_parameters(cluster))
    return dcs_params, pg_params


def _bootstrap(p, timers: tuple[int, ...], dcs_params: dict[str, str], sync: bool, strict: bool) -> dict[str, Any]:
    """The DCS configuration Patroni writes when it creates the cluster, and how it runs initdb.

    As Pigsty: failsafe mode (a primary that still reaches every member keeps serving while the DCS is down),
    no lag bound for the synchronous standby (-1), 30 s for a primary to stop in synchronous mode, and the crit
    template's strict synchronous mode (no write is acknowledged without a standby)."""
    ttl, loop, retry, start = timers
    initdb: list[Any] = []
    version = int(p["pg_version"])
    if p["pg_checksum"]:
        initdb.append("data-checksums")
    elif version >= 18:  # checksums became initdb's default in 18
        initdb.append("no-data-checksums")
    utf8 = str(p["pg_encoding"]).upper() in ("UTF8", "UTF-8")
    if version >= 17 and utf8 and str(p["pg_locale"]).upper() in ("C", "C.UTF-8"):
        # as Pigsty: PostgreSQL 17's builtin provider, whose C collation needs no libc and never changes
        initdb += [{"encoding": p["pg_encoding"]}, {"locale-provider": "builtin"}, {"builtin-locale": p["pg_locale"]}]
    else:
        initdb += [{"encoding": p["pg_encoding"]}, {"locale": p["pg_locale"]}]
    initdb += [{"lc-collate": p["pg_lc_collate"]}, {"lc-ctype": p["pg_lc_ctype"]}]
    return {
        "dcs": {
            "ttl": ttl,
            "loop_wait": loop,
            "retry_timeout": retry,
            "primary_start_timeout": start,
            "maximum_lag_on_failover": int(p["pg_rpo"]),
            "maximum_lag_on_syncnode": -1,
            "primary_stop_timeout": 30,
            "synchronous_mode": sync,
            "synchronous_mode_strict": strict,
            "failsafe_mode": True,
            # Pigsty's metadata of the cluster, kept with its configuration
            "pg_version": version,
            "pg_cluster": p["pg_cluster"],
            "pg_shard": p.get("pg_shard") or p["pg_cluster"],
            "pg_group": int(p.get("pg_group") or 0),
            "postgresql": {
                "use_pg_rewind": True,
                "use_slots": True,
                "remove_data_directory_on_rewind_failure": True,
                "parameters": dcs_params,
            },
        },
        "method": "initdb",
        "initdb": initdb,
        # Patroni 3.0 insists on this list; it is inert because hba_file points at pg_hba_file
        "pg_hba": [f"local all {p['pg_dbsu']} ident"],
    }


def _postgresql(host: Host, cluster: PgCluster, b: HostBundle, bin_dir: str, superuser: dict, pg_params: dict):
    """Patroni's `postgresql` section: where the instance lives, how Patroni logs in, how replicas are made."""
    p = host.params
    replication = {
        "username": p["pg_replication_username"],
        "password": b.secret(f"{cluster.name}/pg_replication_password", p["pg_replication_password"]),
    }
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
            "replication": replication,
            # as Pigsty: the replicator rewinds (pg_hba lets it reach `postgres` from the intranet, and
            # 10-roles.sql grants it the functions pg_rewind calls); the superuser may only log in locally
            "rewind": dict(replication),
        },
        "parameters": pg_params,
        # a member whose rewind fails is cloned again instead of staying on a dead timeline
        "use_pg_rewind": True,
        "remove_data_directory_on_rewind_failure": True,
        "remove_data_directory_on_diverged_timelines": False,
        "create_replica_methods": ["basebackup"],
        "basebackup": [{"max-rate": "1000M"}, {"checkpoint": "fast"}, "verbose", "progress"],
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
    strict = profile == "crit"
    dcs = fleet.board.one(Dcs)  # published by the module that runs the DCS (ETCD)
    superuser: dict[str, Any] = {"username": p["pg_dbsu"]}
    if p.get("pg_dbsu_password"):
        superuser["password"] = b.secret(f"{cluster.name}/pg_dbsu_password", p["pg_dbsu_password"])
    doc = {
        "scope": cluster.scope,
        "namespace": str(p["pg_namespace"]).rstrip("/") + "/",
        "name": inst.name,
        "log": {  # as Pigsty: 32 MiB files, 4 of them (16 for crit), second-precision timestamps
            "dir": p["patroni_log_dir"],
            "level": "INFO",
            "file_num": 16 if profile == "crit" else 4,
            "file_size": 33554432,
            "dateformat": "%Y-%m-%d %H:%M:%S %z",
            "format": "%(asctime)s %(levelname)s: %(message)s",
        },
        "restapi": {
            "listen": f"{host.ip}:{p['patroni_port']}",  # as Pigsty: the node's address, not every interface
            "connect_address": f"{host.ip}:{p['patroni_port']}",
            "authentication": {
                "username": p["patroni_username"],
                "password": b.secret(f"{cluster.name}/patroni_password", p["patroni_password"]),
            },
        },
        "etcd3": {
            "hosts": dcs.client_endpoints() if dcs else [],
            "protocol": dcs.scheme if dcs else "https",
            # as Pigsty: the etcd members' certificates are checked against the fleet CA; the instance's own
            # certificate (client usage) is offered
            "cacert": PG_CA,
            "cert": "/pg/cert/server.crt",
            "key": "/pg/cert/server.key",
            "username": cluster.scope,
            "password": b.secret(f"{cluster.name}/pg_etcd_password", p.get("pg_etcd_password") or cluster.scope),
        },
        "bootstrap": _bootstrap(p, (ttl, loop, retry, start), dcs_params, sync, strict),
        "postgresql": _postgresql(host, cluster, b, bin_dir, superuser, pg_params),
        "watchdog": {
            "mode": _watchdog_mode(p["patroni_watchdog_mode"], profile),
            "device": "/dev/watchdog",
            "safety_margin": margin,
        },
        "tags": _tags(host, inst, cluster, str(p["pg_conf"])),
    }
    if cluster.citus:  # one shard (`pg_group`) of a Citus cluster: Patroni registers its workers with the coordinator
        doc["citus"] = {"group": int(p["pg_group"]), "database": str(p["pg_primary_db"])}
    upstream = p.get("pg_upstream")
    if upstream and inst.role == "primary":  # the leader of a standby cluster follows another cluster
        standby: dict[str, Any] = {"host": str(upstream), "port": int(p["pg_port"])}
        if p.get("pg_delay") not in (None, "", 0, "0"):
            standby["recovery_min_apply_delay"] = str(p["pg_delay"])
        doc["bootstrap"]["dcs"]["standby_cluster"] = standby
    # as Pigsty: switchover, restart and reload through the API only from the admin node, the members and INFRA
    allow = {str(p["admin_ip"]), *(i.host.ip for i in cluster.instances), *(h.ip for h in fleet.group_hosts("infra"))}
    doc["restapi"]["allowlist"] = sort_hosts(a for a in allow if a and a != "None")
    # as Pigsty: with TLS, the API serves the instance's certificate and patronictl checks it against the fleet CA
    # (presenting its own); without, patronictl talks plain HTTP
    tls = {"cacert": PG_CA, "certfile": "/pg/cert/server.crt", "keyfile": "/pg/cert/server.key"}
    if p["patroni_ssl_enabled"]:
        doc["restapi"].update(tls, verify_client="none")
        doc["ctl"] = {"insecure": False, **tls}
    else:
        doc["ctl"] = {"insecure": True}
    return doc


def _watchdog_mode(mode: Any, profile: str) -> str:
    """Pigsty's: `off` stays off, except on crit, which uses a watchdog whenever the node has one (automatic)."""
    mode = "off" if mode in (False, "off", "false") else str(mode).lower()
    return "automatic" if mode == "off" and profile == "crit" else mode


def _tags(host: Host, inst: PgInstance, cluster: PgCluster, conf: str) -> dict[str, Any]:
    """Pigsty's member tags. Every member may fail over and be synchronous, offline ones included (Pigsty does
    so: a cluster of a primary and an offline member must still fail over). A cascade replica (`pg_upstream`)
    names the member it replicates from, as Patroni expects, where Pigsty writes the address Patroni ignores."""
    tags: dict[str, Any] = {"nofailover": False, "clonefrom": True, "noloadbalance": False, "nosync": False}
    upstream = host.params.get("pg_upstream")
    if upstream and inst.role != "primary":
        source = next((i for i in cluster.instances if i.host.ip == str(upstream)), None)
        if source is not None:  # anything else was refused by rules.check_upstream
            tags["replicatefrom"] = source.name
    facts = host.facts
    tags["version"] = str(host.params["pg_version"])
    tags["spec"] = f"{facts.cpu}C.{max(facts.mem_mb // 1024, 1)}G.{max(facts.disk_gb, 1)}G"
    tags["conf"] = conf
    return tags


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
    shared(_member_files, host, b, postmaster_settings(doc, int(p["pg_version"])))
    b.units.add(Unit("patroni.service", MODULE, f"http://{host.ip}:{p['patroni_port']}/health"))


def _member_files(host: Host, b: HostBundle, settings: dict[str, str]) -> None:
    """The restart record and Patroni's unit: alike on the members of a cluster, rendered once (compiler/shared.py)."""
    p = host.params
    dbsu = p["pg_dbsu"]
    render_restart_record(settings, dbsu, b)
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
    b.ports.update({Port(p["pg_port"], "postgres", MODULE), Port(p["patroni_port"], "patroni", MODULE)})
    b.check("patroni", "/etc/patroni/patroni.yml", where="build")
    b.check("postgres-settings", "/etc/patroni/patroni.yml", where="build")
    b.check("systemd", "/etc/systemd/system/patroni.service")
