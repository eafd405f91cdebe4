"""The instance's metric exporters: pg_exporter, pgbouncer_exporter and pgbackrest_exporter.

Each runs from an environment file in the platform's EnvironmentFile directory plus a unit, only when enabled
(pgbouncer_exporter also needs pgbouncer, pgbackrest_exporter pgBackRest); pgbouncer_exporter is the same
`/usr/bin/pg_exporter` program pointed at pgbouncer. Connection URLs embed
`<<secret:<cluster>/pg_monitor_password/urlencoded>>`, the monitor password percent-encoded for URLs;
`pg_exporter_url` / `pgbouncer_exporter_url` replace them as whole secrets (scoped by host). The collector
definitions are the package's `/etc/pg_exporter.yml`. Values land in single-quoted environment values and are
split on blanks by systemd, which is why the options are checked against a narrow alphabet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote as urlquote

from ...bundle import DAEMON_RELOAD, FileSpec, HostBundle, Port, Unit, restart
from ...errors import Report
from ...model import Host
from ...render import RenderError, one_line, render
from ...secrets import LINE_BREAK_RULE
from ...shared import shared
from .model import MODULE, PgCluster

# exporter command-line options go into a single-quoted EnvironmentFile value and are split on blanks
EXPORTER_OPTIONS = re.compile(r"^[A-Za-z0-9 _.,:/=@%+*?&<>-]*$")
URL_PARAMS = re.compile(r"^[A-Za-z0-9_.=&%/-]*$")
DB_LIST = re.compile(r"^[A-Za-z0-9_$.,-]*$")
OPTIONS_TEXT = "command line options without quotes, $ or backslashes"
FORMATS = (
    ("pg_exporter_options", EXPORTER_OPTIONS, OPTIONS_TEXT),
    ("pgbouncer_exporter_options", EXPORTER_OPTIONS, OPTIONS_TEXT),
    ("pgbackrest_exporter_options", EXPORTER_OPTIONS, OPTIONS_TEXT),
    ("pg_exporter_params", URL_PARAMS, "URL query parameters such as sslmode=disable&connect_timeout=1"),
    ("pg_exporter_include_database", DB_LIST, "a comma separated list of database names"),
    ("pg_exporter_exclude_database", DB_LIST, "a comma separated list of database names"),
)
# package names Pigsty's repositories use for what Debian does not ship, by platform family
PIGSTY_PACKAGES = {
    "deb": {"pg_exporter": "pg-exporter", "pgbackrest_exporter": "pgbackrest-exporter"},
    "rpm": {"pg_exporter": "pg_exporter", "pgbackrest_exporter": "pgbackrest_exporter"},
}
PG_EXPORTER_DOCS = "https://github.com/pgsty/pg_exporter"


@dataclass(frozen=True)
class Exporter:
    """One exporter as its environment file and unit describe it."""

    name: str
    description: str
    binary: str
    optvar: str  # the environment variable that carries the command-line options
    package: str
    docs: str
    env: list[tuple[str, str]]


def exporter_ports(p) -> dict[str, int]:
    """The exporters an instance runs, with their ports (pgbouncer's and pgBackRest's need them enabled)."""
    out = {}
    if p.get("pg_exporter_enabled"):
        out["pg_exporter"] = p["pg_exporter_port"]
    if p.get("pgbouncer_exporter_enabled") and p.get("pgbouncer_enabled"):
        out["pgbouncer_exporter"] = p["pgbouncer_exporter_port"]
    if p.get("pgbackrest_exporter_enabled") and p.get("pgbackrest_enabled"):
        out["pgbackrest_exporter"] = p["pgbackrest_exporter_port"]
    return out


def check_exporter_options(p, report: Report) -> None:
    for key, pattern, what in FORMATS:
        if not pattern.match(str(p.get(key) or "")):
            report.error(p.source(key), f"{key} must be {what}")


def env_quote(value: Any) -> str:
    """The environment-file quoting every env template uses (render.env_quote: double quotes, `\\ " $ \\``
    escaped), so a value checked here is written the way the apply stage writes secrets into the same file."""
    from ...render import env_quote as quote  # the one env quoting; this name stays for its callers

    try:
        text = one_line(value)
    except RenderError as e:
        raise RenderError(f"{e}, which an environment file cannot carry") from None
    return quote(text)


def _opts(port: int, options: str) -> str:
    return " ".join([f"--web.listen-address=:{int(port)}", *str(options).split()])


def _url_override(b: HostBundle, host: Host, key: str) -> str | None:
    """A whole connection URL given by the inventory: a host-scoped secret."""
    value = host.params.get(key)
    if not value:
        return None
    name = f"{host.ip}/{key}"
    try:
        env_quote(b.secret_value(name, value))  # refuses what cannot be written into the file
    except RenderError:  # the filter's words, with the secret's name instead of its value
        raise RenderError(f"the secret {key} ({host.params.source(key)}): {LINE_BREAK_RULE}") from None
    return b.secret(name, value)


def _monitor_login(b: HostBundle, p, cluster: PgCluster) -> tuple[str, str, str]:
    """(user, password placeholder, socket directory), each percent-encoded for a postgres:// URL."""
    user = urlquote(str(p["pg_monitor_username"]), safe="")
    password = b.secret_value(f"{cluster.name}/pg_monitor_password", p["pg_monitor_password"])
    secret = b.secret(f"{cluster.name}/pg_monitor_password/urlencoded", urlquote(password, safe=""))
    socket = urlquote(str(p["pg_localhost"]), safe="/")
    return user, secret, socket


def _pg_exporter(b: HostBundle, host: Host, login: tuple[str, str, str], port: int) -> Exporter:
    p = host.params
    user, secret, socket = login
    params = str(p["pg_exporter_params"] or "")
    url = _url_override(b, host, "pg_exporter_url") or (
        f"postgres://{user}:{secret}@:{p['pg_port']}/postgres?host={socket}" + (f"&{params}" if params else "")
    )
    env = [
        ("PG_EXPORTER_URL", url),
        ("PG_EXPORTER_CONFIG", "/etc/pg_exporter.yml"),
        ("PG_EXPORTER_AUTO_DISCOVERY", "true" if p["pg_exporter_auto_discovery"] else "false"),
        ("PG_EXPORTER_EXCLUDE_DATABASE", str(p["pg_exporter_exclude_database"] or "")),
        ("PG_EXPORTER_INCLUDE_DATABASE", str(p["pg_exporter_include_database"] or "")),
        ("PG_EXPORTER_CONNECT_TIMEOUT", str(int(p["pg_exporter_connect_timeout"]))),
        ("PG_EXPORTER_TELEMETRY_PATH", "/metrics"),
        ("PG_EXPORTER_OPTS", _opts(port, p["pg_exporter_options"] or "--log.level=info")),
    ]
    package = PIGSTY_PACKAGES[host.platform.family]["pg_exporter"]
    description = "pg_exporter: PostgreSQL metrics"
    return Exporter(
        "pg_exporter", description, "/usr/bin/pg_exporter", "PG_EXPORTER_OPTS", package, PG_EXPORTER_DOCS, env
    )


def _pgbouncer_exporter(b: HostBundle, host: Host, login: tuple[str, str, str], port: int) -> Exporter:
    p = host.params
    user, secret, socket = login
    url = _url_override(b, host, "pgbouncer_exporter_url") or (
        f"postgres://{user}:{secret}@:{p['pgbouncer_port']}/pgbouncer?host={socket}&sslmode=disable"
    )
    options = p["pgbouncer_exporter_options"] or "--log.level=info"
    env = [
        ("PG_EXPORTER_URL", url),
        ("PG_EXPORTER_CONFIG", "/etc/pg_exporter.yml"),
        ("PG_EXPORTER_AUTO_DISCOVERY", "false"),
        ("PG_EXPORTER_CONNECT_TIMEOUT", str(int(p["pg_exporter_connect_timeout"]))),
        ("PG_EXPORTER_TELEMETRY_PATH", "/metrics"),
        ("PG_EXPORTER_OPTS", _opts(port, options)),
    ]
    package = PIGSTY_PACKAGES[host.platform.family]["pg_exporter"]
    description = "pgbouncer_exporter: pgbouncer metrics (pg_exporter)"
    return Exporter(
        "pgbouncer_exporter", description, "/usr/bin/pg_exporter", "PG_EXPORTER_OPTS", package, PG_EXPORTER_DOCS, env
    )


def _pgbackrest_exporter(host: Host, port: int) -> Exporter:
    p = host.params
    options = f"--backrest.config=/etc/pgbackrest/pgbackrest.conf {p['pgbackrest_exporter_options'] or ''}"
    env = [("PGBACKREST_EXPORTER_OPTS", _opts(port, options))]
    return Exporter(
        "pgbackrest_exporter",
        "pgbackrest_exporter: pgBackRest metrics",
        "/usr/bin/pgbackrest_exporter",
        "PGBACKREST_EXPORTER_OPTS",
        PIGSTY_PACKAGES[host.platform.family]["pgbackrest_exporter"],
        "https://github.com/woblerr/pgbackrest_exporter",
        env,
    )


def _install(host: Host, b: HostBundle, e: Exporter, port: int) -> None:
    """The exporter's environment file, unit, port and package."""
    dbsu = host.params["pg_dbsu"]
    envfile = f"{host.platform.sysconfig_dir}/{e.name}"
    unit = f"{e.name}.service"
    env_text = render("pgsql/exporter.env.j2", description=e.description, env=e.env, envq=env_quote)
    b.add(FileSpec(envfile, MODULE, env_text, "env", owner=dbsu, group=dbsu, mode="0600", actions=[restart(unit)]))
    text = render(
        "pgsql/exporter.service.j2",
        description=e.description,
        docs=e.docs,
        dbsu=dbsu,
        envfile=envfile,
        bin=e.binary,
        optvar=e.optvar,
        reload=e.binary == "/usr/bin/pg_exporter",  # pg_exporter re-reads its collectors on SIGHUP
    )
    path = f"/etc/systemd/system/{unit}"
    b.add(FileSpec(path, MODULE, text, "systemd", actions=[DAEMON_RELOAD, restart(unit)]))
    b.ports.add(Port(port, e.name, MODULE))
    b.packages.add(e.package)
    b.check("systemd", path)


def render_exporters(host: Host, cluster: PgCluster, b: HostBundle) -> None:
    """Alike on the members of a cluster but for the units' addresses: rendered once (compiler/shared.py)."""
    ports = exporter_ports(host.params)
    if not ports:
        return
    shared(_exporters, host, b, cluster)
    for name, port in ports.items():
        b.units.add(Unit(f"{name}.service", MODULE, f"http://{host.ip}:{port}/metrics"))


def _exporters(host: Host, b: HostBundle, cluster: PgCluster) -> None:
    ports = exporter_ports(host.params)
    login = _monitor_login(b, host.params, cluster)
    exporters = []
    if "pg_exporter" in ports:
        exporters.append(_pg_exporter(b, host, login, ports["pg_exporter"]))
    if "pgbouncer_exporter" in ports:
        exporters.append(_pgbouncer_exporter(b, host, login, ports["pgbouncer_exporter"]))
    if "pgbackrest_exporter" in ports:
        exporters.append(_pgbackrest_exporter(host, ports["pgbackrest_exporter"]))
    for e in exporters:
        _install(host, b, e, ports[e.name])
