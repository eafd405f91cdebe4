"""PGSQL's admin scripts in /pg/bin: what each member of the shipped inventory gets, bash and ShellCheck judging
them, and the scripts run for real with stub programs first on PATH (psql, pg_ctl, pgbackrest, patronictl,
systemctl ...), each recording its argv, so that what a script would run on a host is asserted exactly."""

from __future__ import annotations

import getpass
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SHIPPED, dump_inventory, shipped_inventory

from sty.apply.checks import FAIL, PASS, CheckContext, CheckResult
from sty.apply.checks.shellcheck import check as shellcheck
from sty.apply.checks.util import ci
from sty.compiler.bundle import HostBundle
from sty.compiler.model import Fleet, Host
from sty.compiler.modules.pgsql import PgCluster, PgInstance, pgsql_model
from sty.compiler.modules.pgsql.backup import render_pgbackrest
from sty.compiler.modules.pgsql.scripts import render_script, render_scripts, script_context
from sty.compiler.pipeline import Compiled, compile_fleet, render_host

META, PRIMARY, REPLICA = "10.10.10.10", "10.10.10.11", "10.10.10.12"
SCRIPTS = ("pg-role", "pg-backup", "pg-vacuum", "pg-heartbeat", "pg-tune-hugepage", "pg-pitr", "pg-repack")
TIME = "2025-01-01 12:00:00+00"


@pytest.fixture(scope="module")
def compiled() -> Compiled:
    return compile_fleet(SHIPPED)


def member(fleet: Fleet, ip: str) -> tuple[Host, PgInstance, PgCluster]:
    model = pgsql_model(fleet)
    inst = model.instance_of[ip]
    return fleet.hosts[ip], inst, model.clusters[inst.cluster]


def scripts_of(fleet: Fleet, ip: str) -> HostBundle:
    b = HostBundle(ip)
    render_scripts(*member(fleet, ip), b)
    return b


def need_shellcheck() -> None:
    if not (shutil.which("shellcheck") or ci()):  # under CI a missing program fails below, never skips
        pytest.skip("program shellcheck is not installed (Debian package shellcheck)")


# --------------------------------------------------------------------------------------------------
# what each member gets
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ip", [META, PRIMARY, REPLICA])
def test_every_member_gets_the_scripts_as_its_superuser(compiled, ip):
    b = scripts_of(compiled.fleet, ip)
    paths = tuple(f"/pg/bin/{name}" for name in SCRIPTS)
    assert tuple(b.files) == paths
    for spec in b.files.values():
        owned = (spec.format, spec.owner, spec.group, spec.mode, spec.actions)
        assert owned == ("shell", "postgres", "postgres", "0755", [])
        assert spec.content.startswith("#!/bin/bash\n")
        assert not spec.secrets
    assert [(d.path, d.owner, d.mode) for d in b.directories] == [("/pg/bin", "postgres", "0755")]
    assert [(c.checker, c.files, c.where) for c in b.checks] == [("shellcheck", paths, "build")]


def test_scripts_know_their_instance_and_the_stanza_pgbackrest_uses(compiled):
    for ip, instance, stanza in ((META, "pg-meta-1", "pg-meta"), (REPLICA, "pg-test-2", "pg-test")):
        host, inst, cluster = member(compiled.fleet, ip)
        text = scripts_of(compiled.fleet, ip).files["/pg/bin/pg-backup"].content
        for line in (f"INSTANCE={instance}", f"STANZA={stanza}", "BIN_DIR=/usr/lib/postgresql/15/bin", "PORT=5432"):
            assert f"\n{line}\n" in text
        conf = HostBundle(ip)
        render_pgbackrest(host, inst, cluster, conf)
        assert f"\n[{stanza}]\n" in conf.files["/etc/pgbackrest/pgbackrest.conf"].content


def test_pg_repack_only_where_an_extension_asks_for_it(tmp_path):
    data = shipped_inventory()
    data["all"]["vars"]["pg_default_extensions"] = [{"name": "pg_stat_statements"}]
    fleet = compile_fleet(dump_inventory(data, tmp_path / "pigsty.yml")).fleet
    assert "/pg/bin/pg-repack" not in scripts_of(fleet, PRIMARY).files
    data["all"]["children"]["pg-test"]["vars"]["pg_databases"] = [{"name": "test", "extensions": ["pg_repack"]}]
    fleet = compile_fleet(dump_inventory(data, tmp_path / "pigsty.yml")).fleet
    assert "/pg/bin/pg-repack" in scripts_of(fleet, PRIMARY).files


def test_crontab_entries_name_scripts_the_bundle_delivers(tmp_path):
    """The pipeline ships the scripts (PgsqlModule renders them), so `pg_crontab` has something to call."""
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["vars"]["pg_crontab"] = ["00 01 * * * /pg/bin/pg-backup full"]
    compiled = compile_fleet(dump_inventory(data, tmp_path / "pigsty.yml"))
    files = render_host(compiled.fleet.hosts[PRIMARY], compiled).files
    assert "/pg/bin/pg-backup" in files["/var/spool/cron/crontabs/postgres"].content
    assert {f"/pg/bin/{name}" for name in SCRIPTS} <= set(files)


# --------------------------------------------------------------------------------------------------
# bash -n and ShellCheck (the checker the manifests declare)
# --------------------------------------------------------------------------------------------------


def judged(tmp: Path, ip: str, files: dict[str, str]) -> CheckResult:
    root = tmp / ip
    for path, text in files.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text(text)
    return shellcheck(CheckContext(root, ip, {}, tuple(files)))


def test_shellcheck_accepts_every_script(compiled, tmp_path):
    need_shellcheck()
    result = judged(tmp_path, REPLICA, {p: s.content for p, s in scripts_of(compiled.fleet, REPLICA).files.items()})
    assert result.status == PASS, result.output


def test_shellcheck_rejects_broken_scripts(tmp_path):
    need_shellcheck()
    bad, good = '#!/bin/bash\nfor f in $(ls); do echo "$f"; done\n', "#!/bin/bash\necho fine\n"
    result = judged(tmp_path, PRIMARY, {"/pg/bin/a": bad, "/pg/bin/g": good})
    assert result.status == FAIL and "/pg/bin/a:2:" in result.output and "SC2045" in result.output
    assert "/pg/bin/g" not in result.output
    result = judged(tmp_path, PRIMARY, {"/pg/bin/b": "#!/bin/bash\nif true; then echo x\n"})
    assert result.status == FAIL and "/pg/bin/b: line 3: syntax error" in result.output


# --------------------------------------------------------------------------------------------------
# running them with stub programs
# --------------------------------------------------------------------------------------------------

# One program for every stub, by the name it is called with: it records `name [arg] [arg] ...` (and the SQL
# psql reads from stdin), then answers as the test set it up (files under $STUB, environment variables).
STUB = r"""#!/bin/bash
name=${0##*/}
{ printf '%s' "$name"; printf ' [%s]' "$@"; printf '\n'; } >>"$STUB/calls"
state() { cat "$STUB/$1" 2>/dev/null || echo "$2"; }
case $name in
  psql)
    [[ -e $STUB/down || -e $STUB/starting || -e $STUB/dies ]] && exit 2
    sql="$*"
    if [[ " $* " != *" -c "* ]]; then sql=$(cat); printf '%s\n' "$sql" >>"$STUB/calls"; fi
    case $sql in
      *pg_wal_replay_resume*) echo promoted >"$STUB/recovery" ;;
      *"'paused'"*) state recovery paused ;;
      *"format('VACUUM"*) echo 'VACUUM (FREEZE, ANALYZE) public.t' ;;
      *FILTER*) echo 10 ;;
      *"age(datfrozenxid)"*) echo 200000000 ;;
      *"SELECT datname"*) echo meta ;;
      *"'monitor'"*) echo 0 ;;
      *shared_memory_size_in_huge_pages*) echo 100 ;;
      *pg_logical_emit_message*) echo '12:00:00|pg-test|primary|0/3000060|' ;;
      *"pg_is_in_recovery()"*) state role f ;;
    esac ;;
  pg_ctl)
    case $1 in
      status)
        if [[ -e $STUB/starting ]]; then  # a postmaster that has not written its pid file yet
          left=$(cat "$STUB/starting")
          if ((left > 0)); then echo $((left - 1)) >"$STUB/starting"; exit 3; fi
          rm "$STUB/starting"
          [[ -e $STUB/dies ]] || touch "$STUB/running"
        fi
        [[ -e $STUB/running ]] ;;
      stop) rm -f "$STUB/running" ;;
      start) if [[ -e $STUB/slow_start ]]; then state slow_start 1 >"$STUB/starting"; else touch "$STUB/running"; fi ;;
    esac ;;
  pgbackrest) exit "$(state pgbackrest_rc 0)" ;;
  patronictl) if [[ $* == *" list "* ]]; then cat "$STUB/members"; fi ;;
  systemctl) [[ $1 != is-active ]] || [[ -e $STUB/patroni_active ]] ;;
  sudo) [[ $1 == -n ]] && shift; exec "$@" ;;
esac
"""
HEADER = "Cluster\tMember\tHost\tRole\tState\tTL\tLag in MB\tTags"


class Sandbox:
    """Scripts rendered for one member with its paths moved under tmp and its programs replaced by stubs."""

    def __init__(self, fleet: Fleet, ip: str, tmp: Path, **context: Any):
        self.tmp = tmp
        self.stub = tmp / "stub"
        self.data = tmp / "data"
        for d in ("stub", "bin", "data", "sock", "tmp", "log"):
            (tmp / d).mkdir(parents=True)
        prog = self.stub / "stub"
        prog.write_text(STUB)
        prog.chmod(0o755)
        for name in ("psql", "pg_ctl", "pg_repack", "pgbackrest", "patronictl", "systemctl", "sudo"):
            (self.stub / name).symlink_to(prog)
        ctx = script_context(*member(fleet, ip)) | {
            "dbsu": getpass.getuser(),
            "data": str(self.data),
            "bin_dir": str(self.stub),
            "socket_dir": str(tmp / "sock"),
            "scripts_dir": str(tmp / "bin"),
            "tmp_dir": str(tmp / "tmp"),
            "log_dir": str(tmp / "log"),
            "pgbackrest": str(self.stub / "pgbackrest"),
            "patronictl": str(self.stub / "patronictl"),
            **context,
        }
        for name in SCRIPTS:
            script = tmp / "bin" / name
            script.write_text(render_script(name, ctx))
            script.chmod(0o755)

    def set(self, **files: str) -> None:
        """Stub state: role (f|t), recovery (paused|promoted|replaying), members (rows), running, down ..."""
        for name, text in files.items():
            (self.stub / name).write_text(text)

    def run(self, script: str, *args: str) -> subprocess.CompletedProcess:
        env = {"PATH": f"{self.stub}:/usr/bin:/bin", "STUB": str(self.stub), "LC_ALL": "C.UTF-8"}
        return subprocess.run(
            ["bash", str(self.tmp / "bin" / script), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def calls(self, program: str = "") -> list[str]:
        log = self.stub / "calls"
        lines = log.read_text().splitlines() if log.exists() else []
        return [c for c in lines if c.startswith(program)] if program else lines


@pytest.fixture
def sandbox(compiled, tmp_path):
    """sandbox(ip=PRIMARY, **context overrides) -> a fresh Sandbox."""
    made = []

    def make(ip: str = PRIMARY, **context: Any) -> Sandbox:
        made.append(ip)
        return Sandbox(compiled.fleet, ip, tmp_path / f"sandbox{len(made)}", **context)

    return make


def in_order(calls: list[str], *expected: str) -> None:
    """Each expected call (a prefix of a recorded one) was made, after the one before it."""
    at = 0
    for want in expected:
        found = [i for i, c in enumerate(calls) if i >= at and c.startswith(want)]
        assert found, f"{want!r} not called after {calls[at - 1] if at else 'the start'}:\n" + "\n".join(calls)
        at = found[0] + 1


def members(*rows: str) -> str:
    return "\n".join([HEADER, *(f"pg-test\t{r}\t\t" for r in rows)]) + "\n"


# -- pg-role ---------------------------------------------------------------------------------------


def test_pg_role_asks_the_server_then_the_data_directory(sandbox):
    box = sandbox()
    out = box.run("pg-role")
    assert (out.returncode, out.stdout) == (0, "primary\n")
    assert box.calls("psql")[0].endswith(
        f"[-h] [{box.tmp}/sock] [-p] [5432] [-d] [dbname='postgres'] [-X] [-A] [-t] [-q] [-w] [-c] "
        "[SELECT pg_is_in_recovery()]"
    )
    box.set(role="t")
    assert box.run("pg-role").stdout == "replica\n"
    box.set(down="")
    assert (box.run("pg-role").returncode, box.run("pg-role").stdout) == (1, "unknown\n")
    (box.data / "PG_VERSION").write_text("15\n")
    assert box.run("pg-role", "-v").stdout == "primary (the data directory of a server that does not answer)\n"
    (box.data / "standby.signal").touch()
    assert box.run("pg-role").stdout == "replica\n"
    assert box.run("pg-role", "--bogus").returncode == 2


# -- pg-backup -------------------------------------------------------------------------------------


def test_pg_backup_runs_pgbackrest_on_the_primary(sandbox):
    box = sandbox()
    out = box.run("pg-backup", "full")
    assert out.returncode == 0, out.stderr
    assert box.calls("pgbackrest") == ["pgbackrest [--stanza=pg-test] [--type=full] [backup]"]
    box.run("pg-backup")
    assert box.calls("pgbackrest")[-1] == "pgbackrest [--stanza=pg-test] [--type=incr] [backup]"
    box.set(pgbackrest_rc="28")
    out = box.run("pg-backup", "diff")
    assert out.returncode == 1 and "exit code 28" in out.stderr


def test_pg_backup_skips_on_a_replica_unless_forced(sandbox):
    box = sandbox(REPLICA)
    box.set(role="t")
    out = box.run("pg-backup", "full")
    assert out.returncode == 0 and "skipped: pg-test-2 is a replica" in out.stdout
    assert box.calls("pgbackrest") == []
    assert box.run("pg-backup", "--force", "diff").returncode == 0
    assert box.calls("pgbackrest") == ["pgbackrest [--stanza=pg-test] [--type=diff] [backup]"]


def test_pg_backup_refuses_what_it_cannot_do(sandbox):
    box = sandbox()
    assert box.run("pg-backup", "weekly").returncode == 2
    box.set(down="")
    out = box.run("pg-backup", "full")
    assert out.returncode == 3 and "cannot tell whether pg-test-1 is the primary" in out.stderr
    assert box.calls("pgbackrest") == []
    out = sandbox(backup_enabled=False).run("pg-backup", "full")
    assert out.returncode == 3 and "pgbackrest_enabled: false" in out.stderr


# -- pg-pitr ---------------------------------------------------------------------------------------


def test_pg_pitr_help_and_argument_checks(sandbox):
    box = sandbox()
    out = box.run("pg-pitr", "--help")
    assert out.returncode == 0
    for words in ("--finish", "--rejoin", "stanza pg-test", "systemctl stop patroni.service", "--backup-set"):
        assert words in out.stdout
    assert box.run("pg-pitr").returncode == 2
    refusals = {
        ("-t", TIME, "-x", "1234"): "one recovery target only",
        ("-l", "0/XYZ"): "is not an LSN",
        ("-t", "yesterday"): "is not YYYY-MM-DD",
        ("-x", "-5"): "is not a transaction ID",
        ("-d", "-b", "latest-ish"): "is not a backup label",
        ("-n", "before", "-X"): "--exclusive applies to --time, --lsn and --xid only",
        ("-d", "--promote"): "--promote needs a target",
        ("-i", "-T", "newest"): "--timeline takes latest, current or a timeline number",
        ("--finish", "-t", TIME): "--finish takes no restore options",
        ("-i", "-p", "5433"): "--port is for a copy restored elsewhere",
        ("-t",): "-t needs a value",
        ("--yes=1", "-i"): "--yes takes no value",
        ("-i", "--bogus"): "unknown argument: --bogus",
    }
    for args, message in refusals.items():
        out = box.run("pg-pitr", *args)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)
    assert box.calls() == []


def test_pg_pitr_dry_run_prints_the_restore_command(sandbox):
    box = sandbox()
    args = ("--time", TIME, "--backup-set=20250101-010000F", "-X", "-P", "-T", "latest", "-c", "--", "--repo=1")
    out = box.run("pg-pitr", *args)
    assert out.returncode == 0, out.stderr
    command = (
        f"{box.stub}/pgbackrest --stanza=pg-test --delta --set=20250101-010000F --type=time "
        r"--target=2025-01-01\ 12:00:00+00 --target-exclusive --target-action=promote --target-timeline=latest "
        "--repo=1 restore"
    )
    assert f"command: {command}" in out.stdout
    assert box.calls() == []  # nothing run, not even Patroni asked
    out = box.run("pg-pitr", "-l", "0/7c82cb8", "-D", f"{box.tmp}/copy/", "-c")
    copy = f"--pg1-path={box.tmp}/copy --tablespace-map-all={box.tmp}/copy.tablespaces --archive-mode=off"
    assert f"{copy} --type=lsn --target=0/7C82CB8 restore" in out.stdout


def test_pg_pitr_restores_the_primary_with_patroni_paused(sandbox):
    box = sandbox()
    box.set(members=members("pg-test-1\t\tLeader\trunning\t1", "pg-test-2\t\tReplica\tstreaming\t1"))
    box.set(running="", patroni_active="")
    out = box.run("pg-pitr", "-t", TIME, "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    in_order(
        box.calls(),
        "patronictl [-c] [/etc/patroni/patroni.yml] [list] [-f] [tsv] [pg-test]",
        "patronictl [-c] [/etc/patroni/patroni.yml] [pause] [--wait] [pg-test]",
        "systemctl [stop] [patroni.service]",
        f"pg_ctl [stop] [-D] [{box.data}] [-m] [fast]",
        f"pgbackrest [--stanza=pg-test] [--delta] [--type=time] [--target={TIME}] [restore]",
        f"pg_ctl [start] [-D] [{box.data}] [-l] [{box.tmp}/tmp/pg-pitr-start.log] [-W]",
    )
    assert "still running: pg-test-2" in out.stderr
    assert "recovery is paused at the target" in out.stdout


def test_pg_pitr_waits_for_a_server_that_is_still_starting(sandbox):
    """`pg_ctl start -W` returns before the postmaster writes its pid file: a server not up yet is not down (CI
    once saw pg-pitr give up within the second it started PostgreSQL). One that never comes up is given up on."""
    box = sandbox()
    box.set(members=members("pg-test-1\t\tLeader\trunning\t1"), running="", patroni_active="", slow_start="1")
    out = box.run("pg-pitr", "-t", TIME, "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "recovery is paused at the target" in out.stdout
    box = sandbox()
    box.set(members=members("pg-test-1\t\tLeader\trunning\t1"), running="", patroni_active="", slow_start="1")
    box.set(dies="")
    started = time.monotonic()
    out = box.run("pg-pitr", "-t", TIME, "--yes", "--timeout", "4")
    assert out.returncode == 1 and "PostgreSQL stopped before reaching the target" in out.stderr
    assert 4 <= time.monotonic() - started < 30  # after the grace (capped by --timeout), not at once


def test_pg_pitr_refuses_to_restore_beside_another_leader(sandbox):
    box = sandbox()
    box.set(members=members("pg-test-1\t\tReplica\tstreaming\t1", "pg-test-2\t\tLeader\trunning\t1"))
    out = box.run("pg-pitr", "-i", "--yes")
    assert out.returncode == 3 and "pg-test-2 leads pg-test" in out.stderr
    assert [c for c in box.calls() if "[list]" not in c] == []
    box.set(members=members("pg-test-1\t\tLeader\trunning\t1"))
    out = box.run("pg-pitr", "-i")  # not a terminal, no --yes
    assert out.returncode == 2 and "add --yes" in out.stderr
    assert box.calls("pgbackrest") == []


def test_pg_pitr_finish_promotes_and_hands_back_to_patroni(sandbox):
    box = sandbox()
    box.set(running="", recovery="paused", members=members("pg-test-1\t\tLeader\trunning\t2"))
    out = box.run("pg-pitr", "--finish", "--yes", "--timeout", "10")
    assert out.returncode == 0, out.stdout + out.stderr
    calls = box.calls()
    resume = next(i for i, c in enumerate(calls) if "pg_wal_replay_resume" in c)
    reset = calls.index("ALTER SYSTEM RESET recovery_target_time;")
    start = calls.index("systemctl [start] [patroni.service]")
    assert (
        resume < reset < start < calls.index("patronictl [-c] [/etc/patroni/patroni.yml] [resume] [--wait] [pg-test]")
    )
    assert "pg-test-1 leads pg-test again" in out.stdout


def test_pg_pitr_rejoin_reclones_a_replica(sandbox):
    box = sandbox(REPLICA)
    stale = members(
        "pg-test-1\t\tLeader\trunning\t2", "pg-test-2\t\tReplica\tstopped\t", "pg-test-3\t\tReplica\tstreaming\t1"
    )
    box.set(members=stale)
    out = box.run("pg-pitr", "--rejoin", "--yes")
    assert out.returncode == 3 and "pg-test-3 still run(s) the abandoned history" in out.stderr
    (box.data / "PG_VERSION").write_text("15\n")
    box.set(members=members("pg-test-1\t\tLeader\trunning\t2", "pg-test-2\t\tReplica\tstreaming\t2"), patroni_active="")
    out = box.run("pg-pitr", "--rejoin", "--yes", "--timeout", "10")
    assert out.returncode == 0, out.stdout + out.stderr
    assert list(box.data.iterdir()) == []
    calls = box.calls("systemctl")
    assert calls.index("systemctl [stop] [patroni.service]") < calls.index("systemctl [start] [patroni.service]")
    assert "pg-test-2 follows pg-test-1 on timeline 2" in out.stdout


# -- the others ------------------------------------------------------------------------------------


def test_pg_vacuum_freezes_old_tables_on_the_primary_only(sandbox):
    box = sandbox()
    out = box.run("pg-vacuum", "-n", "-a", "150000000")
    assert out.returncode == 0, out.stderr
    assert "would run: VACUUM (FREEZE, ANALYZE) public.t" in out.stdout
    out = box.run("pg-vacuum", "meta")
    assert out.returncode == 0, out.stderr
    sql = "\n".join(box.calls())  # what psql read: the query making one VACUUM per old table, run by \gexec
    assert "SELECT format('VACUUM (FREEZE, ANALYZE) %I.%I', n.nspname, c.relname)" in sql
    assert "ORDER BY c.relpages \\gexec" in sql
    assert box.run("pg-vacuum", "--age", "soon").returncode == 2
    box.set(role="t")
    out = box.run("pg-vacuum")
    assert out.returncode == 0 and "skipped" in out.stdout


def test_pg_heartbeat_beats_and_pg_repack_names_its_targets(sandbox):
    box = sandbox()
    out = box.run("pg-heartbeat", "-c", "1")
    assert (out.returncode, out.stdout) == (0, "12:00:00 pg-test primary 0/3000060 \n")
    assert box.run("pg-heartbeat", "-i", "0").returncode == 2
    out = box.run("pg-repack", "-t", "public.t", "meta")
    assert out.returncode == 0, out.stderr
    assert box.calls("pg_repack") == [
        f"pg_repack [--dbname=dbname='meta'] [--host={box.tmp}/sock] [--port=5432] [--wait-timeout=10] [--jobs=2] "
        "[--table=public.t]"
    ]
    out = box.run("pg-repack", "meta")
    assert out.returncode == 0 and "meta: skipped: no bloat views" in out.stdout


def test_pg_tune_hugepage_prints_the_inventory_value(sandbox):
    box = sandbox()
    out = box.run("pg-tune-hugepage", "--margin", "999999999")
    assert out.returncode == 1 and "node_hugepage_count: 1000000099" in out.stdout
    assert box.run("pg-tune-hugepage", "-m", "x").returncode == 2


def test_rendered_values_stay_literal(compiled, tmp_path):
    """A path with quotes and `$(...)` in the inventory is one literal word in every script."""
    ctx = script_context(*member(compiled.fleet, PRIMARY)) | {"data": f"{tmp_path}/it's $(touch {tmp_path}/x)"}
    script = tmp_path / "pg-role"
    script.write_text(render_script("pg-role", ctx))
    out = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=10)
    assert f"data {tmp_path}/it's $(touch {tmp_path}/x)," in out.stdout
    assert not (tmp_path / "x").exists()
