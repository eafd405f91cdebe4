"""A second `sty apply` with nothing changed: one SSH connection and one command per host (the agent's `look`), no
stage, no rsync, no checker, no activation, no record written; and the wall time per host on the closing line.
Without hosts: the agent's `look` on this machine (a `systemctl` of our own on PATH), the command runner on a
scripted SSH channel, and the fleet of test_apply_confirm's scripted hosts."""

from __future__ import annotations

import json
import os
import shlex
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_apply_confirm import NODE_CONF, PATRONI, apply_yes, fleet, forget_commands, untimed  # noqa: F401

from sty.apply import agent
from sty.apply import plan as P
from sty.apply import preview as V
from sty.apply.progress import Printer
from sty.apply.remote import Remote, RemoteError, SshOptions, label
from sty.apply.run import apply as run_apply
from sty.cli import main

# -- the agent's look, here ---------------------------------------------------------------------------------


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch) -> Path:
    """A `systemctl` that says a.service is active and enabled, anything else inactive and disabled, one word per
    unit as the real one does; it logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    script = bin_dir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'verb=$1; shift; [ "$1" = "--" ] && shift\n'
        'for u in "$@"; do\n'
        '  if [ "$u" = a.service ]; then [ "$verb" = is-active ] && echo active || echo enabled;\n'
        '  else [ "$verb" = is-active ] && echo inactive || echo disabled; fi\n'
        "done\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def test_look_reads_files_record_units_and_probe_in_one_answer(tmp_path: Path, systemctl: Path, monkeypatch) -> None:
    monkeypatch.setattr(agent, "RECORD", str(tmp_path / "applied.json"))
    (tmp_path / "applied.json").write_text(json.dumps({"bundle": "abc", "files": {}}))
    conf = tmp_path / "app.conf"
    conf.write_text("x\n")
    answer = agent.op_look(
        {
            "files": [{"path": str(conf)}, {"path": str(tmp_path / "missing")}],
            "units": ["a.service", "b.service"],
            "probe": f"echo one; echo {V.SECTION}; echo two",
        }
    )
    assert answer["files"][str(conf)]["sha256"] == P.sha256(b"x\n")
    assert answer["files"][str(tmp_path / "missing")] == {"exists": False}
    assert answer["record"] == {"bundle": "abc", "files": {}}
    assert answer["is-active"] == ["active", "inactive"] and answer["is-enabled"] == ["enabled", "disabled"]
    assert V.unit_states(["a.service", "b.service"], answer["is-active"], answer["is-enabled"]) == {
        "a.service": True,
        "b.service": False,
    }
    assert answer["probe"] == f"one\n{V.SECTION}\ntwo\n"
    calls = sorted(systemctl.read_text().splitlines())  # both at once, while the files are read
    assert calls == ["is-active -- a.service b.service", "is-enabled -- a.service b.service"]


def test_look_without_units_or_probe_runs_nothing(tmp_path: Path, systemctl: Path, monkeypatch) -> None:
    monkeypatch.setattr(agent, "RECORD", str(tmp_path / "applied.json"))
    answer = agent.op_look({"files": []})
    assert answer == {"files": {}, "record": None, "is-active": [], "is-enabled": []}
    assert not systemctl.exists(), "no unit: systemctl is not run"


@pytest.mark.parametrize("unit", ["--now", "a b.service", "", "a\x00.service"])
def test_look_refuses_what_is_not_a_unit_name(tmp_path: Path, systemctl: Path, unit: str) -> None:
    with pytest.raises(ValueError, match="is not a unit name"):
        agent.op_look({"files": [], "units": [unit]})
    assert not systemctl.exists()


def test_the_probe_is_the_same_script_in_the_look_and_on_its_own() -> None:
    from test_retire import manifest

    m = manifest("10.0.0.1")
    assert V.probe_script(m) is None and V.probe_command(m) is None
    m.packages = ["haproxy"]
    script = V.probe_script(m)
    assert script is not None and V.probe_command(m) == "sh -c " + shlex.quote(script)


# -- the command runner on a scripted channel ----------------------------------------------------------------


class Channel:
    """What Remote._exec uses of a paramiko Channel: output in chunks, then end of output, then an exit status."""

    def __init__(self, out: list[bytes], err: list[bytes], code: int | None, eof: bool = True):
        self.out, self.err, self.code = list(out), list(err), code
        self.eof_received = eof and code is not None
        self.closed = False
        self.status_event = threading.Event()
        self.sent = b""
        self.command = ""
        self.shut = False
        if code is not None:
            self.status_event.set()

    def exec_command(self, command: str) -> None:
        self.command = command

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def shutdown_write(self) -> None:
        self.shut = True

    def recv_ready(self) -> bool:
        return bool(self.out)

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def recv(self, n: int) -> bytes:
        return self.out.pop(0)

    def recv_stderr(self, n: int) -> bytes:
        return self.err.pop(0)

    def exit_status_ready(self) -> bool:
        return self.status_event.is_set()

    def recv_exit_status(self) -> int:
        return -1 if self.code is None else self.code

    def fileno(self) -> int:  # select() on it: a pipe that is never ready (the scripted data is there already)
        if not hasattr(self, "_pipe"):
            self._pipe = os.pipe()
        return self._pipe[0]

    def close(self) -> None:
        self.closed = True


class Transport:
    def __init__(self, chan: Channel):
        self.chan = chan

    def is_active(self) -> bool:
        return True

    def open_session(self, timeout=None) -> Channel:
        return self.chan


def scripted(chan: Channel, user: str = "root") -> Remote:
    remote = Remote("10.0.0.1", 22, user, SshOptions())
    remote._client = type("Client", (), {"get_transport": lambda self: Transport(chan), "close": lambda self: None})()
    return remote


def test_a_command_gets_its_input_on_the_channel_and_its_output_whole() -> None:
    chan = Channel([b'{"a":', b" 1}\n"], [b"warn\n"], 0)
    remote = scripted(chan, user="admin")
    result = remote.run("python3 -c X look", stdin='{"files": []}')
    assert (result.stdout, result.stderr, result.exited) == ('{"a": 1}\n', "warn\n", 0)
    assert chan.command == "sudo -n python3 -c X look" and chan.sent == b'{"files": []}' and chan.shut
    assert chan.closed
    assert [what for what, _ in remote.spent] == ["agent look"]


def test_a_failing_command_is_a_remote_error_with_its_words_unless_not_checked() -> None:
    with pytest.raises(RemoteError, match=r"`systemctl restart x.service` exited 1: Job failed"):
        scripted(Channel([], [b"Job failed\n"], 1)).run("systemctl restart x.service")
    assert scripted(Channel([b"inactive\n"], [], 3)).run("systemctl is-active x", check=False).exited == 3


def test_a_command_that_does_not_end_is_stopped_at_its_timeout() -> None:
    chan = Channel([b"partial"], [], None, eof=False)
    with pytest.raises(RemoteError, match="did not finish within 0s"):
        scripted(chan).run("sleep 1000", timeout=0.05)
    assert chan.closed


def test_a_connection_lost_mid_command_ends_it_with_exit_minus_one() -> None:
    chan = Channel([b"x"], [], None, eof=False)
    chan.closed = True  # paramiko closes the channels of a dead transport, with no exit status
    assert scripted(chan).run("true", check=False).exited == -1


def test_labels_name_the_agent_operation_or_the_command() -> None:
    assert label("python3 -c 'import x' look") == "agent look"
    assert label("python3 /var/lib/sty/stage/agent.py install") == "agent install"
    assert label("systemctl is-active a b c") == "systemctl is-active"


# -- the fleet: a second apply ------------------------------------------------------------------------------


def test_a_second_apply_costs_one_command_per_host_and_writes_nothing(fleet) -> None:  # noqa: F811
    out, hosts = fleet
    apply_yes(out)
    forget_commands(hosts)
    records = {ip: json.dumps(h.record, sort_keys=True) for ip, h in hosts.items()}
    result = run_apply(out, "all", log=Printer(quiet=True), confirm=lambda p: pytest.fail("nothing to confirm"))
    assert result.changed == {"10.0.0.1": False, "10.0.0.2": False} and not result.plan.changed
    for ip, host in hosts.items():
        (command,) = host.commands
        assert command.startswith("python3 -S -c ") and command.endswith(" look")
        assert host.rsyncs == 0 and host.journal == [] and json.dumps(host.record, sort_keys=True) == records[ip]
    assert result.seconds > 0 and set(result.timings) == {"fleet", "10.0.0.1", "10.0.0.2"}
    assert {"load", "first pass", "phases"} <= set(result.timings["fleet"])
    assert {"render", "plan"} <= set(result.timings["10.0.0.1"])


@pytest.mark.parametrize("what", ["hand edit", "unit stopped", "record lost"])
def test_anything_out_of_place_makes_the_host_pending(fleet, what: str) -> None:  # noqa: F811
    out, hosts = fleet
    apply_yes(out)
    two = hosts["10.0.0.2"]
    if what == "hand edit":
        two.files[NODE_CONF] += b"# hand edit\n"
    elif what == "unit stopped":
        two.active.discard("haproxy.service")
    else:
        two.record = None
    forget_commands(hosts)
    shown: list = []
    result = run_apply(out, "all", log=Printer(quiet=True), confirm=lambda p: shown.append(p) or True)
    (preview,) = shown
    assert preview.pending == {"10.0.0.2"} and result.changed == {"10.0.0.1": False, "10.0.0.2": True}
    assert hosts["10.0.0.1"].reads_only()
    assert two.rsyncs == 1 and two.files[NODE_CONF] == b"node\n" and "haproxy.service" in two.active
    assert two.record is not None and set(two.record["files"]) == {NODE_CONF}


def test_the_closing_line_and_the_json_give_the_wall_time_per_host(fleet, monkeypatch) -> None:  # noqa: F811
    out, hosts = fleet
    apply_yes(out)
    monkeypatch.setenv("STY_TIMINGS", "1")
    text = CliRunner().invoke(main, ["apply", "-o", str(out), "--yes", "all"])
    assert text.exit_code == 0, text.output
    assert untimed(text.stdout.splitlines()[-1]) == "2 host(s): 0 changed"
    assert "[done] 10.0.0.1 timings: render " in text.stderr and "[done] fleet timings: load " in text.stderr
    doc = json.loads(CliRunner().invoke(main, ["apply", "-o", str(out), "--json", "all"]).stdout)
    assert doc["seconds"] >= doc["seconds_per_host"] > 0 and doc["changed"] == {"10.0.0.1": False, "10.0.0.2": False}
    assert set(doc["timings"]) == {"fleet", "10.0.0.1", "10.0.0.2"}


def test_reads_go_wider_than_changes_unless_jobs_is_given(fleet, monkeypatch) -> None:  # noqa: F811
    import sty.apply.run as run

    out, _ = fleet
    widths: list[int] = []
    real = run.ThreadPoolExecutor

    def pool(max_workers: int):
        widths.append(max_workers)
        return real(max_workers=max_workers)

    monkeypatch.setattr(run, "ThreadPoolExecutor", pool)
    monkeypatch.setattr(run, "READ_JOBS", 16)
    monkeypatch.setattr(run, "PHASE_JOBS", 1)
    run_apply(out, "all", log=Printer(quiet=True), confirm=lambda p: True)
    assert widths == [2, 1], "2 hosts read at once (min(16, hosts)), changed one at a time"
    widths.clear()
    run_apply(out, "all", jobs=1, log=Printer(quiet=True), confirm=lambda p: True)
    assert widths == [1, 1]
