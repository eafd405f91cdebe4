"""Parallel, streamed builds (compiler/stage.py): worker processes render and stage hosts, and nothing is put in
place until the whole fleet's rules hold. The output is byte-identical for any number of workers, an error found
after staging leaves outputs/ exactly as it was (no temporary file either), and the temporary files of a killed
first build do not make sty refuse its own output directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import run_sty

sys.path.insert(0, str(Path(__file__).parent))
from bench import dump, sized_fleet  # noqa: E402  (the generated fleets of `make bench`)

from sty.compiler import stage  # noqa: E402

HOSTS = 40  # over stage.PARALLEL_FROM, so that workers are forked


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("fleet")
    assert HOSTS >= stage.PARALLEL_FROM
    dump(sized_fleet(HOSTS), work / "pigsty.yml")
    return work


def test_any_number_of_workers_writes_the_same_bytes(fleet_dir: Path) -> None:
    run_sty("build", "-q", "-j", "1", "-o", "one", cwd=fleet_dir, check_rc=0)
    run_sty("build", "-q", "-j", "3", "-o", "three", cwd=fleet_dir, check_rc=0)
    one, three = snapshot(fleet_dir / "one"), snapshot(fleet_dir / "three")
    assert len(one) > HOSTS * 10 and one == three
    assert not [rel for rel in three if rel.endswith(".sty-tmp")]
    run_sty("diff", "--no-cache", "-o", "three", cwd=fleet_dir, check_rc=0)  # the in-memory path agrees


def test_an_error_after_staging_puts_nothing_in_place(fleet_dir: Path) -> None:
    """A PostgreSQL major version change is refused once every host is rendered (a pinned identity): by then
    the workers have staged hundreds of files, and all of them must go."""
    run_sty("build", "-q", "-j", "2", "-o", "pinned", cwd=fleet_dir, check_rc=0)
    before = snapshot(fleet_dir / "pinned")
    text = (fleet_dir / "pigsty.yml").read_text()
    changed = fleet_dir / "upgrade"
    changed.mkdir(exist_ok=True)
    (changed / "pigsty.yml").write_text(text.replace("pg_version: 15", "pg_version: 16"))
    os.rename(fleet_dir / "pinned", changed / "pinned")
    os.makedirs(changed / ".sty", exist_ok=True)
    os.rename(fleet_dir / ".sty" / "pinned", changed / ".sty" / "pinned")
    proc = run_sty("build", "-j", "2", "-o", "pinned", cwd=changed)
    assert proc.returncode == 2 and "pg_version" in proc.stderr, proc.stderr
    assert snapshot(changed / "pinned") == before
    leftovers = [p for p in (changed / "pinned").rglob("*") if p.name.endswith(".sty-tmp")]
    assert not leftovers


def test_a_fresh_output_directory_is_not_made_when_the_build_fails(fleet_dir: Path, tmp_path: Path) -> None:
    """Two members of one cluster with different replication passwords: found only after rendering."""
    text = (fleet_dir / "pigsty.yml").read_text()
    marker = "pg_role: replica\n"
    at = text.index(marker) + len(marker)
    indent = " " * (len(text[: text.index(marker)].rsplit("\n", 1)[1]))
    (tmp_path / "pigsty.yml").write_text(text[:at] + f"{indent}pg_replication_password: Other.One.42\n" + text[at:])
    proc = run_sty("build", "-j", "2", "-o", "fresh", cwd=tmp_path)
    # the rule that runs over the rendered bundles, after the workers staged them
    assert proc.returncode == 2 and "pg_replication_password has a different value here" in proc.stderr, proc.stderr
    assert not (tmp_path / "fresh").exists()


def test_the_leftovers_of_a_killed_first_build_are_sty_s_own(tmp_path: Path) -> None:
    """A first build killed while staging leaves host directories holding only temporary files and no state:
    the next build takes the directory (it is sty's) and removes them."""
    from conftest import SHIPPED

    (tmp_path / "pigsty.yml").write_bytes(SHIPPED.read_bytes())
    leftover = tmp_path / "outputs" / "10.10.10.11" / "etc"
    leftover.mkdir(parents=True)
    (leftover / ".hosts.4242.0123456789ab.sty-tmp").write_text("half")
    run_sty("build", "-q", cwd=tmp_path, check_rc=0)
    assert not (leftover / ".hosts.4242.0123456789ab.sty-tmp").exists()
    assert (leftover / "hosts").is_file()
    (tmp_path / "outputs" / "mine").mkdir()
    (tmp_path / "outputs" / "mine" / "notes.txt").write_text("not sty's\n")
    (tmp_path / ".sty" / "outputs" / "state.jsonl").unlink()
    os.remove(tmp_path / "outputs" / "10.10.10.11.yml")
    for manifest in (tmp_path / "outputs").glob("*.yml"):
        manifest.unlink()
    proc = run_sty("build", cwd=tmp_path)
    assert proc.returncode == 2 and "sty never built into it" in proc.stderr  # a real foreign file still refuses


def test_a_diff_in_workers_says_what_one_process_says(fleet_dir: Path, tmp_path: Path) -> None:
    """`sty diff` compares hosts in worker processes and sends back only what differs: the plan, the unified
    diffs and the files sty did not write must be those of a diff done in one process, for a fleet where hosts
    change, one is new, one leaves and one has a file of the user's."""
    import yaml

    from sty.compiler.diff import diff
    from sty.compiler.pipeline import compile_fleet

    run_sty("build", "-q", "-o", "out", cwd=fleet_dir, check_rc=0)
    data = yaml.safe_load((fleet_dir / "pigsty.yml").read_text())
    children = data["all"]["children"]
    children["pg-c001"]["vars"]["pg_parameters"] = {"max_connections": 300, "work_mem": "8MB"}
    gone = next(iter(children["nodes"]["hosts"]))
    del children["nodes"]["hosts"][gone]
    children["nodes"]["hosts"]["10.0.9.9"] = {}
    dump(data, tmp_path / "pigsty.yml")
    user_file = fleet_dir / "out" / "10.0.0.20" / "etc" / "mine.conf"
    user_file.write_text("mine\n")
    try:
        compiled = compile_fleet(tmp_path / "pigsty.yml")
        one = diff(compiled, fleet_dir / "out", jobs=1, use_cache=False)
        two = diff(compiled, fleet_dir / "out", jobs=2, use_cache=False)
    finally:
        user_file.unlink()
    assert one.plan.as_json() == two.plan.as_json() and one.diffs == two.diffs and one.foreign == two.foreign
    statuses = {hp.host: hp.status for hp in two.plan.hosts}
    assert statuses["10.0.9.9"] == "add" and statuses[gone] == "retire"
    assert any("rolling restart of pg-c001" in a.label for hp in two.plan.hosts for a in hp.activations)
    assert two.foreign == {"10.0.0.20": ["10.0.0.20/etc/mine.conf"]}


def test_workers_keep_a_heap_the_command_froze_for_good() -> None:
    """The console command freezes its compiled fleet for the rest of the process (sty/cli/common.py), so that
    full collections stop walking it; forking the workers must not thaw it. In-process callers (tests) that
    froze nothing get their heap back as it was."""
    import gc

    ips = [f"10.0.0.{i}" for i in range(1, 9)]
    assert gc.get_freeze_count() == 0
    assert stage.in_workers(lambda chunk: list(chunk), ips, jobs=2) == ips
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        assert stage.in_workers(lambda chunk: [ip.upper() for ip in chunk], ips, jobs=2) == ips
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_check_split_over_two_processes_answers_as_one() -> None:
    """`processes.in_two`: the first half here, the second in a forked child, both answers in order; a false
    first answer ends the child; a child that fails leaves its half to this process."""
    import os

    from sty.compiler import processes

    items = list(range(5000))
    assert processes.in_two(items, lambda part: ("sum", sum(part))) == [
        ("sum", sum(range(2500))),
        ("sum", sum(range(2500, 5000))),
    ]
    assert processes.in_two(items, lambda part: ("pid", os.getpid()))[1][1] != os.getpid()  # a second process
    assert processes.in_two(items, lambda part: part[0] != 0 and ("late", part[0])) == [False]
    here = os.getpid()
    answers = processes.in_two(items, lambda part: ("ok", len(part)) if os.getpid() == here else os._exit(3))
    assert answers == [("ok", 2500), ("ok", 2500)]  # the child died: its half was checked here
    assert processes.in_two(items[:10], lambda part: ("one", len(part))) == [("one", 10)]  # too few to split


def test_a_process_with_other_threads_running_does_not_fork_to_split_a_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork copies the other threads' locks as they are (a store's PBKDF2 pool, a caller's own threads): with any
    running, `in_two` checks everything in this process."""
    import os
    import threading

    from sty.compiler import processes

    def no_fork() -> int:
        raise AssertionError("forked with another thread running")

    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        monkeypatch.setattr(os, "fork", no_fork)
        assert processes.in_two(list(range(5000)), lambda part: ("all", len(part))) == [("all", 5000)]
    finally:
        release.set()
        other.join()
