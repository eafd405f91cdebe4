"""A cluster's HAProxy services: who serves them, which members back them, and their `conf.d` files.

Pigsty picks a service's members with JMESPath expressions over the members' hostvars (`selector`, `backup`);
they are evaluated once, in derive, so a bad expression is an inventory error and every provider (the members
themselves, or the `pg_service_provider` group) renders the same server list.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ...bundle import FileSpec, HostBundle, Port, reload
from ...errors import Report, join_path
from ...model import Fleet
from ...render import render
from .model import MODULE, PgCluster, PgInstance, PgsqlModel, Service, list_path

DESTINATIONS = ("default", "postgres", "pgbouncer")


@cache
def _selector(expr: str):
    import warnings

    import jmespath

    with warnings.catch_warnings():  # Pigsty writes `primary` (a bare backtick literal), which jmespath deprecates
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return jmespath.compile(expr)


def select(expr: str | None, members: list[PgInstance]) -> list[PgInstance]:
    if not expr:
        return []
    views = [m.selector_view for m in members]
    chosen = _selector(expr).search(views) or []
    names = {v.get("inventory_hostname") for v in chosen if isinstance(v, dict)}
    return [m for m in members if m.host.ip in names]


def _valid_dest(dest: Any) -> bool:
    return dest in DESTINATIONS or (isinstance(dest, int) and not isinstance(dest, bool) and 0 < dest < 65536)


def _providers(cluster: PgCluster, fleet: Fleet, report: Report) -> bool:
    """Set the hosts that run the cluster's services; False when pg_service_provider names no group."""
    p = cluster.params()
    provider = p.get("pg_service_provider") or ""
    if provider:
        if provider not in fleet.inventory.groups:
            report.error(p.source("pg_service_provider"), f"pg_service_provider '{provider}' is not a group")
            return False
        cluster.providers = fleet.group_hosts(provider)
    else:
        cluster.providers = [i.host for i in cluster.instances]
    return True


def _members(svc: Service, cluster: PgCluster, report: Report) -> bool:
    """Fill the service's servers and backups; False (reported) when a selector does not evaluate."""
    spec = svc.spec
    try:
        # Pigsty: a member the backup selector picks serves only as a backup, selected or not
        svc.backups = select(spec.get("backup"), cluster.instances)
        spare = {b.host.ip for b in svc.backups}
        svc.servers = [s for s in select(spec.get("selector", "[]"), cluster.instances) if s.host.ip not in spare]
    except Exception as exc:  # jmespath raises several exception types
        report.error(join_path(svc.source, "selector"), f"invalid JMESPath selector: {exc}")
        return False
    return True


def derive_services(cluster: PgCluster, fleet: Fleet, model: PgsqlModel, report: Report) -> None:
    """The cluster's services (pg_default_services + pg_services) and the providers that serve them."""
    if not cluster.instances:
        return
    if not _providers(cluster, fleet, report):
        return
    p = cluster.params()
    names: dict[str, str] = {}
    ports: dict[int, str] = {}
    for i, spec in enumerate(p.combined("pg_services")):
        if not isinstance(spec, dict):
            continue
        where = list_path(p, "pg_services", "pg_default_services", i)
        name, port = str(spec.get("name")), spec.get("port")
        if name in names:
            report.error(join_path(where, "name"), f"service '{name}' is defined twice in {cluster.name}")
            continue
        if port in ports:
            report.error(join_path(where, "port"), f"port {port} is already used by service {ports[port]}")
            continue
        names[name], ports[port] = where, name
        dest = spec.get("dest", "default")
        if not _valid_dest(dest):
            report.error(
                join_path(where, "dest"), f"dest {dest!r} must be default, postgres, pgbouncer or a port number"
            )
            continue
        svc = Service(cluster.name, name, int(port), spec, where)
        if _members(svc, cluster, report):
            cluster.services.append(svc)
    for host in cluster.providers:
        model.provided_by.setdefault(host.ip, []).append(cluster)


def _servers(svc: Service, dest: Any) -> list[dict[str, Any]]:
    servers = []
    for inst, backup in [(s, False) for s in svc.servers] + [(s, True) for s in svc.backups]:
        hp = inst.host.params
        port = {"postgres": hp["pg_port"], "pgbouncer": hp["pgbouncer_port"]}.get(str(dest), dest)
        servers.append(
            {
                "name": inst.name,
                "ip": inst.host.ip,
                "port": int(port),
                "check_port": hp["patroni_port"],
                "weight": int(hp.get("pg_weight", 100)),
                "backup": backup,
                "ssl": bool(hp.get("patroni_ssl_enabled")),
            }
        )
    return servers


def render_service(cluster: PgCluster, svc: Service, b: HostBundle) -> None:
    """`/etc/haproxy/conf.d/<cluster>-<service>.cfg`; health checks paced by the pg_rto plan."""
    p = cluster.params()
    spec = svc.spec
    rto = list((p["pg_rto_plan"] or {})[p["pg_rto"]])
    inter, fastinter, downinter, rise, fall = rto[5:10]
    dest = spec.get("dest", "default")
    if dest == "default":
        dest = p["pg_default_service_dest"]
    maxconn = int(spec.get("maxconn", 5000))
    default_options = (
        f"inter {inter} fastinter {fastinter} downinter {downinter} rise {rise} fall {fall} "
        f"on-marked-down shutdown-sessions slowstart 30s maxconn {min(maxconn, 3000)} maxqueue 256 weight 100"
    )
    text = render(
        "pgsql/service.cfg.j2",
        svc=svc,
        ip=spec.get("ip") or "*",
        check=spec.get("check") or "/",
        balance=spec.get("balance") or "roundrobin",
        maxconn=maxconn,
        options=spec.get("options") or default_options,
        servers=_servers(svc, dest),
        dest=dest,
    )
    path = f"/etc/haproxy/conf.d/{svc.full_name}.cfg"
    b.add(FileSpec(path, MODULE, text, "haproxy", actions=[reload("haproxy.service")]))
    b.ports.add(Port(svc.port, f"haproxy:{svc.full_name}", MODULE))
    b.check("haproxy", "/etc/haproxy/haproxy.cfg", "/etc/haproxy/conf.d")
