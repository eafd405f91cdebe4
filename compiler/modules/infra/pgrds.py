"""Remote PostgreSQL instances monitored from the infra nodes: Pigsty's `pg_exporters` (role `pg_exporters`).

An infra node whose `pg_exporters` maps local ports to remote instances runs one pg_exporter per entry
(`pg_exporter_<cls>-<seq>.service`, its options in an EnvironmentFile), scrapes them itself as the `pgrds` job
(`/infra/targets/pgrds/<cls>.yml`, labels `cls`, `ins` = `<cls>-<seq>`, `ip` = the remote's `pg_host`, as
Pigsty's), and every Grafana gets a datasource `<cls>-<seq>.<datname>` per entry of the entry's `pg_databases`.

An entry's values come from the entry, else from the infra node's own parameter (Pigsty's fallback), else the
default. Passwords stay secrets: the connection URL carries `<<secret:<ins>/pg_monitor_password/urlencoded>>`
and the datasource `<<secret:<ins>/pg_monitor_password>>`; a whole `pg_exporter_url` is the secret
`<ins>/pg_exporter_url`.

Intentional differences from Pigsty's role:
- the collectors are the package's `/etc/pg_exporter.yml`, as for the local pg_exporter: an entry naming
  another `pg_exporter_config` is an error (sty ships no user files), an entry's `pg_exporter_cache_ttls` is
  warned about (the TTLs are the package's);
- `pg_exporter_url` is read from the entry only: Pigsty also falls back to the infra node's own
  `pg_exporter_url` (its local exporter's URL), which would point every remote exporter at one database;
- `pg_exporter_options` may be set per entry (Pigsty reads the node's only);
- the user name and password are percent-encoded in the URL (Pigsty inserts them raw, which breaks on `@ : /`);
- the EnvironmentFile sits in the platform's directory (`/etc/sysconfig` on EL, Pigsty: `/etc/default`);
- only infra nodes run them (Pigsty's pgsql-monitor.yml plays on group infra): `pg_exporters` reaching other
  hosts is a warning; two entries for one instance, a port outside 1-65535 or taken by an INFRA component, a
  `pg_host` that is neither an address nor a host name, and an instance that is also a managed PostgreSQL
  instance or is defined differently on two infra nodes are errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote as urlquote

from ...bundle import DAEMON_RELOAD, Directory, FileSpec, HostBundle, OsUser, Port, Unit, restart
from ...contrib import Datasource, Listener, ScrapeTarget, ip_key, is_hostname, is_ip
from ...errors import Report, join_path
from ...model import Fleet, Host
from ...render import HEADER, RenderError, env_quote, one_line, render, to_yaml
from ...secrets import LINE_BREAK_RULE
from .model import COMPONENTS, MODULE, TARGETS_DIR

JOB = "pgrds"
PG_EXPORTER_BIN = "/usr/bin/pg_exporter"
PG_EXPORTER_CONFIG = "/etc/pg_exporter.yml"  # the package's collectors, as the local pg_exporter uses
PG_EXPORTER_DOCS = "https://github.com/pgsty/pg_exporter"
PACKAGE = {"deb": "pg-exporter", "rpm": "pg_exporter"}  # Pigsty's repositories name the deb with a dash
DEFAULT_CONFIG = "pg_exporter.yml"
DEFAULT_TTLS = "1,10,60,300"
# values that land in a double-quoted EnvironmentFile value split on blanks by systemd, or in a URL
OPTIONS = re.compile(r"^[A-Za-z0-9 _.,:/=@%+*?&<>-]*$")
URL_PARAMS = re.compile(r"^[A-Za-z0-9_.=&%/-]*$")
DB_LIST = re.compile(r"^[A-Za-z0-9_$.,-]*$")
DBSU = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
FORMATS = (
    ("pg_exporter_options", OPTIONS, "command line options without quotes, $ or backslashes"),
    ("pg_exporter_params", URL_PARAMS, "URL query parameters such as sslmode=disable&connect_timeout=1"),
    ("pg_exporter_include_database", DB_LIST, "a comma separated list of database names"),
    ("pg_exporter_exclude_database", DB_LIST, "a comma separated list of database names"),
)
# entry fields that fall back to the infra node's parameter of the same name (Pigsty's role vars)
INHERITED = (
    "pg_port",
    "pg_dbsu",
    "pg_monitor_username",
    "pg_monitor_password",
    "pg_exporter_params",
    "pg_exporter_auto_discovery",
    "pg_exporter_include_database",
    "pg_exporter_exclude_database",
    "pg_exporter_connect_timeout",
    "pg_exporter_options",
    "pg_version",
)


@dataclass(frozen=True)
class RemoteExporter:
    """One `pg_exporters` entry of one infra node, its values resolved."""

    port: int
    cluster: str
    seq: int
    address: str  # pg_host: where the remote instance listens (an address or a host name)
    path: str  # the entry's inventory path
    values: dict[str, Any]  # the INHERITED fields, resolved
    url: str  # the entry's own pg_exporter_url ("": generated)
    databases: tuple[str, ...]  # the datasources' databases

    @property
    def ins(self) -> str:
        return f"{self.cluster}-{self.seq}"

    @property
    def unit(self) -> str:
        return f"pg_exporter_{self.ins}"

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{int(self.values['pg_port'])}"


def entries(host: Host) -> list[tuple[Any, Any, str]]:
    """(port key, entry, inventory path) of the host's pg_exporters, in port order."""
    p = host.params
    value = p.get("pg_exporters") or {}
    if not isinstance(value, dict):
        return []
    source = p.source("pg_exporters")
    return sorted(((k, v, join_path(source, str(k))) for k, v in value.items()), key=lambda e: _port_key(e[0]))


def _port_key(key: Any) -> tuple[int, str]:
    text = str(key)
    return (int(text), "") if text.isdigit() else (1 << 20, text)


def remote_exporter(host: Host, key: Any, entry: dict[str, Any], path: str) -> RemoteExporter:
    p = host.params
    values = {k: entry[k] if entry.get(k) is not None else p.get(k) for k in INHERITED}
    databases = []
    for db in entry.get("pg_databases") or []:
        if isinstance(db, dict) and db.get("name") and db.get("register_datasource", True) is not False:
            databases.append(str(db["name"]))
    return RemoteExporter(
        port=int(str(key)),
        cluster=str(entry["pg_cluster"]),
        seq=int(entry["pg_seq"]),
        address=str(entry["pg_host"]),
        path=path,
        values=values,
        url=str(entry.get("pg_exporter_url") or ""),
        databases=tuple(dict.fromkeys(databases)),
    )


# -- derive: the rules, the listeners ---------------------------------------------------------------------------


def derive_remote(fleet: Fleet, members: list[Host], report: Report) -> dict[str, list[RemoteExporter]]:
    """The valid remote exporters of every infra node (by address), their rules reported, their ports published."""
    out: dict[str, list[RemoteExporter]] = {}
    infra = {h.ip for h in members}
    warned: set[str] = set()
    for host in fleet.hosts.values():
        if host.ip not in infra and host.params.get("pg_exporters"):
            source = host.params.source("pg_exporters")
            if source not in warned:
                warned.add(source)
                report.warning(
                    source,
                    f"pg_exporters only runs on infra nodes (as Pigsty's pgsql-monitor.yml): {host.ip} is not one, "
                    "so it runs none of them",
                )
    defined: dict[str, RemoteExporter] = {}
    reported: set[tuple[str, str]] = set()  # infra nodes sharing a group's pg_exporters share its problems
    for host in members:
        found = _host_exporters(host, report, reported)
        for r in found:
            other = defined.setdefault(r.ins, r)
            if other is not r and _identity(other) != _identity(r):
                report.error(
                    join_path(r.path, "pg_host"),
                    f"pg_exporters instance {r.ins} is {_described(r)} here but {_described(other)} at "
                    f"{other.path}: one instance, one definition (its datasources are every Grafana's)",
                )
        if found:
            out[host.ip] = found
            if not host.params.get("vmetrics_enabled"):
                report.warning(
                    host.params.source("vmetrics_enabled"),
                    f"the pg_exporters of {host.ip} run but nothing scrapes them: each infra node scrapes its own "
                    "and VictoriaMetrics is disabled there",
                )
            fleet.board.publish(
                MODULE, *(Listener(host.ip, r.port, f"pg_exporter for {r.ins}", MODULE, r.path) for r in found)
            )
    return out


def _identity(r: RemoteExporter) -> tuple[Any, ...]:
    v = r.values
    return (r.address, int(v["pg_port"]), str(v["pg_monitor_username"]), r.databases)


def _described(r: RemoteExporter) -> str:
    v = r.values
    return f"{r.endpoint} as {v['pg_monitor_username']} with databases [{', '.join(r.databases)}]"


def _host_exporters(host: Host, report: Report, reported: set[tuple[str, str]]) -> list[RemoteExporter]:
    p = host.params
    taken = {int(p[f"{c}_port"]): f"{c}_port" for c in COMPONENTS if p.get(f"{c}_enabled")}
    if p.get("nginx_enabled"):
        taken.setdefault(int(p["nginx_port"]), "nginx_port")
        if str(p.get("nginx_sslmode")) != "disable":
            taken.setdefault(int(p["nginx_ssl_port"]), "nginx_ssl_port")
        if p.get("nginx_exporter_enabled"):
            taken.setdefault(int(p["nginx_exporter_port"]), "nginx_exporter_port")
    if p.get("dns_enabled"):
        taken.setdefault(int(p["dns_port"]), "dns_port")
    found: list[RemoteExporter] = []
    seen: dict[str, str] = {}
    for key, entry, path in entries(host):
        problems = list(_entry_problems(host, key, entry, path, taken))
        for where, message in problems:
            _once(report.error, where, message, reported)
        if problems:
            continue
        r = remote_exporter(host, key, entry, path)
        if r.ins in seen:
            _once(report.error, path, f"pg_exporters entries {seen[r.ins]} and {key} both monitor {r.ins}", reported)
            continue
        seen[r.ins] = str(key)
        ttls = entry.get("pg_exporter_cache_ttls")
        if ttls is not None and str(ttls) != DEFAULT_TTLS:
            message = (
                f"the collectors of {r.ins} are the package's {PG_EXPORTER_CONFIG} with its own TTLs: "
                "pg_exporter_cache_ttls is not rendered"
            )
            _once(report.warning, join_path(path, "pg_exporter_cache_ttls"), message, reported)
        found.append(r)
    return found


def _once(say: Any, where: str, message: str, reported: set[tuple[str, str]]) -> None:
    if (where, message) not in reported:
        reported.add((where, message))
        say(where, message)


def _entry_problems(host: Host, key: Any, entry: Any, path: str, taken: dict[int, str]):
    """(inventory path, message) of what keeps an entry from being rendered."""
    text = str(key)
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        yield path, f"pg_exporters key '{text}' must be a local port number from 1 to 65535"
        return
    if int(text) in taken:
        yield path, f"pg_exporters port {text} clashes with {taken[int(text)]} on {host.ip}"
    if not isinstance(entry, dict) or any(entry.get(k) in (None, "") for k in ("pg_cluster", "pg_seq", "pg_host")):
        yield path, "a pg_exporters entry needs pg_cluster, pg_seq and pg_host"
        return
    address = str(entry["pg_host"])
    if not (is_ip(address) or is_hostname(address)):
        yield join_path(path, "pg_host"), f"pg_host '{address}' is neither an IP address nor a host name"
    config = entry.get("pg_exporter_config")
    if config is not None and str(config) != DEFAULT_CONFIG:
        yield (
            join_path(path, "pg_exporter_config"),
            f"pg_exporter_config '{config}' names a collector file sty cannot ship: remote exporters use the "
            f"package's {PG_EXPORTER_CONFIG} (remove the key to monitor with it)",
        )
    p = host.params
    for field, pattern, what in FORMATS:
        value = entry.get(field)
        where = join_path(path, field)
        if value is None:
            value, where = p.get(field), p.source(field)
        if not pattern.match(str(value or "")):
            yield where, f"{field} must be {what}"
    dbsu = entry.get("pg_dbsu") or p.get("pg_dbsu")
    if not DBSU.match(str(dbsu)):
        yield join_path(path, "pg_dbsu"), f"pg_dbsu '{dbsu}' is not an OS user name"


def review_remote(fleet: Fleet, remote: dict[str, list[RemoteExporter]], report: Report) -> None:
    """A remote instance named like a managed PostgreSQL instance: their series and datasources would mix."""
    managed = {
        g.labels.get("ins"): t.owner for t in fleet.board.read(ScrapeTarget) if t.job == "pgsql" for g in t.groups
    }
    for found in remote.values():
        for r in found:
            if r.ins in managed:
                report.error(
                    join_path(r.path, "pg_cluster"),
                    f"pg_exporters instance {r.ins} is also a PostgreSQL instance of this inventory "
                    f"(at {managed[r.ins]}): its metrics and datasources would mix with the managed one's",
                )


# -- render -----------------------------------------------------------------------------------------------------


def remote_datasources(remote: dict[str, list[RemoteExporter]]) -> list[Datasource]:
    """`<ins>.<datname>` for every database of every remote instance, once (infra nodes by address order)."""
    out: dict[str, Datasource] = {}
    for ip in sorted(remote, key=ip_key):
        for r in remote[ip]:
            v = r.values
            version = int(v["pg_version"]) if str(v.get("pg_version", "")).isdigit() else 15
            for db in r.databases:
                name = f"{r.ins}.{db}"
                out.setdefault(
                    name,
                    Datasource(
                        kind="postgres",
                        cluster=r.cluster,
                        name=name,
                        url=r.endpoint,
                        database=db,
                        user=str(v["pg_monitor_username"]),
                        password_secret=f"{r.ins}/pg_monitor_password",
                        password=v.get("pg_monitor_password"),
                        version=version,
                    ),
                )
    return list(out.values())


def target_files(host: Host, found: list[RemoteExporter]) -> dict[str, str]:
    """`/infra/targets/pgrds/<cls>.yml`: this node's exporters, scraped by this node's VictoriaMetrics only (as
    Pigsty's): another infra node with the same entries runs and scrapes its own."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in found:
        labels = {"cls": r.cluster, "ins": r.ins, "ip": r.address}
        groups.setdefault(r.cluster, []).append({"labels": labels, "targets": [f"{host.ip}:{r.port}"]})
    return {f"{TARGETS_DIR}/{JOB}/{cls}.yml": to_yaml(g, HEADER) for cls, g in sorted(groups.items())}


def render_remote(host: Host, found: list[RemoteExporter], b: HostBundle) -> None:
    """Each exporter's EnvironmentFile and unit; the target files when this node runs VictoriaMetrics."""
    p = host.params
    metrics_path = str(p.get("exporter_metrics_path") or "/metrics")
    for r in found:
        _render_one(host, r, metrics_path, b)
    if found and p.get("vmetrics_enabled"):
        for path, text in target_files(host, found).items():
            b.add(FileSpec(path, MODULE, text, "yaml"))
        b.directories.add(Directory(f"{TARGETS_DIR}/{JOB}"))


def _render_one(host: Host, r: RemoteExporter, metrics_path: str, b: HostBundle) -> None:
    p, v = host.params, r.values
    dbsu = str(v["pg_dbsu"])
    env_path = f"{host.platform.sysconfig_dir}/{r.unit}"
    unit = f"{r.unit}.service"
    extra = str(v["pg_exporter_options"] or "--log.level=info").split()
    options = " ".join([f"--web.listen-address=:{r.port}", *extra])
    env = [
        ("PG_EXPORTER_URL", _url(r, b)),
        ("PG_EXPORTER_CONFIG", PG_EXPORTER_CONFIG),
        ("PG_EXPORTER_AUTO_DISCOVERY", "true" if v["pg_exporter_auto_discovery"] else "false"),
        ("PG_EXPORTER_EXCLUDE_DATABASE", str(v["pg_exporter_exclude_database"] or "")),
        ("PG_EXPORTER_INCLUDE_DATABASE", str(v["pg_exporter_include_database"] or "")),
        ("PG_EXPORTER_CONNECT_TIMEOUT", str(int(v["pg_exporter_connect_timeout"]))),
        ("PG_EXPORTER_TELEMETRY_PATH", metrics_path),
        ("PG_EXPORTER_DISABLE_CACHE", "false"),
        ("PG_EXPORTER_OPTS", options),
    ]
    description = f"pg_exporter: metrics of the remote PostgreSQL {r.ins} at {r.endpoint}"
    text = render("infra/pg_exporter.env.j2", description=description, env=env)
    b.add(FileSpec(env_path, MODULE, text, "env", owner=dbsu, group=dbsu, mode="0600", actions=[restart(unit)]))
    service = render(
        "infra/pg_exporter.service.j2",
        description=description,
        docs=PG_EXPORTER_DOCS,
        user=dbsu,
        env=env_path,
        bin=PG_EXPORTER_BIN,
    )
    path = f"/etc/systemd/system/{unit}"
    b.add(FileSpec(path, MODULE, service, "systemd", actions=[DAEMON_RELOAD, restart(unit)]))
    b.check("systemd", path)
    b.units.add(Unit(unit, MODULE, f"http://{host.ip}:{r.port}{metrics_path}"))
    b.ports.add(Port(r.port, f"pg_exporter_{r.ins}", MODULE))
    b.packages.add(PACKAGE[host.platform.family])
    # the database superuser, as PGSQL declares it where this node also runs PostgreSQL (one user, one entry)
    same = dbsu == str(p.get("pg_dbsu"))
    b.users.add(OsUser(dbsu, p.get("pg_dbsu_uid"), p.get("pg_dbsu_home")) if same else OsUser(dbsu))


def _url(r: RemoteExporter, b: HostBundle) -> str:
    """The connection URL: the entry's whole `pg_exporter_url` secret, else built around the password secret."""
    if r.url:
        name = f"{r.ins}/pg_exporter_url"
        try:
            env_quote(b.secret_value(name, r.url))  # what an environment file cannot carry is refused here
        except RenderError:
            where = join_path(r.path, "pg_exporter_url")
            raise RenderError(f"the secret {name} ({where}): {LINE_BREAK_RULE}") from None
        return b.secret(name, r.url)
    v = r.values
    user = urlquote(one_line(v["pg_monitor_username"]), safe="")
    password = b.secret_value(f"{r.ins}/pg_monitor_password", v.get("pg_monitor_password"))
    secret = b.secret(f"{r.ins}/pg_monitor_password/urlencoded", urlquote(password, safe=""))
    params = str(v["pg_exporter_params"] or "")
    return f"postgres://{user}:{secret}@{r.endpoint}/postgres" + (f"?{params}" if params else "")
