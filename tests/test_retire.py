"""Retiring hosts and removing modules (Pigsty's `node-rm` and `pgsql-rm`) without real hosts.

The build side runs the real `sty` program on the shipped inventory: a host removed from the inventory keeps a
retirement manifest, which a rebuild leaves alone, re-adding the host replaces and `sty forget` drops. Then the
contract's `retired` field, the apply side's pure planning of removals, and the PGSQL removal hooks against a
scripted Patroni. `sty apply` itself against scripted hosts is in test_retire_apply.py."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import dump_inventory, run_sty, shipped_inventory

from sty.apply import remove as R
from sty.apply.bundle import ApplyError, select_hosts
from sty.apply.handlers import pgsql as PG
from sty.apply.handlers import removal_hooks, remove_note
from sty.compiler.stamps import read_state
from sty.contract.manifest import Facts, FileEntry, Manifest, ManifestError, Ssh, Unit, discover, read_manifest

GONE = "10.10.10.13"
RETIRED_HEAD = re.compile(rf"- {re.escape(GONE)} \(pg-test\): leaves the inventory, (\d+) removed file\(s\)")
RETIRED_NOTE = "    host removed from the inventory: apply stops its services and removes its files (retired)"
ORDER = ["node", "infra", "etcd", "minio", "pgsql", "redis"]

# -- the build side ----------------------------------------------------------------------------------------


def inventory_without(host: str | None) -> dict:
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["hosts"][GONE].update(ansible_user="dba", ansible_port=2222)
    if host:
        del data["all"]["children"]["pg-test"]["hosts"][host]
    return data


def files_under(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def retired(workdir: Path) -> Path:
    """A build of the shipped inventory (10.10.10.13 reached as dba on port 2222), then one without 10.10.10.13."""
    dump_inventory(inventory_without(None), workdir / "pigsty.yml")
    run_sty("build", "-q", cwd=workdir, check_rc=0)
    (workdir / "before.yml").write_bytes((workdir / "outputs" / f"{GONE}.yml").read_bytes())
    dump_inventory(inventory_without(GONE), workdir / "pigsty.yml")
    return workdir


def test_diff_says_the_host_is_retired_and_build_keeps_a_retirement_manifest(retired: Path) -> None:
    out = retired / "outputs"
    diff = run_sty("diff", "--stat", cwd=retired, check_rc=1)
    lines = diff.stdout.splitlines()
    at = next(i for i, x in enumerate(lines) if RETIRED_HEAD.fullmatch(x))
    assert int(RETIRED_HEAD.fullmatch(lines[at])[1]) > 30 and lines[at + 1] == RETIRED_NOTE, diff.stdout
    run_sty("build", "-q", cwd=retired, check_rc=0)
    assert not (out / GONE).exists(), "the bundle's files are deleted"
    doc = yaml.safe_load((out / f"{GONE}.yml").read_text())
    before = yaml.safe_load((retired / "before.yml").read_text())
    assert doc["retired"] is True and doc["address"] == GONE and doc["nodename"] == "pg-test-3"
    assert doc["ssh"] == before["ssh"] == {"host": GONE, "port": 2222, "user": "dba"}
    for key in ("modules", "files", "units", "ports", "packages", "checks", "certificates", "secrets"):
        assert doc[key] == [], key
    assert doc["identity"] == {} and doc["groups"] == ["pg-test"] and doc["phases"] == ORDER
    manifest, _ = read_manifest(out / f"{GONE}.yml")
    assert manifest.retired and manifest.to_dict() == doc
    assert GONE not in discover(out) and GONE in discover(out, retired=True)
    assert select_hosts(out, "pg-test", retired=True) == ["10.10.10.11", "10.10.10.12", GONE]
    assert select_hosts(out, "pg-test") == ["10.10.10.11", "10.10.10.12"]
    for ip in ("10.10.10.10", "10.10.10.11", "10.10.10.12"):
        assert "retired" not in (out / f"{ip}.yml").read_text()
    state = read_state(out)[GONE]
    assert state == {
        "retired": True,
        "files": {f"{GONE}.yml": [(out / f"{GONE}.yml").stat().st_size, state["files"][f"{GONE}.yml"][1]]},
    }


def test_a_rebuild_rewrites_nothing_and_diff_is_clean(retired: Path) -> None:
    run_sty("build", "-q", cwd=retired, check_rc=0)
    outputs, store = files_under(retired / "outputs"), files_under(retired / ".sty")
    for args in (("build",), ("build", "--no-cache")):
        said = run_sty(*args, cwd=retired, check_rc=0).stdout
        assert re.search(r"0 file\(s\) written, 0 removed", said), said
    assert files_under(retired / "outputs") == outputs and files_under(retired / ".sty") == store
    diff = run_sty("diff", cwd=retired, check_rc=0)
    assert "no differences" in diff.stdout and GONE not in diff.stdout


def test_a_fresh_clone_without_state_still_retires_the_host(retired: Path) -> None:
    import shutil

    shutil.rmtree(retired / ".sty")  # the manifests say what sty wrote
    run_sty("build", "-q", cwd=retired, check_rc=0)
    assert read_manifest(retired / "outputs" / f"{GONE}.yml")[0].retired
    assert not (retired / "outputs" / GONE).exists()


def test_a_host_added_back_gets_its_normal_bundle(retired: Path) -> None:
    run_sty("build", "-q", cwd=retired, check_rc=0)
    dump_inventory(inventory_without(None), retired / "pigsty.yml")
    run_sty("build", "-q", cwd=retired, check_rc=0)
    assert (retired / "outputs" / f"{GONE}.yml").read_bytes() == (retired / "before.yml").read_bytes()
    assert (retired / "outputs" / GONE / "etc" / "patroni" / "patroni.yml").is_file()
    assert GONE in discover(retired / "outputs")


def test_an_unreadable_manifest_of_a_removed_host_is_refused_before_anything_is_written(retired: Path) -> None:
    path = retired / "outputs" / f"{GONE}.yml"
    path.write_text(path.read_text().replace("sty_manifest: 1", "sty_manifest: 99"))
    before = files_under(retired / "outputs")
    proc = run_sty("build", cwd=retired, check_rc=2)
    assert f"host {GONE} left the inventory, but its manifest cannot be read" in proc.stderr
    assert "Traceback" not in proc.stderr and files_under(retired / "outputs") == before


def test_forget_drops_only_a_retired_host(retired: Path) -> None:
    run_sty("build", "-q", cwd=retired, check_rc=0)
    refused = [("10.10.10.12", "not a retired host"), ("10.10.10.99", "holds no manifest"), ("../x", "not a host")]
    for host, said in refused:
        proc = run_sty("forget", host, cwd=retired, check_rc=2)
        (line,) = proc.stderr.splitlines()
        assert line.startswith(f"error: {host}: ") and said in line
    assert (retired / "outputs" / "10.10.10.12.yml").is_file()
    run_sty("forget", GONE, cwd=retired, check_rc=0)
    assert not (retired / "outputs" / f"{GONE}.yml").exists()
    assert GONE not in read_state(retired / "outputs")
    said = run_sty("build", cwd=retired, check_rc=0).stdout
    assert re.search(r"0 file\(s\) written, 0 removed", said) and not (retired / "outputs" / f"{GONE}.yml").exists()


# -- the contract ------------------------------------------------------------------------------------------


def retirement_dict() -> dict:
    m = Manifest(GONE, "pg-test-3", Ssh(GONE), "debian12", "apt", [], ["pg-test"], {}, Facts(1, 1, 1), retired=True)
    return m.to_dict()


def test_the_reader_takes_retired_as_a_bool_and_writers_omit_it_when_false() -> None:
    assert Manifest.from_dict(retirement_dict()).retired is True
    live = dict(retirement_dict())
    del live["retired"]
    assert Manifest.from_dict(live).retired is False and "retired" not in Manifest.from_dict(live).to_dict()
    for bad in ("yes", 1, "true"):
        with pytest.raises(ManifestError, match=r"^outputs/x\.yml\.retired must be a bool$"):
            Manifest.from_dict(retirement_dict() | {"retired": bad}, "outputs/x.yml")


@pytest.mark.parametrize("key", ["modules", "files", "units", "packages"])
def test_a_retired_manifest_that_lists_something_to_install_is_refused(key: str) -> None:
    item = {
        "modules": "node",
        "files": {"path": "/etc/x", "module": "node", "format": "yaml"},
        "units": {"name": "x.service", "module": "node"},
        "packages": "haproxy",
    }[key]
    with pytest.raises(ManifestError, match=rf"manifest\.{key} must be empty in the manifest of a retired host"):
        Manifest.from_dict(retirement_dict() | {key: [item]})


def test_discover_leaves_retired_hosts_out_even_beside_a_folder(tmp_path: Path) -> None:
    (tmp_path / GONE / "etc").mkdir(parents=True)  # a file sty did not write keeps the folder
    (tmp_path / f"{GONE}.yml").write_text(yaml.safe_dump(retirement_dict()))
    assert discover(tmp_path) == [] and discover(tmp_path, retired=True) == [GONE]


# -- planning removals -------------------------------------------------------------------------------------


def manifest(ip: str, modules=("node",), files=(), units=(), retired=False, identity=None) -> Manifest:
    return Manifest(
        address=ip,
        nodename=ip,
        ssh=Ssh(ip),
        platform="debian12",
        package_manager="apt",
        modules=[] if retired else list(modules),
        groups=["pg-test"],
        identity=identity or {},
        facts=Facts(1, 1, 1),
        files=list(files),
        units=[Unit(u, m) for u, m in units],
        phases=list(ORDER),
        retired=retired,
    )


def entry(path: str, module: str, **extra) -> FileEntry:
    return FileEntry(path, module, "yaml", "", **extra)


RECORD = {
    "files": {
        "/etc/hosts": {"module": "node", "kind": "block"},
        "/etc/systemd/system/node_exporter.service": {"module": "node"},
        "/etc/etcd/etcd.conf.yml": {"module": "etcd"},
        "/etc/systemd/system/etcd.service": {"module": "etcd"},
        "/etc/patroni/patroni.yml": {"module": "pgsql"},
        "/etc/systemd/system/patroni.service": {"module": "pgsql"},
        "/etc/systemd/system/pgbouncer.service": {"module": "pgsql"},
        "/etc/systemd/system/pgbouncer.service.d/sty.conf": {"module": "pgsql"},
        "/etc/haproxy/conf.d/pg-test-primary.cfg": {"module": "pgsql", "reload": ["haproxy.service"]},
        "/etc/vip-manager.yml": {"module": "pgsql"},
        "/opt/legacy.conf": {"module": "legacy"},
    }
}


def test_removed_modules_are_those_recorded_but_not_in_the_manifest_in_reverse_order() -> None:
    assert R.removed_modules(RECORD, manifest("h", ["node", "etcd", "pgsql"]), ORDER) == ["legacy"]
    assert R.removed_modules(RECORD, manifest("h", ["node", "etcd"]), ORDER) == ["legacy", "pgsql"]
    assert R.removed_modules(RECORD, manifest("h", retired=True), ORDER) == ["legacy", "pgsql", "etcd", "node"]
    assert R.removed_modules(None, manifest("h", retired=True), ORDER) == []
    assert R.removed_modules({"files": ["not", "a", "mapping"]}, manifest("h", retired=True), ORDER) == []


def test_a_host_leaving_its_cluster_stops_the_modules_units_and_reloads_what_it_keeps() -> None:
    keeps = manifest(
        "h",
        ["node", "etcd"],
        files=[entry("/etc/vip-manager.yml", "node")],  # now owned by a module the host keeps: not removed
        units=[("haproxy.service", "node"), ("pgbouncer.service", "node")],
    )
    removal = R.plan_removal("h", "pgsql", RECORD, keeps)
    assert [f["path"] for f in removal.files] == [
        "/etc/haproxy/conf.d/pg-test-primary.cfg",
        "/etc/patroni/patroni.yml",
        "/etc/systemd/system/patroni.service",
        "/etc/systemd/system/pgbouncer.service",
        "/etc/systemd/system/pgbouncer.service.d/sty.conf",
    ]
    assert all(f["kind"] == "file" for f in removal.files)
    assert removal.units == ("patroni.service",)  # pgbouncer.service runs on for the module that kept it
    assert removal.reloads == ("haproxy.service",)
    assert (
        removal.summary() == "remove pgsql (stop patroni.service; 5 file(s); reload haproxy.service; data moved aside)"
    )


def test_a_retired_host_loses_everything_hosts_in_address_order() -> None:
    manifests = {"10.0.0.10": manifest("10.0.0.10", retired=True), "10.0.0.9": manifest("10.0.0.9", ["node"])}
    records = {"10.0.0.10": RECORD, "10.0.0.9": RECORD}
    plan = R.plan_removals(records, manifests, ORDER)
    assert [(r.host, r.module) for r in plan] == [
        ("10.0.0.9", "legacy"),
        ("10.0.0.9", "pgsql"),
        ("10.0.0.9", "etcd"),
        ("10.0.0.10", "legacy"),
        ("10.0.0.10", "pgsql"),
        ("10.0.0.10", "etcd"),
        ("10.0.0.10", "node"),
    ]
    pgsql = plan[4]
    assert pgsql.units == ("patroni.service", "pgbouncer.service") and pgsql.reloads == ()
    assert pgsql.summary() == "remove pgsql (stop patroni.service, pgbouncer.service; 6 file(s); data moved aside)"
    assert plan[-1].summary() == "remove node (stop node_exporter.service; 2 file(s))"
    unread = R.plan_removals({"10.0.0.9": RECORD}, manifests, ORDER)  # 10.0.0.10's record could not be read
    assert [r.host for r in unread] == ["10.0.0.9"] * 3


def test_only_pgsql_declares_removal_hooks() -> None:
    assert removal_hooks("pgsql") == (PG.before_remove, PG.after_remove) and remove_note("pgsql") == "data moved aside"
    for module in ("node", "etcd", "redis", "minio", "infra"):
        assert removal_hooks(module) == (None, None) and remove_note(module) == ""


# -- the PGSQL hooks against a scripted Patroni ------------------------------------------------------------


@dataclass
class Member:
    name: str
    ip: str
    role: str = "Replica"
    state: str = "running"


@dataclass
class PgHost:
    """A RemovalContext: its patroni.yml, a scripted `patronictl list/switchover`, and its data directory."""

    ip: str
    members: dict[str, Member]
    conf: str | None
    dirs: set[str] = field(default_factory=set)
    removing: frozenset[str] = frozenset()
    kept: dict = field(default_factory=dict)
    run_id: str = "20250101T000000-001"
    events: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    manifest: Manifest = field(default_factory=lambda: manifest("x", retired=True))
    desired: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)

    def run(self, command: str, check: bool = True, timeout: float = 600, stdin: str | None = None):
        words = shlex.split(command)
        if command.startswith("cat "):
            return SimpleNamespace(stdout=self.conf or "", stderr="", exited=0 if self.conf else 1)
        if words[0] == "patronictl" and words[3] == "list":
            rows = [
                {"Member": m.name, "Host": m.ip, "Role": m.role, "State": m.state, "TL": 1}
                for m in self.members.values()
            ]
            for row in rows:
                row.update({"Lag in MB": 0} if row["Role"] != "Leader" else {})
            return SimpleNamespace(stdout=json.dumps(rows), stderr="", exited=0)
        if words[0] == "patronictl" and "--help" in words:
            return SimpleNamespace(stdout="  --leader TEXT\n", stderr="", exited=0)
        if words[0] == "patronictl" and words[3] == "switchover":
            old, new = words[words.index("--leader") + 1], words[words.index("--candidate") + 1]
            self.events.append(f"switchover {old} -> {new}")
            self.members[old].role, self.members[new].role = "Replica", "Leader"
            return SimpleNamespace(stdout="Successfully switched over\n", stderr="", exited=0)
        if command.startswith("if [ -e "):
            src, dst = words[3], words[words.index("-T") + 2]
            if src in self.dirs:
                self.dirs.remove(src)
                self.dirs.add(dst)
                self.events.append(f"mv {src} {dst}")
                return SimpleNamespace(stdout="moved\n", stderr="", exited=0)
            return SimpleNamespace(stdout="", stderr="", exited=0)
        raise AssertionError(f"unexpected command {command}")

    def wait(self, probe, timeout: float, what: str) -> None:
        if not any(probe() for _ in range(5)):
            raise ApplyError(f"{what} is not healthy after {timeout:.0f}s")

    def log(self, message: str) -> None:
        self.logs.append(message)


CONF = "scope: pg-test\nname: pg-test-1\npostgresql:\n  data_dir: /data/pg-test\n"


def pg_test(leader_state: str = "running", **roles: str) -> dict[str, Member]:
    members = {"pg-test-1": Member("pg-test-1", "10.0.0.1", "Leader")}
    for i, (name, state) in enumerate(roles.items(), start=2):
        members[name.replace("_", "-")] = Member(name.replace("_", "-"), f"10.0.0.{i}", state=state)
    return members


def test_a_leaving_leader_hands_over_to_a_member_that_stays_then_its_data_is_moved_aside() -> None:
    host = PgHost("10.0.0.1", pg_test(pg_test_2="running", pg_test_3="running"), CONF, {"/data/pg-test"})
    host.removing = frozenset({"10.0.0.1", "10.0.0.2"})  # pg-test-2 leaves too: pg-test-3 takes over
    PG.before_remove(host, "pgsql")
    assert host.events == ["switchover pg-test-1 -> pg-test-3"]
    PG.after_remove(host, "pgsql")
    assert host.events[-1] == "mv /data/pg-test /data/pg-test.removed-20250101T000000-001"
    assert host.dirs == {"/data/pg-test.removed-20250101T000000-001"}
    assert any("moved aside to /data/pg-test.removed-20250101T000000-001" in line for line in host.logs)


def test_a_leader_with_no_member_staying_goes_as_it_is() -> None:
    host = PgHost("10.0.0.1", pg_test(pg_test_2="running"), CONF, {"/data/pg-test"})
    host.removing = frozenset({"10.0.0.1", "10.0.0.2"})
    PG.before_remove(host, "pgsql")
    assert host.events == [] and any("the whole cluster is removed" in line for line in host.logs)


def test_a_leader_whose_staying_members_cannot_take_over_is_refused() -> None:
    host = PgHost("10.0.0.1", pg_test(pg_test_2="stopped"), CONF, {"/data/pg-test"})
    with pytest.raises(ApplyError, match=r"pg-test-1 leads pg-test and no member that stays is a healthy replica"):
        PG.before_remove(host, "pgsql")
    assert host.events == []


def test_a_replica_leaves_without_a_switchover_and_the_default_data_directory_is_used() -> None:
    host = PgHost("10.0.0.2", pg_test(pg_test_2="running"), "scope: pg-test\nname: pg-test-2\n", {"/pg/data"})
    PG.before_remove(host, "pgsql")
    PG.after_remove(host, "pgsql")
    assert host.events == ["mv /pg/data /pg/data.removed-20250101T000000-001"]


def test_a_data_directory_that_is_not_a_plain_absolute_path_is_refused() -> None:
    host = PgHost("10.0.0.2", {}, "scope: pg-test\nname: x\npostgresql:\n  data_dir: /pg/../etc\n")
    with pytest.raises(ApplyError, match="not an absolute normalised path"):
        PG.before_remove(host, "pgsql")
