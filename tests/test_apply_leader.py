"""Cluster-wide steps follow Patroni's leader, not the inventory's pg_role; a failed phase leaves a unit it
started stopped (not the distribution's unit with its defaults); a new etcd cluster's members start together."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from test_rolling_restart import THREE, FakeHost, cluster_of, pg_manifest

from sty.apply import plan as P
from sty.apply.bundle import Bundle
from sty.apply.handlers import action_handler, together_when_new
from sty.apply.run import HostRun, Printer, _all_new
from sty.contract.actions import Action
from sty.contract.manifest import FileEntry, Unit


def _sql_host(cluster, name: str, role: str) -> FakeHost:
    m = cluster.members[name]
    host = FakeHost(m.ip, pg_manifest(m.ip, int(name.rsplit("-", 1)[1]), role), cluster)
    entry = FileEntry("/pg/tmp/10-roles.sql", "pgsql", "sql", "0" * 64, actions=(Action("pg-sql-primary"),))
    host.manifest.files.append(entry)
    sent: list[str] = []
    ask_patroni = host.run

    def run(command: str, check: bool = True, timeout: float = 600, stdin: str | None = None):
        if command.startswith("patronictl"):
            return ask_patroni(command)
        sent.append(command)
        return SimpleNamespace(stdout="", stderr="", exited=0)

    host.run = run  # type: ignore[method-assign]
    host.sent = sent  # type: ignore[attr-defined]
    return host


def test_sql_runs_on_the_member_that_leads_now_not_on_the_bundles_primary():
    cluster = cluster_of(*THREE)  # pg-test-1 leads
    cluster.members["pg-test-1"].role, cluster.members["pg-test-2"].role = "Replica", "Leader"  # after a failover
    handler = action_handler("pg-sql-primary")
    bundle_primary = _sql_host(cluster, "pg-test-1", "primary")
    live_leader = _sql_host(cluster, "pg-test-2", "replica")
    handler(bundle_primary, "pgsql")
    handler(live_leader, "pgsql")
    assert bundle_primary.sent == []  # a replica now: its psql would fail on a read-only server
    assert len(live_leader.sent) == 1 and "psql" in live_leader.sent[0] and "10-roles.sql" in live_leader.sent[0]


class _Remote:
    def __init__(self, active: dict[str, bool]):
        self.active, self.commands = active, []

    def run(self, command: str, stdin=None, check=True, timeout=None):
        self.commands.append(command)
        units = command.split()[2:]
        if command.startswith("systemctl is-active"):
            return SimpleNamespace(stdout="\n".join("active" if self.active.get(u) else "inactive" for u in units))
        if command.startswith("systemctl is-enabled"):
            return SimpleNamespace(stdout="\n".join("enabled" if self.active.get(u) else "disabled" for u in units))
        return SimpleNamespace(stdout="", stderr="", exited=0)

    def agent(self, op, request):
        self.commands.append(f"agent {op}")
        return {}


def _run(ip: str, remote: _Remote) -> HostRun:
    manifest = pg_manifest(ip, 1, "primary")
    return HostRun(Bundle(Path("."), ip, manifest, ""), remote, {}, "r", Printer(quiet=True))  # type: ignore[arg-type]


def test_rollback_stops_a_unit_the_phase_started_and_restarts_one_it_restarted():
    remote = _Remote({})
    plan = P.ModulePlan("10.0.0.1", "etcd", steps=[P.Step("start", "etcd.service"), P.Step("restart", "x.service")])
    _run("10.0.0.1", remote)._rollback("etcd", plan)
    assert "systemctl disable --now etcd.service" in remote.commands
    assert "systemctl restart etcd.service" not in remote.commands  # the package's unit would start with defaults
    assert "systemctl restart x.service" in remote.commands


def test_a_new_etcd_cluster_starts_in_one_wave_a_running_one_member_by_member():
    assert together_when_new("etcd") and not together_when_new("pgsql")
    fresh = {ip: _run(ip, _Remote({})) for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3")}
    for run in fresh.values():
        run.bundle.manifest.units.append(Unit("etcd.service", "etcd"))
    waves = [["10.0.0.1"], ["10.0.0.2"], ["10.0.0.3"]]
    assert _all_new("etcd", waves, fresh)
    fresh["10.0.0.2"].remote.active["etcd.service"] = True  # type: ignore[attr-defined]
    assert not _all_new("etcd", waves, fresh)
