"""Rules for what the provisioning SQL reads: roles, databases, schemas, extensions and default privileges.

The SQL quotes every value, so these checks are not what keeps it safe; they turn what PostgreSQL would refuse
halfway through a run on the primary (a duplicate role, a membership in a dropped role, an option the server
version lacks, a malformed default privilege) into inventory errors with a path, found at build time.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from ...errors import Report, join_path
from .model import list_path
from .sql import GUC_NAME

DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$.-]{0,62}$")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_@.-]{0,62}$")
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
# database options and the PostgreSQL version that introduced them
DATABASE_OPTION_SINCE = {"strategy": 15, "locale_provider": 15, "icu_rules": 16, "builtin_locale": 17}


def parse_default_privilege(text: str) -> dict[str, Any] | str:
    """`GRANT SELECT ON TABLES TO dbrole_readonly` -> its parts (a fresh copy), or the reason it is refused.
    Every cluster of a fleet carries the same default privileges: each text is parsed once."""
    parsed = _parse_default_privilege(text)
    if isinstance(parsed, str):
        return parsed
    return {**parsed, "privileges": list(parsed["privileges"]), "grantees": list(parsed["grantees"])}


@lru_cache(maxsize=4096)
def _parse_default_privilege(text: str) -> dict[str, Any] | str:
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


def check_provision(p, report: Report) -> None:
    """Everything the provisioning SQL of one cluster definition reads."""
    version = int(p["pg_version"])
    present, absent = _check_roles(p, version, report)
    _check_databases(p, version, present, absent, report)
    for i, schema in enumerate(p.get("pg_default_schemas") or []):
        if not SCHEMA_NAME.match(str(schema)):
            report.error(join_path(p.source("pg_default_schemas"), i), f"schema name {schema!r} is not valid")
    for i, ext in enumerate(p.get("pg_default_extensions") or []):
        check_extension(ext, join_path(p.source("pg_default_extensions"), i), report)
    for i, text in enumerate(p.get("pg_default_privileges") or []):
        where = join_path(p.source("pg_default_privileges"), i)
        parsed = parse_default_privilege(str(text))
        if isinstance(parsed, str):
            report.error(where, parsed)
            continue
        for grantee in parsed["grantees"]:
            if grantee != "PUBLIC" and grantee not in present and not grantee.startswith("pg_"):
                report.error(where, f"'{grantee}' is not a role of pg_default_roles or pg_users")


def _check_roles(p, version: int, report: Report) -> tuple[set[str], set[str]]:
    """Check pg_default_roles + pg_users; the names of the roles kept and of those dropped (state: absent)."""
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
        where = list_path(p, "pg_users", "pg_default_roles", i)
        name = u["name"]
        if name in seen:
            report.error(join_path(where, "name"), f"role {name} is already defined at {seen[name]}")
            continue
        seen[name] = where
        (absent if u.get("state") == "absent" else present).add(name)
    for i, u in enumerate(users):
        if not isinstance(u, dict) or not isinstance(u.get("name"), str):
            continue
        where = list_path(p, "pg_users", "pg_default_roles", i)
        if seen.get(u["name"]) == where:
            check_role(u, where, version, dbsu, system_users, present, absent, report)
    return present, absent


def _check_databases(p, version: int, present: set[str], absent: set[str], report: Report) -> None:
    names: dict[str, str] = {}
    for i, db in enumerate(p.get("pg_databases") or []):
        if not isinstance(db, dict):
            continue
        where = join_path(p.source("pg_databases"), i)
        name = str(db.get("name"))
        if name in names:
            report.error(join_path(where, "name"), f"database {name} is already defined at {names[name]}")
            continue
        names[name] = where
        check_database(db, where, version, present, absent, report)


def _check_parameters(spec: dict[str, Any], where: str, report: Report) -> None:
    """A role's or database's `parameters`: setting names with one-line values."""
    for key, value in (spec.get("parameters") or {}).items():
        if not GUC_NAME.match(str(key)):
            report.error(join_path(where, "parameters", key), f"'{key}' is not a PostgreSQL setting name")
        elif any(c in str(value) for c in "\n\r\x00"):
            report.error(join_path(where, "parameters", key), "a setting value must be one line")


def check_role(u, where, version, dbsu, system_users, present, absent, report: Report) -> None:
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
    _check_parameters(u, where, report)
    for j, member in enumerate(u.get("roles") or []):
        spec = member if isinstance(member, dict) else {"name": member}
        target = str(spec.get("name"))
        path = join_path(where, "roles", j)
        if target == name:
            report.error(path, f"role {name} cannot be a member of itself")
        elif target in absent:
            report.error(path, f"role {target} is dropped (state: absent); {name} cannot be granted it")
        elif target not in present and not target.startswith("pg_"):
            report.error(path, f"'{target}' is not a role of pg_default_roles or pg_users (nor a pg_ predefined role)")
        for option in ("set", "inherit"):
            if option in spec and version < 16:
                report.error(join_path(path, option), f"membership option {option} needs PostgreSQL 16 or later")


def check_database(db, where, version, present, absent, report: Report) -> None:
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
    _check_database_options(db, where, version, report)
    _check_parameters(db, where, report)
    for j, schema in enumerate(db.get("schemas") or []):
        spec = schema if isinstance(schema, dict) else {"name": schema}
        path = join_path(where, "schemas", j)
        if not SCHEMA_NAME.match(str(spec.get("name"))):
            report.error(path, f"schema name {spec.get('name')!r} is not valid")
        owner = spec.get("owner")
        if owner and owner not in present:
            report.error(join_path(path, "owner"), f"owner '{owner}' is not a role of pg_default_roles or pg_users")
    for j, ext in enumerate(db.get("extensions") or []):
        check_extension(ext, join_path(where, "extensions", j), report)
    if db.get("allowconn") is False:
        if name in ("postgres", "template1"):
            report.error(join_path(where, "allowconn"), f"{name} must accept connections")
        elif db.get("schemas") or db.get("extensions"):
            report.warning(
                join_path(where, "allowconn"),
                f"{name} does not accept connections, so its schemas and extensions are not created",
            )


def _check_database_options(db, where: str, version: int, report: Report) -> None:
    """CREATE DATABASE options: valid names, one-line text, and only those the server version has."""
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
    for key, minimum in DATABASE_OPTION_SINCE.items():
        if key in db and version < minimum:
            report.error(join_path(where, key), f"{key} needs PostgreSQL {minimum} or later (pg_version {version})")
    if db.get("locale_provider") == "builtin" and version < 17:
        report.error(join_path(where, "locale_provider"), "the builtin locale provider needs PostgreSQL 17 or later")


def check_extension(ext, where: str, report: Report) -> None:
    spec = ext if isinstance(ext, dict) else {"name": ext}
    if not EXT_NAME.match(str(spec.get("name"))):
        report.error(where, f"extension name {spec.get('name')!r} is not valid")
    if "schema" in spec and not SCHEMA_NAME.match(str(spec["schema"])):
        report.error(join_path(where, "schema"), f"schema name {spec['schema']!r} is not valid")
    if "version" in spec and not EXT_VERSION.match(str(spec["version"])):
        report.error(join_path(where, "version"), f"extension version {spec['version']!r} is not valid")
