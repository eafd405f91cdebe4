"""Issue 12: secrets under attack. Hostile secret values never appear in what sty prints; SCRAM verifiers get a
random salt kept in the store; the store is private and written without following links; build refuses the
secret values apply would refuse, and warns about pooled users without a password."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import dump_inventory, shipped_inventory

from sty.compiler.errors import Report
from sty.compiler.schema import humanize, registry
from sty.contract.store import ScramSecret, scram_accepts, scram_verifier, write_store

MARK = "Hx7q"  # every hostile value starts with it: its absence from all output is the assertion
QUOTE = MARK + "a'b\"c{{ x }}${y}%s\\" + "Z" * 10240  # quotes, template syntax, 10 kB: build accepts it
BREAKS = MARK + "a\nb\rc\x00d"  # line break, carriage return, NUL: build refuses it
# etcdctl reads these from stdin up to the first blank, so build refuses a blank in them (test_etcd_auth.py)
ETCDCTL_READ = ("etcd_root_password", "pg_etcd_password")
COMMANDS = (("build",), ("check",), ("diff",), ("show", "10.10.10.11"), ("show", "10.10.10.10"))
PGBACKREST_FIELDS = ("azure_key", "cipher_pass", "s3_key_secret", "s3_token", "sftp_private_key_passphrase")


def secret_vars(value: str) -> dict[str, Any]:
    """Every secret of the schemas set to `value`: each x-secret parameter and each x-secret-fields field
    (pgsodium_key is left out: its pattern refuses any hostile value before rendering, see its own test)."""
    reg = registry()
    out: dict[str, Any] = {n: value for n, s in reg.params.items() if s.secret and n != "pgsodium_key"}
    out.update({n: value.replace(" ", "") for n in ETCDCTL_READ})
    minio = dict(reg.params["pgbackrest_repo"].default["minio"])
    out["pgbackrest_repo"] = {"minio": {**minio, **dict.fromkeys(PGBACKREST_FIELDS, value)}}
    out["pgbackrest_method"] = "minio"
    out["minio_users"] = [{"access_key": "x", "secret_key": value, "policy": "pgsql"}]
    out["redis_sentinel_monitor"] = [{"name": "r", "host": "10.10.10.10", "port": 6379, "password": value, "quorum": 1}]
    out["pg_exporters"] = {
        "20001": {"pg_cluster": "x", "pg_seq": 1, "pg_host": "10.10.10.99", "pg_monitor_password": value}
    }
    out["nginx_users"] = {"admin": value}
    roles = reg.params["pg_default_roles"].default
    out["pg_default_roles"] = [{**r, "password": value} if r["name"] == "dbuser_dba" else r for r in roles]
    return out


def hostile_inventory(work: Path, value: str, extra: dict[str, Any] | None = None) -> None:
    data = shipped_inventory()
    data["all"]["vars"].update(secret_vars(value) if extra is None else extra)
    for group in ("pg-meta", "pg-test"):  # the groups' own users, the business users' passwords
        for user in data["all"]["children"][group]["vars"]["pg_users"]:
            user["password"] = value
    dump_inventory(data, work / "pigsty.yml")


def assert_never_printed(sty, work: Path, rc: int | None) -> None:
    for args in COMMANDS:
        proc = sty(*args, cwd=work)
        text = proc.stdout + proc.stderr
        assert MARK not in text, f"sty {' '.join(args)} printed a secret:\n" + "\n".join(
            line[:200] for line in text.splitlines() if MARK in line
        )
        assert "Traceback" not in text, text
        if rc is not None and args[0] != "show":
            assert proc.returncode == rc, f"sty {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}"


# -- 1. secret values never appear in a message ------------------------------------------------------


def test_hostile_secrets_in_the_inventory_are_never_printed(sty, workdir):
    hostile_inventory(workdir, QUOTE)
    assert_never_printed(sty, workdir, rc=None)
    store = yaml.safe_load((workdir / ".sty" / "outputs" / "secrets.yml").read_text())
    assert store["pg-test/patroni_password"] == QUOTE  # built: the value went to the store, not to outputs/
    for path in (workdir / "outputs").rglob("*"):
        assert not path.is_file() or MARK.encode() not in path.read_bytes(), path


def test_hostile_secrets_in_secrets_yml_are_never_printed(sty, workdir):
    names = [n for n, s in registry().params.items() if s.secret]
    values = {n: QUOTE.replace(" ", "") if n in ETCDCTL_READ else QUOTE for n in names}
    (workdir / "secrets.yml").write_text(yaml.safe_dump(values))
    (workdir / "secrets.yml").chmod(0o600)
    assert_never_printed(sty, workdir, rc=0)


def test_bad_pgsodium_key_is_refused_without_its_value(sty, workdir):
    hostile_inventory(workdir, QUOTE, extra={"pgsodium_key": QUOTE})
    assert_never_printed(sty, workdir, rc=2)
    assert "pgsodium_key" in sty("check", cwd=workdir).stderr


def test_render_errors_never_quote_a_value():
    from sty.compiler.render import RenderError, one_line, sql_keyword, strict_int, token

    for fn, value in ((one_line, BREAKS), (token, QUOTE), (strict_int, QUOTE), (sql_keyword, QUOTE)):
        with pytest.raises(RenderError) as exc:
            fn(value)
        assert MARK not in str(exc.value)


def test_misplaced_secret_in_a_structure_is_not_printed(sty, workdir):
    """A scalar where a mapping of secrets belongs may be a secret typed at the wrong level."""
    extra = {"nginx_users": QUOTE, "pg_exporters": {"20001": QUOTE}, "redis_sentinel_monitor": [QUOTE]}
    hostile_inventory(workdir, "x", extra=extra)
    assert_never_printed(sty, workdir, rc=2)


def test_schema_messages_for_secrets_name_the_rule_not_the_value():
    """The functions compiler/schema.py calls: the rule, never the value, for anything that holds a secret."""
    from sty.compiler.secrets import schema_message

    reg = registry()
    cases = [
        ("pgsodium_key", QUOTE),
        ("pg_admin_password", [QUOTE]),
        ("nginx_users", QUOTE),
        ("pg_users", [{"name": "u", "password": 5, "x": QUOTE}]),
        ("pg_users", [QUOTE]),
        ("pg_exporters", {"20001": QUOTE}),
    ]
    for name, value in cases:
        spec = reg.get(name)
        errors = list(spec.validator.iter_errors(value))
        assert errors, name
        for err in errors:
            assert MARK not in schema_message(spec, err, humanize), (name, err.validator)
    spec = reg.get("pg_users")  # an error on a non-secret field still shows its value
    (err,) = spec.validator.iter_errors([{"name": "u", "state": "gone"}])
    assert "gone" in schema_message(spec, err, humanize)


# -- 4. build refuses what apply would refuse ---------------------------------------------------------


def test_line_break_in_secrets_yml_is_refused_naming_the_key(sty, workdir):
    (workdir / "secrets.yml").write_text(
        yaml.safe_dump({"patroni_password": BREAKS, "pg-test/pg_users/test/password": "ok"})
    )
    (workdir / "secrets.yml").chmod(0o600)
    assert_never_printed(sty, workdir, rc=2)
    proc = sty("build", cwd=workdir, check_rc=2)
    assert "secrets.yml:patroni_password: a secret may not contain a line break" in proc.stderr
    assert not (workdir / "outputs").exists()


def test_line_break_rule_finds_every_secret_of_a_value():
    """secret_problems, which compiler/schema.py iter_value_errors calls for every vars-block value."""
    from sty.compiler.secrets import secret_problems

    reg = registry()
    found = {name: [p for p, _ in secret_problems(reg.get(name), value)] for name, value in secret_vars(BREAKS).items()}
    assert found["patroni_password"] == [[]]
    dba = [r["name"] for r in reg.params["pg_default_roles"].default].index("dbuser_dba")
    assert found["pg_default_roles"] == [[dba, "password"]]
    assert found["nginx_users"] == [["admin"]]
    assert found["pg_exporters"] == [["20001", "pg_monitor_password"]]
    assert sorted(found["pgbackrest_repo"]) == sorted(["minio", f] for f in PGBACKREST_FIELDS)
    assert found["pgbackrest_method"] == [] and list(secret_problems(reg.get("pg_users"), [{"name": "a\nb"}])) == []


def test_line_break_in_an_inventory_secret_is_refused(sty, workdir):
    from sty.compiler.secrets import LINE_BREAK_RULE

    hostile_inventory(workdir, BREAKS)
    assert_never_printed(sty, workdir, rc=2)
    stderr = sty("check", cwd=workdir, check_rc=2).stderr
    names = [n for n, s in registry().params.items() if s.secret and n != "pgsodium_key"]
    paths = [f"all.vars.{n}" for n in names] + [
        "all.vars.nginx_users.admin",
        "all.vars.pg_exporters.20001.pg_monitor_password",
        "all.vars.minio_users[0].secret_key",
        "all.children.pg-test.vars.pg_users[0].password",
    ]
    missing = [p for p in paths if f"error: {p}: {LINE_BREAK_RULE}" not in stderr]
    assert not missing, missing


def test_pooled_user_without_password_is_warned_with_the_fix(compile_inv, tmp_path):
    from sty.compiler.modules.pgsql.pgbouncer import passwordless_pooled

    compiled = compile_inv(shipped_inventory())
    report = Report()
    passwordless_pooled(compiled.fleet, compiled.overrides, report)
    text = "\n".join(f"{w}" for w in report.warnings)
    for user in ("dbuser_meta", "dbuser_view", "test"):
        assert f"pooled user {user} has no password" in text
    assert "pgbouncer: false" in text and "dbuser_dba" not in text  # the admin has pg_admin_password
    (tmp_path / "secrets.yml").write_text("pg-test/pg_users/test/password: Own.Test.9\n")
    compiled = compile_inv(shipped_inventory())
    report = Report()
    passwordless_pooled(compiled.fleet, compiled.overrides, report)
    assert "pooled user test" not in "\n".join(map(str, report.warnings))


# -- 2. SCRAM verifiers: random salt, kept while the password is unchanged ----------------------------


def test_scram_salt_is_random_kept_and_renewed(sty, workdir):
    data = shipped_inventory()
    for group in ("pg-meta", "pg-test"):
        data["all"]["children"][group]["vars"]["pg_users"].append(
            {"name": "app", "password": "Same.Pw.1", "pgbouncer": True}
        )
    dump_inventory(data, workdir / "pigsty.yml")
    store = workdir / ".sty" / "outputs" / "secrets.yml"
    sty("build", "-q", cwd=workdir, check_rc=0)
    first = yaml.safe_load(store.read_text())
    meta, test = first["pg-meta/pg_users/app/scram"], first["pg-test/pg_users/app/scram"]
    assert scram_accepts(meta, "Same.Pw.1") and scram_accepts(test, "Same.Pw.1")
    assert meta != test  # same user, same password, two clusters: nothing reveals the reuse
    assert meta != scram_verifier("Same.Pw.1", "app")  # not the deterministic render-time value

    sty("build", "-q", "--no-cache", cwd=workdir, check_rc=0)
    assert yaml.safe_load(store.read_text()) == first  # a rebuild keeps every verifier

    outputs = {p: p.read_bytes() for p in (workdir / "outputs").rglob("*") if p.is_file()}
    (workdir / "secrets.yml").write_text("pg-test/pg_users/app/password: New.Pw.2\n")
    (workdir / "secrets.yml").chmod(0o600)
    sty("build", "-q", cwd=workdir, check_rc=0)
    second = yaml.safe_load(store.read_text())
    assert second["pg-meta/pg_users/app/scram"] == meta  # unchanged password, unchanged verifier
    assert second["pg-test/pg_users/app/scram"] != test and scram_accepts(
        second["pg-test/pg_users/app/scram"], "New.Pw.2"
    )
    assert {p: p.read_bytes() for p in (workdir / "outputs").rglob("*") if p.is_file()} == outputs


def test_seeded_verifier_stays_for_the_checkers_stand_ins():
    assert scram_verifier("pw", "sty-check") == scram_verifier("pw", "sty-check")
    assert scram_verifier("pw") != scram_verifier("pw") and scram_accepts(scram_verifier("pw"), "pw")
    assert not scram_accepts(scram_verifier("pw"), "other") and not scram_accepts("md5abc", "pw")


# -- 3. the store is private and never written through a link ---------------------------------------


def test_store_modes_are_private_and_repaired(sty, workdir, tmp_path):
    sty("build", "-q", cwd=workdir, check_rc=0)
    directory = workdir / ".sty" / "outputs"
    store = directory / "secrets.yml"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700 and stat.S_IMODE(store.stat().st_mode) == 0o600
    directory.chmod(0o755)
    store.chmod(0o644)
    proc = sty("build", "-q", cwd=workdir, check_rc=0)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700 and stat.S_IMODE(store.stat().st_mode) == 0o600
    assert "store directory was mode 0755" in proc.stderr and "store was mode 0644" in proc.stderr

    (workdir / "secrets.yml").write_text("patroni_password: Own.Patroni.9\n")
    (workdir / "secrets.yml").chmod(0o644)
    proc = sty("check", cwd=workdir, check_rc=0)
    assert "secrets file is readable by group or others (mode 0644)" in proc.stderr
    assert stat.S_IMODE((workdir / "secrets.yml").stat().st_mode) == 0o644  # the user's file: told, not changed


def test_store_write_never_follows_a_planted_link(tmp_path):
    outdir = tmp_path / "outputs"
    directory = tmp_path / ".sty" / "outputs"
    directory.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (directory / "secrets.tmp").symlink_to(victim)
    (directory / "secrets.yml").symlink_to(victim)
    write_store(outdir, {"a/b": "value", "c/scram": ScramSecret(scram_verifier("pw", "c"), "pw")})
    assert victim.read_text() == "precious\n"
    store = directory / "secrets.yml"
    assert not store.is_symlink() and stat.S_IMODE(store.stat().st_mode) == 0o600
    values = yaml.safe_load(store.read_text())
    assert values["a/b"] == "value" and scram_accepts(values["c/scram"], "pw")
    assert sorted(os.listdir(directory)) == ["secrets.tmp", "secrets.yml", "verified.json"]  # no temporary left


def test_a_pooled_user_without_a_password_is_warned_about_with_the_fix(compile_inv, inventory):
    """apply refuses an empty verifier for pgbouncer's auth_file: build says so first, naming the secret."""
    warnings = {p.path: p.message for p in compile_inv(inventory).report.warnings if "pooled user" in p.message}
    assert set(warnings) == {
        "all.children.pg-meta.vars.pg_users[0]",
        "all.children.pg-meta.vars.pg_users[1]",
        "all.children.pg-test.vars.pg_users[0]",
    }
    assert "set pg-test/pg_users/test/password in secrets.yml" in warnings["all.children.pg-test.vars.pg_users[0]"]
    inventory["all"]["children"]["pg-test"]["vars"]["pg_users"][0]["password"] = "Own.Test.2"
    inventory["all"]["children"]["pg-meta"]["vars"]["pg_users"][0]["pgbouncer"] = False
    still = {p.path for p in compile_inv(inventory).report.warnings if "pooled user" in p.message}
    assert still == {"all.children.pg-meta.vars.pg_users[1]"}


# -- a placeholder copies a secret only into another secret ---------------------------------------------


@pytest.mark.parametrize(
    "where, value",
    [
        ("pg_exporter_params", "sslmode=disable&p=${pg_monitor_password}"),
        ("pg_exporter_params", "${x_hop}"),  # through a parameter that is not secret itself
        ("pg_users.comment", "copied ${pg_admin_password}"),
    ],
)
def test_a_placeholder_may_not_copy_a_secret_into_a_reviewed_value(sty, workdir, where, value):
    """`${secret}` in a value that is not secret would write the secret into outputs/ and `sty show` would print it."""
    data = shipped_inventory()
    data["all"]["vars"]["pg_monitor_password"] = MARK + "monitor"
    data["all"]["vars"]["pg_admin_password"] = MARK + "admin"
    data["all"]["vars"]["x_hop"] = "${pg_monitor_password}"
    if where == "pg_users.comment":
        data["all"]["children"]["pg-test"]["vars"]["pg_users"][0]["comment"] = value
    else:
        data["all"]["vars"][where] = value
    dump_inventory(data, workdir / "pigsty.yml")
    for args in (("build", "--allow-unknown"), ("show", "--allow-unknown", "10.10.10.11")):
        proc = sty(*args, cwd=workdir)
        assert proc.returncode == 2, proc.stderr
        assert MARK not in proc.stdout + proc.stderr
        assert "names a secret parameter" in proc.stderr
    assert not (workdir / "outputs").exists() or not any(
        MARK.encode() in p.read_bytes() for p in (workdir / "outputs").rglob("*") if p.is_file()
    )


def test_a_placeholder_may_copy_a_secret_into_a_secret(sty, workdir):
    data = shipped_inventory()
    data["all"]["vars"]["pg_admin_password"] = MARK + "admin"
    data["all"]["children"]["pg-test"]["vars"]["pg_users"][0]["password"] = "${pg_admin_password}"
    dump_inventory(data, workdir / "pigsty.yml")
    proc = sty("build", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    store = yaml.safe_load((workdir / ".sty" / "outputs" / "secrets.yml").read_text())
    assert store["pg-test/pg_users/test/password"] == MARK + "admin"
