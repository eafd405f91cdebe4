"""The provisioning SQL of PGSQL (`/pg/conf/sql/*.sql`): what the files say, what derive refuses, and (slow)
a real PostgreSQL 15 running them twice in a row, then a changed inventory's files that drop things."""

from __future__ import annotations

import copy
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import dump_inventory, shipped_inventory

from sty.compiler.build import render_targets
from sty.compiler.errors import InventoryError
from sty.compiler.modules.pgsql import sql_dollar, sql_ident, sql_literal
from sty.compiler.pipeline import compile_fleet, resolve_target
from sty.compiler.render import RenderError
from sty.compiler.secrets import render_verifier

SQL = "/pg/conf/sql"
PRIMARY = "10.10.10.11"
DEFAULT_EXTENSIONS = {
    "pg_stat_statements": "monitor",
    "pgstattuple": "monitor",
    "pg_buffercache": "monitor",
    "pageinspect": "monitor",
    "pg_prewarm": "monitor",
    "pg_visibility": "monitor",
    "pg_freespacemap": "monitor",
    "postgres_fdw": "public",
    "file_fdw": "public",
    "btree_gist": "public",
    "btree_gin": "public",
    "pg_trgm": "public",
    "intagg": "public",
    "intarray": "public",
}


def build(data: dict, tmp: Path, secrets: dict | None = None, name: str = "pigsty.yml"):
    """Compile and render an inventory dict; returns (trees ip -> rel -> text, secrets ip -> name -> value)."""
    tmp.mkdir(parents=True, exist_ok=True)
    inv = dump_inventory(data, tmp / name)
    if secrets:
        (tmp / "secrets.yml").write_text(yaml.safe_dump(secrets))
    compiled = compile_fleet(inv)
    rendered = render_targets(compiled, resolve_target(compiled.fleet, "all"))
    trees = {ip: {rel[len(ip) :]: b.decode() for rel, b in t.items()} for ip, t in rendered.trees.items()}
    return trees, rendered.secrets


def errors_of(data: dict, tmp: Path) -> list[str]:
    with pytest.raises(InventoryError) as exc:
        compile_fleet(dump_inventory(data, tmp / "pigsty.yml"))
    return [f"{p.path}: {p.message}" for p in exc.value.report.errors]


def sql_files(tree: dict[str, str]) -> dict[str, str]:
    return {path: text for path, text in tree.items() if path.startswith(SQL + "/")}


def rich_inventory() -> dict:
    """The shipped inventory with pg-test carrying most of what users and databases can say."""
    data = shipped_inventory()
    v = data["all"]["children"]["pg-test"]["vars"]
    v["pg_users"] = [
        {"name": "test", "password": "Test.Pass-1", "pgbouncer": True, "roles": ["dbrole_admin"],
         "comment": "the test user's account"},
        {"name": "dbuser_app", "password": "App'Pa$$ \"x\"\\", "createdb": True, "connlimit": 20,
         "expire_at": "2099-12-31", "parameters": {"search_path": "app,public", "statement_timeout": "30s"},
         "roles": ["dbrole_readwrite", {"name": "dbrole_readonly", "admin": True}], "comment": "app owner",
         "pgbouncer": True},
        {"name": "dbrole_app", "login": False, "bypassrls": True, "comment": "a group"},
        {"name": "dbuser_old", "password": "Old.Pass-1", "expire_in": 30, "roles": ["dbrole_readonly"]},
        {"name": "dbuser_ni", "inherit": False, "replication": True, "createrole": True, "connlimit": 3,
         "roles": ["dbrole_app"]},
    ]  # fmt: skip
    v["pg_databases"] = [
        {"name": "test"},
        {"name": "app", "owner": "dbuser_app", "comment": "app's database", "connlimit": 50, "revokeconn": True,
         "template": "template0", "encoding": "UTF8", "locale": "C", "strategy": "FILE_COPY",
         "parameters": {"work_mem": "64MB", "search_path": "app,public"},
         "schemas": ["app", {"name": "app_audit", "owner": "dbuser_app"}],
         "extensions": ["vector", "postgis", "timescaledb", {"name": "pg_trgm", "schema": "app"},
                        {"name": "hstore", "schema": "app_ext"}, "uuid-ossp"]},
        {"name": "archive", "allowconn": False, "is_template": True, "comment": "archived"},
    ]  # fmt: skip
    return data


def changed_inventory() -> dict:
    """rich_inventory() after a change: a role, a membership, a database, a schema and an extension go."""
    data = rich_inventory()
    v = data["all"]["children"]["pg-test"]["vars"]
    users = {u["name"]: u for u in v["pg_users"]}
    users["dbuser_old"]["state"] = "absent"
    users["dbuser_app"]["roles"] = ["dbrole_readwrite", {"name": "dbrole_readonly", "state": "absent"}]
    dbs = {d["name"]: d for d in v["pg_databases"]}
    dbs["archive"]["state"] = "absent"
    dbs["app"]["schemas"] = ["app", {"name": "app_audit", "state": "absent"}]
    dbs["app"]["extensions"] = [{"name": "hstore", "state": "absent"}, {"name": "pg_trgm", "schema": "app"}]
    return data


# --------------------------------------------------------------------------------------------------
# quoting
# --------------------------------------------------------------------------------------------------


def test_identifiers_and_literals_are_quoted_by_doubling():
    assert sql_ident('we"ird') == '"we""ird"'
    assert sql_literal("it's") == "'it''s'"
    assert sql_literal("back\\slash") == "'back\\slash'"  # standard_conforming_strings = on: taken literally
    assert sql_literal(True) == "'on'"
    with pytest.raises(RenderError):
        sql_literal("two\nlines")
    with pytest.raises(RenderError):
        sql_dollar("ends $sty$ early")


# --------------------------------------------------------------------------------------------------
# content of the files for the shipped inventory
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    return build(shipped_inventory(), tmp_path_factory.mktemp("shipped"))


def test_every_member_carries_the_same_sql_files_run_on_the_primary(shipped):
    trees, _ = shipped
    files = sql_files(trees[PRIMARY])
    assert sorted(files) == [
        f"{SQL}/10-roles.sql",
        f"{SQL}/20-databases.sql",
        f"{SQL}/30-db-postgres.sql",
        f"{SQL}/30-db-template1.sql",
        f"{SQL}/30-db-test.sql",
        f"{SQL}/90-drop-roles.sql",
    ]
    for ip in ("10.10.10.12", "10.10.10.13"):
        assert sql_files(trees[ip]) == files
    manifest = yaml.safe_load(trees[PRIMARY][".yml"])
    entries = {f["path"]: f for f in manifest["files"]}
    for path in files:
        e = entries[path]
        assert (e["owner"], e["mode"], e["format"], e["module"]) == ("postgres", "0600", "sql", "pgsql")
        assert e["actions"] == [{"action": "pg-sql-primary"}]
    assert {"path": SQL, "owner": "postgres", "group": "postgres", "mode": "0700"} in manifest["directories"]
    check = next(c for c in manifest["checks"] if c["checker"] == "postgres_sql")
    assert check["files"] == sorted(files) and check["where"] == "build"
    assert manifest["identity"]["pgsql"]["version"] == 15


def test_roles_file_creates_then_alters_every_role_with_its_verifier(shipped):
    trees, secrets = shipped
    roles = trees[PRIMARY][f"{SQL}/10-roles.sql"]
    assert roles.startswith("-- Generated by sty")
    assert "\\set ON_ERROR_STOP on" in roles and "SET log_statement = 'none';" in roles
    for name in ("dbrole_readonly", "dbrole_offline", "dbrole_readwrite", "dbrole_admin", "postgres", "replicator",
                 "dbuser_dba", "dbuser_monitor", "test"):  # fmt: skip
        assert (
            f"SELECT 'CREATE ROLE \"{name}\"' WHERE NOT EXISTS "
            f"(SELECT FROM pg_catalog.pg_roles WHERE rolname = '{name}') \\gexec"
        ) in roles
    assert (
        'ALTER ROLE "dbuser_dba" WITH LOGIN SUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS '
        "CONNECTION LIMIT -1;"
    ) in roles
    assert 'ALTER ROLE "dbrole_readonly" WITH NOLOGIN NOSUPERUSER' in roles
    assert 'ALTER ROLE "replicator" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT REPLICATION' in roles
    assert "ALTER ROLE \"dbuser_monitor\" SET log_min_duration_statement = '1000';" in roles
    assert "COMMENT ON ROLE \"dbuser_dba\" IS 'pgsql admin user';" in roles
    assert "COMMENT ON ROLE \"test\" IS 'business user test';" in roles
    # passwords: the SCRAM verifier placeholders pgbouncer's userlist uses; system users from pg_*_password
    for name in ("replicator", "dbuser_dba", "dbuser_monitor", "test"):
        assert f"ALTER ROLE \"{name}\" PASSWORD '<<secret:pg-test/pg_users/{name}/scram>>';" in roles
    assert 'ALTER ROLE "postgres" PASSWORD' not in roles  # pg_dbsu_password is empty: no password
    assert secrets[PRIMARY]["pg-test/pg_users/dbuser_dba/scram"] == render_verifier("DBUser.DBA", "dbuser_dba")
    assert secrets[PRIMARY]["pg-test/pg_users/replicator/scram"] == render_verifier("DBUser.Replicator", "replicator")
    userlist = trees[PRIMARY]["/etc/pgbouncer/userlist.txt"]
    assert '"dbuser_dba" "<<secret:pg-test/pg_users/dbuser_dba/scram>>"' in userlist
    # memberships only granted when missing, so a second run is silent
    assert (
        'SELECT \'GRANT "dbrole_admin" TO "test"\' WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_auth_members m '
        "JOIN pg_catalog.pg_roles g ON g.oid = m.roleid JOIN pg_catalog.pg_roles u ON u.oid = m.member "
        "WHERE g.rolname = 'dbrole_admin' AND u.rolname = 'test') \\gexec"
    ) in roles
    assert "no role has state: absent" in trees[PRIMARY][f"{SQL}/90-drop-roles.sql"]


def test_databases_file_uses_gexec_for_create_database(shipped):
    trees, _ = shipped
    text = trees[PRIMARY][f"{SQL}/20-databases.sql"]
    assert (
        "SELECT 'CREATE DATABASE \"test\"' WHERE NOT EXISTS "
        "(SELECT FROM pg_catalog.pg_database WHERE datname = 'test') \\gexec"
    ) in text
    assert 'ALTER DATABASE "test" OWNER TO "postgres";' in text
    assert 'ALTER DATABASE "test" WITH ALLOW_CONNECTIONS true CONNECTION LIMIT -1 IS_TEMPLATE false;' in text
    assert "COMMENT ON DATABASE \"test\" IS 'business database test';" in text
    assert 'GRANT CONNECT ON DATABASE "test" TO PUBLIC;' in text
    assert 'GRANT CREATE ON DATABASE "test" TO "dbrole_admin";' in text
    meta = trees["10.10.10.10"][f"{SQL}/20-databases.sql"]
    assert "COMMENT ON DATABASE \"meta\" IS 'pigsty meta database';" in meta


def test_database_files_create_schemas_extensions_and_default_privileges(shipped):
    trees, _ = shipped
    text = trees[PRIMARY][f"{SQL}/30-db-test.sql"]
    assert '\\connect "test"' in text
    assert (
        "SELECT 'CREATE SCHEMA \"monitor\"' WHERE NOT EXISTS "
        "(SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'monitor') \\gexec"
    ) in text
    for name, schema in DEFAULT_EXTENSIONS.items():
        assert f'EXECUTE \'CREATE EXTENSION "{name}" WITH SCHEMA "{schema}" CASCADE\';' in text
        assert f"WHERE name = '{name}') THEN" in text
    assert "EXECUTE 'CREATE EXTENSION \"pg_repack\" CASCADE';" in text
    assert "RAISE NOTICE '%', 'extension pg_repack is not available on this server: skipped';" in text
    for role in ("postgres", "dbuser_dba", "dbrole_admin"):
        assert f'ALTER DEFAULT PRIVILEGES FOR ROLE "{role}" GRANT SELECT ON TABLES TO "dbrole_readonly";' in text
        assert f'ALTER DEFAULT PRIVILEGES FOR ROLE "{role}" GRANT CREATE ON SCHEMAS TO "dbrole_admin";' in text
    meta = trees["10.10.10.10"][f"{SQL}/30-db-meta.sql"]
    assert "SELECT 'CREATE SCHEMA \"pigsty\"'" in meta
    for db in ("template1", "postgres"):
        assert f'\\connect "{db}"' in trees[PRIMARY][f"{SQL}/30-db-{db}.sql"]


def test_pg_provision_false_renders_no_sql(tmp_path):
    data = shipped_inventory()
    data["all"]["vars"]["pg_provision"] = False
    trees, _ = build(data, tmp_path)
    assert not sql_files(trees[PRIMARY])
    assert "postgres_sql" not in trees[PRIMARY][".yml"]


# --------------------------------------------------------------------------------------------------
# the rich inventory: every field reaches the SQL, quoted
# --------------------------------------------------------------------------------------------------


def test_user_and_database_fields_reach_the_sql_quoted(tmp_path):
    trees, secrets = build(rich_inventory(), tmp_path)
    roles = trees[PRIMARY][f"{SQL}/10-roles.sql"]
    assert (
        'ALTER ROLE "dbuser_app" WITH LOGIN NOSUPERUSER CREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS '
        "CONNECTION LIMIT 20;"
    ) in roles
    assert "ALTER ROLE \"dbuser_app\" VALID UNTIL '2099-12-31';" in roles
    assert "ALTER ROLE \"dbuser_app\" SET search_path = 'app', 'public';" in roles  # a list setting
    assert "ALTER ROLE \"dbuser_app\" SET statement_timeout = '30s';" in roles
    assert "COMMENT ON ROLE \"test\" IS 'the test user''s account';" in roles
    assert (
        'ALTER ROLE "dbrole_app" WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION BYPASSRLS'
        in roles
    )
    assert 'ALTER ROLE "dbuser_ni" WITH LOGIN NOSUPERUSER NOCREATEDB CREATEROLE NOINHERIT REPLICATION' in roles
    assert "SELECT format('ALTER ROLE %I VALID UNTIL %L', 'dbuser_old', (current_date + 30)::text) \\gexec" in roles
    assert '\'GRANT "dbrole_readonly" TO "dbuser_app" WITH ADMIN OPTION\'' in roles
    assert 'ALTER ROLE "dbrole_app" PASSWORD' not in roles  # a group without password
    assert "App'Pa" not in roles  # the password itself never appears, only its verifier's placeholder
    assert secrets[PRIMARY]["pg-test/pg_users/dbuser_app/scram"] == render_verifier('App\'Pa$$ "x"\\', "dbuser_app")
    dbs = trees[PRIMARY][f"{SQL}/20-databases.sql"]
    assert (
        'SELECT \'CREATE DATABASE "app" OWNER "dbuser_app" TEMPLATE "template0" ENCODING \'\'UTF8\'\' '
        "STRATEGY FILE_COPY LOCALE ''C''' WHERE NOT EXISTS"
    ) in dbs
    assert "COMMENT ON DATABASE \"app\" IS 'app''s database';" in dbs
    assert 'REVOKE CONNECT ON DATABASE "app" FROM PUBLIC;' in dbs
    assert 'GRANT CONNECT ON DATABASE "app" TO "dbuser_monitor";' in dbs
    assert 'GRANT CONNECT ON DATABASE "app" TO "dbuser_app" WITH GRANT OPTION;' in dbs
    assert "ALTER DATABASE \"app\" SET work_mem = '64MB';" in dbs
    assert 'ALTER DATABASE "archive" WITH ALLOW_CONNECTIONS false CONNECTION LIMIT -1 IS_TEMPLATE true;' in dbs
    assert f"{SQL}/30-db-archive.sql" not in trees[PRIMARY]  # no connections: nothing to create inside
    app = trees[PRIMARY][f"{SQL}/30-db-app.sql"]
    assert 'ALTER SCHEMA "app_audit" OWNER TO "dbuser_app";' in app
    assert "SELECT 'CREATE SCHEMA \"app_ext\"'" in app  # named by an extension only
    assert 'EXECUTE \'CREATE EXTENSION "pg_trgm" WITH SCHEMA "app" CASCADE\';' in app  # overrides the default
    assert "EXECUTE 'CREATE EXTENSION \"uuid-ossp\" CASCADE';" in app
    assert 'ALTER DEFAULT PRIVILEGES FOR ROLE "dbuser_app" GRANT SELECT ON TABLES TO "dbrole_readonly";' in app


def test_absent_roles_databases_schemas_and_extensions_are_dropped(tmp_path):
    trees, secrets = build(changed_inventory(), tmp_path)
    files = sql_files(trees[PRIMARY])
    drop = files[f"{SQL}/90-drop-roles.sql"]
    assert "SELECT 'DROP ROLE \"dbuser_old\"' WHERE EXISTS" in drop
    assert 'SELECT \'REASSIGN OWNED BY "dbuser_old" TO "postgres"\' WHERE EXISTS' in drop
    assert 'CREATE ROLE "dbuser_old"' not in files[f"{SQL}/10-roles.sql"]
    assert 'REVOKE "dbrole_readonly" FROM "dbuser_app"' in files[f"{SQL}/10-roles.sql"]
    assert "'DROP OWNED BY \"dbuser_old\"'" in files[f"{SQL}/30-db-test.sql"]
    dbs = files[f"{SQL}/20-databases.sql"]
    assert "SELECT 'DROP DATABASE \"archive\" WITH (FORCE)' WHERE EXISTS" in dbs
    assert "'ALTER DATABASE \"archive\" IS_TEMPLATE false' WHERE EXISTS" in dbs
    app = files[f"{SQL}/30-db-app.sql"]
    assert "SELECT 'DROP SCHEMA \"app_audit\"' WHERE EXISTS" in app
    assert "SELECT 'DROP EXTENSION \"hstore\"' WHERE EXISTS" in app
    assert not any("dbuser_old" in name for name in secrets[PRIMARY])
    assert '"dbuser_old"' not in trees[PRIMARY]["/etc/pgbouncer/userlist.txt"]
    assert "archive" not in trees[PRIMARY]["/etc/pgbouncer/database.txt"]


# --------------------------------------------------------------------------------------------------
# what derive refuses, with inventory paths
# --------------------------------------------------------------------------------------------------

USERS = "all.children.pg-test.vars.pg_users"
DBS = "all.children.pg-test.vars.pg_databases"


@pytest.mark.parametrize(
    "users,databases,expected",
    [
        ([{"name": "test"}, {"name": "test"}], None, f"{USERS}[1].name: role test is already defined at {USERS}[0]"),
        ([{"name": "test", "roles": ["dbrole_nope"]}], None, f"{USERS}[0].roles[0]: 'dbrole_nope' is not a role"),
        ([{"name": "test", "roles": [{"name": "dbrole_admin", "set": False}]}], None,
         f"{USERS}[0].roles[0].set: membership option set needs PostgreSQL 16 or later"),
        ([{"name": "test", "expire_at": "next year"}], None, f"{USERS}[0].expire_at: expire_at must be a date"),
        ([{"name": "test", "parameters": {"bad key": 1}}], None, f"{USERS}[0].parameters.bad key: 'bad key' is not"),
        ([{"name": "test", "roles": ["test"]}], None, f"{USERS}[0].roles[0]: role test cannot be a member of itself"),
        ([{"name": "dbuser_monitor"}], None,
         f"{USERS}[0].name: role dbuser_monitor is already defined at all.vars.pg_default_roles[7]"),
        ([{"name": "test"}, {"name": "gone", "state": "absent"}, {"name": "x", "roles": ["gone"]}], None,
         f"{USERS}[2].roles[0]: role gone is dropped (state: absent)"),
        (None, [{"name": "test", "state": "recreate"}], f"{DBS}[0].state: state: recreate would drop the database"),
        (None, [{"name": "postgres", "state": "absent"}], f"{DBS}[0].state: the system database postgres"),
        (None, [{"name": "test"}, {"name": "test"}], f"{DBS}[1].name: database test is already defined at {DBS}[0]"),
        (None, [{"name": "test", "builtin_locale": "C.UTF-8"}], f"{DBS}[0].builtin_locale: builtin_locale needs"),
        (None, [{"name": "test", "extensions": ["bad;name"]}], f"{DBS}[0].extensions[0]: extension name 'bad;name'"),
        (None, [{"name": "test", "schemas": ["bad schema"]}], f"{DBS}[0].schemas[0]: schema name 'bad schema'"),
        (None, [{"name": "test", "schemas": [{"name": "s", "owner": "nobody"}]}], f"{DBS}[0].schemas[0].owner: owner"),
        (None, [{"name": "test", "locale": "C'; DROP"}], f"{DBS}[0].locale: locale \"C'; DROP\" is not a valid locale"),
        (None, [{"name": "postgres", "allowconn": False}], f"{DBS}[0].allowconn: postgres must accept connections"),
    ],
)  # fmt: skip
def test_invalid_users_and_databases_are_reported_with_their_path(tmp_path, users, databases, expected):
    data = shipped_inventory()
    v = data["all"]["children"]["pg-test"]["vars"]
    if users is not None:
        v["pg_users"] = users
    if databases is not None:
        v["pg_databases"] = databases
    errors = errors_of(data, tmp_path)
    assert any(e.startswith(expected) for e in errors), errors


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("pg_default_privileges", ["GRANT SELECT ON TABLES TO dbrole_readonly; DROP TABLE x"],
         "all.vars.pg_default_privileges[0]: a default privilege reads GRANT"),
        ("pg_default_privileges", ["GRANT EXECUTE ON TABLES TO dbrole_readonly"],
         "all.vars.pg_default_privileges[0]: EXECUTE is not a privilege on TABLES"),
        ("pg_default_privileges", ["GRANT SELECT ON TABLES TO nobody_here"],
         "all.vars.pg_default_privileges[0]: 'nobody_here' is not a role"),
        ("pg_default_privileges", ["REVOKE SELECT ON TABLES TO dbrole_readonly"],
         "all.vars.pg_default_privileges[0]: REVOKE goes with FROM"),
        ("pg_default_schemas", ["ok", "not ok"], "all.vars.pg_default_schemas[1]: schema name 'not ok' is not valid"),
        ("pg_default_extensions", [{"name": "x", "version": "1; DROP"}],
         "all.vars.pg_default_extensions[0].version: extension version '1; DROP' is not valid"),
        ("pg_default_roles", [{"name": "postgres", "comment": "no superuser"}],
         "all.vars.pg_default_roles[0]: postgres is the database superuser (pg_dbsu)"),
        ("pg_default_roles", [{"name": "dbuser_monitor", "state": "absent"}],
         "all.vars.pg_default_roles[0].state: dbuser_monitor is pg_monitor_username; it cannot be dropped"),
    ],
)  # fmt: skip
def test_invalid_default_objects_are_reported_with_their_path(tmp_path, key, value, expected):
    data = shipped_inventory()
    data["all"]["vars"][key] = value
    errors = errors_of(data, tmp_path)
    assert any(e.startswith(expected) for e in errors), errors


def test_default_privileges_are_normalised(tmp_path):
    data = shipped_inventory()
    data["all"]["vars"]["pg_default_privileges"] = [
        "grant select, insert on tables to dbrole_readwrite with grant option",
        "GRANT ALL PRIVILEGES ON SCHEMAS TO public",
        "REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC",
    ]
    trees, _ = build(data, tmp_path)
    text = trees[PRIMARY][f"{SQL}/30-db-test.sql"]
    assert (
        'ALTER DEFAULT PRIVILEGES FOR ROLE "dbuser_dba" GRANT SELECT, INSERT ON TABLES TO "dbrole_readwrite" '
        "WITH GRANT OPTION;"
    ) in text
    assert 'ALTER DEFAULT PRIVILEGES FOR ROLE "dbuser_dba" GRANT ALL ON SCHEMAS TO PUBLIC;' in text
    assert 'ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;' in text


def test_baseline_is_a_note_and_allowconn_false_with_objects_a_warning(tmp_path):
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["vars"]["pg_databases"] = [
        {"name": "test", "baseline": "test.sql"},
        {"name": "cold", "allowconn": False, "schemas": ["x"]},
    ]
    compiled = compile_fleet(dump_inventory(data, tmp_path / "pigsty.yml"))
    found = {(p.severity, p.path, p.message) for p in compiled.report.problems}
    assert ("note", f"{DBS}[0].baseline", "baseline SQL files are not shipped by sty; load them yourself") in found
    assert (
        "warning",
        f"{DBS}[1].allowconn",
        "cold does not accept connections, so its schemas and extensions are not created",
    ) in found


# --------------------------------------------------------------------------------------------------
# slow: a real PostgreSQL 15 runs the files twice in a row
# --------------------------------------------------------------------------------------------------

slow = pytest.mark.slow
PG15 = Path("/usr/lib/postgresql/15/bin/postgres")
# local connections: the superuser by peer-less trust (the harness), everyone else by SCRAM password
HBA = "local all postgres trust\nlocal all all scram-sha-256\n"


def need_pg() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (setpriv to the postgres user)")
    for prog in (str(PG15), shutil.which("setpriv") or "/usr/bin/setpriv"):
        if not Path(prog).exists():
            if os.environ.get("CI"):
                pytest.fail(f"{prog} is not installed")
            pytest.skip(f"{prog} is not installed")


def texts_for(tree: dict[str, str], secrets: dict[str, str]) -> dict[str, str]:
    """The SQL files with placeholders replaced by the store's values (the verifiers apply would use)."""
    from sty.apply.checks.util import substitute

    return {path: substitute(text, lambda name: secrets[name]) for path, text in sql_files(tree).items()}


@pytest.fixture
def pg():
    need_pg()
    from sty.apply.checks.postgres_sql import server

    with server(15, hba=HBA) as srv:
        yield srv


def run_twice(srv, texts: dict[str, str]) -> str:
    from sty.apply.checks.postgres_sql import run_rounds

    ok, out = run_rounds(srv, texts, rounds=2)
    assert ok, out
    second = out[out.index("# round 2") :]
    assert not re.search(r"\b(WARNING|ERROR):", second), second
    return out


@slow
def test_shipped_sql_runs_twice_and_creates_what_it_promises(pg, tmp_path):
    secrets_file = {"pg-test/pg_users/test/password": "Test.Pass-1"}
    trees, secrets = build(shipped_inventory(), tmp_path, secrets_file)
    out = run_twice(pg, texts_for(trees[PRIMARY], secrets[PRIMARY]))
    assert "extension pg_repack is not available on this server: skipped" in out
    rows = pg.query(
        "SELECT rolname, rolcanlogin, rolsuper, rolreplication, rolconnlimit FROM pg_roles "
        "WHERE rolname IN ('dbrole_readonly','dbrole_offline','dbrole_readwrite','dbrole_admin','replicator',"
        "'dbuser_dba','dbuser_monitor','test') ORDER BY 1"
    )
    assert rows == [
        ["dbrole_admin", "f", "f", "f", "-1"],
        ["dbrole_offline", "f", "f", "f", "-1"],
        ["dbrole_readonly", "f", "f", "f", "-1"],
        ["dbrole_readwrite", "f", "f", "f", "-1"],
        ["dbuser_dba", "t", "t", "f", "-1"],
        ["dbuser_monitor", "t", "f", "f", "-1"],
        ["replicator", "t", "f", "t", "-1"],
        ["test", "t", "f", "f", "-1"],
    ]
    members = pg.query(
        "SELECT u.rolname, g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname NOT LIKE 'pg\\_%' ORDER BY 1, 2"
    )
    assert members == [
        ["dbrole_admin", "dbrole_readwrite"],
        ["dbrole_admin", "pg_monitor"],
        ["dbrole_readwrite", "dbrole_readonly"],
        ["dbuser_dba", "dbrole_admin"],
        ["dbuser_monitor", "dbrole_readonly"],
        ["dbuser_monitor", "pg_monitor"],
        ["replicator", "dbrole_readonly"],
        ["replicator", "pg_monitor"],
        ["test", "dbrole_admin"],
    ]
    assert pg.query("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = 'dbuser_dba'") == [
        ["pgsql admin user"]
    ]
    assert pg.query("SELECT rolconfig FROM pg_roles WHERE rolname = 'dbuser_monitor'") == [
        ["{log_min_duration_statement=1000}"]
    ]
    assert pg.query(
        "SELECT pg_get_userbyid(datdba), shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'test'"
    ) == [["postgres", "business database test"]]
    for db in ("test", "postgres", "template1"):
        assert pg.query("SELECT nspname FROM pg_namespace WHERE nspname = 'monitor'", db=db) == [["monitor"]]
        got = dict(pg.query("SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = "
                            "e.extnamespace WHERE e.extname <> 'plpgsql'", db=db))  # fmt: skip
        assert got == DEFAULT_EXTENSIONS, db
    acl = pg.query(
        "SELECT pg_get_userbyid(defaclrole), defaclobjtype, array_to_string(defaclacl, ',') FROM pg_default_acl "
        "WHERE pg_get_userbyid(defaclrole) = 'dbuser_dba' AND defaclobjtype = 'r'",
        db="test",
    )
    assert len(acl) == 1 and "dbrole_readonly=r/dbuser_dba" in acl[0][2] and "dbrole_admin=Dxt/dbuser_dba" in acl[0][2]
    # the verifier in PostgreSQL is the very one pgbouncer's userlist carries, and it logs the user in
    stored = pg.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'test'")[0][0]
    assert stored == secrets[PRIMARY]["pg-test/pg_users/test/scram"] == render_verifier("Test.Pass-1", "test")
    assert login(pg, "test", "Test.Pass-1", "test") == "test"
    assert login(pg, "test", "wrong", "test") is None


def login(srv, user: str, password: str, db: str) -> str | None:
    """Log in with a password over the socket (SCRAM per HBA); the current_user, or None if refused."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": password}
    proc = srv.psql("-Atq", "-w", "-c", "SELECT current_user", db=db, user=user, env=env)
    return proc.stdout.strip() if proc.returncode == 0 else None


@slow
def test_rich_sql_runs_twice_then_a_changed_inventory_drops_what_went_absent(pg, tmp_path):
    trees, secrets = build(rich_inventory(), tmp_path / "one")
    out = run_twice(pg, texts_for(trees[PRIMARY], secrets[PRIMARY]))
    for ext in ("vector", "postgis", "timescaledb"):
        assert f"extension {ext} is not available on this server: skipped" in out
    q = pg.query
    assert q(
        "SELECT rolcanlogin, rolcreatedb, rolinherit, rolconnlimit, rolvaliduntil::date::text, "
        "array_to_string(rolconfig, ';') FROM pg_roles WHERE rolname = 'dbuser_app'"
    ) == [["t", "t", "t", "20", "2099-12-31", "search_path=app, public;statement_timeout=30s"]]
    assert q("SELECT rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = 'dbrole_app'") == [["t", "f"]]
    assert q(
        "SELECT rolinherit, rolreplication, rolcreaterole, rolconnlimit FROM pg_roles WHERE rolname = 'dbuser_ni'"
    ) == [["f", "t", "t", "3"]]
    assert q("SELECT rolvaliduntil::date = current_date + 30 FROM pg_roles WHERE rolname = 'dbuser_old'") == [["t"]]
    assert q(
        "SELECT g.rolname, m.admin_option FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = 'dbuser_app' ORDER BY 1"
    ) == [["dbrole_readonly", "t"], ["dbrole_readwrite", "f"]]
    assert q("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = 'test'") == [
        ["the test user's account"]
    ]
    assert q(
        "SELECT pg_get_userbyid(datdba), datconnlimit, datallowconn, datistemplate, "
        "shobj_description(oid, 'pg_database') FROM pg_database WHERE datname IN ('app', 'archive') ORDER BY datname"
    ) == [["dbuser_app", "50", "t", "f", "app's database"], ["postgres", "-1", "f", "t", "archived"]]
    acl = q("SELECT array_to_string(datacl, ',') FROM pg_database WHERE datname = 'app'")[0][0]
    public = [item.split("/")[0] for item in acl.split(",") if item.startswith("=")]
    assert public and all("c" not in item for item in public), acl  # PUBLIC lost CONNECT (revokeconn)
    assert "dbuser_monitor=c/" in acl and "replicator=c/" in acl and "dbuser_dba=c*/" in acl, acl
    assert q(
        "SELECT array_to_string(setconfig, ';') FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE d.datname = 'app'"
    ) == [["search_path=app, public;work_mem=64MB"]]
    schemas = dict(q("SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname LIKE 'app%' "
                     "OR nspname = 'monitor'", db="app"))  # fmt: skip
    assert schemas == {"app": "postgres", "app_audit": "dbuser_app", "app_ext": "postgres", "monitor": "postgres"}
    exts = dict(q("SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace",
                  db="app"))  # fmt: skip
    assert (
        exts["pg_trgm"] == "app" and exts["hstore"] == "app_ext" and exts["uuid-ossp"] == "app"
    )  # no schema: the first of the search_path
    assert exts["pg_stat_statements"] == "monitor"
    assert "vector" not in exts and "pg_repack" not in exts
    password = 'App\'Pa$$ "x"\\'
    assert login(pg, "dbuser_app", password, "app") == "dbuser_app"

    # objects of a role that goes away: reassigned to the superuser
    q("CREATE TABLE public.old_t (id int); ALTER TABLE public.old_t OWNER TO dbuser_old", db="test")
    trees2, secrets2 = build(changed_inventory(), tmp_path / "two")
    run_twice(pg, texts_for(trees2[PRIMARY], secrets2[PRIMARY]))
    assert q("SELECT 1 FROM pg_roles WHERE rolname = 'dbuser_old'") == []
    assert q("SELECT tableowner FROM pg_tables WHERE tablename = 'old_t'", db="test") == [["postgres"]]
    assert q(
        "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u "
        "ON u.oid = m.member WHERE u.rolname = 'dbuser_app'"
    ) == [["dbrole_readwrite"]]
    assert q("SELECT 1 FROM pg_database WHERE datname = 'archive'") == []
    assert q("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'app%' ORDER BY 1", db="app") == [
        ["app"],
        ["app_ext"],
    ]
    assert q("SELECT 1 FROM pg_extension WHERE extname = 'hstore'", db="app") == []
    assert login(pg, "dbuser_app", password, "app") == "dbuser_app"


@slow
def test_postgres_sql_checker_passes_the_bundle_and_rejects_broken_sql(tmp_path):
    need_pg()
    from sty.apply.checks import CheckContext
    from sty.apply.checks.runner import run_check

    trees, _ = build(shipped_inventory(), tmp_path / "b")
    root = tmp_path / "root"
    for path, text in trees[PRIMARY].items():
        if path != ".yml":
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.lstrip("/")).write_text(text)
    manifest = yaml.safe_load(trees[PRIMARY][".yml"])
    files = tuple(next(c for c in manifest["checks"] if c["checker"] == "postgres_sql")["files"])
    ctx = CheckContext(root, PRIMARY, manifest, files)
    result = run_check(ctx, "postgres_sql")
    assert result.status == "pass", result.output
    assert "# round 2: /pg/conf/sql/90-drop-roles.sql: exit code 0" in result.output
    broken = root / "pg/conf/sql/20-databases.sql"
    broken.write_text(broken.read_text().replace("ALTER DATABASE", "ALTER DATABSE", 1))
    result = run_check(CheckContext(root, PRIMARY, copy.deepcopy(manifest), files), "postgres_sql")
    assert result.status == "fail"
    assert 'syntax error at or near "DATABSE"' in result.output
