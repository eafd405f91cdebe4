"""`sty diff` as a plan: the real command line on a build of the shipped inventory, then an inventory change.

Per host a status (new host, changes, leaves the inventory), its files as host paths and what their change sets
off; identical members of a cluster in one block; a closing totals line; `--json` with the same facts; manifests
only with `--manifests`; a no-op diff after a build renders no host (the build's incremental state).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import dump_inventory

from sty.cli import main
from sty.compiler import stage as build_module
from sty.compiler.retire import IMPACT

PG_TEST = ("10.10.10.11", "10.10.10.12", "10.10.10.13")
TOTALS = re.compile(
    r"^Plan: (\d+) to add, (\d+) to change, (\d+) to retire(?:, (\d+) to remove)?, (\d+) unchanged; "
    r"hosts that restart: (\d+), reload: (\d+), run: (\d+)\.$",
    re.M,
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def change(work: Path, edit) -> None:
    data = yaml.safe_load((work / "pigsty.yml").read_text())
    edit(data)
    dump_inventory(data, work / "pigsty.yml")


def pg_test(data: dict) -> dict:
    return data["all"]["children"]["pg-test"]


def blocks(out: str) -> dict[str, list[str]]:
    """The plan's blocks: head line (`~ pg-test: 3 hosts (...)...`) -> its indented lines."""
    found: dict[str, list[str]] = {}
    head = None
    for line in out.splitlines():
        if re.match(r"^[+~-] \d|^[+~-] [a-z]", line) and not line.startswith(("--- ", "+++ ")):
            head = line
            found[head] = []
        elif head and line.startswith("    "):
            found[head].append(line.strip())
        else:
            head = None
    return found


def block(out: str, prefix: str) -> tuple[str, list[str]]:
    heads = [h for h in blocks(out) if h.startswith(prefix)]
    assert len(heads) == 1, f"no single block starting {prefix!r} in:\n{out}"
    return heads[0], blocks(out)[heads[0]]


def totals(out: str) -> dict[str, int]:
    m = TOTALS.search(out)
    assert m, f"no totals line in:\n{out}"
    keys = ("add", "change", "retire", "remove", "unchanged", "restart", "reload", "run")
    return {k: int(v or 0) for k, v in zip(keys, m.groups(), strict=True)}


def fresh(work: Path) -> None:
    """A no-op build right now: the state then matches this code even if the session's build is older."""
    invoke("build", "-q", "-i", str(work / "pigsty.yml"), "-o", str(work / "outputs"))


def invoke(*args: str) -> tuple[int, str, str]:
    """The command line in this process (so that a test can watch what it renders)."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def renders(monkeypatch) -> list[str]:
    """The hosts rendered in this process, in order."""
    seen: list[str] = []
    real = build_module.render_host

    def spy(host, compiled):
        seen.append(host.ip)
        return real(host, compiled)

    monkeypatch.setattr(build_module, "render_host", spy)
    monkeypatch.setattr(build_module, "PARALLEL_FROM", 10**9)  # rendered in this process, where the spy is
    return seen


# -- what the plan says ---------------------------------------------------------------------------------------


def test_a_new_replica_is_a_new_host_and_its_peers_are_one_block(sty, built):
    change(built, lambda d: pg_test(d)["hosts"].update({"10.10.10.14": {"pg_seq": 4, "pg_role": "replica"}}))
    out = sty("diff", "--stat", cwd=built, check_rc=1).stdout

    head, lines = block(out, "+ 10.10.10.14")
    assert re.fullmatch(r"\+ 10\.10\.10\.14 \(pg-test\): new host, \d+ added file\(s\)", head), head
    assert int(re.search(r"(\d+) added", head)[1]) > 30
    assert not [x for x in lines if x.startswith(("+ /", "~ /"))], "a new host is counted, not listed"
    assert any(x.startswith("starts ") and "patroni" in x for x in lines), lines
    assert not [x for x in lines if "rolling restart" in x], "a new member restarts nothing"

    head, lines = block(out, "~ pg-test: 3 hosts")
    assert head.startswith("~ pg-test: 3 hosts (10.10.10.11, 10.10.10.12, 10.10.10.13): changes, ")
    for path in ("/etc/haproxy/conf.d/pg-test-primary.cfg", "/etc/patroni/patroni.yml", "/pg/conf/pg_hba.conf"):
        assert f"~ {path}" in lines, lines
    assert "=> reload: reload haproxy.service" in lines and "=> reload: patroni-reload" in lines
    assert not [x for x in out.splitlines() if re.match(r"^~ 10\.10\.10\.1[123]\b", x)], "members are collapsed"
    assert not [x for x in lines if x.endswith(".yml") and x.startswith("~ 10.")], "no manifest listed"

    t = totals(out)
    assert (t["add"], t["change"], t["retire"], t["unchanged"]) == (1, 4, 0, 0), out
    assert t["reload"] == 5 and t["run"] >= 1


def test_a_postmaster_setting_plans_a_rolling_restart(sty, built):
    change(built, lambda d: pg_test(d)["vars"].update(pg_parameters={"max_connections": 150}))
    out = sty("diff", "--stat", cwd=built, check_rc=1).stdout
    head, lines = block(out, "~ pg-test: 3 hosts")
    assert "=> restart: rolling restart of pg-test: max_connections" in lines, out
    assert "~ /etc/patroni/patroni.yml" in lines
    assert "10.10.10.10" not in out  # pg-meta is untouched
    assert totals(out) == dict(add=0, change=3, retire=0, remove=0, unchanged=1, restart=3, reload=3, run=0)


def test_a_new_user_runs_sql_on_the_primary(sty, built):
    user = {"name": "dbuser_new", "password": "Own.Pass.1", "pgbouncer": True, "roles": ["dbrole_readonly"]}
    change(built, lambda d: pg_test(d)["vars"]["pg_users"].append(user))
    out = sty("diff", "--stat", cwd=built, check_rc=1).stdout
    _, lines = block(out, "~ pg-test: 3 hosts")
    assert "=> run: pg-sql-primary (on the primary)" in lines, out
    assert totals(out)["run"] == 3


def test_a_removed_host_is_retired_with_its_sentence(sty, built):
    change(built, lambda d: pg_test(d)["hosts"].pop("10.10.10.13"))
    out = sty("diff", "--stat", cwd=built, check_rc=1).stdout
    head, lines = block(out, "- 10.10.10.13")
    assert re.fullmatch(r"- 10\.10\.10\.13 \(pg-test\): leaves the inventory, \d+ removed file\(s\)", head), head
    assert lines == [IMPACT], "the retirement sentence, not 40 file names"
    _, peers = block(out, "~ pg-test: 2 hosts (10.10.10.11, 10.10.10.12)")
    assert "~ /etc/hosts" in peers
    t = totals(out)
    assert (t["add"], t["change"], t["retire"], t["unchanged"]) == (0, 3, 1, 0), out


def test_json_has_the_same_facts_as_the_text(sty, built):
    change(built, lambda d: pg_test(d)["vars"].update(pg_parameters={"max_connections": 150}))
    text = sty("diff", "--stat", cwd=built, check_rc=1).stdout
    proc = sty("diff", "--json", cwd=built, check_rc=1)
    doc = json.loads(proc.stdout)
    assert set(doc) == {"plan", "diffs", "foreign", "problems"}
    plan = doc["plan"]
    assert plan["changed"] is True
    want = totals(text)
    assert {k: plan["totals"][k] for k in want} == want
    assert [h["host"] for h in plan["hosts"]] == list(PG_TEST)
    one = plan["hosts"][0]
    assert one["status"] == "change" and one["group"] == "pg-test"
    assert "/etc/patroni/patroni.yml" in one["files"]["changed"]
    assert {"impact": "restart", "label": "rolling restart of pg-test: max_connections"} in one["activations"]
    assert set(doc["diffs"]) == set(PG_TEST)
    assert doc["diffs"]["10.10.10.11"]["/etc/patroni/patroni.yml"].startswith("--- a/10.10.10.11/etc/patroni/")
    assert "10.10.10.11.yml" not in doc["diffs"]["10.10.10.11"]
    assert any(p["severity"] == "warning" for p in doc["problems"])  # the published default passwords
    assert "diffs" not in json.loads(sty("diff", "--json", "--stat", cwd=built, check_rc=1).stdout)
    with_manifests = json.loads(sty("diff", "--json", "--manifests", cwd=built, check_rc=1).stdout)
    assert "10.10.10.11.yml" in with_manifests["diffs"]["10.10.10.11"]


def test_json_without_differences_exits_0(sty, built):
    doc = json.loads(sty("diff", "--json", cwd=built, check_rc=0).stdout)
    assert doc["plan"] == {"changed": False, "hosts": [], "totals": doc["plan"]["totals"]}
    assert doc["plan"]["totals"]["unchanged"] == 4 and doc["diffs"] == {}


def test_manifests_are_bookkeeping_unless_asked_for(sty, built):
    change(built, lambda d: pg_test(d)["hosts"]["10.10.10.12"].update(ansible_port=2222))
    out = sty("diff", cwd=built, check_rc=1).stdout
    assert "+++ " not in out, "only the manifest changed: no diff shown by default"
    head, lines = block(out, "~ 10.10.10.12")
    assert head == "~ 10.10.10.12 (pg-test): changes" and lines[0].startswith("manifest only")
    shown = sty("diff", "--manifests", cwd=built, check_rc=1).stdout
    assert "+++ b/10.10.10.12.yml" in shown and "+  port: 2222" in shown

    change(built, lambda d: pg_test(d)["vars"].update(pg_parameters={"max_connections": 150}))
    out = sty("diff", cwd=built, check_rc=1).stdout
    assert "+++ b/10.10.10.11/etc/patroni/patroni.yml" in out
    assert not re.search(r"^\+\+\+ b/10\.10\.10\.\d+\.yml$", out, re.M)


def test_colour_only_when_asked_or_on_a_terminal(built):
    change(built, lambda d: pg_test(d)["vars"].update(pg_parameters={"max_connections": 150}))
    args = ["diff", "-i", str(built / "pigsty.yml"), "-o", str(built / "outputs")]
    plain = CliRunner().invoke(main, args, env={"STY_COLOR": None, "NO_COLOR": None})
    assert plain.exit_code == 1 and not ANSI.search(plain.stdout)  # not a terminal
    coloured = CliRunner().invoke(main, args, env={"STY_COLOR": "always", "NO_COLOR": None})
    assert coloured.exit_code == 1 and ANSI.search(coloured.stdout)
    assert ANSI.sub("", coloured.stdout) == plain.stdout
    refused = CliRunner().invoke(main, args, env={"STY_COLOR": None, "NO_COLOR": "1"})
    assert not ANSI.search(refused.stdout)


# -- speed without losing correctness ---------------------------------------------------------------------------


def test_a_no_op_diff_after_a_build_renders_no_host(built, renders):
    fresh(built)
    renders.clear()
    code, out, err = invoke("diff", "-i", str(built / "pigsty.yml"), "-o", str(built / "outputs"))
    assert (code, out) == (0, "no differences\n"), out + err
    assert renders == []


def test_without_state_every_host_is_rendered_and_compared(built, renders):
    shutil.rmtree(built / ".sty")  # a fresh clone: outputs/ committed, no incremental state
    code, out, _ = invoke("diff", "-i", str(built / "pigsty.yml"), "-o", str(built / "outputs"))
    assert (code, out) == (0, "no differences\n")
    assert sorted(renders) == ["10.10.10.10", *PG_TEST]


def test_an_edited_output_is_rendered_and_shown(built, renders):
    fresh(built)
    renders.clear()
    hosts = built / "outputs" / "10.10.10.12" / "etc" / "hosts"
    hosts.write_text(hosts.read_text() + "10.9.9.9 sneaky\n")
    code, out, _ = invoke("diff", "--stat", "-i", str(built / "pigsty.yml"), "-o", str(built / "outputs"))
    assert code == 1 and renders == ["10.10.10.12"]
    head, lines = block(out, "~ 10.10.10.12")
    assert lines[0] == "~ /etc/hosts" and totals(out)["unchanged"] == 3


def test_a_file_sty_did_not_write_is_noted_for_an_unchanged_host(built, renders):
    fresh(built)
    renders.clear()
    (built / "outputs" / "10.10.10.11" / "etc" / "mine.conf").write_text("mine\n")
    code, out, err = invoke("diff", "-i", str(built / "pigsty.yml"), "-o", str(built / "outputs"))
    assert (code, out, renders) == (0, "no differences\n", [])
    assert "note: 10.10.10.11: 1 file(s) sty did not write, left alone and never shipped: " in err
    assert "10.10.10.11/etc/mine.conf" in err


def test_check_json(sty, built):
    doc = json.loads(sty("check", "--json", cwd=built, check_rc=0).stdout)
    assert doc["valid"] is True and doc["hosts"] == 4
    assert doc["problems"] and all({"severity", "path", "message"} <= set(p) for p in doc["problems"])
    change(built, lambda d: pg_test(d)["hosts"]["10.10.10.12"].update(pg_seq="two"))
    bad = json.loads(sty("check", "--json", cwd=built, check_rc=2).stdout)
    assert bad["valid"] is False and any(p["severity"] == "error" for p in bad["problems"])
