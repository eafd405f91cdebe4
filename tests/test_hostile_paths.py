"""Issue 12, file-system safety: inventories and output trees come from pull requests and sty runs as root.

One regression test per finding (names that climb out of the bundle, symlinks in the output tree, an
output directory sty does not own, concurrent and killed builds, the on-host agent), a concurrency
test and a hostile output-tree fuzz test. Every refusal must be exit 2 or 3 with one `error:` sentence,
never a traceback, and nothing outside the output directory may change.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import SHIPPED, dump_inventory, run_sty, shipped_inventory, sty_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sty.apply import agent
from sty.compiler.bundle import FileSpec, HostBundle
from sty.compiler.render import RenderError

NOBODY = 65534


def refused(proc: subprocess.CompletedProcess, codes: tuple[int, ...] = (2,)) -> None:
    assert proc.returncode in codes, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert "error:" in proc.stderr, proc.stderr


def snapshot(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry below root, without following links: kind and content (or link value)."""
    out: dict[str, tuple[str, bytes]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p).encode())
            elif p.is_dir():
                out[rel] = ("dir", b"")
            elif p.is_file():
                out[rel] = ("file", p.read_bytes())
            else:
                out[rel] = ("other", b"")
    return out


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the work directory that no build may touch."""
    out = tmp_path / "outside"
    (out / "etc").mkdir(parents=True)
    (out / "etc" / "hosts").write_text("precious\n")
    (out / "etc" / "resolv.conf").write_text("nameserver 192.0.2.1\n")
    (out / "10.10.10.99").mkdir()
    (out / "10.10.10.99" / "keep").write_text("keep\n")
    return out


# -- 1. names that become path components -------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    ["pg_services", "haproxy_services", "pg_databases", "infra_portal", "node_cluster", "dns_hosts_dir"],
)
def test_inventory_names_cannot_climb_out_of_the_bundle(tmp_path: Path, where: str) -> None:
    escaped = Path(f"/tmp/ESCAPED-{uuid.uuid4().hex}")
    evil = f"x/../../../../../../..{escaped}"
    data = shipped_inventory()
    pg_test = data["all"]["children"]["pg-test"]["vars"]
    if where == "pg_services":
        pg_test["pg_services"] = [{"name": evil, "port": 5499, "dest": "default", "selector": "[]"}]
    elif where == "haproxy_services":
        pg_test["haproxy_services"] = [{"name": evil, "port": 5499, "servers": []}]
    elif where == "pg_databases":
        pg_test["pg_databases"] = [{"name": evil}]
    elif where == "infra_portal":
        data["all"]["vars"]["infra_portal"] = {evil: {"domain": "x.pigsty"}}
    elif where == "node_cluster":
        pg_test["node_cluster"] = evil
    else:
        data["all"]["vars"]["dns_hosts_dir"] = f"/etc/hosts.d/../../..{escaped.parent}"
    dump_inventory(data, tmp_path / "pigsty.yml")
    proc = run_sty("build", "-o", "out", cwd=tmp_path)
    refused(proc)
    assert not list(escaped.parent.glob(f"{escaped.name}*"))
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.cfg"))


def test_bundle_refuses_paths_that_are_not_absolute_and_normalised() -> None:
    bundle = HostBundle("10.10.10.10")
    for path in ["etc/x", "/etc/../x", "//etc/x", "/etc//x", "/etc/x/", "/etc/./x", "/etc/x\n", "/etc/\x00x", "/"]:
        with pytest.raises(RenderError):
            bundle.add(FileSpec(path, "node", "x", "env"))
    bundle.add(FileSpec("/etc/x.conf", "node", "x", "env"))


# -- 2. symlinks in the output tree --------------------------------------------------------------------


def test_a_symlink_in_the_output_tree_is_never_followed(built: Path, outside: Path) -> None:
    before = snapshot(outside)
    etc = built / "outputs" / "10.10.10.11" / "etc"
    shutil.rmtree(etc)
    etc.symlink_to(os.path.relpath(outside / "etc", etc.parent))
    refused(run_sty("build", cwd=built))
    refused(run_sty("build", "--no-cache", cwd=built))
    refused(run_sty("diff", cwd=built))
    assert snapshot(outside) == before


def test_a_removed_host_whose_directory_is_a_symlink_deletes_nothing(built: Path, outside: Path) -> None:
    before = snapshot(outside)
    (built / "outputs" / "10.10.10.99").symlink_to(outside / "10.10.10.99")
    refused(run_sty("build", cwd=built))
    assert snapshot(outside) == before
    assert (outside / "10.10.10.99" / "keep").read_text() == "keep\n"


def test_a_symlinked_file_is_not_written_through(built: Path, outside: Path) -> None:
    before = snapshot(outside)
    target = built / "outputs" / "10.10.10.12" / "etc" / "hosts"
    target.unlink()
    target.symlink_to(outside / "etc" / "hosts")
    refused(run_sty("build", cwd=built))
    assert snapshot(outside) == before


def test_a_symlinked_output_directory_is_refused(workdir: Path, outside: Path) -> None:
    (workdir / "outputs").symlink_to(outside)
    before = snapshot(outside)
    refused(run_sty("build", cwd=workdir))
    assert snapshot(outside) == before


# -- 3. output directories sty does not own -------------------------------------------------------------


def test_a_foreign_directory_is_refused_and_left_alone(workdir: Path) -> None:
    foreign = workdir / "srv"
    (foreign / "10.1.2.3").mkdir(parents=True)
    (foreign / "10.1.2.3" / "data").write_text("data\n")
    (foreign / "10.1.2.4.yml").write_text("mine: true\n")
    before = snapshot(foreign)
    refused(run_sty("build", "-o", "srv", cwd=workdir))
    assert snapshot(foreign) == before


@pytest.mark.parametrize("outdir", [".", "/", "sub/.."])
def test_the_root_or_the_inventory_directory_is_refused(workdir: Path, outdir: str) -> None:
    before = snapshot(workdir)
    refused(run_sty("build", "-o", outdir, cwd=workdir))
    assert snapshot(workdir) == before
    assert not Path("/.sty").exists()


def test_only_files_sty_recorded_writing_are_deleted(built: Path) -> None:
    out = built / "outputs"
    mine = out / "10.10.10.11" / "etc" / "mine.conf"
    mine.write_text("mine\n")
    theirs = out / "10.10.10.13" / "etc" / "theirs.conf"
    theirs.write_text("theirs\n")
    data = shipped_inventory()
    del data["all"]["children"]["pg-test"]["hosts"]["10.10.10.13"]
    dump_inventory(data, built / "pigsty.yml")
    diff = run_sty("diff", cwd=built)
    assert diff.returncode == 1  # the removed host's bundle is a change; the user's files are not
    assert "mine.conf" not in diff.stdout and "theirs.conf" not in diff.stdout
    assert "10.10.10.11: 1 file(s) sty did not write, left alone and never shipped: 10.10.10.11/etc/mine.conf" in (
        diff.stderr
    )
    assert "10.10.10.13/etc/theirs.conf" in diff.stderr and "-precious" not in diff.stdout
    run_sty("build", cwd=built, check_rc=0)
    assert mine.read_text() == "mine\n" and theirs.read_text() == "theirs\n"
    assert "retired: true" in (out / "10.10.10.13.yml").read_text()  # the bundle went, a retirement manifest stays
    assert not (out / "10.10.10.13" / "etc" / "hosts").exists()
    after = run_sty("diff", cwd=built)
    assert after.returncode == 0 and "no differences" in after.stdout, after.stdout
    assert "10.10.10.13: 1 file(s) sty did not write" in after.stderr
    assert "host removed" not in after.stdout  # nothing of sty's is left there to remove


def test_a_fresh_clone_without_state_is_adopted_through_its_manifests(built: Path) -> None:
    """`make clean` (or a fresh clone) leaves outputs/ without .sty: the manifests say what sty wrote."""
    shutil.rmtree(built / ".sty")
    stale = built / "outputs" / "10.10.10.11" / "etc" / "hosts"
    data = shipped_inventory()
    data["all"]["vars"]["node_etc_hosts"] = ["10.10.10.98 adopt.test"]
    dump_inventory(data, built / "pigsty.yml")
    run_sty("build", cwd=built, check_rc=0)
    assert "adopt.test" in stale.read_text()
    run_sty("diff", cwd=built, check_rc=0)


# -- 4/5. concurrent and killed builds ------------------------------------------------------------------


def _launch(cwd: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, LC_ALL="C.UTF-8")
    return subprocess.Popen(
        [*sty_command(), "build", "-q", "-o", "shared", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_concurrent_builds_into_one_directory(workdir: Path) -> None:
    run_sty("build", "-q", "-o", "shared", cwd=workdir, check_rc=0)
    victim = workdir / "shared" / "10.10.10.12" / "etc" / "hosts"
    for round_ in range(20):
        if round_ % 3 == 1:  # something for the builds to repair, so that they write at the same time
            victim.write_text(f"tampered {round_}\n")
        procs = [_launch(workdir, *(["--no-cache"] if i == 0 and round_ % 3 == 1 else [])) for i in range(4)]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert "Traceback" not in err
    run_sty("diff", "-o", "shared", cwd=workdir, check_rc=0)
    stats = run_sty("build", "-o", "shared", cwd=workdir, check_rc=0).stdout
    assert "0 rendered" in stats and "0 file(s) written" in stats
    assert not [p for p in (workdir / "shared").rglob("*") if "sty-tmp" in p.name]
    assert not (workdir / ".sty" / "shared" / "lock").exists()


@pytest.mark.slow
def test_a_killed_build_leaves_no_partial_file(workdir: Path, built_template: Path) -> None:
    reference = snapshot(built_template / "outputs")
    for delay in (0.6, 0.9, 1.2, 1.5):
        proc = _launch(workdir, "--no-cache")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        for rel, (kind, content) in snapshot(workdir / "shared").items():
            if kind == "file" and not rel.rpartition("/")[2].startswith("."):
                assert content == reference[rel][1], f"{rel} is partial after a kill at {delay} s"
    run_sty("build", "-q", "-o", "shared", cwd=workdir, check_rc=0)
    run_sty("diff", "-o", "shared", cwd=workdir, check_rc=0)


# -- hostile output-tree fuzz ---------------------------------------------------------------------------

_SPOTS = [
    "10.10.10.11",
    "10.10.10.11.yml",
    "10.10.10.11/etc",
    "10.10.10.11/etc/hosts",
    "10.10.10.12/etc/haproxy",
    "10.10.10.12/etc/haproxy/haproxy.cfg",
    "10.10.10.12/etc/haproxy/conf.d",
    "10.10.10.13/pg",
    "10.10.10.13/pg/conf/pg_hba.conf",
    "10.10.10.10/etc/nginx",
    "10.10.10.99",
    "10.10.10.99.yml",
    "10.10.10.99/etc",
    "README",
]
_PLANT = st.tuples(
    st.sampled_from(_SPOTS),
    st.sampled_from(["link-out-dir", "link-out-file", "link-rel", "link-dangling", "dir", "file", "fifo"]),
)


def _plant(out: Path, outside: Path, spot: str, kind: str, planted: dict[Path, bytes]) -> None:
    path = out / spot
    for gone in [k for k in planted if k == path or path in k.parents]:
        del planted[gone]  # replaced by this plant: the test itself removes it
    if path.is_symlink() or path.is_file() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    try:  # an earlier plant may have made an ancestor a link or a file: then there is nothing to plant here
        if any(p.is_symlink() for p in path.parents if out in p.parents):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    if not path.parent.is_dir():
        return
    if kind == "link-out-dir":
        path.symlink_to(outside / "etc")
    elif kind == "link-out-file":
        path.symlink_to(outside / "etc" / "hosts")
    elif kind == "link-rel":
        path.symlink_to(os.path.relpath(outside, path.parent))
    elif kind == "link-dangling":
        path.symlink_to(outside / "nowhere")
    elif kind == "dir":
        path.mkdir()
        (path / "planted.txt").write_text("planted\n")
        planted[path / "planted.txt"] = b"planted\n"
    elif kind == "file":
        side = path.with_name(path.name + ".planted")
        side.write_text("planted\n")
        planted[side] = b"planted\n"
    else:
        os.mkfifo(path)


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plants=st.lists(_PLANT, min_size=1, max_size=4), drop_state=st.booleans(), no_cache=st.booleans())
def test_hostile_output_tree_fuzz(built_template: Path, plants: list, drop_state: bool, no_cache: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        work = base / "work"
        shutil.copytree(built_template, work, symlinks=True, copy_function=shutil.copy2)
        outside = base / "outside"
        (outside / "etc").mkdir(parents=True)
        (outside / "etc" / "hosts").write_text("precious\n")
        if drop_state:
            shutil.rmtree(work / ".sty")
        planted: dict[Path, bytes] = {}
        for spot, kind in plants:
            _plant(work / "outputs", outside, spot, kind, planted)
        before = snapshot(outside)
        proc = run_sty("build", *(["--no-cache"] if no_cache else []), cwd=work)
        assert proc.returncode in (0, 2, 3), proc.stderr
        assert "Traceback" not in proc.stderr
        if proc.returncode:
            assert "error:" in proc.stderr
        assert snapshot(outside) == before
        for path, content in planted.items():
            assert path.read_bytes() == content, f"{path} was deleted or changed"


# -- 6. the on-host agent ----------------------------------------------------------------------------------


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "state"
    monkeypatch.setattr(agent, "STATE_DIR", str(state))
    monkeypatch.setattr(agent, "RECORD", str(state / "applied.json"))
    monkeypatch.setattr(agent, "BACKUPS", str(state / "backup"))
    return tmp_path


def _stage(root: Path, files: dict[str, bytes]) -> Path:
    st_ = root / "stage"
    for path, data in files.items():
        p = st_ / "files" / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return st_


def _file(path: Path | str, mode: str = "0644") -> dict[str, Any]:
    owner, group = agent.owner_of(os.stat("/"))
    return {"path": str(path), "kind": "file", "owner": owner, "group": group, "mode": mode}


@pytest.mark.parametrize("bad", ["etc/x", "/etc/../x", "//etc/x", "/etc/x/", "/etc/./x", "/etc/x\n", "/"])
def test_agent_refuses_targets_that_are_not_absolute_normalised_paths(scratch: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        agent.op_install({"run_id": "r", "stage": str(scratch / "stage"), "files": [_file(bad)]})
    with pytest.raises(ValueError):
        agent.op_remove({"run_id": "r", "files": [_file(bad)]})


def test_agent_does_not_write_through_a_planted_link(scratch: Path) -> None:
    secret = scratch / "shadow"
    secret.write_text("root:x\n")
    conf = scratch / "pg" / "conf"
    conf.mkdir(parents=True)
    link = conf / "pg_hba.conf"
    link.symlink_to(secret)
    os.lchown(link, NOBODY, NOBODY)  # as if the dbsu had planted it
    st_ = _stage(scratch, {str(link): b"evil\n"})
    with pytest.raises(ValueError):
        agent.op_install({"run_id": "r1", "stage": str(st_), "files": [_file(link)]})
    assert secret.read_text() == "root:x\n" and link.is_symlink()


def test_agent_does_not_follow_a_planted_parent_link(scratch: Path) -> None:
    real = scratch / "etc-real"
    real.mkdir()
    (scratch / "pg").mkdir()
    parent = scratch / "pg" / "conf"
    parent.symlink_to(real)
    os.lchown(parent, NOBODY, NOBODY)
    st_ = _stage(scratch, {str(parent / "x.conf"): b"x\n"})
    with pytest.raises(ValueError):
        agent.op_install({"run_id": "r2", "stage": str(st_), "files": [_file(parent / "x.conf")]})
    assert not (real / "x.conf").exists()
    with pytest.raises(ValueError):
        agent.op_ensure(
            {"directories": [{"path": str(parent / "d"), "owner": "root", "group": "root", "mode": "0700"}]}
        )


def test_agent_replaces_a_root_made_link_and_restores_it(scratch: Path) -> None:
    target = scratch / "run-resolv.conf"
    target.write_text("nameserver 127.0.0.53\n")
    link = scratch / "resolv.conf"
    link.symlink_to(target)
    st_ = _stage(scratch, {str(link): b"nameserver 10.10.10.10\n"})
    agent.op_install({"run_id": "r3", "stage": str(st_), "files": [_file(link)]})
    assert not link.is_symlink() and link.read_text() == "nameserver 10.10.10.10\n"
    assert target.read_text() == "nameserver 127.0.0.53\n"  # the link's target was not written through
    agent.op_restore({"run_id": "r3"})
    assert link.is_symlink() and os.readlink(link) == str(target)


def test_agent_remove_unlinks_a_link_not_its_target(scratch: Path) -> None:
    target = scratch / "keep.conf"
    target.write_text("keep\n")
    link = scratch / "old.conf"
    link.symlink_to(target)
    agent.op_remove({"run_id": "r4", "files": [_file(link)]})
    assert not os.path.lexists(link) and target.read_text() == "keep\n"
    agent.op_restore({"run_id": "r4"})
    assert link.is_symlink() and target.read_text() == "keep\n"


def test_shipped_inventory_is_unchanged_by_the_name_patterns() -> None:
    """The patterns accept every name of the shipped inventory (outputs/ stays byte-identical)."""
    proc = run_sty("diff", "--stat", "-i", str(SHIPPED), "-o", str(SHIPPED.parent / "outputs"), cwd=SHIPPED.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
