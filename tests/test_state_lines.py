"""The incremental state as a line per host (compiler/stamps.py): a build carries a skipped host's line over as
it was read, a host whose line cannot be read is re-rendered alone, and an earlier sty's record files go."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SHIPPED

from sty.cli import main
from sty.compiler.stamps import HostStates, read_state, state_line

ENTRY = {
    "inputs": "ab" * 32,
    "files": {"10.0.0.1/etc/hosts": [12, 34], "10.0.0.1.yml": [56, 78]},
    "secrets": ["pg-x/pg_users/u/scram"],
    "pins": {"pgsql.pg_version": 17},
}


def test_a_line_reads_back_as_the_entry_it_was_written_from() -> None:
    retired = {"retired": True, "files": {"10.0.0.2.yml": [1, 2]}}
    text = "\n".join([state_line("10.0.0.1", ENTRY), state_line("10.0.0.2", retired), "10.0.0.3\tcut short"])
    hosts = HostStates.parse(text)
    assert list(hosts) == ["10.0.0.1", "10.0.0.2"]  # the line that is not four fields is left out
    assert hosts.inputs("10.0.0.1") == ENTRY["inputs"] and hosts.inputs("10.0.0.2") is None
    assert hosts.inputs("10.0.0.3") is None and hosts.meta("10.0.0.3") == {}
    assert hosts.meta("10.0.0.1") == {"secrets": ENTRY["secrets"], "pins": ENTRY["pins"]}  # without the files
    assert hosts["10.0.0.1"] == ENTRY and hosts["10.0.0.2"] == retired
    assert hosts.get("10.0.0.9") is None and "10.0.0.9" not in hosts


def test_a_field_that_is_not_an_object_reads_as_empty() -> None:
    hosts = HostStates.parse("10.0.0.1\t-\t[1]\tnot json")
    assert hosts["10.0.0.1"] == {"files": {}} and hosts.meta("10.0.0.1") == {}


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(SHIPPED, tmp_path / "pigsty.yml")
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["build", "-q"]).exit_code == 0
    return tmp_path / ".sty" / "outputs" / "state.jsonl"


def build(*args: str) -> str:
    result = CliRunner().invoke(main, ["build", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_skipped_hosts_line_is_carried_over_as_it_was_read(built: Path) -> None:
    """Respelt with spaces, a line still reads (the host is skipped) and is written back with the spaces: the
    build did not re-serialise it. The host whose file was edited is re-rendered, and its file put back."""
    lines = built.read_text().split("\n")
    address, inputs, meta, files = lines[1].split("\t")
    lines[1] = "\t".join([address, inputs, meta.replace(",", ", "), files.replace(",", ", ")])
    built.write_text("\n".join(lines))
    edited = Path("outputs") / "10.10.10.13" / "etc" / "hosts"
    original = edited.read_text()
    edited.write_text(original + "# edited\n")
    assert build().startswith("4 host(s): 1 rendered, 3 unchanged inputs; 1 file(s) written")
    assert edited.read_text() == original
    after = built.read_text().split("\n")
    assert after[1] == lines[1] and after[0] == lines[0] and after[2] == lines[2]
    assert after[3] != lines[3]  # the re-rendered host's stamps are new


def test_a_host_whose_line_cannot_be_read_is_re_rendered_alone(built: Path) -> None:
    lines = built.read_text().split("\n")
    lines[2] = lines[2].split("\t", 1)[0] + "\tnot a state line"
    built.write_text("\n".join(lines))
    assert build().startswith("4 host(s): 1 rendered, 3 unchanged inputs; 0 file(s) written")
    assert read_state(Path("outputs")).inputs("10.10.10.12") is not None


def test_an_earlier_stys_record_files_are_removed_when_the_state_is_written(built: Path) -> None:
    store = built.parent
    for name in ("state.json", "stamps.jsonl"):
        (store / name).write_text("{}")
    (store / "mine.json").write_text("{}")
    build("--no-cache")  # as after an upgrade of sty: the full path, which writes the state
    assert not (store / "state.json").exists() and not (store / "stamps.jsonl").exists()
    assert (store / "mine.json").exists()


def test_the_state_an_earlier_sty_wrote_is_read_once_and_replaced(built: Path) -> None:
    """After an upgrade, the hosts the earlier `state.json` knows are skipped as before (without it every
    committed manifest would be parsed to learn what sty wrote); the build then writes the lines."""
    import json

    hosts = read_state(Path("outputs"))
    earlier = {"hosts": {ip: hosts[ip] for ip in hosts}}
    (built.parent / "state.json").write_text(json.dumps(earlier))
    built.unlink()
    assert read_state(Path("outputs"))["10.10.10.11"] == earlier["hosts"]["10.10.10.11"]
    assert build().startswith("4 host(s): 0 rendered, 4 unchanged inputs; 0 file(s) written")
    assert built.is_file() and not (built.parent / "state.json").exists()
    assert dict(read_state(Path("outputs"))) == earlier["hosts"]
