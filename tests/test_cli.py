"""The `sty` command line as a real program, in a temporary directory holding a copy of pigsty.yml:
exit codes, diff, show, explain, determinism, incremental builds, --limit and secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import stat
from pathlib import Path

import pytest
import yaml

ALL_HOSTS = ["10.10.10.10", "10.10.10.11", "10.10.10.12", "10.10.10.13"]
PUBLISHED = ["DBUser.DBA", "DBUser.Monitor", "DBUser.Replicator", "Patroni.API"]
SUMMARY = re.compile(
    r"^(\d+) host\(s\): (\d+) rendered, (\d+) unchanged inputs; "
    r"(\d+) file\(s\) written, (\d+) removed, (\d+) unchanged$",
    re.M,
)


def summary(stdout: str) -> dict[str, int]:
    m = SUMMARY.search(stdout)
    assert m, f"no build summary in:\n{stdout}"
    keys = ("hosts", "rendered", "skipped", "written", "removed", "unchanged")
    return dict(zip(keys, map(int, m.groups()), strict=True))


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root: relative path -> content."""
    out: dict[str, bytes] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def load(work: Path) -> dict:
    return yaml.safe_load((work / "pigsty.yml").read_text())


def save(work: Path, data: dict) -> None:
    (work / "pigsty.yml").write_text(yaml.safe_dump(data, sort_keys=False))


def store(work: Path, outdir: str = "outputs") -> dict[str, str]:
    return yaml.safe_load((work / ".sty" / outdir / "secrets.yml").read_text())


def scram_matches(verifier: str, password: str) -> bool:
    """Does a PostgreSQL SCRAM-SHA-256 verifier accept this password? (RFC 5802 / RFC 7677)"""
    m = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier or "")
    assert m, f"not a SCRAM-SHA-256 verifier: {verifier!r}"
    iterations, salt, stored, server = int(m[1]), base64.b64decode(m[2]), m[3], m[4]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return (
        base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored
        and base64.b64encode(server_key).decode() == server
    )


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


# -- exit codes ------------------------------------------------------------------------------------


def test_check_valid_inventory(sty, workdir):
    proc = sty("check", cwd=workdir, check_rc=0)
    assert "valid (4 host(s)" in proc.stdout
    assert not (workdir / "outputs").exists() and not (workdir / ".sty").exists()


def test_build_is_deterministic_across_directories(sty, workdir, built_template):
    first = summary(sty("build", cwd=workdir, check_rc=0).stdout)
    assert first["hosts"] == first["rendered"] == 4 and first["written"] > 0 and first["removed"] == 0
    sty("build", "-o", "other", cwd=workdir, check_rc=0)
    a, b = tree(workdir / "outputs"), tree(workdir / "other")
    assert a == b
    assert a == tree(built_template / "outputs")  # a build in another directory, earlier
    assert {f"{ip}.yml" for ip in ALL_HOSTS} <= set(a)
    # the stores agree on every secret; SCRAM verifiers have a random salt per store (outputs carry placeholders)
    plain = [{k: v for k, v in store(workdir, out).items() if not k.endswith("/scram")} for out in ("outputs", "other")]
    assert plain[0] == plain[1]
    assert store(workdir, "outputs").keys() == store(workdir, "other").keys()


@pytest.mark.parametrize("command", ["build", "check", "diff"])
def test_invalid_inventory_exits_2_and_touches_nothing(sty, built, command):
    before_out, before_state = tree(built / "outputs"), tree(built / ".sty")
    stamps = mtimes(built / "outputs")
    data = load(built)
    data["all"]["vars"]["pg_port"] = "abc"
    data["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"]["pg_role"] = "boss"
    save(built, data)

    proc = sty(command, cwd=built, check_rc=2)
    no_traceback(proc)
    errors = [re.sub(r"^pigsty\.yml:\d+:\d+: ", "", line) for line in proc.stderr.splitlines()]  # located
    assert any(line.startswith("error: all.vars.pg_port:") for line in errors), proc.stderr
    assert any(line.startswith("error: all.children.pg-test.hosts.10.10.10.12.pg_role:") for line in errors)
    assert "2 error(s)" in proc.stderr
    assert tree(built / "outputs") == before_out
    assert tree(built / ".sty") == before_state
    assert mtimes(built / "outputs") == stamps


def test_cross_host_error_exits_2_without_writing(sty, built):
    before = tree(built / "outputs")
    data = load(built)
    data["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"]["pg_seq"] = 1
    save(built, data)
    proc = sty("build", cwd=built, check_rc=2)
    no_traceback(proc)
    assert "error: all.children.pg-test.hosts.10.10.10.12.pg_seq:" in proc.stderr
    assert tree(built / "outputs") == before


def test_yaml_syntax_error_exits_2_with_location(sty, workdir):
    (workdir / "pigsty.yml").write_text("all:\n  vars:\n    a: 1\n   b: 2\n")
    proc = sty("build", cwd=workdir, check_rc=2)
    no_traceback(proc)
    assert "error: pigsty.yml:4:4: YAML syntax error" in proc.stderr
    assert not (workdir / "outputs").exists()


def test_missing_inventory_exits_2(sty, tmp_path):
    proc = sty("check", "-i", "absent.yml", cwd=tmp_path, check_rc=2)
    no_traceback(proc)
    assert "absent.yml" in proc.stderr


@pytest.mark.parametrize("command", ["build", "diff"])
def test_unknown_limit_target_exits_2(sty, built, command):
    before = tree(built / "outputs")
    proc = sty(command, "--limit", "no-such-cluster", cwd=built, check_rc=2)
    no_traceback(proc)
    assert "error: target 'no-such-cluster'" in proc.stderr
    assert tree(built / "outputs") == before


def test_bad_service_dest_is_reported_not_a_traceback(sty, workdir):
    data = load(workdir)
    data["all"]["children"]["pg-test"]["vars"]["pg_services"][0]["dest"] = "foo"
    save(workdir, data)
    proc = sty("build", cwd=workdir)
    no_traceback(proc)
    assert proc.returncode == 2
    assert "all.children.pg-test.vars.pg_services[0].dest" in proc.stderr


# -- diff ------------------------------------------------------------------------------------------


def test_diff_without_changes_exits_0(sty, built):
    proc = sty("diff", cwd=built, check_rc=0)
    assert "no differences" in proc.stdout
    assert "---" not in proc.stdout


def test_diff_after_a_change(sty, built):
    before = tree(built / "outputs")
    data = load(built)
    data["all"]["children"]["pg-test"]["vars"]["pg_services"][0]["check"] = "/replica"
    save(built, data)

    proc = sty("diff", cwd=built, check_rc=1)
    out = proc.stdout
    rel = "10.10.10.11/etc/haproxy/conf.d/pg-test-standby.cfg"
    assert f"--- a/{rel}\n+++ b/{rel}\n" in out
    assert "\n-    http-check send meth OPTIONS uri /sync\n" in out
    assert "\n+    http-check send meth OPTIONS uri /replica\n" in out
    assert re.search(r"^@@ -\d+,\d+ \+\d+,\d+ @@", out, re.M)
    assert "10.10.10.10/" not in out  # pg-meta is not affected

    changed = {len(re.findall(rf"^\+\+\+ b/{re.escape(ip)}/", out, re.M)) for ip in ALL_HOSTS[1:]}
    assert changed == {1}  # the same one file on each pg-test member; manifests are not shown
    assert "+++ b/10.10.10.11.yml" not in out
    plan = out[out.index("\n~ ") + 1 :].splitlines()
    assert plan == [
        "~ pg-test: 3 hosts (10.10.10.11, 10.10.10.12, 10.10.10.13): changes, 1 changed file(s)",
        "    ~ /etc/haproxy/conf.d/pg-test-standby.cfg",
        "    => reload: reload haproxy.service",
        "Plan: 0 to add, 3 to change, 0 to retire, 1 unchanged; hosts that restart: 0, reload: 3, run: 0.",
    ]
    assert "no differences" not in out
    assert tree(built / "outputs") == before  # diff writes nothing


def test_diff_stat_prints_only_the_plan(sty, built):
    data = load(built)
    data["all"]["children"]["pg-test"]["vars"]["pg_services"][0]["check"] = "/replica"
    save(built, data)
    proc = sty("diff", "--stat", cwd=built, check_rc=1)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("~ pg-test: 3 hosts (10.10.10.11, 10.10.10.12, 10.10.10.13): changes")
    assert lines[-1].startswith("Plan: 0 to add, 3 to change") and len(lines) == 4
    assert "---" not in proc.stdout and "@@" not in proc.stdout


# -- show and explain ------------------------------------------------------------------------------


def test_show_prints_effective_parameters_with_secrets_masked(sty, workdir):
    proc = sty("show", "10.10.10.11", cwd=workdir, check_rc=0)
    doc = yaml.safe_load(proc.stdout)
    params = doc["parameters"]
    assert doc["host"] == "10.10.10.11"
    assert "pg_cluster: pg-test" in proc.stdout and params["pg_cluster"] == "pg-test"
    assert params["pg_seq"] == 1 and params["pg_role"] == "primary"
    assert params["node_tune"] == "tiny"  # group over all.vars
    assert params["node_default_etc_hosts"] == ["10.10.10.10 i.pigsty"]  # placeholders resolved
    assert "pgsql" in doc["modules"] and "pg-test" in doc["groups"]
    for secret in PUBLISHED:
        assert secret not in proc.stdout
    assert params["patroni_password"] == params["pg_admin_password"] == "<secret>"


def test_show_unknown_host_exits_2(sty, workdir):
    proc = sty("show", "10.9.9.9", cwd=workdir, check_rc=2)
    no_traceback(proc)
    assert "10.9.9.9" in proc.stderr


def test_show_masks_user_passwords(sty, workdir):
    data = load(workdir)
    data["all"]["children"]["pg-test"]["vars"]["pg_users"][0]["password"] = "Own.Inline.Pass"
    save(workdir, data)
    proc = sty("show", "10.10.10.11", cwd=workdir, check_rc=0)
    assert "Own.Inline.Pass" not in proc.stdout


def test_explain_parameter(sty, tmp_path):
    proc = sty("explain", "pg_rto", cwd=tmp_path, check_rc=0)
    doc = yaml.safe_load(proc.stdout)
    assert doc["parameter"] == "pg_rto"
    assert doc["type"] == "string"
    assert doc["default"] == "norm"
    assert "RTO" in doc["description"]
    assert doc["module"] == "pgsql"


def test_explain_unknown_parameter_suggests(sty, tmp_path):
    proc = sty("explain", "pg_clustr", cwd=tmp_path, check_rc=2)
    no_traceback(proc)
    assert "did you mean 'pg_cluster'" in proc.stderr


# -- incremental builds ----------------------------------------------------------------------------


def test_second_build_writes_nothing(sty, built):
    stamps, content = mtimes(built / "outputs"), tree(built / "outputs")
    state_stamps = mtimes(built / ".sty")
    s = summary(sty("build", cwd=built, check_rc=0).stdout)
    assert (s["written"], s["removed"]) == (0, 0)
    assert (s["rendered"], s["skipped"]) == (0, 4)  # inputs unchanged: nothing rendered
    assert mtimes(built / "outputs") == stamps
    assert tree(built / "outputs") == content
    assert mtimes(built / ".sty") == state_stamps


def test_no_cache_rebuild_writes_nothing(sty, built):
    stamps = mtimes(built / "outputs")
    s = summary(sty("build", "--no-cache", cwd=built, check_rc=0).stdout)
    assert (s["rendered"], s["skipped"]) == (4, 0)
    assert (s["written"], s["removed"]) == (0, 0)
    assert s["unchanged"] == len(stamps)
    assert mtimes(built / "outputs") == stamps


def test_build_rewrites_an_edited_output(sty, built):
    """The cache notices a bundle file edited by hand and restores it."""
    target = built / "outputs" / "10.10.10.12" / "etc" / "hosts"
    original = target.read_bytes()
    target.write_bytes(b"tampered\n")
    s = summary(sty("build", cwd=built, check_rc=0).stdout)
    assert s["written"] == 1
    assert target.read_bytes() == original


def test_removed_host_loses_its_outputs(sty, built):
    data = load(built)
    del data["all"]["children"]["pg-test"]["hosts"]["10.10.10.13"]
    save(built, data)

    proc = sty("diff", "--stat", cwd=built, check_rc=1)
    assert re.search(r"^- 10\.10\.10\.13 \(pg-test\): leaves the inventory", proc.stdout, re.M)
    assert re.search(r"^    host removed from the inventory: apply stops", proc.stdout, re.M)

    s = summary(sty("build", cwd=built, check_rc=0).stdout)
    assert s["hosts"] == 3 and s["removed"] > 0
    assert not (built / "outputs" / "10.10.10.13").exists()
    assert yaml.safe_load((built / "outputs" / "10.10.10.13.yml").read_text())["retired"] is True  # apply cleans it
    for ip in ALL_HOSTS[:3]:
        assert (built / "outputs" / f"{ip}.yml").is_file()
    hosts_file = (built / "outputs" / "10.10.10.11" / "etc" / "hosts").read_text()
    assert "pg-test-2" in hosts_file and "pg-test-3" not in hosts_file
    assert not [k for k in store(built) if k.startswith("10.10.10.13/")]


def test_limit_renders_only_the_target(sty, built):
    untouched = built / "outputs" / "10.10.10.10"
    before, stamps = tree(untouched), mtimes(untouched)
    manifest_before = (built / "outputs" / "10.10.10.10.yml").read_bytes()
    data = load(built)
    data["all"]["vars"]["node_etc_hosts"] = ["10.10.10.99 limit.test"]  # changes every host
    save(built, data)

    limited = sty("build", "--limit", "pg-test", cwd=built, check_rc=0)
    s = summary(limited.stdout)
    assert (s["hosts"], s["rendered"]) == (3, 3)
    assert "--limit pg-test: 1 other host(s) were not rebuilt and may be stale" in limited.stderr
    for ip in ("10.10.10.11", "10.10.10.12", "10.10.10.13"):
        assert "10.10.10.99 limit.test" in (built / "outputs" / ip / "etc" / "hosts").read_text()
    assert tree(untouched) == before and mtimes(untouched) == stamps
    assert (built / "outputs" / "10.10.10.10.yml").read_bytes() == manifest_before
    assert "limit.test" not in (untouched / "etc" / "hosts").read_text()
    assert store(built)["10.10.10.10/haproxy_admin_password"]  # other hosts' secrets are kept


# -- secrets ---------------------------------------------------------------------------------------


def test_no_published_password_in_outputs(built_template):
    files = tree(built_template / "outputs")
    assert files
    for rel, content in files.items():
        text = content.decode("utf-8")
        for secret in PUBLISHED:
            assert secret not in text, f"{secret} in {rel}"
        for line in text.splitlines():
            if "stats auth" in line:
                assert "pigsty" not in line and "<<secret:" in line, f"{rel}: {line}"
    haproxy = files["10.10.10.11/etc/haproxy/haproxy.cfg"].decode()
    assert "<<secret:10.10.10.11/haproxy_admin_password>>" in haproxy


def test_secret_store_holds_the_values_with_mode_0600(built_template):
    path = built_template / ".sty" / "outputs" / "secrets.yml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = store(built_template)
    assert values["pg-test/patroni_password"] == "Patroni.API"
    assert values["pg-test/pg_replication_password"] == "DBUser.Replicator"
    assert values["10.10.10.11/haproxy_admin_password"] == "pigsty"
    # pgbouncer gets SCRAM verifiers of the published admin and monitor passwords
    assert scram_matches(values["pg-test/pg_users/dbuser_dba/scram"], "DBUser.DBA")
    assert scram_matches(values["pg-test/pg_users/dbuser_monitor/scram"], "DBUser.Monitor")
    assert not scram_matches(values["pg-test/pg_users/dbuser_dba/scram"], "DBUser.Monitor")
    # every placeholder in the bundles has a value in the store
    used = set()
    for content in tree(built_template / "outputs").values():
        used |= set(re.findall(r"<<secret:([^>]+)>>", content.decode()))
    assert used and used <= set(values)


def test_secrets_file_overrides_the_store_and_changes_no_output(sty, built):
    before, stamps = tree(built / "outputs"), mtimes(built / "outputs")
    (built / "secrets.yml").write_text(
        yaml.safe_dump(
            {
                "patroni_password": "Own.Patroni.9",
                "pg-test/patroni_password": "Own.PatroniTest.9",
                "pg-test/pg_users/test/password": "Own.Test.9",
                "pg_admin_password": "Own.Admin.9",
            }
        )
    )
    proc = sty("build", cwd=built, check_rc=0)
    s = summary(proc.stdout)
    assert (s["written"], s["removed"]) == (0, 0)
    assert tree(built / "outputs") == before and mtimes(built / "outputs") == stamps

    values = store(built)
    assert values["pg-meta/patroni_password"] == "Own.Patroni.9"  # by parameter name
    assert values["pg-test/patroni_password"] == "Own.PatroniTest.9"  # the scoped name wins
    assert scram_matches(values["pg-test/pg_users/test/scram"], "Own.Test.9")
    assert scram_matches(values["pg-test/pg_users/dbuser_dba/scram"], "Own.Admin.9")
    assert stat.S_IMODE((built / ".sty" / "outputs" / "secrets.yml").stat().st_mode) == 0o600
    # the ones not overridden are still warned, in the one summary line of published passwords
    (published,) = [line for line in proc.stderr.splitlines() if "Pigsty publishes" in line]
    assert "patroni_password" not in published and "pg_admin_password" not in published
    assert "pg_monitor_password" in published
    for content in before.values():
        assert b"Own." not in content


# -- the console command's exit ----------------------------------------------------------------------------------


def _run_console(tmp_path: Path, *argv: str) -> tuple[int, str, str, str]:
    """`sty.cli.run` in a fresh interpreter with an exit handler registered as a checker does, stdout a pipe."""
    import subprocess
    import sys

    marker = tmp_path / "exit-handler-ran"
    frozen = tmp_path / "frozen-objects"  # what the collector no longer walks, seen at exit
    code = (
        "import atexit, gc, sys\n"
        "from sty.cli import run\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
        f"atexit.register(lambda: open({str(frozen)!r}, 'w').write(str(gc.get_freeze_count())))\n"
        f"sys.argv = ['sty', *{list(argv)!r}]\n"
        "run()\n"
        "print('run() returned')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr, marker.read_text() if marker.exists() else ""


def test_the_console_command_exits_with_the_commands_status_its_output_flushed_and_exit_handlers_run(
    tmp_path, inventory
):
    """`run` skips the interpreter's teardown (os._exit) but nothing a command says or registers is lost."""
    (tmp_path / "pigsty.yml").write_text(yaml.safe_dump(inventory))
    rc, out, err, handler = _run_console(tmp_path, "check", "-i", "pigsty.yml")
    assert (rc, handler) == (0, "ran"), err
    assert "pigsty.yml: valid" in out and "run() returned" not in out

    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.11"]["pg_seq"] = "one"
    (tmp_path / "pigsty.yml").write_text(yaml.safe_dump(inventory))
    rc, out, err, handler = _run_console(tmp_path, "check", "-i", "pigsty.yml")
    assert (rc, handler) == (2, "ran")
    assert "all.children.pg-test.hosts.10.10.10.11.pg_seq" in err and "Traceback" not in err


def test_the_console_command_keeps_what_it_compiled_out_of_the_collectors_sight(tmp_path, inventory):
    """The console command's process ends with its command, so the compiled fleet is frozen (gc.freeze): the full
    collections rendering triggers walked it to free nothing. In-process (tests, CliRunner) fleets come and go
    and nothing is frozen."""
    import gc

    from click.testing import CliRunner

    from sty.cli import main

    (tmp_path / "pigsty.yml").write_text(yaml.safe_dump(inventory))
    rc, _, err, _ = _run_console(tmp_path, "check", "-i", "pigsty.yml")
    assert rc == 0, err
    assert int((tmp_path / "frozen-objects").read_text()) > 10000  # the interpreter, the compiler, the fleet
    before = gc.get_freeze_count()
    assert CliRunner().invoke(main, ["check", "-i", str(tmp_path / "pigsty.yml")]).exit_code == 0
    assert gc.get_freeze_count() == before


@pytest.mark.parametrize("command", ["apply", "verify"])
@pytest.mark.parametrize("jobs", ["0", "-3", "65"])
def test_jobs_outside_one_to_sixty_four_are_refused_before_any_host_is_read(command, jobs, tmp_path):
    """`-j` sizes thread pools: zero, a negative count or thousands of SSH sessions are a usage error (exit 2)."""
    from click.testing import CliRunner

    from sty.cli import main

    done = CliRunner().invoke(main, [command, "-o", str(tmp_path / "nowhere"), "-j", jobs, "all"])
    assert done.exit_code == 2 and "Invalid value for '-j'" in done.output, done.output
