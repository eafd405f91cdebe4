r"""The provisioning SQL (`pg_provision`) that creates and keeps the cluster's roles and databases.

The files are identical on every member and run on the primary by the apply stage (action `pg-sql-primary`):
every file the manifest lists under `/pg/conf/sql/`, in path order, as the database superuser with
`psql -X -v ON_ERROR_STOP=1 -d postgres -f FILE`, placeholders substituted. Each file is idempotent, so a
second run changes nothing:

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
(`standard_conforming_strings` on); names, settings and privileges are validated in derive
(`provision_check`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ...bundle import Action, Directory, FileSpec, HostBundle
from ...errors import join_path
from ...render import RenderError, render
from ...secrets import LINE_BREAK_RULE, ScramSecret, line_break_free, render_verifier
from .model import MODULE, PgCluster, PgsqlModel, list_path
from .provision_check import parse_default_privilege
from .sql import extension_sql, guc_values

PG_SQL = Action("pg-sql-primary")
SQL_DIR = "/pg/conf/sql"
# CREATE DATABASE options passed through as text (None when not given)
DATABASE_OPTIONS = (
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
DATABASE_CHOICES = {"strategy": ("FILE_COPY", "WAL_LOG"), "locale_provider": ("libc", "icu", "builtin")}


def password_secret(p, cluster: PgCluster, user: dict[str, Any]) -> tuple[str, Any]:
    """(secret name, inventory value) of a user's password: system users take their pg_*_password. One
    definition for the verifier the bundles carry and for the build's warning about pooled users without one."""
    name = user["name"]
    system = {
        p["pg_monitor_username"]: "pg_monitor_password",
        p["pg_admin_username"]: "pg_admin_password",
        p["pg_replication_username"]: "pg_replication_password",
        p["pg_dbsu"]: "pg_dbsu_password",
    }
    if name in system:
        return f"{cluster.name}/{system[name]}", p.get(system[name])
    return f"{cluster.name}/pg_users/{name}/password", user.get("password")


def user_scram(b: HostBundle, p, cluster: PgCluster, user: dict[str, Any]) -> str | None:
    """The placeholder of a user's SCRAM verifier, shared by pgbouncer's userlist and the role SQL.
    None when the user has no password and is not pooled; a pooled user without one gets an empty secret,
    which apply refuses to ship until secrets.yml has it (the build warns: pgbouncer.passwordless_pooled).
    The value is a ScramSecret: the store keeps a randomly salted verifier per password (sty.contract.store)."""
    name = user["name"]
    secret_name, inventory_value = password_secret(p, cluster, user)
    value = b.secret_value(secret_name, inventory_value)
    if not value and not user.get("pgbouncer"):
        return None
    if not line_break_free(value):
        raise RenderError(f"the secret {secret_name}: {LINE_BREAK_RULE}")
    derived = ScramSecret(render_verifier(value, name), value) if value else ""
    return b.secret(f"{cluster.name}/pg_users/{name}/scram", derived)


def render_sql(cluster: PgCluster, b: HostBundle, model: PgsqlModel) -> None:
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
            roles.append(_role(b, p, cluster, u, list_path(p, "pg_users", "pg_default_roles", i)))
    cached = model.sql.get(cluster.name)
    if cached is None:
        cached = model.sql[cluster.name] = _sql_files(cluster, p, roles, absent)
    for path, text in cached.items():
        b.add(FileSpec(path, MODULE, text, "sql", owner=dbsu, group=dbsu, mode="0600", actions=[PG_SQL]))
    b.directories.add(Directory(SQL_DIR, dbsu, dbsu, "0700"))
    b.check("postgres_sql", *sorted(cached), where="build")


def _sql_files(cluster: PgCluster, p, roles: list[dict[str, Any]], absent: list[str]) -> dict[str, str]:
    present = {r["name"] for r in roles}
    admin_role = "dbrole_admin" if "dbrole_admin" in present else None
    databases, drops = _databases(p, present)
    common = dict(cluster=cluster.name, dbsu=p["pg_dbsu"])
    files = {
        f"{SQL_DIR}/10-roles.sql": render(
            "pgsql/sql/roles.sql.j2",
            title=f"roles of {cluster.name}: pg_default_roles + pg_users",
            path=f"{SQL_DIR}/10-roles.sql",
            roles=roles,
            rewind_user=p["pg_replication_username"],
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
    privileges = tuple(map(str, p.get("pg_default_privileges") or []))
    per_db: dict[str, dict[str, Any] | None] = {"template1": None, "postgres": None}
    for d in databases:
        if d["allowconn"]:
            per_db[d["name"]] = d
    for name, d in per_db.items():
        path = f"{SQL_DIR}/30-db-{name}.sql"
        files[path] = render(
            "pgsql/sql/database.sql.j2",
            title=f"schemas, extensions and default privileges of database {name}",
            path=path,
            dbname=name,
            absent=absent,
            create_role=admin_role,
            **_database_objects(p, d, present, admin_role, privileges),
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


def _databases(p, present: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The databases to keep (as the templates read them) and those to drop; the first definition wins."""
    databases, drops, seen = [], [], set()
    for i, db in enumerate(p.get("pg_databases") or []):
        if not isinstance(db, dict) or str(db.get("name")) in seen:
            continue
        seen.add(str(db["name"]))
        source = join_path(p.source("pg_databases"), i)
        if db.get("state") == "absent":
            drops.append({"name": str(db["name"]), "source": source})
        else:
            databases.append(_database(p, db, source, present))
    return databases, drops


def _database_objects(
    p, d: dict[str, Any] | None, present: set[str], admin_role: str | None, privileges: tuple[str, ...]
) -> dict[str, Any]:
    """Schemas, extension statements and default-privilege statements of one database's `30-db-` file."""
    schemas = _schemas(p, d)
    extensions = _extensions(p, d)
    for e in extensions:  # an extension's schema is created when nothing else creates it
        if (
            e["schema"]
            and e["schema"] not in ("public", "pg_catalog")
            and e["schema"] not in {s["name"] for s in schemas}
        ):
            schemas.append({"name": e["schema"], "owner": None, "state": "create"})
    privilege_roles = [p["pg_dbsu"]]
    for role in (p["pg_admin_username"], admin_role, d and d["owner"]):
        if role and role in present and role not in privilege_roles:
            privilege_roles.append(role)
    return {
        "schemas": schemas,
        "extension_blocks": [extension_sql(**e) for e in extensions],
        "privilege_blocks": [b for b in (default_privileges_sql(r, privileges) for r in privilege_roles) if b],
    }


@lru_cache(maxsize=4096)
def default_privileges_sql(role: str, privileges: tuple[str, ...]) -> str:
    """A role's `ALTER DEFAULT PRIVILEGES` for each of `pg_default_privileges`, rendered once per distinct pair:
    the dbsu's and the admin's are the same in every database of every cluster, a database owner's in each
    member of its cluster (this was a tenth of a full build's rendering)."""
    grants = [g for g in map(parse_default_privilege, privileges) if isinstance(g, dict)]
    if not grants:
        return ""
    return render("pgsql/sql/default-privileges.sql.j2", role=role, privileges=grants).rstrip("\n")


def _role(b: HostBundle, p, cluster: PgCluster, u: dict[str, Any], source: str) -> dict[str, Any]:
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
        "password": user_scram(b, p, cluster, u),
        "parameters": [(str(k), guc_values(str(k), v)) for k, v in sorted((u.get("parameters") or {}).items())],
        "members": members,
    }


def _database(p, db: dict[str, Any], source: str, present: set[str]) -> dict[str, Any]:
    name = str(db["name"])
    owner = db.get("owner") or None
    admins = [r for r in (p["pg_admin_username"], owner) if r and r in present]
    schemas = []
    for x in db.get("schemas") or []:
        spec = x if isinstance(x, dict) else {"name": x}
        state = "absent" if spec.get("state") == "absent" else "create"
        schemas.append({"name": str(spec["name"]), "owner": spec.get("owner") or None, "state": state})
    for key, allowed in DATABASE_CHOICES.items():
        if db.get(key) is not None and db[key] not in allowed:
            raise RenderError(f"{key} {db[key]!r} of database {name} is not one of {', '.join(allowed)}")
    return {
        "name": name,
        "source": source,
        "owner": owner,
        **{k: (str(db[k]) if db.get(k) not in (None, "") else None) for k in DATABASE_OPTIONS},
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


def _schemas(p, d: dict[str, Any] | None) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for s in p.get("pg_default_schemas") or []:
        out[str(s)] = {"name": str(s), "owner": None, "state": "create"}
    for s in (d or {}).get("schemas_spec") or []:
        out[s["name"]] = s
    return list(out.values())


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
