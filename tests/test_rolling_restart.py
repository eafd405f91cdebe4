"""The rolling restart and `sty switchover` without hosts: a scripted Patroni cluster answers patronictl the way
Patroni 3.0.2 prints it (`list -e -f json`, empty columns left out) and changes state on restart and switchover,
so the order of operations, the candidate choice, the deferred execution after a phase's waves and the
command line's refusals are asserted on what was actually run."""

from __future__ import annotations

import json
import re
import shlex
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from sty.apply import patroni as PT
from sty.apply import plan as P
from sty.apply.bundle import ApplyError, Bundle
from sty.apply.handlers import action_handler, deferred_order
from sty.apply.phase import run_deferred, run_phase, split_deferred
from sty.apply.run import HostRun, Printer
from sty.cli import main
from sty.contract.actions import ACTIONS, Action
from sty.contract.manifest import Facts, FileEntry, Manifest, Ssh

CLUSTER = "pg-test"
RR = P.Step("pg-rolling-restart")

# -- a scripted Patroni cluster --------------------------------------------------------------------


@dataclass
class FakeMember:
    name: str
    ip: str
    role: str = "Replica"  # Leader | Replica | Sync Standby
    state: str = "running"
    lag: int | str = 0
    pending: bool = False
    tags: dict = field(default_factory=dict)
    reason: str = ""  # Patroni 4's "Pending restart reason" while pending


@dataclass
class FakeCluster:
    """Patroni as patronictl shows it: a member becomes pending on a list call after `pend_after` calls (its next
    loop after the reload), a restarted member runs again one list call later, a switchover moves the leadership
    and the timeline (and the demotion restarts the old leader, clearing its pending flag, unless told otherwise)."""

    members: dict[str, FakeMember]
    will_pend: set[str] = field(default_factory=set)
    pend_after: int = 2
    demote_clears: bool = True
    failing_restart: set[str] = field(default_factory=set)
    leader_option: str = "--leader"
    tl: int = 1
    lists: int = 0
    commands: list[tuple[str, str]] = field(default_factory=list)  # (host, command)
    events: list[str] = field(default_factory=list)  # what changed the cluster, in order
    overlaps: list[str] = field(default_factory=list)  # restarts issued while another member was down

    def down(self) -> list[str]:
        return [m.name for m in self.members.values() if m.state != "running"]

    def list_json(self) -> str:
        self.lists += 1
        if self.lists >= self.pend_after:
            for name in self.will_pend:
                self.members[name].pending = True
            self.will_pend = set()
        rows = []
        for m in sorted(self.members.values(), key=lambda m: m.name):
            row = {"Cluster": CLUSTER, "Member": m.name, "Host": m.ip, "Role": m.role, "State": m.state}
            row |= {"TL": self.tl, "Pending restart": "*" if m.pending else "", "Scheduled restart": ""}
            row |= {"Pending restart reason": m.reason if m.pending else ""}
            row |= {"Tags": m.tags or ""}
            if m.role != "Leader":
                row["Lag in MB"] = m.lag
            rows.append({k: v for k, v in row.items() if str(v)})  # patronictl leaves empty columns out
        for m in self.members.values():  # Patroni's loop: a restarted member runs again
            if m.state == "starting":
                m.state = "running"
        return json.dumps(rows)

    def __call__(self, host: str, command: str) -> SimpleNamespace:
        self.commands.append((host, command))
        words = shlex.split(command)
        assert words[:3] == ["patronictl", "-c", "/etc/patroni/patroni.yml"], command
        verb, args = words[3], words[4:]
        out = ""
        if verb == "list":
            assert args[-1] == CLUSTER and "json" in args
            out = self.list_json()
        elif verb == "show-config":
            out = "loop_wait: 10\nttl: 30\n"
        elif verb == "switchover" and "--help" in args:
            out = (
                f"Usage: patronictl switchover [OPTIONS] [CLUSTER_NAME]\n  {self.leader_option} TEXT  current leader\n"
            )
        elif verb == "restart":
            assert "--force" in args and args[-2] == CLUSTER, command
            name = args[-1]
            if name in self.failing_restart:
                out = f"Failed: restart for member {name}, status code=503, (restart failed)\n"
            else:
                if self.down():
                    self.overlaps.append(f"{name} while {', '.join(self.down())} down")
                self.events.append(f"restart {name}")
                self.members[name].pending = False
                self.members[name].state = "starting"
                out = f"Success: restart on member {name}\n"
        elif verb == "switchover":
            old, new = args[args.index(self.leader_option) + 1], args[args.index("--candidate") + 1]
            assert "--force" in args and args[-1] == CLUSTER and self.members[old].role == "Leader", command
            self.events.append(f"switchover {old} -> {new}")
            self.members[old].role, self.members[new].role = "Replica", "Leader"
            self.members[old].state, self.members[new].lag = "starting", ""
            self.members[old].pending = self.members[old].pending and not self.demote_clears
            self.tl += 1
            out = f"Successfully switched over to {new}\n"
        else:
            raise AssertionError(f"unexpected command {command}")
        return SimpleNamespace(stdout=out, stderr="", exited=0)


def cluster_of(*specs: tuple[str, str, str], **kwargs) -> FakeCluster:
    return FakeCluster({n: FakeMember(n, ip, role) for n, ip, role in specs}, **kwargs)


THREE = (
    ("pg-test-1", "10.0.0.1", "Leader"),
    ("pg-test-2", "10.0.0.2", "Replica"),
    ("pg-test-3", "10.0.0.3", "Replica"),
)


def pg_manifest(ip: str, seq: int, role: str, cluster: str = CLUSTER) -> Manifest:
    ident = {"cluster": cluster, "seq": seq, "role": role, "instance": f"{cluster}-{seq}", "dbsu": "postgres"}
    return Manifest(
        address=ip,
        nodename=f"{cluster}-{seq}",
        ssh=Ssh(ip),
        platform="debian12",
        package_manager="apt",
        modules=["node", "pgsql"],
        groups=[cluster],
        identity={"pgsql": ident},
        facts=Facts(1, 1, 1),
        phases=["node", "pgsql"],
    )


@dataclass
class FakeHost:
    """A HostContext whose commands go to the scripted cluster; waits poll without sleeping."""

    ip: str
    manifest: Manifest
    cluster: FakeCluster
    logs: list[str] = field(default_factory=list)
    desired: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)

    def run(self, command: str, check: bool = True, timeout: float = 600, stdin: str | None = None):
        return self.cluster(self.ip, command)

    def wait(self, probe, timeout: float, what: str) -> None:
        for _ in range(40):
            if probe():
                return
        raise ApplyError(f"{what} is not healthy after {timeout:.0f}s")

    def log(self, message: str) -> None:
        self.logs.append(message)


def host_of(cluster: FakeCluster, name: str, role: str | None = None) -> FakeHost:
    m = cluster.members[name]
    bundle_role = role or ("primary" if m.role == "Leader" else "replica")
    return FakeHost(m.ip, pg_manifest(m.ip, int(name.rsplit("-", 1)[1]), bundle_role), cluster)


def restart(host: FakeHost) -> None:
    handler = action_handler("pg-rolling-restart")
    assert handler is not None
    handler(host, "pgsql")


# -- parsing patronictl ----------------------------------------------------------------------------


def test_member_list_of_patroni_3_and_4():
    v3 = [
        {"Cluster": "c", "Member": "c-1", "Host": "10.0.0.1", "Role": "Leader", "State": "running", "TL": 3},
        {"Cluster": "c", "Member": "c-2", "Host": "10.0.0.2", "Role": "Sync Standby", "State": "running", "TL": 3,
         "Lag in MB": 0, "Pending restart": "*", "Tags": {"nofailover": True}},
        {"Cluster": "c", "Member": "c-3", "Host": "10.0.0.3", "Role": "Replica", "State": "starting",
         "Lag in MB": "unknown"},
    ]  # fmt: skip
    leader, sync, starting = PT.parse_members(json.dumps(v3))
    assert (leader.leader, leader.timeline, leader.lag_mb, leader.pending) == (True, 3, None, False)
    assert (sync.sync, sync.healthy, sync.lag_mb, sync.pending, sync.nofailover) == (True, True, 0, True, True)
    assert (starting.healthy, starting.lag_mb, starting.timeline) == (False, None, None)
    v4 = [
        {"Member": "c-4", "Role": "Quorum Standby", "State": "streaming", "TL": "4", "Receive Lag in MB": 3,
         "Replay Lag in MB": 5, "Tags": {"failover_priority": 0}},
    ]  # fmt: skip
    (quorum,) = PT.parse_members(json.dumps(v4))
    assert (quorum.sync, quorum.healthy, quorum.lag_mb, quorum.timeline, quorum.nofailover) == (True, True, 5, 4, True)
    with pytest.raises(ValueError):
        PT.parse_members('{"not": "a list"}')


def test_candidate_is_a_sync_standby_else_the_least_lag():
    def m(name, role="Replica", lag=0, state="running", tl=2, **kw):
        return PT.Member(name, role=role.lower(), state=state, timeline=tl, lag_mb=lag, **kw)

    leader = m("a", "Leader", None)
    assert [c.name for c in PT.candidates([leader, m("b", lag=0), m("c", "Sync Standby", lag=7)])] == ["c", "b"]
    assert [c.name for c in PT.candidates([leader, m("b", lag=4), m("c", lag=1), m("d", lag=1)])] == ["c", "d", "b"]
    unfit = [m("e", state="stopped"), m("f", nofailover=True), m("g", lag=None), m("h", tl=1)]
    assert PT.candidates([leader, *unfit]) == []


# -- the rolling restart on one host ---------------------------------------------------------------


def test_replica_restarts_itself_once_pending():
    cluster = cluster_of(*THREE, will_pend={"pg-test-2"})
    host = host_of(cluster, "pg-test-2")
    restart(host)
    assert cluster.events == ["restart pg-test-2"]
    assert all(h == "10.0.0.2" for h, _ in cluster.commands), "every command runs on H"
    assert not cluster.members["pg-test-2"].pending and cluster.members["pg-test-2"].state == "running"
    assert any(re.fullmatch(r"pgsql: restarted pg-test-2 in \d+\.\ds", line) for line in host.logs), host.logs


def test_nothing_pending_runs_nothing():
    cluster = cluster_of(*THREE)
    host = host_of(cluster, "pg-test-2")
    restart(host)
    assert cluster.events == []
    assert {shlex.split(c)[3] for _, c in cluster.commands} == {"list", "show-config"}
    assert any("no restart pending" in line for line in host.logs)


def test_leader_switches_over_to_the_sync_standby_before_its_restart():
    cluster = cluster_of(*THREE, will_pend={"pg-test-1"}, demote_clears=False)
    cluster.members["pg-test-2"].lag = 0
    cluster.members["pg-test-3"].role, cluster.members["pg-test-3"].lag = "Sync Standby", 12
    host = host_of(cluster, "pg-test-1")
    restart(host)
    assert cluster.events == ["switchover pg-test-1 -> pg-test-3", "restart pg-test-1"]
    assert cluster.members["pg-test-3"].role == "Leader" and cluster.members["pg-test-1"].role == "Replica"
    assert not any(m.pending for m in cluster.members.values())
    assert any(re.fullmatch(r"pgsql: switched over pg-test-1 -> pg-test-3 in \d+\.\ds", x) for x in host.logs)


def test_without_sync_standby_the_least_lag_takes_over():
    cluster = cluster_of(*THREE, will_pend={"pg-test-1"}, demote_clears=False)
    cluster.members["pg-test-2"].lag, cluster.members["pg-test-3"].lag = 9, 2
    restart(host_of(cluster, "pg-test-1"))
    assert cluster.events == ["switchover pg-test-1 -> pg-test-3", "restart pg-test-1"]


def test_demotion_that_restarted_the_old_leader_needs_no_second_restart():
    cluster = cluster_of(*THREE, will_pend={"pg-test-1"}, demote_clears=True)
    restart(host_of(cluster, "pg-test-1"))
    assert cluster.events == ["switchover pg-test-1 -> pg-test-2"]


def test_old_patronictl_gets_master_instead_of_leader():
    cluster = cluster_of(*THREE, will_pend={"pg-test-1"}, leader_option="--master")
    restart(host_of(cluster, "pg-test-1"))
    switch = [c for _, c in cluster.commands if " switchover " in c and "--help" not in c]
    assert len(switch) == 1 and "--master pg-test-1" in switch[0] and "--leader" not in switch[0]


def test_single_member_restarts_in_place():
    cluster = cluster_of(("pg-test-1", "10.0.0.1", "Leader"), will_pend={"pg-test-1"})
    restart(host_of(cluster, "pg-test-1"))
    assert cluster.events == ["restart pg-test-1"]
    assert cluster.members["pg-test-1"].role == "Leader" and not cluster.members["pg-test-1"].pending


def test_leader_without_a_healthy_replica_is_left_pending():
    cluster = cluster_of(*THREE, will_pend={"pg-test-1"})
    cluster.members["pg-test-2"].state = cluster.members["pg-test-3"].state = "stopped"
    with pytest.raises(ApplyError, match=r"pg-test-1 leads pg-test and no other member is a healthy replica"):
        restart(host_of(cluster, "pg-test-1"))
    assert cluster.events == []


def test_a_member_still_pending_at_the_end_fails_naming_it():
    """pg-test-2's host is not part of this apply: the primary, last, finds it still pending."""
    cluster = cluster_of(*THREE, will_pend={"pg-test-1", "pg-test-2"})
    cluster.members["pg-test-3"].role = "Sync Standby"
    with pytest.raises(ApplyError, match=r"^pg-test-2 of pg-test still reports a pending restart"):
        restart(host_of(cluster, "pg-test-1"))
    assert cluster.events == ["switchover pg-test-1 -> pg-test-3"]


def test_patronictl_failure_line_is_an_error_despite_exit_0():
    cluster = cluster_of(*THREE, will_pend={"pg-test-2"}, failing_restart={"pg-test-2"})
    with pytest.raises(ApplyError, match=r"could not restart pg-test-2: Failed: restart for member pg-test-2"):
        restart(host_of(cluster, "pg-test-2"))


# -- deferred until the phase's waves are done -----------------------------------------------------


def test_the_rolling_restart_is_deferred_but_still_in_the_plan():
    conf = FileEntry(
        "/etc/patroni/patroni.yml",
        "pgsql",
        "yaml",
        "",
        actions=(Action("patroni-reload"), Action("pg-rolling-restart")),
    )
    steps = P.plan_steps([P.FileChange(conf, ("content",))], [], ["patroni.service"], {"patroni.service": True})
    plan = P.ModulePlan("10.0.0.2", "pgsql", [P.FileChange(conf, ("content",))], [], steps)
    assert plan.summary() == "1 file(s) to install; patroni-reload, pg-rolling-restart"
    assert split_deferred(steps) == ([P.Step("patroni-reload")], [RR])


@pytest.mark.skipif(
    not hasattr(ACTIONS["pg-rolling-restart"], "on_first_install"), reason="the contract has no on_first_install"
)
def test_no_rolling_restart_for_a_first_install():
    conf = FileEntry("/etc/patroni/patroni.yml", "pgsql", "yaml", "", actions=(Action("pg-rolling-restart"),))
    assert P.plan_steps([P.FileChange(conf, ("new",))], [], [], {}) == []
    assert P.plan_steps([P.FileChange(conf, ("content",))], [], [], {}) == [RR]


@dataclass
class FakeRun:
    """A host of the phase runner: its wave part and its deferred steps are recorded in one shared journal."""

    manifest: Manifest
    journal: list[str]
    deferred: dict[str, list[P.Step]] = field(default_factory=dict)
    fail: bool = False

    def run_deferred(self, step: P.Step, module: str) -> None:
        self.journal.append(f"{step} {self.manifest.address}")
        if self.fail:
            raise ApplyError(f"{self.manifest.address}: {module}: {step} failed")


def fleet(journal: list[str], roles: dict[str, str]) -> dict[str, FakeRun]:
    return {ip: FakeRun(pg_manifest(ip, i + 1, role), journal) for i, (ip, role) in enumerate(roles.items())}


def test_deferred_steps_run_after_every_wave_replicas_first():
    journal: list[str] = []
    runs = fleet(journal, {"10.0.0.1": "primary", "10.0.0.2": "replica", "10.0.0.10": "replica"})

    def start(ip: str) -> Future:
        journal.append(f"wave {ip}")
        runs[ip].deferred["pgsql"] = [RR]  # as apply_module leaves it
        done: Future = Future()
        done.set_result(None)
        return done

    waves = [["10.0.0.1"], ["10.0.0.2", "10.0.0.10"]]
    failures, failed = run_phase("pgsql", waves, start, runs, lambda ip, msg: None)
    assert (failures, failed) == ([], set())
    assert journal == [
        "wave 10.0.0.1",
        "wave 10.0.0.2",
        "wave 10.0.0.10",
        "pg-rolling-restart 10.0.0.2",
        "pg-rolling-restart 10.0.0.10",
        "pg-rolling-restart 10.0.0.1",
    ]
    assert all(not r.deferred.get("pgsql") for r in runs.values()), "each deferred step runs once"


def test_no_deferred_step_after_a_failed_wave():
    journal: list[str] = []
    runs = fleet(journal, {"10.0.0.1": "primary", "10.0.0.2": "replica"})
    runs["10.0.0.1"].deferred["pgsql"] = [RR]

    def start(ip: str) -> Future:
        done: Future = Future()
        done.set_exception(ApplyError(f"{ip}: pgsql: broken")) if ip == "10.0.0.2" else done.set_result(None)
        return done

    failures, failed = run_phase("pgsql", [["10.0.0.1"], ["10.0.0.2"]], start, runs, lambda ip, msg: None)
    assert failures == ["10.0.0.2: pgsql: broken"] and failed == {"10.0.0.2"}
    assert journal == []


def test_a_failed_deferred_step_stops_the_others():
    journal: list[str] = []
    runs = fleet(journal, {"10.0.0.1": "primary", "10.0.0.2": "replica", "10.0.0.3": "replica"})
    for run in runs.values():
        run.deferred["pgsql"] = [RR]
    runs["10.0.0.2"].fail = True
    failures = run_deferred("pgsql", runs, lambda ip, msg: None)
    assert failures == ["10.0.0.2: pgsql: pg-rolling-restart failed"]
    assert journal == ["pg-rolling-restart 10.0.0.2"]


def test_deferred_order_is_replicas_then_primaries():
    manifests = {
        "10.0.0.1": pg_manifest("10.0.0.1", 1, "primary"),
        "10.0.0.9": pg_manifest("10.0.0.9", 2, "replica"),
        "10.0.0.10": pg_manifest("10.0.0.10", 3, "replica"),
        "10.0.0.5": pg_manifest("10.0.0.5", 1, "primary", cluster="pg-meta"),
    }
    assert deferred_order("pgsql", manifests) == ["10.0.0.9", "10.0.0.10", "10.0.0.1", "10.0.0.5"]


def test_a_whole_cluster_rolls_one_member_at_a_time():
    """Three hosts' deferred steps through the real handler: replicas, then the leader after its switchover."""
    cluster = cluster_of(*THREE, will_pend={"pg-test-1", "pg-test-2", "pg-test-3"}, demote_clears=False)
    cluster.members["pg-test-2"].lag, cluster.members["pg-test-3"].lag = 5, 1
    hosts = {h.ip: h for h in (host_of(cluster, n) for n in ("pg-test-1", "pg-test-2", "pg-test-3"))}

    @dataclass
    class Run:
        host: FakeHost
        deferred: dict = field(default_factory=lambda: {"pgsql": [RR]})

        @property
        def manifest(self) -> Manifest:
            return self.host.manifest

        def run_deferred(self, step: P.Step, module: str) -> None:
            handler = action_handler(step.kind)
            assert handler is not None
            handler(self.host, module)

    assert run_deferred("pgsql", {ip: Run(h) for ip, h in hosts.items()}, lambda ip, msg: None) == []
    assert cluster.events == [
        "restart pg-test-2",
        "restart pg-test-3",
        "switchover pg-test-1 -> pg-test-3",
        "restart pg-test-1",
    ]
    assert cluster.overlaps == [], "a restart began while another member was down"
    assert not any(m.pending for m in cluster.members.values())


def test_host_run_deferred_failure_names_host_and_member_and_rolls_nothing_back():
    cluster = cluster_of(*THREE, will_pend={"pg-test-2"}, failing_restart={"pg-test-2"})

    class Remote:
        def run(self, command, stdin=None, check=True, timeout=None):
            return cluster("10.0.0.2", command)

    bundle = Bundle(Path("."), "10.0.0.2", pg_manifest("10.0.0.2", 2, "replica"), "")
    run = HostRun(bundle, Remote(), {}, "r", Printer(quiet=True))  # type: ignore[arg-type]
    with pytest.raises(ApplyError) as caught:
        run.run_deferred(RR, "pgsql")
    said = str(caught.value)
    assert said.startswith("10.0.0.2: pgsql: pg-rolling-restart failed on pg-test-2: ")
    assert "nothing was rolled back" in said and "keeps running with the change pending" in said
    assert not any("agent.py restore" in c for _, c in cluster.commands)


# -- sty switchover --------------------------------------------------------------------------------


@pytest.fixture
def bundles(tmp_path: Path) -> Path:
    out = tmp_path / "outputs"
    out.mkdir()
    for name, ip, role in THREE:
        seq = int(name.rsplit("-", 1)[1])
        (out / ip).mkdir()
        manifest = pg_manifest(ip, seq, "primary" if role == "Leader" else "replica")
        (out / f"{ip}.yml").write_text(yaml.safe_dump(manifest.to_dict(), sort_keys=False))
    return out


@pytest.fixture
def no_ssh(monkeypatch):
    def refuse(manifest, options):
        raise AssertionError(f"{manifest.address} was contacted")

    monkeypatch.setattr("sty.apply.switchover.Remote.from_manifest", refuse)


def test_switchover_refuses_without_yes_when_stdin_is_no_terminal(bundles, no_ssh):
    result = CliRunner().invoke(main, ["switchover", "-o", str(bundles), CLUSTER])
    assert result.exit_code == 2, result.output
    assert "refusing to switch over without --yes" in result.output
    assert "Traceback" not in result.output


def test_switchover_refuses_an_unknown_member_or_cluster(bundles, no_ssh):
    result = CliRunner().invoke(main, ["switchover", "-o", str(bundles), CLUSTER, "--to", "pg-test-9", "--yes"])
    assert result.exit_code == 2, result.output
    assert "error: pg-test-9 is not a member of pg-test (members: pg-test-1, pg-test-2, pg-test-3)" in result.output
    result = CliRunner().invoke(main, ["switchover", "-o", str(bundles), "pg-nope", "--yes"])
    assert result.exit_code == 2 and "'pg-nope' is not a PostgreSQL cluster" in result.output


@pytest.fixture
def live(monkeypatch) -> FakeCluster:
    """The cluster behind SSH: pg-test-1 is unreachable, so the command reads the state from pg-test-2."""
    cluster = cluster_of(*THREE)
    cluster.members["pg-test-2"].lag, cluster.members["pg-test-3"].lag = 4, 0

    class Remote:
        def __init__(self, ip):
            self.ip = ip

        def run(self, command, stdin=None, check=True, timeout=None):
            if self.ip == "10.0.0.1":
                raise PT.RemoteError("10.0.0.1: NoValidConnectionsError: unreachable")
            if command.startswith("curl"):  # Patroni's /primary on the new leader
                leader = next(m for m in cluster.members.values() if m.role == "Leader")
                return SimpleNamespace(stdout="", stderr="", exited=0 if leader.ip in command else 22)
            return cluster(self.ip, command)

        def close(self):
            pass

    monkeypatch.setattr("sty.apply.switchover.Remote.from_manifest", lambda m, options: Remote(m.address))
    return cluster


def test_switchover_picks_the_best_replica_and_reports(bundles, live):
    result = CliRunner().invoke(main, ["switchover", "-o", str(bundles), CLUSTER, "--yes"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"pg-test: pg-test-1 -> pg-test-3 in \d+\.\ds\n", result.output)
    assert live.events == ["switchover pg-test-1 -> pg-test-3"]
    assert {h for h, _ in live.commands} == {"10.0.0.2"}


def test_switchover_to_an_unfit_member_is_refused(bundles, live):
    live.members["pg-test-2"].state = "stopped"
    result = CliRunner().invoke(main, ["switchover", "-o", str(bundles), CLUSTER, "--to", "pg-test-2", "--yes"])
    assert result.exit_code == 3 and "pg-test-2 is not a healthy replica of pg-test" in result.output
    result = CliRunner().invoke(main, ["switchover", "-o", str(bundles), CLUSTER, "--to", "pg-test-1", "--yes"])
    assert result.exit_code == 2 and "pg-test-1 already leads pg-test" in result.output
    assert live.events == []


def test_a_lowered_max_connections_restarts_the_leader_in_place_first():
    """A replica cannot run below its primary: the first replica's step restarts the leader in place, then itself;
    the leader's own step finds nothing pending and no switchover happens."""
    cluster = cluster_of(*THREE, will_pend={"pg-test-1", "pg-test-2", "pg-test-3"}, pend_after=1)
    for m in cluster.members.values():
        m.reason = "max_connections: 300->250"
    for name in ("pg-test-2", "pg-test-3", "pg-test-1"):
        restart(host_of(cluster, name, role="primary" if name == "pg-test-1" else "replica"))
    assert cluster.events == ["restart pg-test-1", "restart pg-test-2", "restart pg-test-3"]
    assert not any(m.pending for m in cluster.members.values())


def test_a_raised_max_connections_keeps_replicas_first():
    cluster = cluster_of(*THREE, will_pend={"pg-test-1", "pg-test-2", "pg-test-3"}, pend_after=1)
    for m in cluster.members.values():
        m.reason = "max_connections: 250->300"
    for name in ("pg-test-2", "pg-test-3", "pg-test-1"):
        restart(host_of(cluster, name, role="primary" if name == "pg-test-1" else "replica"))
    assert cluster.events[:2] == ["restart pg-test-2", "restart pg-test-3"]
    assert cluster.events[2].startswith("switchover pg-test-1 -> ")


def test_pending_restart_reasons_are_parsed():
    member = PT.parse_member(
        {
            "Member": "a",
            "Pending restart": "*",
            "Pending restart reason": "max_connections: 300->250\nwork_mem: 4MB->8MB",
        }
    )
    assert member is not None and member.reasons == (("max_connections", "300", "250"), ("work_mem", "4MB", "8MB"))
    assert member.lowers_a_floor
    assert not PT.parse_member({"Member": "b", "Pending restart reason": "shared_buffers: 1GB->512MB"}).lowers_a_floor


def test_a_lowered_setting_waits_for_the_leader_to_have_it_pending():
    """The replica sees the lowered value before the leader's Patroni has loaded it: it waits for the leader's flag
    rather than restarting the leader with the old value."""
    cluster = cluster_of(*THREE, will_pend={"pg-test-1"}, pend_after=4)
    for m in cluster.members.values():
        m.reason = "max_connections: 300->200"
    cluster.members["pg-test-2"].pending = True
    restart(host_of(cluster, "pg-test-2"))
    assert cluster.events == ["restart pg-test-1", "restart pg-test-2"]


def test_a_lowered_setting_restarts_a_leader_in_place_when_its_step_comes_first():
    """After a failover the live leader may be a bundle replica whose step runs first: no switchover (the replica
    taking over would keep the higher value), a restart in place."""
    cluster = cluster_of(*THREE, will_pend={"pg-test-1", "pg-test-2", "pg-test-3"}, pend_after=1)
    for m in cluster.members.values():
        m.reason = "max_connections: 300->200"
    for name in ("pg-test-1", "pg-test-2", "pg-test-3"):
        restart(host_of(cluster, name, role="replica"))
    assert cluster.events == ["restart pg-test-1", "restart pg-test-2", "restart pg-test-3"]
