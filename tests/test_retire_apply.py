"""`sty apply` removing modules and retired hosts, against scripted hosts that keep their files, units, data
directories and record in memory: the order of phases and removals, the confirmation (and its refusal without a
terminal), an unreachable retired host, a second apply of a cleaned host, and `--check`, asserted on what was
actually run on each host."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner
from test_retire import entry, manifest

from sty.apply.drift import check_drift
from sty.apply.remote import Remote, RemoteError, SshOptions
from sty.apply.run import Printer
from sty.apply.run import apply as run_apply
from sty.cli import main
from sty.contract.actions import Action
from sty.contract.exits import UsageError
from sty.contract.manifest import Manifest

# -- sty apply against scripted hosts ----------------------------------------------------------------------

AGENT_OPS = ("inspect", "look", "ensure", "install", "remove", "restore", "record")
PATRONI = "/etc/patroni/patroni.yml"


@dataclass(eq=False)
class FakeRemote(Remote):
    """A host in memory: live files, active units, directories, the agent's record, and a journal shared by the
    fleet of what changed it (reads are not journalled)."""

    journal: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)
    record: dict | None = None
    staged: dict[str, bytes] = field(default_factory=dict)
    dark: bool = False
    commands: list[str] = field(default_factory=list)

    def note(self, event: str) -> None:
        self.journal.append((self.address, event))

    def rsync(self, local_dir: Path, remote_dir: str) -> None:
        root = local_dir / "files"
        self.staged = {"/" + str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    def close(self) -> None:
        pass

    def run(self, command: str, stdin: str | None = None, check: bool = True, timeout: float | None = 300):
        if self.dark:
            raise RemoteError(f"{self.address}: NoValidConnectionsError: unable to connect to port 22")
        self.commands.append(command)
        words = command.split()
        out, code = "", 0
        if words[0] == "python3" and words[-1] in AGENT_OPS:
            out = json.dumps(self.agent_op(words[-1], json.loads(stdin or "{}")))
        elif words[:2] == ["systemctl", "is-active"]:
            states = ["active" if u in self.active else "inactive" for u in words[2:]]
            out, code = "\n".join(states), 0 if all(s == "active" for s in states) else 3
        elif words[:2] == ["systemctl", "is-enabled"]:
            out = "\n".join("enabled" if u in self.active else "disabled" for u in words[2:])
        elif words[:3] == ["systemctl", "enable", "--now"]:
            self.active.add(words[3])
            self.note(command)
        elif words[:3] == ["systemctl", "disable", "--now"]:
            self.active.discard(words[3])
            self.note(command)
        elif words[0] == "systemctl":
            self.note(command)
        elif command.startswith("cd ") and "run_host_checks" in command:
            out = "[]"
        elif words[:2] == ["cat", PATRONI]:
            out, code = (self.files[PATRONI].decode(), 0) if PATRONI in self.files else ("", 1)
        elif words[0] == "patronictl" and words[3] == "list":
            name = yaml.safe_load(self.files[PATRONI])["name"]
            out = json.dumps([{"Member": name, "Host": self.address, "Role": "Replica", "State": "streaming"}])
        elif command.startswith("if [ -e "):
            parts = shlex.split(command)
            src, dst = parts[3], parts[parts.index("-T") + 2]
            if src in self.dirs:
                self.dirs = (self.dirs - {src}) | {dst}
                self.note(f"mv {src} {dst}")
                out = "moved\n"
        elif words[0] not in ("chmod", "curl", "ss"):
            raise AssertionError(f"{self.address}: unexpected command {command}")
        return SimpleNamespace(stdout=out, stderr="", exited=code)

    def probe_output(self, script: str) -> str:
        raise AssertionError(f"{self.address}: unexpected probe {script}")

    def agent_op(self, op: str, req: dict) -> dict:
        if op == "inspect":
            live = {}
            for f in req["files"]:
                data = self.files.get(f["path"])
                live[f["path"]] = {"exists": False} if data is None else {
                    "exists": True, "sha256": hashlib.sha256(data).hexdigest(),
                    "owner": "root", "group": "root", "mode": "0644", "content": data.decode(),
                }  # fmt: skip
            return {"files": live, "record": self.record}
        if op == "look":  # inspect, the units' state and the probe: one round trip
            units = req.get("units") or []
            answer = self.agent_op("inspect", req)
            answer["is-active"] = ["active" if u in self.active else "inactive" for u in units]
            answer["is-enabled"] = ["enabled" if u in self.active else "disabled" for u in units]
            if req.get("probe"):
                answer["probe"] = self.probe_output(req["probe"])
            return answer
        if op == "install":
            for f in req["files"]:
                self.files[f["path"]] = self.staged[f["path"]]
            self.note("install " + " ".join(f["path"] for f in req["files"]))
            return {"installed": [f["path"] for f in req["files"]]}
        if op == "remove":
            for f in req["files"]:
                self.files.pop(f["path"], None)
            self.note("remove " + " ".join(f["path"] for f in req["files"]))
            return {"removed": [f["path"] for f in req["files"]]}
        if op == "record":
            self.record = req["record"]
            self.note("record")
            return {"recorded": "/var/lib/sty/applied.json"}
        return {"changed": []} if op == "ensure" else {}


def write_bundle(out: Path, m: Manifest, contents: dict[str, str]) -> None:
    (out / f"{m.address}.yml").write_text(yaml.safe_dump(m.to_dict(), sort_keys=True))
    for path, text in contents.items():
        target = out / m.address / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


PG_FILES = {
    PATRONI: {"module": "pgsql", "kind": "file"},
    "/etc/systemd/system/patroni.service": {"module": "pgsql", "kind": "file"},
    "/etc/haproxy/conf.d/pg-test-primary.cfg": {"module": "pgsql", "kind": "file", "reload": ["haproxy.service"]},
}
NODE_FILES = {
    "/etc/sty-node.conf": {"module": "node", "kind": "file"},
    "/etc/systemd/system/node_exporter.service": {"module": "node", "kind": "file"},
}


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch) -> tuple[Path, dict[str, FakeRemote]]:
    """10.0.0.1 runs node and pgsql (its bundle is new); 10.0.0.2 left pg-test but stays a node; 10.0.0.3 left
    the inventory. The last two were applied before: their records list what is now to be removed."""
    out = tmp_path / "outputs"
    out.mkdir()
    node = [entry("/etc/sty-node.conf", "node")]
    haproxy = [("haproxy.service", "node")]
    pg = {"pgsql": {"cluster": "pg-test", "role": "primary", "seq": 1}}
    conf = entry(PATRONI, "pgsql", actions=(Action("reload", "haproxy.service"),))  # as if HAProxy read it
    write_bundle(out, manifest("10.0.0.1", ["node", "pgsql"], [*node, conf], haproxy, identity=pg),
                 {"/etc/sty-node.conf": "node 1\n", PATRONI: "scope: pg-test\nname: pg-test-1\n"})  # fmt: skip
    write_bundle(out, manifest("10.0.0.2", ["node"], node, haproxy), {"/etc/sty-node.conf": "node 2\n"})
    write_bundle(out, manifest("10.0.0.3", retired=True), {})
    journal: list[tuple[str, str]] = []

    def host(ip: str, record_files: dict, name: str) -> FakeRemote:
        files = {p: b"old\n" for p in record_files} | {PATRONI: f"scope: pg-test\nname: {name}\n".encode()}
        record = {"bundle": "b", "address": ip, "files": record_files} if ip != "10.0.0.1" else None
        units = {"haproxy.service", "patroni.service", "node_exporter.service"}
        return FakeRemote(
            ip, 22, "root", SshOptions(), journal=journal, files=files if record else {},
            active=units if record else {"haproxy.service"}, dirs={"/pg/data"}, record=record,
        )  # fmt: skip

    hosts = {
        "10.0.0.1": host("10.0.0.1", {}, "pg-test-1"),
        "10.0.0.2": host("10.0.0.2", {"/etc/sty-node.conf": NODE_FILES["/etc/sty-node.conf"]} | PG_FILES, "pg-test-2"),
        "10.0.0.3": host("10.0.0.3", NODE_FILES | PG_FILES, "pg-test-3"),
    }
    monkeypatch.setattr("sty.apply.remote.Remote.from_manifest", lambda m, options: hosts[m.address])
    return out, hosts


def apply_all(out: Path, confirm=lambda removals: True):
    return run_apply(out, "all", jobs=2, log=Printer(quiet=True), confirm=lambda preview: confirm(preview.removals))


def test_removals_run_after_every_phase_one_host_at_a_time(fleet) -> None:
    out, hosts = fleet
    shown: list[str] = []
    result = apply_all(out, lambda removals: shown.extend(f"{r.host}: {r.summary()}" for r in removals) or True)
    assert result.failures == [] and result.changed == {"10.0.0.1": True, "10.0.0.2": True, "10.0.0.3": True}
    assert shown == [
        "10.0.0.2: remove pgsql (stop patroni.service; 3 file(s); reload haproxy.service; data moved aside)",
        "10.0.0.3: remove pgsql (stop patroni.service; 3 file(s); data moved aside)",
        "10.0.0.3: remove node (stop node_exporter.service; 2 file(s))",
    ]
    journal = hosts["10.0.0.1"].journal
    first_removal = next(i for i, (_, e) in enumerate(journal) if e.startswith("systemctl disable --now"))
    assert all(not e.startswith("install") for _, e in journal[first_removal:]), "a phase ran after a removal"
    assert any(ip == "10.0.0.1" and e.startswith("install") for ip, e in journal[:first_removal])
    removal_events = [(ip, e.split(" /")[0]) for ip, e in journal[first_removal:] if ip != "10.0.0.1"]
    assert removal_events == [
        ("10.0.0.2", "systemctl disable --now patroni.service"),
        ("10.0.0.2", "remove"),
        ("10.0.0.2", "systemctl daemon-reload"),
        ("10.0.0.2", "systemctl reload-or-restart haproxy.service"),
        ("10.0.0.2", "mv"),
        ("10.0.0.2", "record"),
        ("10.0.0.3", "systemctl disable --now patroni.service"),
        ("10.0.0.3", "remove"),
        ("10.0.0.3", "systemctl daemon-reload"),
        ("10.0.0.3", "mv"),
        ("10.0.0.3", "record"),
        ("10.0.0.3", "systemctl disable --now node_exporter.service"),
        ("10.0.0.3", "remove"),
        ("10.0.0.3", "systemctl daemon-reload"),
        ("10.0.0.3", "record"),
    ]
    assert hosts["10.0.0.1"].record["files"][PATRONI] == {
        "module": "pgsql", "kind": "file", "sha256": hashlib.sha256(hosts["10.0.0.1"].files[PATRONI]).hexdigest(),
        "reload": ["haproxy.service"],  # what its removal will reload
    }  # fmt: skip
    two, three = hosts["10.0.0.2"], hosts["10.0.0.3"]
    assert set(two.record["files"]) == {"/etc/sty-node.conf"} and "retired" not in two.record
    assert "patroni.service" not in two.active and "haproxy.service" in two.active
    assert three.record["files"] == {} and three.record["retired"] is True
    assert three.files == {} and three.active == {"haproxy.service"}  # haproxy had no unit file of sty's
    assert {d.split(".removed-")[0] for d in three.dirs} == {"/pg/data"} and "/pg/data" not in three.dirs


def test_a_second_apply_of_a_cleaned_retired_host_changes_nothing(fleet) -> None:
    out, hosts = fleet
    apply_all(out)
    done = len(hosts["10.0.0.3"].journal)
    asked: list = []
    result = apply_all(out, lambda removals: asked.append(removals) or True)
    assert asked == [] and result.failures == [] and result.changed["10.0.0.3"] is False
    assert [e for ip, e in hosts["10.0.0.3"].journal[done:] if ip == "10.0.0.3"] == []


def test_an_unconfirmed_removal_changes_nothing_on_any_host(fleet) -> None:
    out, hosts = fleet
    with pytest.raises(UsageError, match="not confirmed; nothing was changed"):
        apply_all(out, lambda removals: False)
    assert hosts["10.0.0.1"].journal == []
    for remote in hosts.values():  # the agent's look, sent in the command line: one round trip, nothing written
        assert len(remote.commands) == 1, remote.commands
        assert all(c.startswith("python3 -S -c ") and c.endswith(" look") for c in remote.commands), remote.commands


def test_without_a_terminal_and_yes_apply_refuses_before_any_phase(fleet) -> None:
    out, hosts = fleet
    result = CliRunner().invoke(main, ["apply", "-o", str(out), "all"])
    assert result.exit_code == 2, result.output
    assert "remove node (stop node_exporter.service; 2 file(s))" in result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert error == "error: refusing to apply the above without --yes, as there is no terminal to confirm on"
    assert hosts["10.0.0.1"].journal == [] and "Traceback" not in result.output


def test_an_unreachable_retired_host_fails_by_name_and_the_rest_completes(fleet) -> None:
    out, hosts = fleet
    hosts["10.0.0.3"].dark = True
    result = CliRunner().invoke(main, ["apply", "-o", str(out), "--yes", "all"])
    assert result.exit_code == 3, result.output
    assert re.search(
        r"^error: 10\.0\.0\.3: the retired host cannot be reached, so nothing was removed", result.output, re.M
    )
    assert "10.0.0.3: remove" not in result.output, "its removal is not offered: its record is unknown"
    assert set(hosts["10.0.0.2"].record["files"]) == {"/etc/sty-node.conf"}, "the other removal ran"
    assert hosts["10.0.0.1"].record is not None and PATRONI in hosts["10.0.0.1"].files


def test_check_reports_pending_removals_as_drift_without_doing_them(fleet) -> None:
    out, hosts = fleet
    diffs, errors = check_drift(out, "10.0.0.2,10.0.0.3", SshOptions())
    assert errors == []
    lines = "".join(diffs).splitlines()
    assert "10.0.0.3: pending removal: remove node (stop node_exporter.service; 2 file(s))" in lines
    pgsql = "remove pgsql (stop patroni.service; 3 file(s); reload haproxy.service; data moved aside)"
    assert f"10.0.0.2: pending removal: {pgsql}" in lines
    assert not any("would be removed" in line for line in lines), "files of a removed module are in its line"
    assert hosts["10.0.0.1"].journal == []
    result = CliRunner().invoke(main, ["apply", "-o", str(out), "--check", "10.0.0.3"])
    assert result.exit_code == 1 and "pending removal" in result.output
