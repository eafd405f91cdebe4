"""The stamp check begun before the compile (compiler/early_stamps.py): its answer is the one the build would
have found, it is dropped when the state changed in between or the child failed, and a check whose answer is
not wanted leaves no process behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SHIPPED

from sty.cli import main
from sty.compiler import build as build_module
from sty.compiler import early_stamps, processes
from sty.compiler.stamps import files_in_place, read_state

HOSTS = ["10.10.10.10", "10.10.10.11", "10.10.10.12", "10.10.10.13"]


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped inventory built, and the early check allowed for its four hosts."""
    shutil.copy(SHIPPED, tmp_path / "pigsty.yml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(processes, "SPLIT_FROM", 1)
    assert CliRunner().invoke(main, ["build", "-q"]).exit_code == 0
    return tmp_path / "outputs"


def _no_own_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build's own stamp check fails the test: the early answer must be the one used."""

    def refused(*_args, **_kwargs):
        raise AssertionError("the build checked the stamps itself")

    monkeypatch.setattr(build_module, "files_in_place", refused)


def test_the_early_answer_is_what_the_build_would_find(built: Path) -> None:
    edited = built / "10.10.10.12" / "etc" / "hosts"
    edited.write_text(edited.read_text() + "# edited\n")
    check = early_stamps.start(built)
    assert check is not None
    state = read_state(built)
    assert check.hosts_in_place(built) == {ip for ip in HOSTS if files_in_place(built, state[ip])}
    assert check.hosts_in_place(built) == {"10.10.10.10", "10.10.10.11", "10.10.10.13"}


def test_a_build_takes_the_childs_answer_and_puts_back_what_was_edited(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edited = built / "10.10.10.11" / "etc" / "hosts"
    original = edited.read_text()
    edited.write_text(original + "# edited\n")
    (built.parent / "pigsty.yml").write_text((built.parent / "pigsty.yml").read_text() + "\n")  # not the shortcut
    _no_own_check(monkeypatch)
    result = CliRunner().invoke(main, ["build"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("4 host(s): 1 rendered, 3 unchanged inputs; 1 file(s) written")
    assert edited.read_text() == original


def test_an_answer_about_another_state_is_dropped(built: Path) -> None:
    check = early_stamps.start(built)
    assert check is not None
    state = built.parent / ".sty" / "outputs" / "state.jsonl"
    state.write_text(state.read_text() + "\n")  # another build wrote the state since the child read it
    assert check.hosts_in_place(built) is None


def test_a_child_that_fails_gives_no_answer(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("the child's check broke")

    monkeypatch.setattr(early_stamps, "files_in_place", broken)
    check = early_stamps.start(built)
    assert check is not None and check.hosts_in_place(built) is None


def test_an_unwanted_check_is_stopped_and_reaped(built: Path) -> None:
    check = early_stamps.start(built)
    assert check is not None
    check.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(check.pid, os.WNOHANG)  # reaped: no zombie left behind
    check.close()  # twice is harmless


def test_nothing_starts_without_a_state_or_for_a_small_fleet(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "SPLIT_FROM", 256)
    assert early_stamps.start(built) is None
    monkeypatch.setattr(processes, "SPLIT_FROM", 1)
    assert early_stamps.start(built.parent / "elsewhere") is None
    assert not (built.parent / ".sty" / "elsewhere").exists()  # and nothing was made
