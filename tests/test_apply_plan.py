"""The apply stage's decisions without hosts: what changes, what activates, in which order;
secret substitution per format; and the on-host agent on a scratch directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from sty.apply import agent
from sty.apply import plan as P
from sty.apply.handlers import waves
from sty.contract.actions import Action
from sty.contract.formats import SecretError, mask, substitute
from sty.contract.manifest import Facts, FileEntry, Manifest, Ssh, Unit, discover, read_manifest

ROOT = Path(__file__).resolve().parents[1]


def entry(path, module="pgsql", actions=(), kind="file", owner="root", group="root", mode="0644"):
    acts = tuple(Action.from_dict(a) for a in actions)
    return FileEntry(path, module, "yaml", "", kind, owner, group, mode, acts)


def manifest(files=(), units=(), modules=("node", "pgsql"), identity=None, address="10.0.0.1") -> Manifest:
    return Manifest(
        address=address,
        nodename="n",
        ssh=Ssh(address),
        platform="debian12",
        package_manager="apt",
        modules=list(modules),
        groups=[],
        identity=identity or {},
        facts=Facts(1, 1, 1),
        files=list(files),
        units=[Unit(u, m) for u, m in units],
    )


def live_of(data: bytes, owner="root", group="root", mode="0644"):
    return P.LiveFile(True, P.sha256(data), owner, group, mode)


# -- what changes --------------------------------------------------------------------------------


def test_unchanged_files_plan_nothing():
    e = entry("/etc/a.conf", actions=[{"action": "reload", "unit": "a.service"}])
    plan = P.plan_module(
        "h",
        "pgsql",
        manifest([e], [("a.service", "pgsql")]),
        {"/etc/a.conf": b"x"},
        {"/etc/a.conf": live_of(b"x")},
        None,
        {"a.service": True},
    )
    assert not plan.changes_anything and plan.summary() == "nothing to do"


def test_content_owner_and_mode_differences_are_detected():
    files = [entry("/a"), entry("/b", owner="postgres", group="postgres"), entry("/c", mode="0600"), entry("/d")]
    desired = {"/a": b"new", "/b": b"same", "/c": b"same", "/d": b"x"}
    live = {"/a": live_of(b"old"), "/b": live_of(b"same"), "/c": live_of(b"same")}
    changes = {c.path: c.reasons for c in P.changed_files(files, desired, live)}
    assert changes == {"/a": ("content",), "/b": ("owner",), "/c": ("mode",), "/d": ("new",)}


def test_blocks_compare_content_only():
    e = entry("/etc/hosts", module="node", kind="block")
    live = {"/etc/hosts": P.LiveFile(True, P.sha256(b"blk"), None, None, None)}
    assert P.changed_files([e], {"/etc/hosts": b"blk"}, live) == []


# -- what activates ------------------------------------------------------------------------------


def test_config_change_reloads_a_running_unit_and_nothing_else():
    change = P.FileChange(
        entry("/etc/haproxy/haproxy.cfg", "node", [{"action": "reload", "unit": "haproxy.service"}]), ("content",)
    )
    steps = P.plan_steps(
        [change],
        [],
        ["haproxy.service", "node_exporter.service"],
        {"haproxy.service": True, "node_exporter.service": True},
    )
    assert steps == [P.Step("reload", "haproxy.service")]


def test_unit_file_change_reloads_systemd_then_restarts():
    unit = entry(
        "/etc/systemd/system/patroni.service",
        actions=[{"action": "daemon-reload"}, {"action": "restart", "unit": "patroni.service"}],
    )
    conf = entry("/etc/patroni/patroni.yml", actions=[{"action": "patroni-reload"}])
    steps = P.plan_steps(
        [P.FileChange(unit, ("content",)), P.FileChange(conf, ("content",))],
        [],
        ["patroni.service"],
        {"patroni.service": True},
    )
    # restarted anyway, so no separate Patroni reload
    assert steps == [P.Step("daemon-reload"), P.Step("restart", "patroni.service")]


def test_units_not_running_are_started_instead_of_restarted():
    conf = entry("/etc/patroni/patroni.yml", actions=[{"action": "patroni-reload"}, {"action": "patroni-dcs-config"}])
    steps = P.plan_steps([P.FileChange(conf, ("new",))], [], ["patroni.service"], {"patroni.service": False})
    assert steps == [P.Step("start", "patroni.service"), P.Step("patroni-dcs-config")]


def test_a_stopped_unit_is_started_even_when_no_file_changed():
    assert P.plan_steps([], [], ["etcd.service"], {"etcd.service": False}) == [P.Step("start", "etcd.service")]


def test_patroni_reload_when_only_its_config_changed():
    conf = entry("/pg/conf/pg_hba.conf", actions=[{"action": "patroni-reload"}])
    steps = P.plan_steps([P.FileChange(conf, ("content",))], [], ["patroni.service"], {"patroni.service": True})
    assert steps == [P.Step("patroni-reload")]


def test_service_of_another_module_is_reloaded():
    svc = entry("/etc/haproxy/conf.d/pg-test-primary.cfg", actions=[{"action": "reload", "unit": "haproxy.service"}])
    steps = P.plan_steps([P.FileChange(svc, ("new",))], [], ["patroni.service"], {"patroni.service": True})
    assert steps == [P.Step("reload", "haproxy.service")]


def test_sql_runs_after_activation():
    sql = entry("/pg/conf/sql/roles.sql", actions=[{"action": "pg-sql-primary"}])
    conf = entry("/etc/patroni/patroni.yml", actions=[{"action": "patroni-reload"}])
    steps = P.plan_steps(
        [P.FileChange(sql, ("new",)), P.FileChange(conf, ("new",))], [], ["patroni.service"], {"patroni.service": False}
    )
    assert steps == [P.Step("start", "patroni.service"), P.Step("pg-sql-primary")]


def test_removed_files_and_their_units():
    record = {
        "files": {
            "/etc/systemd/system/old.service": {"module": "node"},
            "/etc/old.conf": {"module": "node"},
            "/etc/keep.conf": {"module": "node"},
            "/etc/other.conf": {"module": "pgsql"},
        }
    }
    removed = P.removed_files(record, manifest([entry("/etc/keep.conf", "node")]), "node")
    assert [r["path"] for r in removed] == ["/etc/old.conf", "/etc/systemd/system/old.service"]
    steps = P.plan_steps([], removed, [], {})
    assert steps == [P.Step("stop", "old.service"), P.Step("daemon-reload")]


# -- in which order ------------------------------------------------------------------------------


def shipped_manifests() -> dict[str, Manifest]:
    out = ROOT / "outputs"
    return {ip: read_manifest(out / f"{ip}.yml")[0] for ip in discover(out)}


def test_phases_follow_the_modules():
    manifests = shipped_manifests()
    assert P.phases(manifests) == ["node", "infra", "etcd", "pgsql"]
    assert P.phases({"10.10.10.11": manifests["10.10.10.11"]}) == ["node", "pgsql"]
    assert waves("node", manifests) == [["10.10.10.10", "10.10.10.11", "10.10.10.12", "10.10.10.13"]]
    # primaries first (pg-meta-1 and pg-test-1), then the replicas together
    assert waves("pgsql", manifests) == [["10.10.10.10", "10.10.10.11"], ["10.10.10.12", "10.10.10.13"]]


def test_phases_come_from_the_bundles_not_from_the_apply_stage():
    """Modules on different hosts still activate in the compiler's declared order (infra before etcd)."""
    infra = manifest(modules=["node", "infra"], address="10.0.0.1")
    etcd = manifest(modules=["node", "etcd"], address="10.0.0.2")
    infra.phases = etcd.phases = ["node", "infra", "etcd", "pgsql"]
    assert P.phases({"10.0.0.2": etcd, "10.0.0.1": infra}) == ["node", "infra", "etcd"]
    etcd.phases = ["node", "etcd", "infra"]
    with pytest.raises(ValueError, match="disagree"):
        P.phases({"10.0.0.2": etcd, "10.0.0.1": infra})


def test_etcd_members_change_one_at_a_time():
    manifests = {
        f"10.0.0.{i}": manifest(modules=["node", "etcd"], identity={"etcd": {"seq": 4 - i}}, address=f"10.0.0.{i}")
        for i in (1, 2, 3)
    }
    assert waves("etcd", manifests) == [["10.0.0.3"], ["10.0.0.2"], ["10.0.0.1"]]


# -- secrets into formats ------------------------------------------------------------------------


def test_yaml_placeholders_become_quoted_scalars():
    text = "a:\n  password: '<<secret:c/p>>'\n  url: postgres://u:<<secret:c/p>>@h/db\n"
    out = substitute(text, "yaml", {"c/p": 'it\'s: #a "b"'})
    doc = yaml.safe_load(out)
    assert doc["a"]["password"] == 'it\'s: #a "b"'
    assert doc["a"]["url"] == 'postgres://u:it\'s: #a "b"@h/db'


def test_haproxy_and_pgbouncer_escaping():
    assert substitute("stats auth admin:<<secret:x>>\n", "haproxy", {"x": "a b#c"}) == "stats auth admin:a\\ b\\#c\n"
    assert substitute('"u" "<<secret:x>>"\n', "pgbouncer-auth", {"x": 'q"q'}) == '"u" "q""q"\n'
    with pytest.raises(SecretError, match="line break"):
        substitute("x = <<secret:x>>\n", "pgbackrest", {"x": "a\nrepo1-path = /evil"})


def test_missing_and_empty_secrets_are_refused():
    with pytest.raises(SecretError, match="no value"):
        substitute("<<secret:nope>>", "env", {})
    with pytest.raises(SecretError, match="empty"):
        substitute("<<secret:x>>", "env", {"x": ""})
    with pytest.raises(SecretError, match="cannot carry secrets"):
        substitute("<<secret:x>>", "nginx", {"x": "v"})


def test_mask_hides_values_in_diffs():
    live = 'password: "s3cret-value"\n'
    assert mask(live, ["c/p"], "yaml", {"c/p": "s3cret-value"}) == 'password: "<<secret:c/p>>"\n'


# -- the agent on a scratch tree -----------------------------------------------------------------


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setattr(agent, "STATE_DIR", str(state))
    monkeypatch.setattr(agent, "RECORD", str(state / "applied.json"))
    monkeypatch.setattr(agent, "BACKUPS", str(state / "backup"))
    return tmp_path


def stage(root: Path, files: dict[str, bytes]) -> Path:
    st = root / "stage"
    for path, data in files.items():
        p = st / "files" / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return st


def me() -> tuple[str, str]:
    return agent.owner_of(os.stat("/"))


def test_agent_installs_backs_up_and_restores(scratch):
    target = scratch / "etc" / "app.conf"
    target.parent.mkdir()
    target.write_text("old\n")
    new_file = scratch / "etc" / "new.conf"
    st = stage(scratch, {str(target): b"new\n", str(new_file): b"fresh\n"})
    owner, group = me()
    files = [
        {"path": str(p), "kind": "file", "owner": owner, "group": group, "mode": "0640"} for p in (target, new_file)
    ]
    agent.op_install({"run_id": "r1", "stage": str(st), "files": files})
    assert target.read_text() == "new\n" and new_file.read_text() == "fresh\n"
    assert format(target.stat().st_mode & 0o7777, "04o") == "0640"
    state = agent.op_inspect({"files": [{"path": str(target)}]})["files"][str(target)]
    assert state["sha256"] == P.sha256(b"new\n") and state["mode"] == "0640"
    agent.op_restore({"run_id": "r1"})
    assert target.read_text() == "old\n" and not new_file.exists()


def test_agent_manages_only_its_block(scratch):
    hosts = scratch / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    block = "# BEGIN sty: static records\n10.0.0.1 a\n# END sty: static records\n"
    st = stage(scratch, {str(hosts): block.encode()})
    agent.op_install({"run_id": "r2", "stage": str(st), "files": [{"path": str(hosts), "kind": "block"}]})
    assert hosts.read_text() == "127.0.0.1 localhost\n" + block
    newer = block.replace("10.0.0.1 a", "10.0.0.2 b")
    st = stage(scratch, {str(hosts): newer.encode()})
    agent.op_install({"run_id": "r3", "stage": str(st), "files": [{"path": str(hosts), "kind": "block"}]})
    assert hosts.read_text() == "127.0.0.1 localhost\n" + newer  # replaced in place, not appended twice
    inspected = agent.op_inspect({"files": [{"path": str(hosts), "kind": "block"}]})["files"][str(hosts)]
    assert inspected["sha256"] == P.sha256(newer.encode())
    agent.op_remove({"run_id": "r4", "files": [{"path": str(hosts), "kind": "block"}]})
    assert hosts.read_text() == "127.0.0.1 localhost\n"


def test_agent_records_what_was_applied(scratch):
    agent.op_record({"record": {"bundle": "abc", "files": {"/x": {"module": "node"}}}})
    assert agent.op_inspect({"files": []})["record"]["bundle"] == "abc"
    assert json.loads(Path(agent.RECORD).read_text())["files"]["/x"]["module"] == "node"
    assert format(os.stat(agent.RECORD).st_mode & 0o777, "03o") == "600"


# -- facts ---------------------------------------------------------------------------------------


def test_facts_script_runs_here_and_parses():
    import subprocess

    from sty.apply.facts import parse_facts, script

    out = subprocess.run(["sh", "-c", script("/data/does/not/exist")], capture_output=True, text=True, check=True)
    facts = parse_facts(out.stdout)
    assert facts["cpu"] == os.cpu_count() and facts["mem_mb"] > 256 and facts["disk_gb"] >= 1
    assert parse_facts("4\n7950\n100G\n") == {"cpu": 4, "mem_mb": 7950, "disk_gb": 100}
    with pytest.raises(ValueError):
        parse_facts("4\n")
