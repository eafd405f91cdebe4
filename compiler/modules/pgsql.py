r"""PGSQL: HA PostgreSQL clusters. Membership by `pg_cluster`; per instance Patroni, the HBA file,
pgbouncer, pgBackRest, the exporters, vip-manager, the superuser's crontab, the SQL that provisions
roles and databases, and the cluster's HAProxy services (on its members or on `pg_service_provider`
nodes).

Files per PostgreSQL instance (besides Patroni, pg_hba, pgbouncer and the services):

* `/etc/pgbackrest/pgbackrest.conf` (`pgbackrest_enabled`): stanza = cluster name with `pg1-path`,
  `pg1-port`, `pg1-socket-path`, `pg1-user`; the repository `pgbackrest_repo[pgbackrest_method]` as
  `repo1-*` options (secret fields become placeholders `<cluster>/pgbackrest_repo/<method>/<field>`).
  Patroni gets `archive_mode`, `archive_command` (archive-push) and `archive_timeout`, a
  `recovery_conf.restore_command` (archive-get) and, for non-local repositories, the `pgbackrest`
  replica creation method. Creating the stanza and the first backup are apply-time operations.
* pg_exporter, pgbouncer_exporter (both the `/usr/bin/pg_exporter` program), pgbackrest_exporter:
  an environment file in the platform's EnvironmentFile directory and a unit each, only when enabled
  (pgbouncer_exporter also needs pgbouncer, pgbackrest_exporter pgBackRest). Connection URLs embed
  `<<secret:<cluster>/pg_monitor_password/urlencoded>>`, the monitor password percent-encoded for
  URLs; `pg_exporter_url` / `pgbouncer_exporter_url` replace them as whole secrets (scoped by host).
  The collector definitions are the package's `/etc/pg_exporter.yml`.
* `/etc/default/vip-manager.yml` + `vip-manager.service` (`pg_vip_enabled`): etcd endpoints of the
  etcd cluster, trigger key `<pg_namespace>/<cluster>/leader`, trigger value the instance name.
  `pg_vip_interface: auto` is resolved as Pigsty does (the interface that holds the node's address):
  from the node's facts when they name it, else when the unit starts, by its ExecStart; an explicit or
  gathered name goes into the file. The manifest's identity records which.
* the database superuser's crontab (`pg_crontab`, when not empty) at the platform's spool path.

Provisioning SQL (`pg_provision`), identical on every member, run on the primary by the apply stage
(action `pg-sql-primary`): every file the manifest lists under `/pg/conf/sql/`, in path order, as the
database superuser with `psql -X -v ON_ERROR_STOP=1 -d postgres -f FILE`, placeholders substituted.
Each file is idempotent, so a second run changes nothing:

* `10-roles.sql`: `pg_default_roles + pg_users` (in that order). Missing roles are created; then
  every role's attributes (login, superuser, createdb, createrole, inherit, replication, bypassrls,
  connection limit, expiry) are set to the inventory's values (Pigsty's defaults where omitted), its
  password to `<<secret:<cluster>/pg_users/<name>/scram>>` (the very verifier pgbouncer's userlist
  carries), its `parameters` with ALTER ROLE SET, its comment, and its memberships granted or revoked
  (admin option; set/inherit options on PostgreSQL 16+). Settings or memberships removed from the
  inventory are left as they are. `expire_in` counts days from each run.
* `20-databases.sql`: databases created when missing (CREATE DATABASE cannot run in a transaction,
  so a `SELECT ... WHERE NOT EXISTS ... \gexec`), then owner, connection limit, allowconn, is_template,
  `parameters`, comment, CONNECT (revokeconn) and CREATE privileges set; `state: absent` drops the
  database (WITH (FORCE)). Creation-only options (template, encoding, locales, strategy, tablespace)
  do not change an existing database.
* `30-db-<name>.sql` for template1, postgres and each business database that accepts connections:
  `\connect`s to it, creates `pg_default_schemas` and the database's schemas (and any schema an
  extension names), creates `pg_default_extensions` and the database's extensions (an extension the
  server does not have, such as pg_repack, vector, postgis or timescaledb on a plain PostgreSQL, is
  skipped with a NOTICE), and sets `pg_default_privileges` for the database superuser, the admin user,
  dbrole_admin and the database owner. Objects of roles being dropped are reassigned to the superuser.
* `90-drop-roles.sql`: roles with `state: absent` are dropped (objects reassigned to the superuser).

Identifiers are double-quoted (embedded quotes doubled), literals single-quoted with quotes doubled
(`standard_conforming_strings` on); names, settings and privileges are validated in derive.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any
from urllib.parse import quote as urlquote

from .. import hba as hba_rules
from .. import tuning
from ..bundle import (
    DAEMON_RELOAD,
    Action,
    Certificate,
    Directory,
    FileSpec,
    HostBundle,
    OsUser,
    Port,
    Unit,
    reload,
    restart,
)
from ..errors import Report, join_path
from ..model import Fleet, Host
from ..module import FleetModule
from ..render import HEADER, RenderError, one_line, render, template_text, to_yaml
from ..secrets import scram_verifier
from .etcd import etcd_cluster
from .node import contribute_logs

CLUSTER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$.-]{0,62}$")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_@.-]{0,62}$")
ROLES = ("primary", "replica", "offline", "standby", "delayed")
# identity parameters offered to service selectors even when they only have their default
SELECTOR_DEFAULTS = ("pg_role", "pg_seq", "pg_offline_query", "pg_weight", "pg_cluster")
# parameters read by the per-instance checks: instances whose values come from the same places share one check
CHECKED_PARAMS = (
    "pg_vip_enabled",
    "pg_vip_address",
    "pg_rto",
    "pg_rto_plan",
    "pg_conf",
    "pg_users",
    "pg_default_roles",
    "pg_databases",
    "pg_dbsu",
    "pg_hba_rules",
    "pg_default_hba_rules",
    "pgb_hba_rules",
    "pgb_default_hba_rules",
    "admin_ip",
    "pg_replication_username",
    "pg_monitor_username",
    "pg_admin_username",
    "pg_version",
    "pg_parameters",
    "pg_crontab",
    "pg_vip_interface",
    "pg_port",
    "pgbouncer_port",
    "patroni_port",
    "pgbouncer_enabled",
    "pgbackrest_enabled",
    "pgbackrest_method",
    "pgbackrest_repo",
    "pg_exporter_enabled",
    "pg_exporter_port",
    "pg_exporter_params",
    "pg_exporter_options",
    "pg_exporter_include_database",
    "pg_exporter_exclude_database",
    "pgbouncer_exporter_enabled",
    "pgbouncer_exporter_port",
    "pgbouncer_exporter_options",
    "pgbackrest_exporter_enabled",
    "pgbackrest_exporter_port",
    "pgbackrest_exporter_options",
)
# parameters the provisioning SQL reads (checked once per distinct definition, on the cluster's parameters)
PROVISION_PARAMS = (
    "pg_users",
    "pg_default_roles",
    "pg_databases",
    "pg_default_privileges",
    "pg_default_schemas",
    "pg_default_extensions",
    "pg_dbsu",
    "pg_version",
    "pg_replication_username",
    "pg_monitor_username",
    "pg_admin_username",
)
PATRONI_RELOAD = Action("patroni-reload")
PATRONI_DCS = Action("patroni-dcs-config")
PG_SQL = Action("pg-sql-primary")

SQL_DIR = "/pg/conf/sql"
# a GUC name as ALTER ROLE/DATABASE SET and postgresql.conf take it (custom ones carry one dot)
GUC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
# GUCs whose value is a list: `search_path: a,b` means two elements, not one name with a comma
LIST_GUCS = frozenset(
    {"search_path", "datestyle", "temp_tablespaces", "local_preload_libraries", "session_preload_libraries"}
)
SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
EXT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
EXT_VERSION = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")
LOCALE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
EXPIRE_AT = re.compile(r"^(infinity|\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?)$")
SYSTEM_DATABASES = ("postgres", "template0", "template1")
# `pg_default_privileges` entries: ALTER DEFAULT PRIVILEGES FOR ROLE <r> <this>
DEFAULT_PRIVILEGE = re.compile(
    r"^\s*(GRANT|REVOKE)\s+(.+?)\s+ON\s+(\w+)\s+(TO|FROM)\s+(.+?)(\s+WITH\s+GRANT\s+OPTION)?\s*$", re.I
)
PRIVILEGES_ON = {
    "TABLES": {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN", "ALL"},
    "SEQUENCES": {"USAGE", "SELECT", "UPDATE", "ALL"},
    "FUNCTIONS": {"EXECUTE", "ALL"},
    "ROUTINES": {"EXECUTE", "ALL"},
    "TYPES": {"USAGE", "ALL"},
    "SCHEMAS": {"USAGE", "CREATE", "ALL"},
}
# pg_parameters may not set what sty or Patroni already decides
SET_BY_STY = {
    "hba_file": "pg_hba_file",
    "unix_socket_directories": "pg_localhost",
    "password_encryption": "pg_pwd_enc",
}
PGBACKREST_SETTINGS = ("archive_mode", "archive_command", "archive_timeout")
# secret fields of a pgbackrest_repo entry (schemas/pgsql.json x-secret-fields of pgbackrest_repo)
PGBACKREST_SECRET_FIELDS = ("azure_key", "cipher_pass", "s3_key_secret", "s3_token", "sftp_private_key_passphrase")
PGBACKREST_OPTION = re.compile(r"^[a-z][a-z0-9_]*$")
CRON_LINE = re.compile(r"^(@(reboot|yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)\s+\S")
IFACE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
# exporter command-line options go into a single-quoted EnvironmentFile value and are split on blanks
EXPORTER_OPTIONS = re.compile(r"^[A-Za-z0-9 _.,:/=@%+*?&<>-]*$")
URL_PARAMS = re.compile(r"^[A-Za-z0-9_.=&%/-]*$")
DB_LIST = re.compile(r"^[A-Za-z0-9_$.,-]*$")
# package names Pigsty's repositories use for what Debian does not ship, by platform family
PIGSTY_PACKAGES = {
    "deb": {"pg_exporter": "pg-exporter", "pgbackrest_exporter": "pgbackrest-exporter"},
    "rpm": {"pg_exporter": "pg_exporter", "pgbackrest_exporter": "pgbackrest_exporter"},
}
# the database superuser's crontab, by platform family (cron's spool; Debian's needs group crontab)
CRONTAB = {"deb": ("/var/spool/cron/crontabs/{user}", "crontab"), "rpm": ("/var/spool/cron/{user}", None)}


# -- SQL quoting -------------------------------------------------------------------------------------
def sql_ident(name: Any) -> str:
    """A double-quoted SQL identifier (embedded quotes doubled)."""
    return '"' + one_line(name).replace('"', '""') + '"'


def sql_literal(value: Any) -> str:
    """A single-quoted SQL literal for standard_conforming_strings = on (embedded quotes doubled)."""
    if isinstance(value, bool):
        value = "on" if value else "off"
    return "'" + one_line(value).replace("'", "''") + "'"


def sql_guc(name: Any) -> str:
    """A setting name, refused unless it is one."""
    if not GUC_NAME.match(str(name)):
        raise RenderError(f"{name!r} is not a setting name")
    return str(name)


def sql_dollar(body: str, tag: str = "$sty$") -> str:
    """A dollar-quoted block body, refused if it could end the quote early."""
    if tag in body:
        raise RenderError(f"a value contains {tag}")
    return f"{tag}\n{body}{tag}"


def guc_values(name: str, value: Any) -> list[str]:
    """The literal(s) of `SET name = ...`: booleans as on/off, list settings split at commas."""
    if isinstance(value, bool):
        return ["on" if value else "off"]
    text = str(value)
    if name.lower() in LIST_GUCS and "," in text:
        return [v.strip() for v in text.split(",") if v.strip()]
    return [text]


def pg_setting(value: Any) -> str:
    """A postgresql.conf value as Patroni writes it (booleans as on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


SQL_FUNCS = {"ident": sql_ident, "lit": sql_literal, "guc": sql_guc, "dollar": sql_dollar}


@cache
def extension_sql(name: str, schema: str | None, version: str | None, cascade: bool, state: str) -> str:
    """The idempotent statement for one extension (the same in every database that lists it)."""
    e = {"name": name, "schema": schema, "version": version, "cascade": cascade, "state": state}
    return render("pgsql/sql/extension.sql.j2", e=e, **SQL_FUNCS).rstrip("\n")


def env_quote(value: Any) -> str:
    """A single-quoted EnvironmentFile value (taken literally by systemd), refused if it holds a quote,
    a backslash or a line break."""
    text = one_line(value)
    if "'" in text or "\\" in text:
        raise RenderError(f"value {text[:40]!r} cannot be written into an environment file")
    return f"'{text}'"


@dataclass
class PgInstance:
    host: Host
    cluster: str
    seq: int
    role: str

    @property
    def name(self) -> str:
        return f"{self.cluster}-{self.seq}"

    @property
    def offline_query(self) -> bool:
        return bool(self.host.params.get("pg_offline_query"))

    @cached_property
    def selector_view(self) -> dict[str, Any]:
        """The member as JMESPath selectors see it (Pigsty selects over hostvars)."""
        p = self.host.params
        view = {key: p[key] for block in p.layers for key in block.data}
        for key in SELECTOR_DEFAULTS:
            view.setdefault(key, p.get(key))
        view["inventory_hostname"] = self.host.ip
        return view


@dataclass
class Service:
    cluster: str
    name: str  # without the cluster prefix
    port: int
    spec: dict[str, Any]
    source: str  # inventory path of the definition
    servers: list[PgInstance] = field(default_factory=list)
    backups: list[PgInstance] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.cluster}-{self.name}"


@dataclass
class PgCluster:
    name: str
    instances: list[PgInstance]
    services: list[Service] = field(default_factory=list)
    providers: list[Host] = field(default_factory=list)  # hosts that run this cluster's haproxy services

    @property
    def primary(self) -> PgInstance | None:
        return next((i for i in self.instances if i.role == "primary"), None)

    def params(self):
        """Cluster-level parameters: those of the primary (or the first member)."""
        return (self.primary or self.instances[0]).host.params


@dataclass
class PgsqlModel:
    clusters: dict[str, PgCluster]
    instance_of: dict[str, PgInstance]  # host ip -> instance
    provided_by: dict[str, list[PgCluster]]  # host ip -> clusters whose services it runs
    sql: dict[str, dict[str, str]] = field(default_factory=dict)  # cluster -> provisioning SQL (same on members)


def pgsql_model(fleet: Fleet) -> PgsqlModel:
    return fleet.derived["pgsql"]


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


def instance_ports(p) -> dict[int, str]:
    """Listeners of a PostgreSQL node besides the HAProxy services (for clash checks)."""
    ports = {p["pg_port"]: "postgres", p["patroni_port"]: "patroni"}
    if p.get("pgbouncer_enabled"):
        ports.setdefault(p["pgbouncer_port"], "pgbouncer")
    for key, port in exporter_ports(p).items():
        ports.setdefault(port, key)
    return ports


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


def node_ports(p) -> dict[int, str]:
    ports: dict[int, str] = {}
    if p.get("node_exporter_enabled"):
        ports[p["node_exporter_port"]] = "node_exporter"
    if p.get("haproxy_enabled"):
        ports.setdefault(p["haproxy_exporter_port"], "haproxy admin")
    if p.get("vector_enabled"):
        ports.setdefault(p["vector_port"], "vector")
    if p.get("vip_enabled"):
        ports.setdefault(p["vip_exporter_port"], "keepalived_exporter")
    for svc in p.get("haproxy_services") or []:
        if isinstance(svc, dict) and isinstance(svc.get("port"), int):
            ports.setdefault(svc["port"], f"haproxy service {svc.get('name')}")
    return ports


def parse_default_privilege(text: str) -> dict[str, Any] | str:
    """`GRANT SELECT ON TABLES TO dbrole_readonly` -> its parts, or the reason it is refused."""
    m = DEFAULT_PRIVILEGE.match(text)
    if not m or any(c in text for c in "\n\r\x00;"):
        return "a default privilege reads GRANT|REVOKE <privileges> ON <objects> TO|FROM <roles> [WITH GRANT OPTION]"
    verb, privs, objects, prep, grantees, grant_option = m.groups()
    verb, objects, prep = verb.upper(), objects.upper(), prep.upper()
    if (verb, prep) not in (("GRANT", "TO"), ("REVOKE", "FROM")):
        return f"{verb} goes with {'TO' if verb == 'GRANT' else 'FROM'}"
    if grant_option and verb == "REVOKE":
        return "WITH GRANT OPTION only follows GRANT"
    if objects not in PRIVILEGES_ON:
        return f"default privileges apply to {', '.join(PRIVILEGES_ON)}, not {objects}"
    names = [re.sub(r"\s+", " ", x.strip().upper()) for x in privs.split(",")]
    names = ["ALL" if x == "ALL PRIVILEGES" else x for x in names]
    bad = [x for x in names if x not in PRIVILEGES_ON[objects]]
    if bad:
        return f"{', '.join(bad)} is not a privilege on {objects} ({', '.join(sorted(PRIVILEGES_ON[objects]))})"
    roles = [x.strip() for x in grantees.split(",")]
    roles = ["PUBLIC" if r.upper() == "PUBLIC" else r for r in roles]
    for r in roles:
        if r != "PUBLIC" and not USER_NAME.match(r):
            return f"'{r}' is not a role name"
    return {
        "verb": verb,
        "privileges": names,
        "objects": objects,
        "prep": prep,
        "grantees": roles,
        "grant_option": bool(grant_option),
    }


class PgsqlModule(FleetModule):
    name = "pgsql"

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return bool(host.params.raw("pg_cluster"))

    # -- model and cross-host rules -------------------------------------------------------------
    def derive(self, fleet: Fleet, report: Report) -> None:
        clusters: dict[str, PgCluster] = {}
        instance_of: dict[str, PgInstance] = {}
        for host in fleet.hosts.values():
            if "pgsql" not in host.modules:
                continue
            p = host.params
            name = str(p["pg_cluster"])
            if not CLUSTER_NAME.match(name) or name == "root":
                report.error(host.pp("pg_cluster"), f"pg_cluster '{name}' must match [A-Za-z0-9-]+ and not be 'root'")
                continue
            seq, role = p.get("pg_seq"), p.get("pg_role")
            if seq is None:
                report.error(f"{host.path}.pg_seq", f"{host.ip} is in cluster {name} but has no pg_seq")
                continue
            if role is None:
                report.error(f"{host.path}.pg_role", f"{host.ip} is in cluster {name} but has no pg_role")
                continue
            if role not in ROLES:
                report.error(host.pp("pg_role"), f"pg_role '{role}' is not one of {', '.join(ROLES)}")
                continue
            cluster = clusters.setdefault(name, PgCluster(name, []))
            clash = next((i for i in cluster.instances if i.seq == seq), None)
            if clash:
                report.error(host.pp("pg_seq"), f"pg_seq {seq} is already used in {name} by {clash.host.ip}")
                continue
            inst = PgInstance(host, name, seq, role)
            cluster.instances.append(inst)
            instance_of[host.ip] = inst

        checked: set[tuple[str, ...]] = set()
        model = PgsqlModel(clusters, instance_of, {})
        fleet.derived["pgsql"] = model
        if clusters and etcd_cluster(fleet) is None:
            report.error("all.children.etcd", "PostgreSQL clusters need an `etcd` group (the DCS) and there is none")
        for cluster in clusters.values():
            cluster.instances.sort(key=lambda i: i.seq)
            primaries = [i for i in cluster.instances if i.role == "primary"]
            if not primaries:
                report.error(
                    cluster.instances[0].host.pp("pg_role"),
                    f"cluster {cluster.name} has no member with pg_role: primary; it needs exactly one",
                )
            for extra in primaries[1:]:  # reported where the second (third ...) primary is declared
                shown = ", ".join(i.host.ip for i in primaries)
                report.error(
                    extra.host.pp("pg_role"),
                    f"cluster {cluster.name} needs exactly one pg_role: primary, found {len(primaries)} ({shown})",
                )
            for inst in cluster.instances:
                key = tuple(inst.host.params.source(k) for k in CHECKED_PARAMS)
                if key not in checked:  # a definition shared by many hosts is checked once
                    checked.add(key)
                    self._check_instance(inst, report)
            cp = cluster.params()
            key = ("provision", *(cp.source(k) for k in PROVISION_PARAMS))
            if key not in checked:
                checked.add(key)
                self._check_provision(cp, report)
            self._services(cluster, fleet, model, report)
        self._check_listeners(fleet, model, report)

    def _check_instance(self, inst: PgInstance, report: Report) -> None:
        p = inst.host.params
        if p.get("pg_vip_enabled"):
            try:
                ipaddress.IPv4Interface(str(p.get("pg_vip_address")))
                if "/" not in str(p.get("pg_vip_address")):
                    raise ValueError
            except ValueError:
                report.error(p.source("pg_vip_address"), "pg_vip_address must be an IPv4 CIDR such as 10.10.10.3/24")
        rto = p.get("pg_rto")
        if rto not in (p.get("pg_rto_plan") or {}):
            report.error(p.source("pg_rto"), f"pg_rto '{rto}' is not a key of pg_rto_plan")
        try:
            tuning.profile_name(str(p.get("pg_conf")))
        except ValueError as exc:
            report.error(p.source("pg_conf"), str(exc))
        users = p.combined("pg_users")
        names = set()
        for i, user in enumerate(users):
            if not isinstance(user, dict):
                continue
            where = self._list_path(p, "pg_users", "pg_default_roles", i)
            name = user.get("name")
            if not isinstance(name, str) or not USER_NAME.match(name):
                report.error(join_path(where, "name"), f"user name {name!r} must match ^[a-z_][a-z0-9_@.-]{{0,62}}$")
            names.add(name)
        builtin = {p["pg_dbsu"], "public"}
        for i, db in enumerate(p.get("pg_databases") or []):
            if isinstance(db, dict) and not DB_NAME.match(str(db.get("name"))):
                report.error(
                    join_path(p.source("pg_databases"), i, "name"),
                    f"database name {db.get('name')!r} must match {DB_NAME.pattern}",
                )
        for i, db in enumerate(p.get("pg_databases") or []):
            if not isinstance(db, dict):
                continue
            where = join_path(p.source("pg_databases"), i)
            for key in ("owner", "pool_auth_user"):
                ref = db.get(key)
                if ref and ref not in names and ref not in builtin:
                    report.error(join_path(where, key), f"{key} '{ref}' is not a user of pg_users or pg_default_roles")
        for key, base, flavor in (
            ("pg_hba_rules", "pg_default_hba_rules", "postgres"),
            ("pgb_hba_rules", "pgb_default_hba_rules", "pgbouncer"),
        ):
            for i, rule in enumerate(p.combined(key)):
                for sub, message in hba_rules.rule_problems(rule, flavor):
                    report.error(join_path(self._list_path(p, key, base, i), *([sub] if sub else [])), message)

        self._check_settings(p, report)
        self._check_extras(p, report, inst.host.platform.name)

    def _check_settings(self, p, report: Report) -> None:
        """pg_parameters: setting names and one-line values, nothing sty or Patroni decides itself."""
        params = p.get("pg_parameters") or {}
        where = p.source("pg_parameters")
        for name, value in params.items():
            path = join_path(where, name)
            if not GUC_NAME.match(str(name)):
                report.error(path, f"'{name}' is not a PostgreSQL setting name")
            elif name in SET_BY_STY:
                report.error(path, f"{name} is set from {SET_BY_STY[name]}; change that parameter instead")
            elif name in tuning.PATRONI_OWNED:
                report.error(path, f"{name} is managed by Patroni and cannot be set in pg_parameters")
            elif name in PGBACKREST_SETTINGS and p.get("pgbackrest_enabled"):
                report.error(path, f"{name} is wired to pgBackRest while pgbackrest_enabled is true")
            elif any(c in str(value) for c in "\n\r\x00"):
                report.error(path, "a setting value must be one line")

    def _check_extras(self, p, report: Report, platform: str) -> None:
        """pgBackRest, exporters, VIP interface and crontab of one instance definition."""
        for i, line in enumerate(p.get("pg_crontab") or []):
            path = join_path(p.source("pg_crontab"), i)
            if any(c in str(line) for c in "\n\r\x00"):
                report.error(path, "a crontab entry must be one line")
            elif not CRON_LINE.match(str(line).strip()):
                report.error(path, "a crontab entry is five time fields (or @daily ...) followed by a command")
        if p.get("pg_vip_enabled"):
            iface = str(p.get("pg_vip_interface") or "auto")
            if iface != "auto" and not IFACE.match(iface):
                report.error(p.source("pg_vip_interface"), f"'{iface}' is not a network interface name (or auto)")
        if p.get("pgbackrest_enabled"):
            self._check_pgbackrest(p, report, platform)
        for key, pattern, what in (
            ("pg_exporter_options", EXPORTER_OPTIONS, "command line options without quotes, $ or backslashes"),
            ("pgbouncer_exporter_options", EXPORTER_OPTIONS, "command line options without quotes, $ or backslashes"),
            ("pgbackrest_exporter_options", EXPORTER_OPTIONS, "command line options without quotes, $ or backslashes"),
            ("pg_exporter_params", URL_PARAMS, "URL query parameters such as sslmode=disable&connect_timeout=1"),
            ("pg_exporter_include_database", DB_LIST, "a comma separated list of database names"),
            ("pg_exporter_exclude_database", DB_LIST, "a comma separated list of database names"),
        ):
            if not pattern.match(str(p.get(key) or "")):
                report.error(p.source(key), f"{key} must be {what}")
        taken = {port: label for port, label in node_ports(p).items()}
        taken.setdefault(p["pg_port"], "postgres")
        taken.setdefault(p["patroni_port"], "patroni")
        if p.get("pgbouncer_enabled"):
            taken.setdefault(p["pgbouncer_port"], "pgbouncer")
        for name, port in exporter_ports(p).items():
            if port in taken:
                report.error(p.source(f"{name}_port"), f"{name}_port {port} clashes with {taken[port]}")
            taken[port] = name

    def _check_pgbackrest(self, p, report: Report, platform: str) -> None:
        method = str(p.get("pgbackrest_method"))
        repos = p.get("pgbackrest_repo") or {}
        if method not in repos:
            known = ", ".join(sorted(repos)) or "none"
            report.error(
                p.source("pgbackrest_method"), f"pgbackrest_method '{method}' is not a key of pgbackrest_repo ({known})"
            )
            return
        repo = repos[method]
        where = join_path(p.source("pgbackrest_repo"), method)
        if not isinstance(repo, dict):
            report.error(where, "a pgbackrest_repo entry maps repository options to values")
            return
        for key, value in repo.items():
            if not PGBACKREST_OPTION.match(str(key)):
                report.error(join_path(where, key), f"'{key}' is not a pgBackRest repository option name")
            elif isinstance(value, (dict, list)) or value is None or any(c in str(value) for c in "\n\r\x00"):
                report.error(join_path(where, key), "a repository option value is one line of text")
        kind = str(repo.get("type", "posix"))
        if kind == "s3":
            for key in ("s3_bucket", "s3_endpoint", "s3_region", "s3_key", "s3_key_secret"):
                if not repo.get(key):
                    report.error(join_path(where, key), f"an s3 repository needs {key}")
        if str(repo.get("cipher_type", "none")) != "none" and not repo.get("cipher_pass"):
            report.error(join_path(where, "cipher_pass"), "an encrypted repository (cipher_type) needs cipher_pass")
        if platform == "debian12" and repo.get("block") in (True, "y"):
            report.note(
                join_path(where, "block"),
                "Debian 12's pgBackRest 2.45 accepts block incremental backup only as a beta feature: sty adds beta=y",
            )

    # -- provisioning: roles, databases, schemas, extensions, default privileges ------------------
    def _check_provision(self, p, report: Report) -> None:
        version = int(p["pg_version"])
        dbsu = p["pg_dbsu"]
        system_users = {
            dbsu: "pg_dbsu",
            p["pg_replication_username"]: "pg_replication_username",
            p["pg_monitor_username"]: "pg_monitor_username",
            p["pg_admin_username"]: "pg_admin_username",
        }
        users = p.combined("pg_users")
        seen: dict[str, str] = {}
        present: set[str] = set()
        absent: set[str] = set()
        for i, u in enumerate(users):
            if not isinstance(u, dict) or not isinstance(u.get("name"), str):
                continue
            where = self._list_path(p, "pg_users", "pg_default_roles", i)
            name = u["name"]
            if name in seen:
                report.error(join_path(where, "name"), f"role {name} is already defined at {seen[name]}")
                continue
            seen[name] = where
            (absent if u.get("state") == "absent" else present).add(name)
        for i, u in enumerate(users):
            if not isinstance(u, dict) or not isinstance(u.get("name"), str):
                continue
            where = self._list_path(p, "pg_users", "pg_default_roles", i)
            if seen.get(u["name"]) == where:
                self._check_role(u, where, version, dbsu, system_users, present, absent, report)
        databases = p.get("pg_databases") or []
        names: dict[str, str] = {}
        for i, db in enumerate(databases):
            if not isinstance(db, dict):
                continue
            where = join_path(p.source("pg_databases"), i)
            name = str(db.get("name"))
            if name in names:
                report.error(join_path(where, "name"), f"database {name} is already defined at {names[name]}")
                continue
            names[name] = where
            self._check_database(db, where, version, present, absent, report)
        for i, schema in enumerate(p.get("pg_default_schemas") or []):
            if not SCHEMA_NAME.match(str(schema)):
                report.error(join_path(p.source("pg_default_schemas"), i), f"schema name {schema!r} is not valid")
        for i, ext in enumerate(p.get("pg_default_extensions") or []):
            self._check_extension(ext, join_path(p.source("pg_default_extensions"), i), report)
        for i, text in enumerate(p.get("pg_default_privileges") or []):
            where = join_path(p.source("pg_default_privileges"), i)
            parsed = parse_default_privilege(str(text))
            if isinstance(parsed, str):
                report.error(where, parsed)
                continue
            for grantee in parsed["grantees"]:
                if grantee != "PUBLIC" and grantee not in present and not grantee.startswith("pg_"):
                    report.error(where, f"'{grantee}' is not a role of pg_default_roles or pg_users")

    @staticmethod
    def _check_role(u, where, version, dbsu, system_users, present, absent, report: Report) -> None:
        name = u["name"]
        if u.get("state") == "absent":
            if name in system_users:
                report.error(join_path(where, "state"), f"{name} is {system_users[name]}; it cannot be dropped")
            return
        if name == dbsu and (u.get("superuser") is not True or u.get("login") is False):
            report.error(where, f"{name} is the database superuser (pg_dbsu): it must keep superuser: true and login")
        for key in ("comment", "expire_at"):
            if key in u and any(c in str(u[key]) for c in "\n\r\x00"):
                report.error(join_path(where, key), f"{key} must be one line")
        if u.get("expire_in") is None and u.get("expire_at") is not None and not EXPIRE_AT.match(str(u["expire_at"])):
            report.error(join_path(where, "expire_at"), "expire_at must be a date YYYY-MM-DD (quoted) or infinity")
        for key, value in (u.get("parameters") or {}).items():
            if not GUC_NAME.match(str(key)):
                report.error(join_path(where, "parameters", key), f"'{key}' is not a PostgreSQL setting name")
            elif any(c in str(value) for c in "\n\r\x00"):
                report.error(join_path(where, "parameters", key), "a setting value must be one line")
        for j, member in enumerate(u.get("roles") or []):
            spec = member if isinstance(member, dict) else {"name": member}
            target = str(spec.get("name"))
            path = join_path(where, "roles", j)
            if target == name:
                report.error(path, f"role {name} cannot be a member of itself")
            elif target in absent:
                report.error(path, f"role {target} is dropped (state: absent); {name} cannot be granted it")
            elif target not in present and not target.startswith("pg_"):
                report.error(
                    path, f"'{target}' is not a role of pg_default_roles or pg_users (nor a pg_ predefined role)"
                )
            for option in ("set", "inherit"):
                if option in spec and version < 16:
                    report.error(join_path(path, option), f"membership option {option} needs PostgreSQL 16 or later")

    def _check_database(self, db, where, version, present, absent, report: Report) -> None:
        name = str(db.get("name"))
        state = db.get("state", "create")
        if state == "recreate":
            report.error(
                join_path(where, "state"),
                "state: recreate would drop the database on every apply; drop it with state: absent first",
            )
        if state == "absent":
            if name in SYSTEM_DATABASES:
                report.error(join_path(where, "state"), f"the system database {name} cannot be dropped")
            return
        for key in ("owner", "pool_auth_user"):
            if db.get(key) in absent:
                report.error(join_path(where, key), f"{key} '{db[key]}' is dropped (state: absent)")
        if db.get("baseline"):
            report.note(join_path(where, "baseline"), "baseline SQL files are not shipped by sty; load them yourself")
        for key in ("template", "tablespace"):
            if key in db and not DB_NAME.match(str(db[key])):
                report.error(join_path(where, key), f"{key} {db[key]!r} is not a valid name")
        if "encoding" in db and not re.match(r"^[A-Za-z0-9_-]{1,32}$", str(db["encoding"])):
            report.error(join_path(where, "encoding"), f"encoding {db['encoding']!r} is not valid")
        for key in ("locale", "lc_collate", "lc_ctype", "icu_locale", "builtin_locale"):
            if key in db and not LOCALE.match(str(db[key])):
                report.error(join_path(where, key), f"{key} {db[key]!r} is not a valid locale name")
        for key in ("comment", "icu_rules"):
            if key in db and any(c in str(db[key]) for c in "\n\r\x00"):
                report.error(join_path(where, key), f"{key} must be one line")
        needs = {"strategy": 15, "locale_provider": 15, "icu_rules": 16, "builtin_locale": 17}
        for key, minimum in needs.items():
            if key in db and version < minimum:
                report.error(join_path(where, key), f"{key} needs PostgreSQL {minimum} or later (pg_version {version})")
        if db.get("locale_provider") == "builtin" and version < 17:
            report.error(
                join_path(where, "locale_provider"), "the builtin locale provider needs PostgreSQL 17 or later"
            )
        for key, value in (db.get("parameters") or {}).items():
            if not GUC_NAME.match(str(key)):
                report.error(join_path(where, "parameters", key), f"'{key}' is not a PostgreSQL setting name")
            elif any(c in str(value) for c in "\n\r\x00"):
                report.error(join_path(where, "parameters", key), "a setting value must be one line")
        for j, schema in enumerate(db.get("schemas") or []):
            spec = schema if isinstance(schema, dict) else {"name": schema}
            path = join_path(where, "schemas", j)
            if not SCHEMA_NAME.match(str(spec.get("name"))):
                report.error(path, f"schema name {spec.get('name')!r} is not valid")
            owner = spec.get("owner")
            if owner and owner not in present:
                report.error(join_path(path, "owner"), f"owner '{owner}' is not a role of pg_default_roles or pg_users")
        for j, ext in enumerate(db.get("extensions") or []):
            self._check_extension(ext, join_path(where, "extensions", j), report)
        if db.get("allowconn") is False:
            if name in ("postgres", "template1"):
                report.error(join_path(where, "allowconn"), f"{name} must accept connections")
            elif db.get("schemas") or db.get("extensions"):
                report.warning(
                    join_path(where, "allowconn"),
                    f"{name} does not accept connections, so its schemas and extensions are not created",
                )

    @staticmethod
    def _check_extension(ext, where: str, report: Report) -> None:
        spec = ext if isinstance(ext, dict) else {"name": ext}
        if not EXT_NAME.match(str(spec.get("name"))):
            report.error(where, f"extension name {spec.get('name')!r} is not valid")
        if "schema" in spec and not SCHEMA_NAME.match(str(spec["schema"])):
            report.error(join_path(where, "schema"), f"schema name {spec['schema']!r} is not valid")
        if "version" in spec and not EXT_VERSION.match(str(spec["version"])):
            report.error(join_path(where, "version"), f"extension version {spec['version']!r} is not valid")

    @staticmethod
    def _list_path(p, key: str, base: str, index: int) -> str:
        """Path of item `index` of a combined list `base + key`."""
        head = p.get(base) or []
        if index < len(head):
            return join_path(p.source(base), index)
        return join_path(p.source(key), index - len(head))

    def _services(self, cluster: PgCluster, fleet: Fleet, model: PgsqlModel, report: Report) -> None:
        if not cluster.instances:
            return
        p = cluster.params()
        provider = p.get("pg_service_provider") or ""
        if provider:
            if provider not in fleet.inventory.groups:
                report.error(p.source("pg_service_provider"), f"pg_service_provider '{provider}' is not a group")
                return
            cluster.providers = fleet.group_hosts(provider)
        else:
            cluster.providers = [i.host for i in cluster.instances]
        names: dict[str, str] = {}
        ports: dict[int, str] = {}
        for i, spec in enumerate(p.combined("pg_services")):
            if not isinstance(spec, dict):
                continue
            where = self._list_path(p, "pg_services", "pg_default_services", i)
            name, port = str(spec.get("name")), spec.get("port")
            if name in names:
                report.error(join_path(where, "name"), f"service '{name}' is defined twice in {cluster.name}")
                continue
            if port in ports:
                report.error(join_path(where, "port"), f"port {port} is already used by service {ports[port]}")
                continue
            names[name], ports[port] = where, name
            dest = spec.get("dest", "default")
            if dest not in ("default", "postgres", "pgbouncer") and not (
                isinstance(dest, int) and not isinstance(dest, bool) and 0 < dest < 65536
            ):
                report.error(
                    join_path(where, "dest"), f"dest {dest!r} must be default, postgres, pgbouncer or a port number"
                )
                continue
            svc = Service(cluster.name, name, int(port), spec, where)
            try:
                # Pigsty: a member the backup selector picks serves only as a backup, selected or not
                svc.backups = select(spec.get("backup"), cluster.instances)
                spare = {b.host.ip for b in svc.backups}
                svc.servers = [
                    s for s in select(spec.get("selector", "[]"), cluster.instances) if s.host.ip not in spare
                ]
            except Exception as exc:  # jmespath raises several exception types
                report.error(join_path(where, "selector"), f"invalid JMESPath selector: {exc}")
                continue
            cluster.services.append(svc)
        for host in cluster.providers:
            model.provided_by.setdefault(host.ip, []).append(cluster)

    def _check_listeners(self, fleet: Fleet, model: PgsqlModel, report: Report) -> None:
        for ip, clusters in model.provided_by.items():
            host = fleet.hosts[ip]
            if not host.params.get("haproxy_enabled"):
                names = ", ".join(c.name for c in clusters)
                report.warning(
                    host.pp("haproxy_enabled"),
                    f"haproxy is disabled on {ip}, so it will not serve the services of {names}",
                )
                continue
            taken: dict[int, str] = node_ports(host.params)
            inst = model.instance_of.get(ip)
            if inst:
                for port, label in instance_ports(host.params).items():
                    taken.setdefault(port, label)
            for cluster in clusters:
                for svc in cluster.services:
                    if svc.port in taken:
                        report.error(
                            join_path(svc.source, "port"),
                            f"port {svc.port} of service {svc.full_name} clashes with {taken[svc.port]} on {ip}",
                        )
                    else:
                        taken[svc.port] = f"service {svc.full_name}"
            if inst:  # instance listeners among themselves
                seen: dict[int, str] = {}
                p = host.params
                for key, label in (
                    ("pg_port", "postgres"),
                    ("pgbouncer_port", "pgbouncer"),
                    ("patroni_port", "patroni"),
                ):
                    port = p.get(key)
                    if port in seen:
                        report.error(p.source(key), f"{key} {port} clashes with {seen[port]}")
                    seen[port] = label

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        model = pgsql_model(fleet)
        deps: list[Host] = []
        inst = model.instance_of.get(host.ip)
        if inst:
            deps += [i.host for i in model.clusters[inst.cluster].instances]
        for cluster in model.provided_by.get(host.ip, []):
            deps += [i.host for i in cluster.instances]
        etcd = etcd_cluster(fleet)
        if etcd:
            deps += [m.host for m in etcd.members]
        deps += [h for h in fleet.hosts.values() if "infra" in h.modules]
        return deps

    # -- rendering ------------------------------------------------------------------------------
    def serves(self, host: Host, fleet: Fleet) -> bool:
        return host.ip in pgsql_model(fleet).provided_by

    def render(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        model = pgsql_model(fleet)
        for cluster in model.provided_by.get(host.ip, []) if host.params.get("haproxy_enabled") else []:
            for svc in cluster.services:
                self._service_file(cluster, svc, b)
        inst = model.instance_of.get(host.ip)
        if inst is None:
            return
        cluster = model.clusters[inst.cluster]
        p = host.params
        b.info["pgsql"] = {
            "cluster": cluster.name,
            "instance": inst.name,
            "seq": inst.seq,
            "role": inst.role,
            "primary": cluster.primary.host.ip if cluster.primary else None,
            "members": {i.name: i.host.ip for i in cluster.instances},
            "version": int(p["pg_version"]),
            "dbsu": p["pg_dbsu"],
            "init_backup": bool(p.get("pgbackrest_enabled") and p.get("pgbackrest_init_backup")),
        }
        # values `sty verify` logs in with; kept in the store, written into no file
        b.keep(f"{cluster.name}/pg_admin_password", p["pg_admin_password"])
        for user in p.combined("pg_users"):
            if isinstance(user, dict) and user.get("pgbouncer") and user.get("name"):
                b.keep(f"{cluster.name}/pg_users/{user['name']}/password", user.get("password"))
        version = int(p["pg_version"])
        bin_dir = p["pg_bin_dir"] if p.is_set("pg_bin_dir") else host.platform.pg_bin_dir.format(version=version)
        self._os(host, b, version)
        self._patroni(host, fleet, inst, cluster, b, bin_dir)
        self._hba(host, fleet, inst, cluster, b)
        if p.get("pgbouncer_enabled"):
            self._pgbouncer(host, fleet, inst, cluster, b)
        if p.get("pgbackrest_enabled"):
            self._pgbackrest(host, inst, cluster, b)
        self._exporters(host, inst, cluster, b)
        if p.get("pg_vip_enabled"):
            self._vip(host, fleet, inst, cluster, b)
        if p.get("pg_crontab"):
            self._crontab(host, inst, b)
        if cluster.params().get("pg_provision"):
            self._sql(cluster, b, model)
        self._logs(host, inst, cluster, b)
        if p.get("patroni_ssl_enabled") or p.get("pgbouncer_sslmode", "disable") != "disable":
            # the instance's server certificate (Patroni's REST API, pgbouncer's client TLS), signed at apply time
            sans = tuple(dict.fromkeys([inst.name, host.nodename, host.ip, "127.0.0.1", "localhost"]))
            b.certificates.add(
                Certificate(
                    "pgsql-server",
                    inst.name,
                    sans,
                    "/pg/cert/server.crt",
                    "/pg/cert/server.key",
                    owner=p["pg_dbsu"],
                    usage="both",
                )
            )
            b.directories.add(Directory("/pg/cert", p["pg_dbsu"], p["pg_dbsu"], "0700"))
        if p.get("node_write_etc_hosts"):  # NODE owns /etc/hosts only then
            for peer in cluster.instances:  # peers resolve by instance name
                b.contribute("/etc/hosts", self.name, f"pgsql:{peer.seq:08d}", f"{peer.host.ip} {peer.name}")

    def _logs(self, host: Host, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
        """PostgreSQL, Patroni, pgbouncer and pgBackRest logs for the node's vector."""
        p = host.params
        who = {"job": "pgsql", "ins": inst.name, "cls": cluster.name}
        first_line = r"^\d{4}-\d{2}-\d{2} "
        multiline = {
            "start_pattern": first_line,
            "condition_pattern": first_line,
            "mode": "halt_before",
            "timeout_ms": 1000,
        }
        logs: dict[str, Any] = {
            "postgres": {
                **who,
                "source": {"type": "file", "include": [f"{p['pg_log_dir']}/*.csv"], "multiline": multiline},
                "remap": template_text("pgsql/vrl/postgres.vrl"),
            },
            "patroni": {
                **who,
                "source": {"type": "file", "include": [f"{p['patroni_log_dir']}/patroni.log"]},
                "remap": template_text("pgsql/vrl/patroni.vrl"),
            },
        }
        if p.get("pgbouncer_enabled"):
            logs["pgbouncer"] = {
                **who,
                "source": {"type": "file", "include": [f"{p['pgbouncer_log_dir']}/pgbouncer.log"]},
                "remap": template_text("pgsql/vrl/pgbouncer.vrl"),
            }
        if p.get("pgbackrest_enabled"):
            logs["pgbackrest"] = {
                **who,
                "source": {
                    "type": "file",
                    "include": [f"{p['pgbackrest_log_dir']}/*.log"],
                    "fingerprint": {"strategy": "device_and_inode"},
                },
                "remap": template_text("pgsql/vrl/pgbackrest.vrl"),
            }
        contribute_logs(b, host, self.name, logs)

    def _os(self, host: Host, b: HostBundle, version: int) -> None:
        p = host.params
        dbsu = p["pg_dbsu"]
        b.users.add(OsUser(dbsu, p["pg_dbsu_uid"], p["pg_dbsu_home"]))
        b.packages.update(x.format(version=version) for x in host.platform.pg_packages)
        b.packages.update(host.platform.patroni_packages)
        for path, mode in (
            (p["pg_fs_main"], "0700"),
            ("/pg", "0755"),
            (p["pg_data"], "0700"),
            ("/pg/conf", "0700"),
            ("/pg/tmp", "0700"),
            (p["pg_log_dir"], "0750"),
            (p["patroni_log_dir"], "0750"),
            (p["pg_localhost"], "2775"),
        ):
            b.directories.add(Directory(path, dbsu, dbsu, mode))

    def _patroni(self, host, fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle, bin_dir: str) -> None:
        p = host.params
        version = int(p["pg_version"])
        rto = list((p["pg_rto_plan"] or {})[p["pg_rto"]])
        ttl, loop, retry, start, margin = (int(x) for x in rto[:5])
        profile = tuning.profile_name(str(p["pg_conf"]))
        common = dict(
            pg_version=version,
            max_conn=p["pg_max_conn"],
            shared_buffer_ratio=float(p["pg_shared_buffer_ratio"]),
            storage_type=str(p["pg_storage_type"]),
            libs=str(p["pg_libs"]),
            log_dir=str(p["pg_log_dir"]),
            io_method=str(p["pg_io_method"]),
            rpo_bytes=int(p["pg_rpo"]),
            checksum=bool(p["pg_checksum"]),
        )
        try:
            leader = cluster.primary.host if cluster.primary else host
            res_leader = tuning.HostResources(leader.facts.cpu, leader.facts.mem_mb, leader.facts.disk_gb)
            res = tuning.HostResources(host.facts.cpu, host.facts.mem_mb, host.facts.disk_gb)
            dcs_params = tuning.dcs_parameters(profile, res_leader, **common)
            pg_params = tuning.postgres_parameters(profile, res, **common)
        except ValueError as exc:
            raise RenderError(str(exc)) from None
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
            pg_params["archive_mode"] = "on"
            pg_params["archive_timeout"] = "300"
            pg_params["archive_command"] = f"pgbackrest --stanza={cluster.name} archive-push %p"
        sync = profile == "crit" or int(p["pg_rpo"]) == 0
        etcd = etcd_cluster(fleet)
        initdb: list[Any] = [
            {"encoding": p["pg_encoding"]},
            {"locale": p["pg_locale"]},
            {"lc-collate": p["pg_lc_collate"]},
            {"lc-ctype": p["pg_lc_ctype"]},
        ]
        if p["pg_checksum"]:
            initdb.append("data-checksums")
        superuser: dict[str, Any] = {"username": p["pg_dbsu"]}
        if p.get("pg_dbsu_password"):
            superuser["password"] = b.secret(f"{cluster.name}/pg_dbsu_password", p["pg_dbsu_password"])
        etcd_user = cluster.name
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
                "hosts": etcd.client_endpoints() if etcd else [],
                "protocol": "http",
                "username": etcd_user,
                "password": b.secret(f"{cluster.name}/pg_etcd_password", p.get("pg_etcd_password") or cluster.name),
            },
            "bootstrap": {
                "dcs": {
                    "ttl": ttl,
                    "loop_wait": loop,
                    "retry_timeout": retry,
                    "primary_start_timeout": start,
                    "maximum_lag_on_failover": int(p["pg_rpo"]),
                    "synchronous_mode": sync,
                    "synchronous_mode_strict": False,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": dcs_params,
                    },
                },
                "method": "initdb",
                "initdb": initdb,
                # Patroni 3.0 insists on this list; it is inert because hba_file points at pg_hba_file
                "pg_hba": [f"local all {p['pg_dbsu']} ident"],
            },
            "postgresql": {
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
                **self._patroni_pgbackrest(p, cluster),
            },
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
        dbsu = p["pg_dbsu"]
        b.add(
            FileSpec(
                "/etc/patroni/patroni.yml",
                self.name,
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
                self.name,
                unit,
                "systemd",
                actions=[DAEMON_RELOAD, restart("patroni.service")],
            )
        )
        b.units.add(Unit("patroni.service", self.name, f"http://{host.ip}:{p['patroni_port']}/health"))
        b.ports.update({Port(p["pg_port"], "postgres", self.name), Port(p["patroni_port"], "patroni", self.name)})
        b.check("patroni", "/etc/patroni/patroni.yml", where="build")
        b.check("postgres-settings", "/etc/patroni/patroni.yml", where="build")
        b.check("systemd", "/etc/systemd/system/patroni.service")

    @staticmethod
    def _patroni_pgbackrest(p, cluster: PgCluster) -> dict[str, Any]:
        """Patroni's restore_command and, for a shared (non-local) repository, replicas made by pgBackRest."""
        if not p["pgbackrest_enabled"]:
            return {}
        stanza = cluster.name
        out: dict[str, Any] = {
            "recovery_conf": {"restore_command": f'pgbackrest --stanza={stanza} archive-get %f "%p"'},
        }
        if p["pgbackrest_method"] != "local":
            out["create_replica_methods"] = ["pgbackrest", "basebackup"]
            out["pgbackrest"] = {
                "command": f"/usr/bin/pgbackrest --stanza={stanza} --delta restore",
                "keep_data": True,
                "no_params": True,
                "no_leader": True,
            }
        return out

    def _hba_context(self, host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster) -> hba_rules.HbaContext:
        p = host.params
        infra = tuple(h.ip for h in fleet.hosts.values() if "infra" in h.modules)
        return hba_rules.HbaContext(
            dbsu=p["pg_dbsu"],
            repl=p["pg_replication_username"],
            monitor=p["pg_monitor_username"],
            admin=p["pg_admin_username"],
            admin_ip=str(p["admin_ip"]),
            infra_ips=infra,
            cluster_ips=tuple(i.host.ip for i in cluster.instances),
            intranet=tuple(p.get("node_firewall_intranet") or hba_rules.DEFAULT_INTRANET),
            pwd_enc=str(p["pg_pwd_enc"]),
            role=inst.role,
            offline_query=inst.offline_query,
        )

    def _hba(self, host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
        p = host.params
        ctx = self._hba_context(host, fleet, inst, cluster)
        try:
            text = hba_rules.render_hba(p.combined("pg_hba_rules"), ctx, "postgres")
        except ValueError as exc:
            raise RenderError(str(exc)) from None
        dbsu = p["pg_dbsu"]
        b.add(
            FileSpec(
                p["pg_hba_file"],
                self.name,
                HEADER + text,
                "hba",
                owner=dbsu,
                group=dbsu,
                mode="0600",
                actions=[PATRONI_RELOAD],
            )
        )
        b.check("postgres-hba", p["pg_hba_file"], where="both")

    def _pgbouncer(self, host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
        p = host.params
        dbsu = p["pg_dbsu"]
        users = [u for u in p.combined("pg_users") if isinstance(u, dict) and u.get("state", "create") != "absent"]
        pooled = [u for u in users if u.get("pgbouncer")]
        databases = [
            d
            for d in p.get("pg_databases") or []
            if isinstance(d, dict) and d.get("pgbouncer", True) and d.get("state", "create") != "absent"
        ]
        ctx = self._hba_context(host, fleet, inst, cluster)
        try:
            hba_text = hba_rules.render_hba(p.combined("pgb_hba_rules"), ctx, "pgbouncer")
        except ValueError as exc:
            raise RenderError(str(exc)) from None
        userlist = [(u["name"], self._scram(b, p, cluster, u)) for u in pooled]
        files = {
            "/etc/pgbouncer/pgbouncer.ini": (render("pgsql/pgbouncer.ini.j2", p=p, dbsu=dbsu), "pgbouncer"),
            "/etc/pgbouncer/database.txt": (
                render("pgsql/database.txt.j2", p=p, databases=databases),
                "pgbouncer",
            ),
            "/etc/pgbouncer/useropts.txt": (render("pgsql/useropts.txt.j2", users=pooled), "pgbouncer"),
            "/etc/pgbouncer/pgb_hba.conf": (HEADER + hba_text, "hba"),
            "/etc/pgbouncer/userlist.txt": (
                render("pgsql/userlist.txt.j2", userlist=userlist),
                "pgbouncer-auth",
            ),
        }
        for path, (text, fmt) in files.items():
            b.add(
                FileSpec(
                    path,
                    self.name,
                    text,
                    fmt,
                    owner=dbsu,
                    group=dbsu,
                    mode="0600",
                    actions=[reload("pgbouncer.service")],
                )
            )
        unit = render("pgsql/pgbouncer.service.j2", p=p, bin=host.platform.pgbouncer_bin, dbsu=dbsu)
        b.add(
            FileSpec(
                "/etc/systemd/system/pgbouncer.service",
                self.name,
                unit,
                "systemd",
                actions=[DAEMON_RELOAD, restart("pgbouncer.service")],
            )
        )
        b.units.add(Unit("pgbouncer.service", self.name, f"port:{p['pgbouncer_port']}"))
        b.ports.add(Port(p["pgbouncer_port"], "pgbouncer", self.name))
        b.packages.add("pgbouncer")
        b.directories.add(Directory(p["pgbouncer_log_dir"], dbsu, dbsu, "0750"))
        b.directories.add(Directory("/etc/pgbouncer", dbsu, dbsu, "0750"))
        b.check("pgbouncer", *files, where="build")
        b.check("systemd", "/etc/systemd/system/pgbouncer.service")

    @staticmethod
    def _scram(b: HostBundle, p, cluster: PgCluster, user: dict[str, Any]) -> str | None:
        """The placeholder of a user's SCRAM verifier, shared by pgbouncer's userlist and the role SQL.
        System users take their pg_*_password. None when the user has no password and is not pooled; a
        pooled user without one gets an empty secret, which apply refuses to ship until secrets.yml has it."""
        name = user["name"]
        system = {
            p["pg_monitor_username"]: "pg_monitor_password",
            p["pg_admin_username"]: "pg_admin_password",
            p["pg_replication_username"]: "pg_replication_password",
            p["pg_dbsu"]: "pg_dbsu_password",
        }
        if name in system:
            value = b.secret_value(f"{cluster.name}/{system[name]}", p.get(system[name]))
        else:
            value = b.secret_value(f"{cluster.name}/pg_users/{name}/password", user.get("password"))
        if not value and not user.get("pgbouncer"):
            return None
        derived = scram_verifier(value, name) if value else ""
        return b.secret(f"{cluster.name}/pg_users/{name}/scram", derived)

    # -- pgBackRest -------------------------------------------------------------------------------
    def _pgbackrest(self, host: Host, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
        p = host.params
        dbsu = p["pg_dbsu"]
        method = str(p["pgbackrest_method"])
        repo = dict((p["pgbackrest_repo"] or {})[method])
        options: list[tuple[str, str]] = []
        for key in sorted(repo, key=lambda k: (k != "type", k)):
            value = repo[key]
            if key in PGBACKREST_SECRET_FIELDS:
                name = f"{cluster.name}/pgbackrest_repo/{method}/{key}"
                one_line(b.secret_value(name, value))
                value = b.secret(name, value)
            elif isinstance(value, bool):
                value = "y" if value else "n"
            options.append((f"repo1-{key.replace('_', '-')}", str(value)))
        if host.platform.pgbackrest_block_is_beta and ("repo1-block", "y") in options:
            options.append(("beta", "y"))
        cpu = host.facts.cpu
        spool = "/pg/spool"
        text = render(
            "pgsql/pgbackrest.conf.j2",
            p=p,
            dbsu=dbsu,
            stanza=cluster.name,
            inst_name=inst.name,
            method=method,
            spool=spool,
            repo=options,
            push=min(math.ceil(cpu / 2), 4),
            get=min(math.ceil(cpu / 4), 2),
            restore=min(cpu, 8),
        )
        path = "/etc/pgbackrest/pgbackrest.conf"
        b.add(
            FileSpec(
                path,
                self.name,
                text,
                "pgbackrest",
                owner=dbsu,
                group=dbsu,
                mode="0600",
                actions=[Action("pgbackrest-stanza")],
            )
        )
        b.packages.add("pgbackrest")
        for d in ("/etc/pgbackrest", p["pgbackrest_log_dir"], spool):
            b.directories.add(Directory(d, dbsu, dbsu, "0750"))
        if str(repo.get("type", "posix")) == "posix":
            b.directories.add(Directory(str(repo.get("path") or "/var/lib/pgbackrest"), dbsu, dbsu, "0750"))
        b.check("pgbackrest", path, where="build")

    # -- exporters --------------------------------------------------------------------------------
    def _exporters(self, host: Host, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
        p = host.params
        ports = exporter_ports(p)
        if not ports:
            return
        dbsu = p["pg_dbsu"]
        envdir = host.platform.sysconfig_dir
        packages = PIGSTY_PACKAGES[host.platform.family]
        user = urlquote(str(p["pg_monitor_username"]), safe="")
        password = b.secret_value(f"{cluster.name}/pg_monitor_password", p["pg_monitor_password"])
        secret = b.secret(f"{cluster.name}/pg_monitor_password/urlencoded", urlquote(password, safe=""))
        socket = urlquote(str(p["pg_localhost"]), safe="/")
        timeout = str(int(p["pg_exporter_connect_timeout"]))
        specs = []
        if "pg_exporter" in ports:
            params = str(p["pg_exporter_params"] or "")
            url = self._url_override(b, host, "pg_exporter_url") or (
                f"postgres://{user}:{secret}@:{p['pg_port']}/postgres?host={socket}" + (f"&{params}" if params else "")
            )
            env = [
                ("PG_EXPORTER_URL", url),
                ("PG_EXPORTER_CONFIG", "/etc/pg_exporter.yml"),
                ("PG_EXPORTER_AUTO_DISCOVERY", "true" if p["pg_exporter_auto_discovery"] else "false"),
                ("PG_EXPORTER_EXCLUDE_DATABASE", str(p["pg_exporter_exclude_database"] or "")),
                ("PG_EXPORTER_INCLUDE_DATABASE", str(p["pg_exporter_include_database"] or "")),
                ("PG_EXPORTER_CONNECT_TIMEOUT", timeout),
                ("PG_EXPORTER_TELEMETRY_PATH", "/metrics"),
                ("PG_EXPORTER_OPTS", self._opts(ports["pg_exporter"], p["pg_exporter_options"] or "--log.level=info")),
            ]
            specs.append(
                (
                    "pg_exporter",
                    "pg_exporter: PostgreSQL metrics",
                    "/usr/bin/pg_exporter",
                    "PG_EXPORTER_OPTS",
                    packages["pg_exporter"],
                    "https://github.com/pgsty/pg_exporter",
                    env,
                )
            )
        if "pgbouncer_exporter" in ports:
            url = self._url_override(b, host, "pgbouncer_exporter_url") or (
                f"postgres://{user}:{secret}@:{p['pgbouncer_port']}/pgbouncer?host={socket}&sslmode=disable"
            )
            options = p["pgbouncer_exporter_options"] or "--log.level=info"
            env = [
                ("PG_EXPORTER_URL", url),
                ("PG_EXPORTER_CONFIG", "/etc/pg_exporter.yml"),
                ("PG_EXPORTER_AUTO_DISCOVERY", "false"),
                ("PG_EXPORTER_CONNECT_TIMEOUT", timeout),
                ("PG_EXPORTER_TELEMETRY_PATH", "/metrics"),
                ("PG_EXPORTER_OPTS", self._opts(ports["pgbouncer_exporter"], options)),
            ]
            specs.append(
                (
                    "pgbouncer_exporter",
                    "pgbouncer_exporter: pgbouncer metrics (pg_exporter)",
                    "/usr/bin/pg_exporter",
                    "PG_EXPORTER_OPTS",
                    packages["pg_exporter"],
                    "https://github.com/pgsty/pg_exporter",
                    env,
                )
            )
        if "pgbackrest_exporter" in ports:
            options = f"--backrest.config=/etc/pgbackrest/pgbackrest.conf {p['pgbackrest_exporter_options'] or ''}"
            env = [("PGBACKREST_EXPORTER_OPTS", self._opts(ports["pgbackrest_exporter"], options))]
            specs.append(
                (
                    "pgbackrest_exporter",
                    "pgbackrest_exporter: pgBackRest metrics",
                    "/usr/bin/pgbackrest_exporter",
                    "PGBACKREST_EXPORTER_OPTS",
                    packages["pgbackrest_exporter"],
                    "https://github.com/woblerr/pgbackrest_exporter",
                    env,
                )
            )
        for name, description, binary, optvar, package, docs, env in specs:
            envfile = f"{envdir}/{name}"
            unit = f"{name}.service"
            b.add(
                FileSpec(
                    envfile,
                    self.name,
                    render("pgsql/exporter.env.j2", description=description, env=env, envq=env_quote),
                    "env",
                    owner=dbsu,
                    group=dbsu,
                    mode="0600",
                    actions=[restart(unit)],
                )
            )
            text = render(
                "pgsql/exporter.service.j2",
                description=description,
                docs=docs,
                dbsu=dbsu,
                envfile=envfile,
                bin=binary,
                optvar=optvar,
                reload=binary == "/usr/bin/pg_exporter",  # pg_exporter re-reads its collectors on SIGHUP
            )
            path = f"/etc/systemd/system/{unit}"
            b.add(FileSpec(path, self.name, text, "systemd", actions=[DAEMON_RELOAD, restart(unit)]))
            b.units.add(Unit(unit, self.name, f"http://{host.ip}:{ports[name]}/metrics"))
            b.ports.add(Port(ports[name], name, self.name))
            b.packages.add(package)
            b.check("systemd", path)

    @staticmethod
    def _opts(port: int, options: str) -> str:
        return " ".join([f"--web.listen-address=:{int(port)}", *str(options).split()])

    @staticmethod
    def _url_override(b: HostBundle, host: Host, key: str) -> str | None:
        """A whole connection URL given by the inventory: a host-scoped secret."""
        value = host.params.get(key)
        if not value:
            return None
        name = f"{host.ip}/{key}"
        env_quote(b.secret_value(name, value))  # refuses what cannot be written into the file
        return b.secret(name, value)

    # -- vip-manager ------------------------------------------------------------------------------
    def _vip(self, host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
        p = host.params
        vip = ipaddress.IPv4Interface(str(p["pg_vip_address"]))
        iface, how = str(p.get("pg_vip_interface") or "auto").strip(), "pg_vip_interface"
        fact = getattr(host.facts, "interface", None)  # a gathered fact names the interface holding the address
        if iface == "auto" and fact and IFACE.match(str(fact)):
            iface, how = str(fact), "facts"
        etcd = etcd_cluster(fleet)
        conf = "/etc/default/vip-manager.yml"
        doc: dict[str, Any] = {
            "interval": 1000,
            "trigger-key": f"{str(p['pg_namespace']).rstrip('/')}/{cluster.name}/leader",
            "trigger-value": inst.name,
            "ip": str(vip.ip),
            "netmask": vip.network.prefixlen,
            "manager-type": "basic",
            "dcs-type": "etcd",
            "dcs-endpoints": [f"http://{e}" for e in (etcd.client_endpoints() if etcd else [])],
            "etcd-user": cluster.name,
            "etcd-password": b.secret(f"{cluster.name}/pg_etcd_password", p.get("pg_etcd_password") or cluster.name),
            "retry-num": 2,
            "retry-after": 250,
            "verbose": False,
        }
        if iface != "auto":
            doc["interface"] = iface
        unit = "vip-manager.service"
        b.add(
            FileSpec(
                conf,
                self.name,
                to_yaml(doc, HEADER),
                "yaml",
                owner="root",
                group=p["pg_dbsu"],
                mode="0640",
                actions=[restart(unit)],
            )
        )
        text = render(
            "pgsql/vip-manager.service.j2",
            vip=str(vip),
            cluster=cluster.name,
            ip=host.ip,
            auto=iface == "auto",
            bin="/usr/bin/vip-manager",
            conf=conf,
        )
        path = f"/etc/systemd/system/{unit}"
        b.add(FileSpec(path, self.name, text, "systemd", actions=[DAEMON_RELOAD, restart(unit)]))
        b.units.add(Unit(unit, self.name))
        b.packages.add("vip-manager")
        b.info["pgsql"]["vip"] = {
            "address": str(vip),
            "interface": iface if iface != "auto" else f"the interface holding {host.ip}, looked up at each start",
            "interface_from": how if iface != "auto" else "vip-manager.service",
        }
        b.check("vip_manager", conf, path, where="build")
        b.check("systemd", path)

    # -- crontab ----------------------------------------------------------------------------------
    def _crontab(self, host: Host, inst: PgInstance, b: HostBundle) -> None:
        p = host.params
        dbsu = p["pg_dbsu"]
        if not USER_NAME.match(str(dbsu)):
            raise RenderError(f"pg_dbsu {dbsu!r} cannot name a crontab")
        template, group = CRONTAB[host.platform.family]
        entries = [str(x).strip() for x in p["pg_crontab"]]
        text = render("pgsql/crontab.j2", dbsu=dbsu, inst_name=inst.name, entries=entries)
        path = template.format(user=dbsu)
        b.add(FileSpec(path, self.name, text, "crontab", owner=dbsu, group=group or dbsu, mode="0600"))
        b.packages.add("cron" if host.platform.family == "deb" else "cronie")

    # -- provisioning SQL -------------------------------------------------------------------------
    def _sql(self, cluster: PgCluster, b: HostBundle, model: PgsqlModel) -> None:
        """The provisioning SQL, rendered once per cluster (every member carries the same files); each bundle
        still registers the secrets its placeholders name."""
        p = cluster.params()
        dbsu = p["pg_dbsu"]
        seen: set[str] = set()
        roles: list[dict[str, Any]] = []
        absent: list[str] = []
        for i, u in enumerate(p.combined("pg_users")):
            if not isinstance(u, dict) or not isinstance(u.get("name"), str) or u["name"] in seen:
                continue
            seen.add(u["name"])
            if u.get("state") == "absent":
                absent.append(u["name"])
            else:
                roles.append(self._role(b, p, cluster, u, self._list_path(p, "pg_users", "pg_default_roles", i)))
        cached = model.sql.get(cluster.name)
        if cached is None:
            cached = model.sql[cluster.name] = self._sql_files(cluster, p, roles, absent)
        for path, text in cached.items():
            b.add(FileSpec(path, self.name, text, "sql", owner=dbsu, group=dbsu, mode="0600", actions=[PG_SQL]))
        b.directories.add(Directory(SQL_DIR, dbsu, dbsu, "0700"))
        b.check("postgres_sql", *sorted(cached), where="build")

    def _sql_files(self, cluster: PgCluster, p, roles: list[dict[str, Any]], absent: list[str]) -> dict[str, str]:
        dbsu = p["pg_dbsu"]
        present = {r["name"] for r in roles}
        admin_role = "dbrole_admin" if "dbrole_admin" in present else None
        databases, drops, seen = [], [], set()
        for i, db in enumerate(p.get("pg_databases") or []):
            if not isinstance(db, dict) or str(db.get("name")) in seen:
                continue
            seen.add(str(db["name"]))
            source = join_path(p.source("pg_databases"), i)
            if db.get("state") == "absent":
                drops.append({"name": str(db["name"]), "source": source})
            else:
                databases.append(self._database(p, db, source, present))
        common = dict(cluster=cluster.name, dbsu=dbsu, **SQL_FUNCS)
        files = {
            f"{SQL_DIR}/10-roles.sql": render(
                "pgsql/sql/roles.sql.j2",
                title=f"roles of {cluster.name}: pg_default_roles + pg_users",
                path=f"{SQL_DIR}/10-roles.sql",
                roles=roles,
                **common,
            ),
            f"{SQL_DIR}/20-databases.sql": render(
                "pgsql/sql/databases.sql.j2",
                title=f"databases of {cluster.name}: pg_databases",
                path=f"{SQL_DIR}/20-databases.sql",
                databases=databases,
                drops=drops,
                create_role=admin_role,
                **common,
            ),
        }
        privileges = [
            g
            for g in map(parse_default_privilege, map(str, p.get("pg_default_privileges") or []))
            if isinstance(g, dict)
        ]
        per_db: dict[str, dict[str, Any] | None] = {"template1": None, "postgres": None}
        for d in databases:
            if d["allowconn"]:
                per_db[d["name"]] = d
        for name, d in per_db.items():
            path = f"{SQL_DIR}/30-db-{name}.sql"
            schemas = self._schemas(p, d)
            extensions = self._extensions(p, d)
            for e in extensions:  # an extension's schema is created when nothing else creates it
                if (
                    e["schema"]
                    and e["schema"] not in ("public", "pg_catalog")
                    and e["schema"] not in {s["name"] for s in schemas}
                ):
                    schemas.append({"name": e["schema"], "owner": None, "state": "create"})
            privilege_roles = [dbsu]
            for role in (p["pg_admin_username"], admin_role, d and d["owner"]):
                if role and role in present and role not in privilege_roles:
                    privilege_roles.append(role)
            files[path] = render(
                "pgsql/sql/database.sql.j2",
                title=f"schemas, extensions and default privileges of database {name}",
                path=path,
                dbname=name,
                absent=absent,
                schemas=schemas,
                extension_blocks=[extension_sql(**e) for e in extensions],
                privileges=privileges,
                privilege_roles=privilege_roles,
                create_role=admin_role,
                **common,
            )
        files[f"{SQL_DIR}/90-drop-roles.sql"] = render(
            "pgsql/sql/drop-roles.sql.j2",
            title=f"roles of {cluster.name} with state: absent",
            path=f"{SQL_DIR}/90-drop-roles.sql",
            absent=absent,
            **common,
        )
        return files

    def _role(self, b: HostBundle, p, cluster: PgCluster, u: dict[str, Any], source: str) -> dict[str, Any]:
        name = u["name"]
        members = []
        for m in u.get("roles") or []:
            spec = m if isinstance(m, dict) else {"name": m}
            members.append(
                {
                    "role": str(spec["name"]),
                    "state": "revoke" if spec.get("state") in ("absent", "revoke") else "grant",
                    "admin": spec.get("admin"),
                    "inherit": spec.get("inherit"),
                    "set": spec.get("set"),
                }
            )
        expire_in = u.get("expire_in")
        return {
            "name": name,
            "source": source,
            "comment": str(u.get("comment") or f"business user {name}"),
            "login": u.get("login", True) is not False,
            "superuser": bool(u.get("superuser", False)),
            "createdb": bool(u.get("createdb", False)),
            "createrole": bool(u.get("createrole", False)),
            "inherit": u.get("inherit", True) is not False,
            "replication": bool(u.get("replication", False)),
            "bypassrls": bool(u.get("bypassrls", False)),
            "connlimit": int(u.get("connlimit", -1)),
            "expire_in": int(expire_in) if expire_in is not None else None,
            "expire_at": str(u.get("expire_at") or "infinity"),
            "password": self._scram(b, p, cluster, u),
            "parameters": [(str(k), guc_values(str(k), v)) for k, v in sorted((u.get("parameters") or {}).items())],
            "members": members,
        }

    @staticmethod
    def _database(p, db: dict[str, Any], source: str, present: set[str]) -> dict[str, Any]:
        name = str(db["name"])
        owner = db.get("owner") or None
        admins = [r for r in (p["pg_admin_username"], owner) if r and r in present]
        schemas = []
        for x in db.get("schemas") or []:
            spec = x if isinstance(x, dict) else {"name": x}
            state = "absent" if spec.get("state") == "absent" else "create"
            schemas.append({"name": str(spec["name"]), "owner": spec.get("owner") or None, "state": state})
        for key, allowed in (("strategy", ("FILE_COPY", "WAL_LOG")), ("locale_provider", ("libc", "icu", "builtin"))):
            if db.get(key) is not None and db[key] not in allowed:
                raise RenderError(f"{key} {db[key]!r} of database {name} is not one of {', '.join(allowed)}")
        return {
            "name": name,
            "source": source,
            "owner": owner,
            **{
                k: (str(db[k]) if db.get(k) not in (None, "") else None)
                for k in (
                    "template",
                    "encoding",
                    "strategy",
                    "locale",
                    "lc_collate",
                    "lc_ctype",
                    "locale_provider",
                    "icu_locale",
                    "icu_rules",
                    "builtin_locale",
                    "tablespace",
                )
            },
            "allowconn": db.get("allowconn", True) is not False,
            "is_template": bool(db.get("is_template", False)),
            "connlimit": int(db.get("connlimit", -1)),
            "comment": str(db.get("comment") or f"business database {name}"),
            "parameters": [(str(k), guc_values(str(k), v)) for k, v in sorted((db.get("parameters") or {}).items())],
            "revokeconn": bool(db.get("revokeconn", False)),
            "connect": [r for r in (p["pg_replication_username"], p["pg_monitor_username"]) if r in present],
            "connect_admin": list(dict.fromkeys(admins)),
            "schemas_spec": schemas,
            "extensions_spec": list(db.get("extensions") or []),
        }

    @staticmethod
    def _schemas(p, d: dict[str, Any] | None) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for s in p.get("pg_default_schemas") or []:
            out[str(s)] = {"name": str(s), "owner": None, "state": "create"}
        for s in (d or {}).get("schemas_spec") or []:
            out[s["name"]] = s
        return list(out.values())

    @staticmethod
    def _extensions(p, d: dict[str, Any] | None) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for e in [*(p.get("pg_default_extensions") or []), *((d or {}).get("extensions_spec") or [])]:
            spec = e if isinstance(e, dict) else {"name": e}
            out[str(spec["name"])] = {
                "name": str(spec["name"]),
                "schema": str(spec["schema"]) if spec.get("schema") else None,
                "version": str(spec["version"]) if spec.get("version") is not None else None,
                "cascade": spec.get("cascade", True) is not False,
                "state": "absent" if spec.get("state") == "absent" else "create",
            }
        return list(out.values())

    def _service_file(self, cluster: PgCluster, svc: Service, b: HostBundle) -> None:
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
        text = render(
            "pgsql/service.cfg.j2",
            svc=svc,
            ip=spec.get("ip") or "*",
            check=spec.get("check") or "/",
            balance=spec.get("balance") or "roundrobin",
            maxconn=maxconn,
            options=spec.get("options") or default_options,
            servers=servers,
            dest=dest,
        )
        path = f"/etc/haproxy/conf.d/{svc.full_name}.cfg"
        b.add(FileSpec(path, self.name, text, "haproxy", actions=[reload("haproxy.service")]))
        b.ports.add(Port(svc.port, f"haproxy:{svc.full_name}", self.name))
        b.check("haproxy", "/etc/haproxy/haproxy.cfg", "/etc/haproxy/conf.d")
