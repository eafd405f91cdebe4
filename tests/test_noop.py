"""The whole-fleet shortcut (compiler/noop.py): `sty build` and `sty diff` with the last build's inputs and its
files in place answer without compiling, and say exactly what the full path would; anything changed (the
inventory, secrets.yml or its mode, a facts file, a switch, an output file, the secret store, a limited build in
between) takes the full path again.

The shortcut is proven taken by running the command line in-process with the compiler's entry point replaced by
one that fails the test; the full path is proven taken by the same entry point being called."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SHIPPED

from sty.cli import main
from sty.compiler import pipeline


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with the shipped inventory, built once (the record written), as the current directory."""
    shutil.copy(SHIPPED, tmp_path / "pigsty.yml")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["build"])
    assert result.exit_code == 0, result.output
    return tmp_path


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the full compiles of the commands run after it (the real compiler still runs)."""
    calls: list[int] = []
    real = pipeline.compile_fleet

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "compile_fleet", counted)
    return calls


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_second_build_says_what_the_full_path_says_without_compiling(work: Path, compiles: list[int]) -> None:
    full = CliRunner().invoke(main, ["build", "--no-cache"])  # the full path, as a reference
    assert compiles == [1]
    code, out, err = run("build")
    assert compiles == [1], "the unchanged build compiled the fleet"
    assert code == 0
    assert out == "4 host(s): 0 rendered, 4 unchanged inputs; 0 file(s) written, 0 removed, 0 unchanged\n"
    assert err == full.stderr and "warning:" in err  # the recorded problems, printed as the full path prints them
    record = json.loads((work / ".sty" / "outputs" / "noop.json").read_text())
    assert record["hosts"] == 4 and len(record["fingerprint"]) == 64
    lines = (work / ".sty" / "outputs" / "state.jsonl").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["10.10.10.10", "10.10.10.11", "10.10.10.12", "10.10.10.13"]
    assert not (work / ".sty" / "outputs" / "stamps.jsonl").exists()  # the stamps are the state's, kept once


def test_a_diff_with_nothing_changed_answers_from_the_record(work: Path, compiles: list[int]) -> None:
    (work / "outputs" / "10.10.10.11" / "etc" / "notes.txt").write_text("mine\n")
    code, out, err = run("diff")
    assert compiles == [] and code == 0 and out == "no differences\n"
    assert "note: 10.10.10.11: 1 file(s) sty did not write" in err and "10.10.10.11/etc/notes.txt" in err
    code, out, _ = run("diff", "--json")
    doc = json.loads(out)
    assert compiles == [] and code == 0
    assert doc["plan"]["totals"]["unchanged"] == 4 and not doc["plan"]["hosts"] and doc["diffs"] == {}
    assert doc["foreign"] == {"10.10.10.11": ["/etc/notes.txt"]}
    assert {p["severity"] for p in doc["problems"]} == {"warning"}


@pytest.mark.parametrize(
    "change",
    [
        "inventory",
        "secrets file",
        "secrets mode",
        "facts",
        "output file",
        "store",
        "limited build",
    ],
)
def test_any_changed_input_or_output_takes_the_full_path(work: Path, compiles: list[int], change: str) -> None:
    out = work / "outputs"
    if change == "inventory":
        (work / "pigsty.yml").write_text((work / "pigsty.yml").read_text() + "\n# a comment changes the bytes\n")
    elif change == "secrets file":
        (work / "secrets.yml").write_text("pg_admin_password: Another.One\n")
        os.chmod(work / "secrets.yml", 0o600)
    elif change == "secrets mode":
        (work / "secrets.yml").write_text("pg_admin_password: Another.One\n")
        os.chmod(work / "secrets.yml", 0o600)
        assert run("build")[0] == 0
        compiles.clear()
        os.chmod(work / "secrets.yml", 0o644)
    elif change == "facts":
        (work / "facts").mkdir()
        (work / "facts" / "10.10.10.11.yml").write_text("cpu: 8\nmem_mb: 32768\ndisk_gb: 200\n")
    elif change == "output file":
        edited = out / "10.10.10.11" / "etc" / "hosts"
        original = edited.read_bytes()
        edited.write_bytes(original + b"10.0.0.66 planted\n")
    elif change == "store":
        (work / ".sty" / "outputs" / "secrets.yml").unlink()
    elif change == "limited build":
        assert run("build", "--limit", "10.10.10.11")[0] == 0
        compiles.clear()
    code, _, err = run("build")
    assert code == 0, err
    assert compiles == [1], f"a build after a changed {change} took the shortcut"
    if change == "secrets mode":
        assert "readable by group or others" in err
    if change == "output file":
        assert edited.read_bytes() == original  # the full path put the bundle's file back
    code, _, _ = run("build")
    assert code == 0 and compiles == [1], "the build after the full one did not take the shortcut again"


def test_a_switch_that_changes_what_is_an_error_is_part_of_the_fingerprint(work: Path, compiles: list[int]) -> None:
    """The shipped inventory warns of published passwords: with --strict-secrets they are errors, and the
    recorded success of the plain build must not answer for it."""
    code, _, err = run("build", "--strict-secrets")
    assert code == 2 and compiles == [1] and "error:" in err
    code, _, _ = run("build")
    assert code == 0 and compiles == [1]  # the record of the plain build still holds


def test_no_cache_always_compiles(work: Path, compiles: list[int]) -> None:
    assert run("build", "--no-cache")[0] == 0 and compiles == [1]
    assert run("diff", "--no-cache")[0] == 0 and compiles == [1, 1]


def test_a_stored_verifier_checked_once_is_not_checked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret store keeps a salted SCRAM verifier per user; that it still accepts the user's password is
    checked with PBKDF2 once, then remembered (verified.json) for as long as the password does not change."""
    import hashlib

    from sty.contract import store

    out = tmp_path / "outputs"
    out.mkdir()
    user = store.ScramSecret(store.scram_verifier("pw-1", seed="pg-a"), "pw-1")
    store.write_store(out, {"pg-a/u": user})
    salted = store.read_store(out)["pg-a/u"]
    assert salted != str(user) and store.scram_accepts(salted, "pw-1")
    calls: list[int] = []
    real = hashlib.pbkdf2_hmac
    monkeypatch.setattr(hashlib, "pbkdf2_hmac", lambda *a, **k: calls.append(1) or real(*a, **k))
    store.write_store(out, {"pg-a/u": user})
    assert calls == [] and store.read_store(out)["pg-a/u"] == salted
    memo = store.store_dir(out) / store.MEMO
    memo.write_text(json.dumps({"pg-a/u": "0" * 64}))  # a memo that does not match is not trusted
    store.write_store(out, {"pg-a/u": user})
    assert calls and store.read_store(out)["pg-a/u"] == salted  # checked again, and still good
    calls.clear()
    changed = store.ScramSecret(store.scram_verifier("pw-2", seed="pg-a"), "pw-2")
    store.write_store(out, {"pg-a/u": changed})
    now = store.read_store(out)["pg-a/u"]
    assert calls and now != salted and store.scram_accepts(now, "pw-2") and not store.scram_accepts(now, "pw-1")


def test_a_verifier_carried_over_for_a_skipped_host_stays_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build that re-renders one cluster passes the other clusters' stored verifiers through as plain values;
    their memo must survive it, or the next full build pays a PBKDF2 per user again (1.4 s at 1000 hosts)."""
    import hashlib

    from sty.contract import store

    out = tmp_path / "outputs"
    out.mkdir()
    a = store.ScramSecret(store.scram_verifier("pw-a", seed="pg-a"), "pw-a")
    b = store.ScramSecret(store.scram_verifier("pw-b", seed="pg-b"), "pw-b")
    store.write_store(out, {"pg-a/u": a, "pg-b/u": b})
    stored = store.read_store(out)
    store.write_store(out, {"pg-a/u": a, "pg-b/u": stored["pg-b/u"]}, stored)  # pg-b skipped as unchanged
    memo = json.loads((store.store_dir(out) / store.MEMO).read_text())
    assert set(memo) == {"pg-a/u", "pg-b/u"}
    calls: list[int] = []
    real = hashlib.pbkdf2_hmac
    monkeypatch.setattr(hashlib, "pbkdf2_hmac", lambda *a, **k: calls.append(1) or real(*a, **k))
    store.write_store(out, {"pg-a/u": a, "pg-b/u": b})  # the next whole build
    assert calls == [] and store.read_store(out) == stored
    store.write_store(out, {"pg-a/u": a, "pg-b/u": "a new value"}, stored)  # a value that changed loses its memo
    assert set(json.loads((store.store_dir(out) / store.MEMO).read_text())) == {"pg-a/u"}


def test_a_begun_store_computes_beside_the_file_writes_and_writes_nothing_until_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build begins the store update before it puts its files in place, so that the fresh verifiers' PBKDF2
    runs in threads meanwhile; nothing is written before `finish`, and a cancelled update writes nothing."""
    import threading

    from sty.contract import store

    out = tmp_path / "outputs"
    out.mkdir()
    users = {f"pg-a/u{i}": store.ScramSecret(store.render_verifier(f"pw-{i}", "pg-a"), f"pw-{i}") for i in range(12)}
    workers: set[str] = set()
    real = store._stored_value
    monkeypatch.setattr(store, "_stored_value", lambda *a: workers.add(threading.current_thread().name) or real(*a))
    path = store.store_dir(out) / "secrets.yml"
    pending = store.begin_store(out, {**users, "pg-a/plain": "text"})
    assert not path.exists()  # computing, not written
    pending.finish()
    stored = store.read_store(out)
    assert workers and threading.current_thread().name not in workers  # salted in the pool's threads
    assert stored["pg-a/plain"] == "text" and all(store.scram_accepts(stored[n], f"pw-{n[6:]}") for n in users)
    # a host gets PostgreSQL's 4096 rounds; the render-time value, never shipped, is made with one
    assert all(stored[n].startswith("SCRAM-SHA-256$4096:") and users[n].startswith("SCRAM-SHA-256$1:") for n in users)
    cancelled = store.begin_store(out, {"pg-a/plain": "another"})
    cancelled.cancel()
    assert store.read_store(out) == stored  # the failed build's values never reach the store


def test_a_store_written_as_yaml_by_an_earlier_sty_is_still_read(tmp_path: Path) -> None:
    """Stores are JSON now (faster to parse, and still YAML); one an earlier sty wrote as YAML keeps its values."""
    from sty.contract import store

    out = tmp_path / "outputs"
    out.mkdir()
    directory = store.secure_store(out)
    (directory / "secrets.yml").write_text("pg-a/u: 'pw: with a colon'\npg-a/n: 5432\n")
    os.chmod(directory / "secrets.yml", 0o600)
    assert store.read_store(out) == {"pg-a/u": "pw: with a colon", "pg-a/n": "5432"}
    store.write_store(out, {**store.read_store(out), "pg-a/v": "new"})
    text = (directory / "secrets.yml").read_text()
    assert text.startswith("{") and json.loads(text) == {
        "pg-a/u": "pw: with a colon",
        "pg-a/n": "5432",
        "pg-a/v": "new",
    }


def test_a_build_whose_files_cannot_be_put_in_place_leaves_the_store_as_it_was(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sty.compiler import build as build_module
    from sty.compiler.writer import WriteFailed
    from sty.contract import store

    path = store.store_dir(work / "outputs") / "secrets.yml"
    before = path.read_bytes()
    (work / "secrets.yml").write_text("pg_admin_password: Another.One\n")
    os.chmod(work / "secrets.yml", 0o600)

    def refused(*args, **kwargs):
        raise WriteFailed("outputs: the disk is full")

    with monkeypatch.context() as patched:
        patched.setattr(build_module, "commit", refused)
        code, _, err = run("build")
    assert code == 3 and "the disk is full" in err and "Traceback" not in err
    assert path.read_bytes() == before and "Another.One" not in path.read_text()
    assert run("build")[0] == 0 and "Another.One" in path.read_text()  # what the failed build would have stored


def test_the_record_is_stale_once_anything_else_writes_the_state(
    work: Path, compiles: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shortcut's record vouches for one state: a limited build (which rewrites the state without the
    whole fleet) removes it, and a state rewritten behind its back (its stamp changed) is not trusted. The stamps
    are checked half here, half in a forked child: a file edited in either half is found."""
    from sty.compiler import processes

    monkeypatch.setattr(processes, "SPLIT_FROM", 2)
    store = work / ".sty" / "outputs"
    assert run("build", "--limit", "10.10.10.11")[0] == 0 and compiles == [1]
    assert not (store / "noop.json").exists()
    assert run("build")[0] == 0 and compiles == [1, 1]  # the full path, which records again
    assert run("build")[0] == 0 and compiles == [1, 1]
    state = store / "state.jsonl"
    state.write_text(state.read_text() + "\n")  # another writer: same hosts, new stamp
    assert run("build")[0] == 0 and compiles == [1, 1, 1]
    for n, line in enumerate(state.read_text().splitlines()[::3]):  # the first and last host
        files = json.loads(line.split("\t")[3])
        target = work / "outputs" / sorted(files)[-1]
        target.write_text(target.read_text() + "# edited\n")
        assert run("build")[0] == 0 and len(compiles) == 4 + n  # found, and put back by the full path
        assert run("build")[0] == 0 and len(compiles) == 4 + n  # then nothing to do again


def test_a_store_reached_through_a_link_is_not_read(work: Path, compiles: list[int], tmp_path: Path) -> None:
    """The shortcut reads its record only from the plain `.sty/<out>` sty made: a `.sty` replaced by a link (a
    pull request can commit one) is not followed, and the full path refuses it with its sentence."""
    elsewhere = tmp_path / "elsewhere"
    (work / ".sty").rename(elsewhere)
    (work / ".sty").symlink_to(elsewhere)
    code, out, err = run("build")
    assert compiles == [1] and code != 0 and "0 rendered" not in out  # the full path ran, and refused
    assert "symbolic link sty did not make" in err


def test_a_changed_source_file_takes_the_full_path(
    work: Path, compiles: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fingerprint holds the stamps of sty's sources, not their bytes (3 ms instead of 35): a source written
    again, even with its size and modification time put back, changes its change time and so the fingerprint."""
    from sty.compiler import paths

    sources = tmp_path / "extra-source"
    sources.mkdir()
    source = sources / "module.py"
    source.write_text("A = 1\n")
    monkeypatch.setattr(paths, "_SOURCES", (*paths._SOURCES, ("extra", sources)))
    assert run("build")[0] == 0 and compiles == [1]  # the fingerprint now covers the extra source
    assert run("build")[0] == 0 and compiles == [1]
    before = source.stat()
    source.write_text("A = 2\n")  # same size
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))  # same modification time
    assert run("build")[0] == 0 and compiles == [1, 1], "a rewritten source did not change the fingerprint"
    assert run("build")[0] == 0 and compiles == [1, 1]


def test_the_code_digest_covers_every_source_that_shapes_a_bundle() -> None:
    """The formats' quoting and the manifest's layout live in sty.contract: a change there changes bundles, so a
    host rendered by other code is never skipped as unchanged."""
    from sty.compiler import paths

    names = [name for name, _ in paths._source_files()]
    assert names == sorted(names) and len(names) == len(set(names))
    for expected in ("compiler/pipeline.py", "contract/formats.py", "contract/manifest.py", "schemas/pgsql.json"):
        assert expected in names
    assert any(name.startswith("templates/") and name.endswith(".j2") for name in names)
    assert not any(name.endswith(".pyc") or "__pycache__" in name for name in names)


def test_host_directories_are_told_by_the_same_rule_as_ipaddress() -> None:
    """existing_hosts names a host only what ipaddress.IPv4Address accepts (it used that, at 45 ms a no-op)."""
    import ipaddress
    import random

    from sty.compiler.writer import _IPV4

    octets = ["0", "00", "01", "1", "9", "10", "99", "100", "199", "200", "249", "250", "255", "256", "300", "010", ""]
    rnd = random.Random(7)
    names = ["1.2.3.4", " 1.2.3.4", "1.2.3.4\n", "\u0661.2.3.4", "1.2.3.4.yml", "a.b.c.d"]
    names += [".".join(rnd.choice(octets) for _ in range(rnd.choice((3, 4, 4, 5)))) for _ in range(20_000)]
    for name in names:
        try:
            ipaddress.IPv4Address(name)
            valid = True
        except ValueError:
            valid = False
        assert valid == bool(_IPV4.fullmatch(name)), name
