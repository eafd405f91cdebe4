"""A cluster's HAProxy services: who serves them, which members back them, and their `conf.d` files.

Pigsty picks a service's members with JMESPath expressions over the members' hostvars (`selector`, `backup`);
they are evaluated once, in derive, so a bad expression is an inventory error and every provider (the members
themselves, or the `pg_service_provider` group) renders the same server list.

A service's file is Pigsty v4.5's pgsql `service.cfg`, setting by setting: `mode tcp`, `maxconn` (5000 by
default), `balance` (roundrobin), `option httpchk` with `option http-keep-alive`, `http-check send meth OPTIONS
uri <check>` and `expect status 200`; `default-server` is the service's `options`, else `inter/fastinter/
downinter/rise/fall` from the pg_rto plan (index 5 to 9) and `on-marked-down shutdown-sessions slowstart 30s
maxconn 3000 maxqueue 128 weight 100`. One server line per member, named `<cluster>-<seq>`, at pg_port,
pgbouncer_port or the `dest` port, `check port <patroni_port> weight <pg_weight>`, TLS health checks when the
member's `patroni_ssl_enabled`; the selector's members first (`backup` when the backup expression picks them
too), then the backups the selector did not pick.

Intentional differences from Pigsty, with their reason:
- `check-ssl ca-file /etc/pki/ca.crt` (Pigsty: /pg/cert/ca.crt): the same fleet CA, at the path the apply stage
  delivers to every node (manifest `trust`), so a `pg_service_provider` that is no member of the cluster
  verifies Patroni's certificate too.
- Members are taken in pg_seq order (Pigsty: inventory order, the same in every inventory that lists a
  cluster's members by seq).
- A fractional pg_rto_plan timer is written in milliseconds (`fastinter 500ms` for Pigsty's `0.5s` in the fast
  plan, `1500ms` in safe): HAProxy reads whole numbers only and refuses Pigsty's line (`haproxy -c`: unexpected
  character '.').
- `options` given as a list is joined into one `default-server` line (Pigsty writes the list's repr).
- A `dest` that is neither default, postgres, pgbouncer nor a port, or a pg_rto outside pg_rto_plan, is an
  inventory error (Pigsty falls back to 5432 and to `norm`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache
from typing import Any

from ...bundle import CA_CERT_PATH, FileSpec, HostBundle, Port, reload
from ...errors import Report, join_path
from ...model import Fleet
from ...render import render
from .model import MODULE, PgCluster, PgInstance, PgsqlModel, Service, list_path

DESTINATIONS = ("default", "postgres", "pgbouncer")
# Pigsty's defaults for a service: front-end maxconn, and the per-server maxconn and maxqueue of default-server
SERVICE_MAXCONN = 5000
SERVER_MAXCONN = 3000
SERVER_MAXQUEUE = 128


@cache
def _selector(expr: str):
    import warnings

    import jmespath

    with warnings.catch_warnings():  # Pigsty writes `primary` (a bare backtick literal), which jmespath deprecates
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return jmespath.compile(expr)


def select(expr: str | None, members: list[PgInstance]) -> list[PgInstance]:
    """The members a JMESPath selector picks (Pigsty selects over hostvars). The same selector over members that
    agree on every field it reads picks the same positions, so a selector made of filters and comparisons is
    evaluated once per distinct set of those values (JMESPath's interpreter was a tenth of a 4000-host check)."""
    if not expr:
        return []
    key = _selection_key(expr, members)
    if key is not None and key in _SELECTED:
        return [members[i] for i in _SELECTED[key]]
    views = [m.selector_view for m in members]
    chosen = _selector(expr).search(views) or []
    names = {v.get("inventory_hostname") for v in chosen if isinstance(v, dict)}
    picked = [i for i, m in enumerate(members) if m.host.ip in names]
    if key is not None and len(_SELECTED) < 4096:
        _SELECTED[key] = tuple(picked)
    return [members[i] for i in picked]


_SELECTED: dict[tuple[Any, ...], tuple[int, ...]] = {}
# the expressions whose result depends on the values of the fields they name and nothing else: filters,
# comparisons, boolean operators and literals over the list of members (no sub-expression, index or function)
_PURE_NODES = frozenset(
    {
        "projection",
        "flatten",
        "identity",
        "current",
        "filter_projection",
        "comparator",
        "field",
        "literal",
        "and_expression",
        "or_expression",
        "not_expression",
    }
)
_SCALARS = (str, int, bool, float, type(None))


@cache
def _fields_read(expr: str) -> tuple[str, ...] | None:
    """The member fields a selector reads, when it is made only of `_PURE_NODES` and does not name a member
    (`inventory_hostname`); None otherwise (never memoised)."""
    fields: set[str] = set()
    stack = [_selector(expr).parsed]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or node.get("type") not in _PURE_NODES:
            return None
        if node["type"] == "field":
            if node.get("value") == "inventory_hostname":
                return None
            fields.add(str(node.get("value")))
        stack.extend(node.get("children") or [])
    return tuple(sorted(fields))


def _selection_key(expr: str, members: list[PgInstance]) -> tuple[Any, ...] | None:
    """(selector, each member's (type, value) of each field it reads); None when a value is not a scalar (a
    list or mapping could name a member) or the selector is not pure. Types are part of the key: JMESPath tells
    `true` from `1`, which Python's equality does not."""
    fields = _fields_read(expr)
    if fields is None:
        return None
    rows = []
    for m in members:
        view = m.selector_view
        row = tuple((type(v), v) for v in (view.get(f) for f in fields))
        if not all(isinstance(v, _SCALARS) for _, v in row):
            return None
        rows.append(row)
    return (expr, tuple(rows))


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


def _servers(svc: Service, cluster: PgCluster, dest: Any) -> list[dict[str, Any]]:
    """Pigsty's server lines in Pigsty's order: the members the selector picks (flagged `backup` when the backup
    expression picks them too), then the backups the selector did not pick."""
    spare = {b.host.ip for b in svc.backups}
    chosen = select(svc.spec.get("selector", "[]"), cluster.instances)
    picked = {m.host.ip for m in chosen}
    lines = [(m, m.host.ip in spare) for m in chosen] + [(b, True) for b in svc.backups if b.host.ip not in picked]
    servers = []
    for inst, backup in lines:
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


def _service_cfg(cluster: PgCluster, svc: Service) -> str:
    p = cluster.params()
    spec = svc.spec
    dest = spec.get("dest", "default")
    if dest == "default":
        dest = p["pg_default_service_dest"]
    return render(
        "pgsql/service.cfg.j2",
        svc=svc,
        ip=spec.get("ip") or "*",
        check=spec.get("check") or "/",
        balance=spec.get("balance") or "roundrobin",
        maxconn=int(spec.get("maxconn") or SERVICE_MAXCONN),
        options=default_server(spec, list((p["pg_rto_plan"] or {})[p["pg_rto"]])),
        servers=_servers(svc, cluster, dest),
        dest=dest,
        ca_file=CA_CERT_PATH,
    )


_MS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}


def haproxy_time(value: Any) -> str:
    """A pg_rto_plan timer as HAProxy reads it: whole numbers only, so a fractional one (Pigsty's `0.5s`) is
    written in milliseconds (`500ms`); anything else is written as it is."""
    text = str(value)
    m = re.fullmatch(r"(\d+\.\d+)(ms|s|m|h|d)?", text)
    if not m:
        return text
    ms = Decimal(m[1]) * _MS[m[2] or "ms"]
    return f"{int(ms)}ms" if ms == int(ms) else text


def default_server(spec: dict[str, Any], rto: list[Any]) -> str:
    """The service's `default-server` options: its own `options`, else Pigsty's, paced by the pg_rto plan."""
    options = spec.get("options")
    if options:
        return " ".join(options) if isinstance(options, list) else str(options)
    inter, fastinter, downinter = (haproxy_time(t) for t in rto[5:8])
    rise, fall = rto[8:10]
    return (
        f"inter {inter} fastinter {fastinter} downinter {downinter} rise {rise} fall {fall} "
        f"on-marked-down shutdown-sessions slowstart 30s maxconn {SERVER_MAXCONN} maxqueue {SERVER_MAXQUEUE} weight 100"
    )


def render_service(
    cluster: PgCluster, svc: Service, b: HostBundle, rendered: dict[tuple[str, str], str] | None = None
) -> None:
    """`/etc/haproxy/conf.d/<cluster>-<service>.cfg`; health checks paced by the pg_rto plan. The text depends on
    the cluster alone, so every host serving it gets the one kept in `rendered` (the model's, per process)."""
    key = (cluster.name, svc.name)
    text = rendered.get(key) if rendered is not None else None
    if text is None:
        text = _service_cfg(cluster, svc)
        if rendered is not None:
            rendered[key] = text
    path = f"/etc/haproxy/conf.d/{svc.full_name}.cfg"
    b.add(FileSpec(path, MODULE, text, "haproxy", actions=[reload("haproxy.service")]))
    b.ports.add(Port(svc.port, f"haproxy:{svc.full_name}", MODULE))
    b.check("haproxy", "/etc/haproxy/haproxy.cfg", "/etc/haproxy/conf.d")
