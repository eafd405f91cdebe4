"""pgbouncer: the connection pooler in front of each instance, with its own HBA file and user list.

Only users with `pgbouncer: true` and databases not opted out (`pgbouncer: false`) are pooled; dropped ones
(`state: absent`) are left out. The userlist carries the same SCRAM verifier placeholder as the role SQL
(`provision.user_scram`), so pgbouncer and PostgreSQL always agree on a user's password.
"""

from __future__ import annotations

from ...bundle import DAEMON_RELOAD, Directory, FileSpec, HostBundle, Port, Unit, reload, restart
from ...errors import Report
from ...model import Fleet, Host
from ...render import render
from ...secrets import pick
from ...shared import shared
from .model import MODULE, PgCluster, PgInstance, PgsqlModel, list_path
from .pg_hba import hba_context, render_hba_file
from .provision import password_secret, user_scram


def passwordless_pooled(fleet: Fleet, overrides: dict[str, str], report: Report) -> None:
    """A warning per pooled user without a password (inventory or secrets.yml): pgbouncer could not log it in,
    and the apply stage refuses to ship its empty verifier, so say it at build time with the fix. The userlist
    keeps the user's placeholder: outputs/ do not depend on which secrets secrets.yml holds."""
    model = fleet.derived.get(MODULE)
    if not isinstance(model, PgsqlModel):
        return
    for cluster in model.clusters.values():
        p = cluster.params()
        if not p.get("pgbouncer_enabled"):
            continue
        for i, user in enumerate(p.combined("pg_users")):
            if not isinstance(user, dict) or not user.get("pgbouncer") or user.get("state", "create") == "absent":
                continue
            if not isinstance(user.get("name"), str):
                continue
            secret_name, inventory_value = password_secret(p, cluster, user)
            if pick(secret_name, inventory_value, overrides):
                continue
            report.warning(
                list_path(p, "pg_users", "pg_default_roles", i),
                f"pooled user {user['name']} has no password, so pgbouncer cannot log it in and apply refuses "
                f"its empty verifier: set {secret_name} in secrets.yml (or password: here), or pgbouncer: false",
            )


CONFIG_FILES = (  # in the order pgbouncer's checker is given them
    "/etc/pgbouncer/pgbouncer.ini",
    "/etc/pgbouncer/database.txt",
    "/etc/pgbouncer/useropts.txt",
    "/etc/pgbouncer/pgb_hba.conf",
    "/etc/pgbouncer/userlist.txt",
)


def _files(host: Host, cluster: PgCluster, b: HostBundle) -> dict[str, tuple]:
    """pgbouncer's configuration files but its HBA file: path -> (text, format)."""
    p = host.params
    users = [u for u in p.combined("pg_users") if isinstance(u, dict) and u.get("state", "create") != "absent"]
    pooled = [u for u in users if u.get("pgbouncer")]
    databases = [
        d
        for d in p.get("pg_databases") or []
        if isinstance(d, dict) and d.get("pgbouncer", True) and d.get("state", "create") != "absent"
    ]
    userlist = [(u["name"], user_scram(b, p, cluster, u)) for u in pooled]
    return {
        "/etc/pgbouncer/pgbouncer.ini": (
            render(
                "pgsql/pgbouncer.ini.j2",
                p=p,
                dbsu=p["pg_dbsu"],
                prepared_statements=host.platform.pgbouncer_prepared_statements,
            ),
            "pgbouncer",
        ),
        "/etc/pgbouncer/database.txt": (render("pgsql/database.txt.j2", p=p, databases=databases), "pgbouncer"),
        "/etc/pgbouncer/useropts.txt": (render("pgsql/useropts.txt.j2", users=pooled), "pgbouncer"),
        "/etc/pgbouncer/userlist.txt": (render("pgsql/userlist.txt.j2", userlist=userlist), "pgbouncer-auth"),
    }


def _config_file(path: str, text: str, fmt: str, dbsu: str) -> FileSpec:
    return FileSpec(path, MODULE, text, fmt, owner=dbsu, group=dbsu, mode="0600", actions=[reload("pgbouncer.service")])


def render_pgbouncer(host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
    """The HBA file differs from member to member (its rules name the role); the rest is alike on the members of
    a cluster and rendered once (compiler/shared.py)."""
    hba = render_hba_file(host, hba_context(host, fleet, inst, cluster), "pgb_hba_rules", "pgbouncer")
    b.add(_config_file("/etc/pgbouncer/pgb_hba.conf", hba, "hba", host.params["pg_dbsu"]))
    shared(_pooler, host, b, cluster)


def _pooler(host: Host, b: HostBundle, cluster: PgCluster) -> None:
    p = host.params
    dbsu = p["pg_dbsu"]
    for path, (text, fmt) in _files(host, cluster, b).items():
        b.add(_config_file(path, text, fmt, dbsu))
    unit = render("pgsql/pgbouncer.service.j2", p=p, bin=host.platform.pgbouncer_bin, dbsu=dbsu)
    b.add(
        FileSpec(
            "/etc/systemd/system/pgbouncer.service",
            MODULE,
            unit,
            "systemd",
            actions=[DAEMON_RELOAD, restart("pgbouncer.service")],
        )
    )
    b.units.add(Unit("pgbouncer.service", MODULE, f"port:{p['pgbouncer_port']}"))
    b.ports.add(Port(p["pgbouncer_port"], "pgbouncer", MODULE))
    b.packages.add("pgbouncer")
    b.directories.add(Directory(p["pgbouncer_log_dir"], dbsu, dbsu, "0750"))
    b.directories.add(Directory("/etc/pgbouncer", dbsu, dbsu, "0750"))
    b.check("pgbouncer", *CONFIG_FILES, where="build")
    b.check("systemd", "/etc/systemd/system/pgbouncer.service")
