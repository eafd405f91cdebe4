"""`sty apply` plans, then asks: every host is read first (nothing written, not even the stage), the plan is shown
and confirmed (or `--yes`), and only then do the phases change hosts, reusing what was read. Against scripted
hosts (test_retire_apply's), counting what each host was sent: a host with nothing to do costs its reads only.
Also the progress lines and the `--json` documents of apply, apply --check and lint."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import click.testing
import pytest
from click.testing import CliRunner
from test_retire import entry, manifest
from test_retire_apply import FakeRemote, write_bundle

from sty.apply import preview as V
from sty.apply.checks import FAIL, PASS, SKIP, CheckResult
from sty.apply.progress import Printer
from sty.apply.remote import SshOptions
from sty.apply.run import apply as run_apply
from sty.cli import main
from sty.contract.actions import Action
from sty.contract.exits import UsageError
from sty.contract.manifest import Directory, OsUser
from sty.contract.plan import Activation, render_text

NODE_CONF, PATRONI = "/etc/sty-node.conf", "/etc/patroni/patroni.yml"
PG = {"pgsql": {"cluster": "pg-test", "role": "primary", "seq": 1}}
TIMED = re.compile(r"(.*) in \d+\.\d s \(\d+\.\d\d s per host\)")


def untimed(line: str) -> str:
    """The closing line without its wall time (`2 host(s): 0 changed in 0.3 s (0.15 s per host)`)."""
    found = TIMED.fullmatch(line)
    assert found, f"no wall time in {line!r}"
    return found.group(1)


@dataclass(eq=False)
class Host(FakeRemote):
    """A scripted host that also counts the stagings (an rsync is a round trip of its own)."""

    rsyncs: int = 0
    probe: str = ""  # what the read-only probe of packages and directories answers
    installed: list[str] = field(default_factory=list)

    def probe_output(self, script: str) -> str:
        assert V.SECTION in script, script
        return self.probe

    def run(self, command: str, stdin: str | None = None, check: bool = True, timeout: float | None = 300):
        if command.startswith("sh -c ") and V.SECTION in command:
            self.commands.append(command)
            return SimpleNamespace(stdout=self.probe, stderr="", exited=0)
        if command.startswith("DEBIAN_FRONTEND=noninteractive apt-get install"):
            self.commands.append(command)
            self.installed += command.split()[-1:]
            self.probe = self.probe.replace("haproxy deinstall ok config-files", "haproxy install ok installed")
            return SimpleNamespace(stdout="", stderr="", exited=0)
        return super().run(command, stdin, check, timeout)

    def rsync(self, local_dir: Path, remote_dir: str) -> None:
        self.rsyncs += 1
        super().rsync(local_dir, remote_dir)

    def reads_only(self) -> bool:
        """Nothing but the agent's look (sent in the command line: files, record, units, probe) was run here."""
        looks = [c for c in self.commands if c.startswith("python3 -S -c ") and c.endswith(" look")]
        return looks == self.commands and len(looks) == 1 and self.rsyncs == 0


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch) -> tuple[Path, dict[str, Host]]:
    """10.0.0.1 runs node and pgsql (pg-test's primary), 10.0.0.2 only node; neither was applied before."""
    out = tmp_path / "outputs"
    out.mkdir()
    node = entry(NODE_CONF, "node", actions=(Action("reload", "haproxy.service"),))
    conf = entry(PATRONI, "pgsql", actions=(Action("restart", "patroni.service"),))
    units = [("haproxy.service", "node"), ("patroni.service", "pgsql")]
    write_bundle(out, manifest("10.0.0.1", ["node", "pgsql"], [node, conf], units, identity=PG),
                 {NODE_CONF: "node\n", PATRONI: "scope: pg-test\nname: pg-test-1\n"})  # fmt: skip
    write_bundle(out, manifest("10.0.0.2", ["node"], [node], units[:1]), {NODE_CONF: "node\n"})
    journal: list[tuple[str, str]] = []
    hosts = {
        ip: Host(ip, 22, "root", SshOptions(), journal=journal, active={"haproxy.service"})
        for ip in ("10.0.0.1", "10.0.0.2")
    }
    monkeypatch.setattr("sty.apply.remote.Remote.from_manifest", lambda m, options: hosts[m.address])
    return out, hosts


def apply_yes(out: Path, target: str = "all"):
    return run_apply(out, target, jobs=2, log=Printer(quiet=True), confirm=lambda preview: True)


def forget_commands(hosts: dict[str, Host]) -> None:
    for host in hosts.values():
        host.commands.clear()
        host.rsyncs = 0
        host.journal.clear()


def test_nothing_changes_on_any_host_before_the_plan_is_confirmed(fleet) -> None:
    out, hosts = fleet
    at_confirmation: list = []

    def confirm(preview) -> bool:
        at_confirmation.append((list(hosts["10.0.0.1"].journal), [h.reads_only() for h in hosts.values()]))
        return False

    with pytest.raises(UsageError, match="^the plan was not confirmed; nothing was changed$"):
        run_apply(out, "all", log=Printer(quiet=True), confirm=confirm)
    assert at_confirmation == [([], [True, True])]
    assert all(h.reads_only() and h.files == {} and h.record is None for h in hosts.values())

    accepted: list = []
    result = run_apply(
        out, "all", log=Printer(quiet=True), confirm=lambda p: accepted.append(list(hosts["10.0.0.1"].journal)) or True
    )
    assert accepted == [[]], "something changed before the confirmation"
    assert result.failures == [] and result.changed == {"10.0.0.1": True, "10.0.0.2": True}
    assert hosts["10.0.0.1"].files[PATRONI] == b"scope: pg-test\nname: pg-test-1\n"


def test_without_a_terminal_and_without_yes_apply_refuses_and_installs_nothing(fleet) -> None:
    out, hosts = fleet
    result = CliRunner().invoke(main, ["apply", "-o", str(out)])  # no TARGET: all
    assert result.exit_code == 2, result.output
    assert result.stdout.startswith("Plan for all (2 hosts)\n")
    assert result.stderr.splitlines()[-1] == (
        "error: refusing to apply the above without --yes, as there is no terminal to confirm on"
    )
    assert all(h.reads_only() for h in hosts.values())
    assert not any(event.startswith("install") for _, event in hosts["10.0.0.1"].journal)
    assert "Traceback" not in result.output


def test_on_a_terminal_apply_asks_and_a_no_changes_nothing(fleet, monkeypatch) -> None:
    out, hosts = fleet
    monkeypatch.setattr(click.testing._NamedTextIOWrapper, "isatty", lambda self: True, raising=False)
    no = CliRunner().invoke(main, ["apply", "-o", str(out), "all"], input="n\n")
    assert no.exit_code == 2, no.output
    assert "Apply this plan? [y/N]" in no.stderr
    assert no.stderr.splitlines()[-1] == "error: the plan was not confirmed; nothing was changed"
    assert all(h.reads_only() for h in hosts.values())
    yes = CliRunner().invoke(main, ["apply", "-o", str(out), "all"], input="y\n")
    assert yes.exit_code == 0, yes.output
    assert untimed(yes.stdout.splitlines()[-1]) == "2 host(s): 2 changed (10.0.0.1, 10.0.0.2)"


def test_yes_applies_the_plan_with_one_progress_line_per_step(fleet) -> None:
    out, hosts = fleet
    result = CliRunner().invoke(main, ["apply", "-o", str(out), "--yes", "all"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Plan for all (2 hosts)"
    assert untimed(result.stdout.splitlines()[-1]) == "2 host(s): 2 changed (10.0.0.1, 10.0.0.2)"
    assert hosts["10.0.0.2"].files[NODE_CONF] == b"node\n" and "patroni.service" in hosts["10.0.0.1"].active
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert "[1/2] 10.0.0.1 node: installing 1 file" in progress
    assert "[2/2] 10.0.0.1 pgsql: activating start patroni.service" in progress
    assert any(line.startswith("[2/2] 10.0.0.1 pgsql: healthy in ") for line in progress)
    assert "[done] 10.0.0.2 changed" in progress
    assert not any(line.startswith("[2/2] 10.0.0.2") for line in progress), "10.0.0.2 has no pgsql"
    assert "[" not in result.stdout.replace("[y/N]", ""), "progress goes to stderr only"


def test_the_plan_of_a_changed_file_names_it_and_the_restart_it_sets_off(fleet) -> None:
    out, hosts = fleet
    apply_yes(out)
    (out / "10.0.0.1" / PATRONI.lstrip("/")).write_text("scope: pg-test\nname: pg-test-1\nttl: 30\n")
    shown: list = []
    with pytest.raises(UsageError):
        run_apply(out, "all", log=Printer(quiet=True), confirm=lambda p: shown.append(p) or False)
    (preview,) = shown
    (hp,) = preview.plan.hosts
    assert (hp.host, hp.status, hp.group) == ("10.0.0.1", "change", "pg-test")
    assert (hp.added, hp.changed, hp.removed) == ([], [PATRONI], [])
    assert hp.activations == [Activation("restart", "restart patroni.service")]
    assert preview.plan.unchanged == 1 and preview.pending == {"10.0.0.1"} and preview.removals == []
    text = "\n".join(render_text(preview.plan))
    assert PATRONI in text and "restart patroni.service" in text


def test_a_host_with_nothing_to_do_costs_its_reads_only_and_a_changed_one_is_staged_once(fleet) -> None:
    out, hosts = fleet
    apply_yes(out)
    forget_commands(hosts)
    asked: list = []
    result = run_apply(out, "all", log=Printer(quiet=True), confirm=lambda p: asked.append(p) or True)
    assert asked == [] and result.changed == {"10.0.0.1": False, "10.0.0.2": False} and not result.plan.changed
    for host in hosts.values():  # the agent's look: one round trip, nothing written
        assert host.reads_only() and len(host.commands) == 1, host.commands
    assert hosts["10.0.0.1"].journal == []

    (out / "10.0.0.1" / NODE_CONF.lstrip("/")).write_text("node, changed\n")
    forget_commands(hosts)
    apply_yes(out, "10.0.0.1,10.0.0.2")
    assert hosts["10.0.0.2"].reads_only() and len(hosts["10.0.0.2"].commands) == 1
    one = hosts["10.0.0.1"]
    assert one.rsyncs == 1, "staged once, after the confirmation"
    assert sum(c.endswith((" inspect", " look")) for c in one.commands) == 1, "what the first pass read is reused"
    assert [e for _, e in one.journal if e.startswith("install")] == [f"install {NODE_CONF}"]


def test_no_changes_prints_so_and_asks_nothing(fleet) -> None:
    out, hosts = fleet
    apply_yes(out)
    result = CliRunner().invoke(main, ["apply", "-o", str(out)])  # no terminal, no --yes: nothing to refuse
    assert result.exit_code == 0, result.output
    *plan, closing = result.stdout.splitlines()
    assert plan == ["Plan for all (2 hosts)", "no changes"] and untimed(closing) == "2 host(s): 0 changed"


def test_a_live_host_that_cannot_be_read_stops_the_run_before_any_change(fleet) -> None:
    out, hosts = fleet
    hosts["10.0.0.2"].dark = True
    result = CliRunner().invoke(main, ["apply", "-o", str(out), "--yes", "all"])
    assert result.exit_code == 3, result.output
    assert "error: 10.0.0.2: cannot be read, so nothing was changed on any host: " in result.stderr
    assert hosts["10.0.0.1"].reads_only() and hosts["10.0.0.1"].journal == []


def test_a_missing_package_is_in_the_plan_and_the_files_are_read_again_once_it_is_installed(fleet) -> None:
    out, hosts = fleet
    apply_yes(out)
    two = manifest("10.0.0.2", ["node"], [entry(NODE_CONF, "node", actions=(Action("reload", "haproxy.service"),))],
                   [("haproxy.service", "node")])  # fmt: skip
    two.packages = ["haproxy"]
    write_bundle(out, two, {NODE_CONF: "node\n"})
    hosts["10.0.0.2"].probe = f"haproxy deinstall ok config-files\n{V.SECTION}\n{V.SECTION}\n{V.SECTION}\n"
    forget_commands(hosts)
    shown: list = []
    result = run_apply(out, "all", log=Printer(quiet=True), confirm=lambda p: shown.append(p) or True)
    (hp,) = shown[0].plan.hosts
    assert (hp.host, hp.note, hp.added + hp.changed + hp.removed) == ("10.0.0.2", "install package(s) haproxy", [])
    assert hosts["10.0.0.2"].installed == ["haproxy"] and result.changed["10.0.0.2"] is True
    # the package may have put its own files in place: read again before planning the phase
    assert sum(c.endswith((" inspect", " look")) for c in hosts["10.0.0.2"].commands) == 2
    assert hosts["10.0.0.1"].reads_only()


def test_files_in_place_without_a_record_are_a_change_that_only_writes_the_record(fleet) -> None:
    """An apply killed after installing and before recording: the next plan says so, and the run records them."""
    out, hosts = fleet
    apply_yes(out)
    hosts["10.0.0.2"].record = None
    forget_commands(hosts)
    shown: list = []
    result = run_apply(out, "all", log=Printer(quiet=True), confirm=lambda p: shown.append(p) or True)
    (hp,) = shown[0].plan.hosts
    assert (hp.host, hp.status, hp.added, hp.changed, hp.activations) == ("10.0.0.2", "add", [], [], [])
    assert "record" in hp.note
    assert result.changed == {"10.0.0.1": False, "10.0.0.2": True}
    assert set(hosts["10.0.0.2"].record["files"]) == {NODE_CONF}
    assert [e for _, e in hosts["10.0.0.2"].journal] == ["record"]


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="a Debian machine's dpkg-query")
def test_the_probe_reads_packages_users_directories_and_conflicting_units_here(tmp_path: Path) -> None:
    """The probe's shell command, run on this machine: what `prepare` would do, found without doing it."""
    here = tmp_path / "d"
    here.mkdir(mode=0o750)
    os.chmod(here, 0o750)
    m = manifest("10.0.0.1", identity={"redis": {"disable_units": ["sty-no-such.service"]}})
    m.packages = ["coreutils", "sty-no-such-package"]
    m.users = [OsUser("root"), OsUser("sty-no-such-user")]
    owner = (here.owner(), here.group())
    other_mode = format(tmp_path.stat().st_mode & 0o7777 ^ 0o001, "04o")  # what tmp_path's mode is not
    m.directories = [
        Directory(str(here), *owner, "0750"),
        Directory(str(here / "new")),
        Directory(str(tmp_path), *owner, other_mode),
    ]
    command = V.probe_command(m)
    assert command is not None
    said = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
    needs = V.parse_probe(m, said.stdout)
    assert needs.packages == ["sty-no-such-package"] and needs.conflicts == []
    assert needs.ensure == ["user sty-no-such-user", f"directory {here / 'new'}", f"mode of {tmp_path}"]
    assert not (here / "new").exists()
    assert V.probe_command(manifest("10.0.0.1")) is None, "nothing to probe: no round trip"


# -- --json ---------------------------------------------------------------------------------------------


def test_apply_json_prints_the_plan_and_the_result_and_progress_stays_on_stderr(fleet) -> None:
    out, hosts = fleet
    result = CliRunner().invoke(main, ["apply", "-o", str(out), "--yes", "--json", "all"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["changed"] == {"10.0.0.1": True, "10.0.0.2": True} and doc["failures"] == []
    plan = {h["host"]: h for h in doc["plan"]["hosts"]}
    assert plan["10.0.0.1"]["status"] == "add" and plan["10.0.0.1"]["group"] == "pg-test"
    assert plan["10.0.0.1"]["files"]["added"] == sorted([NODE_CONF, PATRONI])
    assert {"impact": "restart", "label": "start patroni.service"} in plan["10.0.0.1"]["activations"]
    assert "[1/2] 10.0.0.2 node: installing 1 file" in result.stderr

    again = CliRunner().invoke(main, ["apply", "-o", str(out), "--json", "all"])  # nothing to do: nothing asked
    assert again.exit_code == 0 and json.loads(again.stdout)["plan"]["changed"] is False


def test_check_json_gives_each_host_its_files_activations_and_diffs(fleet) -> None:
    out, hosts = fleet
    apply_yes(out)
    hosts["10.0.0.2"].files[NODE_CONF] = b"node\n# hand edit\n"
    result = CliRunner().invoke(main, ["apply", "-o", str(out), "--check", "--json", "all"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["errors"] == []
    (host,) = doc["drift"]["hosts"]
    assert (host["host"], host["status"], host["files"]["changed"]) == ("10.0.0.2", "change", [NODE_CONF])
    assert host["activations"] == [{"impact": "reload", "label": "reload haproxy.service"}]
    assert "-# hand edit" in host["diffs"][NODE_CONF]
    assert doc["drift"]["totals"]["unchanged"] == 1

    text = CliRunner().invoke(main, ["apply", "-o", str(out), "--check", "10.0.0.2"])
    assert text.exit_code == 1 and "-# hand edit" in text.stdout


def test_lint_json_lists_every_check_and_keeps_the_exit_code(fleet, monkeypatch) -> None:
    out, _ = fleet
    found = {
        "10.0.0.1": [CheckResult("patroni", (PATRONI,), FAIL, "bad ttl"), CheckResult("yaml", (NODE_CONF,), PASS)],
        "10.0.0.2": [CheckResult("yaml", (NODE_CONF,), SKIP, reason="no yamllint here")],
    }
    monkeypatch.setattr("sty.apply.lint.os.geteuid", lambda: 0)
    monkeypatch.setattr("sty.apply.lint._lookup_packages", lambda manifests: None)
    monkeypatch.setattr("sty.apply.lint.lint_host", lambda outdir, ip, manifest, hosts: found[ip])
    for ip in found:
        (out / ip).mkdir(exist_ok=True)
    result = CliRunner().invoke(main, ["lint", "-o", str(out), "--json"])
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert doc["totals"] == {"passed": 1, "failed": 1, "skipped": 1}
    first = doc["hosts"][0]
    assert first["host"] == "10.0.0.1" and first["checks"][0] == {
        "checker": "patroni", "files": [PATRONI], "status": "fail", "output": "bad ttl", "reason": "",
    }  # fmt: skip
    assert doc["hosts"][1]["checks"][0]["reason"] == "no yamllint here"
