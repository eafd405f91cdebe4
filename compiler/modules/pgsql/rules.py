"""Per-instance rules: the checks one instance definition must pass before anything is rendered from it.

Many hosts share one definition (a group's vars), so `derive` runs these once per distinct set of sources of
`CHECKED_PARAMS` and an error is reported once, at the inventory path that holds the value. Each concern's own
checks (pgBackRest, exporters, VIP, crontab, ports) live with its renderer; this module ties them together with
the ones that span concerns: user and database names, HBA rules and `pg_parameters`.
"""

from __future__ import annotations

from ...errors import Report, join_path
from . import hba as hba_rules
from . import pg_settings, tuning
from .backup import PGBACKREST_SETTINGS, check_pgbackrest
from .crontab import check_crontab
from .exporters import check_exporter_options
from .model import PgCluster, PgInstance, list_path
from .ports import check_exporter_ports
from .provision_check import DB_NAME, USER_NAME
from .sql import GUC_NAME
from .vip import check_vip_address, check_vip_interface

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
    "pgbouncer_auth_query",
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
# pg_parameters may not set what sty or Patroni already decides
SET_BY_STY = {
    "hba_file": "pg_hba_file",
    "unix_socket_directories": "pg_localhost",
    "password_encryption": "pg_pwd_enc",
}
HBA_LISTS = (
    ("pg_hba_rules", "pg_default_hba_rules", "postgres"),
    ("pgb_hba_rules", "pgb_default_hba_rules", "pgbouncer"),
)


def check_instance(inst: PgInstance, report: Report) -> None:
    p = inst.host.params
    if p.get("pg_vip_enabled"):
        check_vip_address(p, report)
    rto = p.get("pg_rto")
    if rto not in (p.get("pg_rto_plan") or {}):
        report.error(p.source("pg_rto"), f"pg_rto '{rto}' is not a key of pg_rto_plan")
    try:
        tuning.profile_name(str(p.get("pg_conf")))
    except ValueError as exc:
        report.error(p.source("pg_conf"), str(exc))
    _check_names(p, report)
    for key, base, flavor in HBA_LISTS:
        for i, rule in enumerate(p.combined(key)):
            for sub, message in hba_rules.rule_problems(rule, flavor):
                report.error(join_path(list_path(p, key, base, i), *([sub] if sub else [])), message)
    check_settings(p, report)
    _check_extras(p, report, inst.host.platform.name)
    if p.get("pgbouncer_auth_query"):
        report.error(
            p.source("pgbouncer_auth_query"),
            "sty does not render pgbouncer's auth_query (Pigsty's monitor.pgbouncer_auth function); list the pooled "
            "users in pg_users with pgbouncer: true instead",
        )
    if p.get("pg_version") == 19:
        report.warning(p.source("pg_version"), "PostgreSQL 19 is a beta in Pigsty 4.5: keep it off production")


RENDERED_MODES = ("pgsql", "citus")


def check_mode(cluster: PgCluster, report: Report) -> None:
    """`pg_mode` changes what a cluster is: sty renders vanilla PostgreSQL and Citus, and refuses the rest rather
    than building a different cluster than the one asked for."""
    p = cluster.params()
    mode = p.get("pg_mode")
    if mode not in RENDERED_MODES:
        report.error(
            p.source("pg_mode"),
            f"pg_mode {mode} (another PostgreSQL kernel) is not rendered by sty, which renders "
            + " and ".join(RENDERED_MODES),
        )
        return
    if mode == "citus":
        for key in ("pg_shard", "pg_group"):
            if p.get(key) is None:
                report.error(p.source(key), f"a Citus cluster needs {key} (its shard group and index)")
        if "citus" not in str(p.get("pg_libs") or ""):
            report.error(p.source("pg_libs"), "a Citus cluster must preload citus (put it first in pg_libs)")


def check_upstream(cluster: PgCluster, report: Report) -> None:
    """A replica's `pg_upstream` names the member it cascades from (a standby cluster's leader may follow any
    address): Patroni's `replicatefrom` takes a member's name, so the address must be one of the cluster's."""
    members = {i.host.ip for i in cluster.instances}
    for inst in cluster.instances:
        upstream = inst.host.params.get("pg_upstream")
        if not upstream or inst.role == "primary":
            continue
        if str(upstream) == inst.host.ip:
            report.error(inst.host.params.source("pg_upstream"), "a replica cannot replicate from itself")
        elif str(upstream) not in members:
            report.error(
                inst.host.params.source("pg_upstream"),
                f"{upstream} is not a member of {cluster.name}: a replica cascades from another member "
                "(only the primary of a standby cluster follows an outside address)",
            )


def _check_names(p, report: Report) -> None:
    """User and database names, and the users databases refer to (pool_auth_user, owner)."""
    names = set()
    for i, user in enumerate(p.combined("pg_users")):
        if not isinstance(user, dict):
            continue
        where = list_path(p, "pg_users", "pg_default_roles", i)
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


def check_settings(p, report: Report) -> None:
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
        elif "." not in str(name) and not pg_settings.known(_major(p), str(name)):
            report.error(path, _unknown_setting(_major(p), str(name)))


def _major(p) -> int:
    try:
        return int(p.get("pg_version"))
    except (TypeError, ValueError):
        return max(pg_settings.SUPPORTED_MAJORS)


def _unknown_setting(major: int, name: str) -> str:
    """A misspelt or retired setting would be ignored by no one: PostgreSQL refuses to start with it."""
    closest = pg_settings.closest(major, name)
    hint = f"; did you mean {closest}?" if closest else ""
    return f"PostgreSQL {major} has no setting {name}{hint}"


def _check_extras(p, report: Report, platform: str) -> None:
    """pgBackRest, exporters, VIP interface and crontab of one instance definition."""
    check_crontab(p, report)
    if p.get("pg_vip_enabled"):
        check_vip_interface(p, report)
    if p.get("pgbackrest_enabled"):
        check_pgbackrest(p, report, platform)
    check_exporter_options(p, report)
    check_exporter_ports(p, report)
