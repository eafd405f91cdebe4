"""Day-2 operations and faults on the applied testbed, each with its figures (`make faults`).

A client writes without pause through HAProxy's 5433 on a member that survives the fault, from the infra host
(tests/fault_writer.py); a write counts only once COMMIT returned. Each scenario prints one line: the write
outage the client saw, the writes acknowledged and lost, the time to rejoin, and so on. The bounds asserted are
the issue's: a failover within the RTO plan's `ttl + loop_wait` plus HAProxy's `inter x fall`; no acknowledged
write lost in synchronous mode; the old primary back on the new timeline within 120 s of its return; nothing
pending a restart after a rolling restart; a second apply after each scenario changes nothing.

The scenarios run in order on one fleet (each starts from the state the previous one left): failover and
rejoin (norm plan), switchover, rolling restart, failover in synchronous mode (fast plan), the DCS losing one
member and then all of them, a point-in-time restore of pg-meta, and an interrupted apply.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fleet_testbed import FIGURES, ROOT, FleetRun, sty_argv, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.faults]

WRITER = (Path(__file__).with_name("fault_writer.py")).read_text()
CLIENT = "10.10.10.10"  # the writer runs on the infra host, which no pg-test fault touches
PG_TEST = ("10.10.10.11", "10.10.10.12", "10.10.10.13")
REJOIN_BOUND = 120.0


def figure(name: str, **values: Any) -> None:
    line = f"{name:<22} " + "  ".join(f"{k}={v}" for k, v in values.items())
    FIGURES.append(line)
    print(line)


class Writer:
    """fault_writer.py on the client host, in a thread, writing through `ip`:5433."""

    def __init__(self, fleet: FleetRun, ip: str, limit: float = 300):
        self.fleet, self.ip, self.run = fleet, ip, uuid.uuid4().hex[:8]
        self.stopfile = f"/tmp/stop-{self.run}"
        self.result: dict[str, Any] | None = None
        args = [ip, "5433", "test", "test", "Testbed.Test", self.run, self.stopfile, str(limit)]
        self.thread = threading.Thread(target=self._go, args=(args, limit), daemon=True)

    def _go(self, args: list[str], limit: float) -> None:
        out = self.fleet.tb.host_exec(CLIENT, ["python3", "-c", WRITER, *args], timeout=limit + 60)
        try:
            self.result = json.loads(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.result = {"failed": out.stderr[-2000:]}

    def __enter__(self) -> Writer:
        self.thread.start()
        try:
            wait_until(lambda: self.count(self.ip) > 20, 30, f"the writer's first writes through {self.ip}", every=0.2)
        except AssertionError as exc:
            self.fleet.sh(CLIENT, f"touch {self.stopfile}")
            self.thread.join(60)
            said = {k: v for k, v in (self.result or {}).items() if k != "acked"}
            raise AssertionError(f"{exc}: {said}; {self.fleet.members('pg-test', self.ip)}") from None
        return self

    def count(self, ip: str) -> int:
        """Rows of this run visible on a member (any member: reads on replicas are fine)."""
        out = self.fleet.tb.host_exec(
            ip,
            ["runuser", "-u", "postgres", "--", "psql", "-AtXq", "-d", "test", "-c", self._count_sql()],
            timeout=10,
        )
        return int(out.stdout.strip() or 0) if out.returncode == 0 else 0

    def _count_sql(self) -> str:
        return f"SELECT count(*) FROM faults WHERE run = '{self.run}'"

    def progressing(self, ip: str) -> bool:
        """New acknowledged writes arrive on `ip` (the current primary)."""
        first = self.count(ip)
        time.sleep(1.0)
        return self.count(ip) > first > 0

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> dict[str, Any]:
        if self.result is None:
            self.fleet.sh(CLIENT, f"touch {self.stopfile}")
            self.thread.join(60)
        assert self.result is not None and "acked" in self.result, f"the writer failed: {self.result}"
        return self.result

    def lost(self, primary: str) -> int:
        """Acknowledged writes the cluster does not have."""
        rows = self.fleet.psql(primary, f"SELECT n FROM faults WHERE run = '{self.run}'", db="test")
        present = {int(x) for x in rows.split()}
        return len(set(self.stop()["acked"]) - present)


def rto_bound(plan: str) -> float:
    """ttl + loop_wait + HAProxy's detection (inter x fall) of a pg_rto_plan entry (sty's defaults, Pigsty's)."""
    schema = json.loads((ROOT / "schemas" / "pgsql.json").read_text())
    entry = schema["properties"]["pg_rto_plan"]["default"][plan]
    ttl, loop, inter, fall = entry[0], entry[1], float(str(entry[5]).rstrip("s")), int(entry[9])
    return ttl + loop + inter * fall


def second_apply_changes_nothing(fleet: FleetRun) -> None:
    again = fleet.apply()
    assert "0 changed" in again.stdout, again.stdout[-3000:]


def failover(fleet: FleetRun, plan: str, sync: bool) -> None:
    leader = wait_until(lambda: fleet.leader("pg-test", PG_TEST[2]), 60, "a pg-test leader")
    survivor = next(ip for ip in PG_TEST if ip != leader)
    with Writer(fleet, survivor) as writer:
        cut = time.monotonic()
        fleet.tb.cut(leader)
        try:
            new = wait_until(
                lambda: (ld := fleet.leader("pg-test", survivor)) not in (None, leader) and ld, 120, "a new leader"
            )
            wait_until(lambda: writer.progressing(new), 60, "writes through 5433 again")
            elected = time.monotonic() - cut
        finally:
            fleet.tb.heal(leader)
        healed = time.monotonic()
        result = writer.stop()
    lost = writer.lost(new)
    timeline = int(fleet.psql(new, "SELECT timeline_id FROM pg_control_checkpoint()"))

    def rejoined() -> bool:
        me = next((m for m in fleet.members("pg-test", new) if m["Host"].split(":")[0] == leader), None)
        return bool(me and me.get("State") in ("streaming", "running") and int(me.get("TL") or 0) == timeline)

    wait_until(rejoined, REJOIN_BOUND + 30, f"{leader} back on timeline {timeline}")
    rejoin = time.monotonic() - healed
    bound = rto_bound(plan)
    figure(
        f"failover ({plan}{', sync' if sync else ''})",
        outage_ms=result["outage_ms"],
        bound_ms=round(bound * 1000),
        new_leader_s=round(elected, 1),
        acked=len(result["acked"]),
        lost=lost,
        rejoin_s=round(rejoin, 1),
    )
    assert result["outage_ms"] <= bound * 1000, result
    assert rejoin <= REJOIN_BOUND
    if sync:
        assert lost == 0
    second_apply_changes_nothing(fleet)


@pytest.fixture(scope="module")
def fleet(fleet_testbed: FleetRun) -> FleetRun:
    assert fleet_testbed.first_apply.returncode == 0, fleet_testbed.first_apply.stdout[-4000:]
    leader = wait_until(lambda: fleet_testbed.leader("pg-test", PG_TEST[1]), 120, "a pg-test leader")
    fleet_testbed.psql(
        leader,
        "CREATE TABLE IF NOT EXISTS faults (run text, n int, at timestamptz DEFAULT clock_timestamp(), "
        "PRIMARY KEY (run, n)); ALTER TABLE faults OWNER TO test",
        db="test",
    )
    return fleet_testbed


def test_failover_and_rejoin_norm(fleet: FleetRun):
    failover(fleet, "norm", sync=False)


def test_switchover(fleet: FleetRun):
    leader = wait_until(lambda: fleet.leader("pg-test", PG_TEST[0]), 60, "a pg-test leader")
    survivor = next(ip for ip in PG_TEST if ip != leader)
    with Writer(fleet, survivor) as writer:
        started = time.monotonic()
        done = fleet.sty("switchover", "-o", str(fleet.outdir), "--yes", "pg-test")
        took = time.monotonic() - started
        assert done.returncode == 0, done.stdout + done.stderr
        new = wait_until(lambda: (ld := fleet.leader("pg-test", survivor)) not in (None, leader) and ld, 60, "leader")
        wait_until(lambda: writer.progressing(new), 60, "writes again")
    result = writer.stop()
    figure(
        "switchover",
        outage_ms=result["outage_ms"],
        took_s=round(took, 1),
        lost=writer.lost(new),
        said=done.stdout.strip().splitlines()[-1],
    )
    second_apply_changes_nothing(fleet)


def rolling_restart(fleet: FleetRun, value: int, name: str) -> None:
    """max_connections of pg-test to `value` (a postmaster setting): planned and applied as a rolling restart."""
    data = fleet.inventory()
    data["all"]["children"]["pg-test"]["vars"]["pg_parameters"] = {"max_connections": value}
    plan = fleet.sty("diff", "-i", str(fleet.variant(data)), "-o", str(fleet.outdir), "--stat")
    assert "rolling restart of pg-test: max_connections" in plan.stdout, plan.stdout + plan.stderr
    built = fleet.build(data)
    assert built.returncode == 0, built.stderr
    leader = wait_until(lambda: fleet.leader("pg-test", PG_TEST[0]), 60, "a pg-test leader")
    survivor = next(ip for ip in PG_TEST if ip != leader)
    with Writer(fleet, survivor) as writer:
        started = time.monotonic()
        applied = fleet.apply()
        took = time.monotonic() - started
    result = writer.stop()
    assert "pg-rolling-restart" in applied.stdout, applied.stdout[-3000:]
    pending = fleet.pending_restart("pg-test", PG_TEST[0])
    values = {ip: fleet.psql(ip, "SHOW max_connections") for ip in PG_TEST}
    figure(
        name,
        outage_ms=result["outage_ms"],
        took_s=round(took, 1),
        pending=len(pending),
        lost=writer.lost(fleet.leader("pg-test", PG_TEST[0])),
    )
    assert pending == [] and set(values.values()) == {str(value)}, (pending, values)
    second_apply_changes_nothing(fleet)


def test_rolling_restart(fleet: FleetRun):
    """Raised: replicas first, then a switchover and the old leader. Lowered: a replica may not run below its
    primary, so the leader restarts in place first."""
    rolling_restart(fleet, 300, "rolling restart (up)")
    rolling_restart(fleet, 200, "rolling restart (down)")


def test_failover_sync_fast(fleet: FleetRun):
    data = fleet.inventory()
    vars_ = data["all"]["children"]["pg-test"]["vars"]
    vars_.update(pg_parameters={"max_connections": 200}, pg_rpo=0, pg_rto="fast")
    built = fleet.build(data)
    assert built.returncode == 0, built.stderr
    fleet.apply()
    wait_until(
        lambda: any(m.get("Role") == "Sync Standby" for m in fleet.members("pg-test", PG_TEST[0])), 60, "a sync standby"
    )
    failover(fleet, "fast", sync=True)


def test_dcs_loss(fleet: FleetRun):
    etcd = ("10.10.10.10", "10.10.10.11", "10.10.10.12")
    leader = wait_until(lambda: fleet.leader("pg-test", PG_TEST[2]), 60, "a pg-test leader")
    survivor = next(ip for ip in PG_TEST if ip != leader)
    with Writer(fleet, survivor) as writer:
        fleet.sh(etcd[2], "systemctl kill -s KILL etcd.service; systemctl stop etcd.service")
        time.sleep(25)  # more than the fast plan's ttl: the leader key is renewed through the other two
        one_down_leader = fleet.leader("pg-test", survivor)
        one = writer.stop()
    fleet.sh(etcd[2], "systemctl start etcd.service")
    figure("etcd: one member lost", outage_ms=one["outage_ms"], leader_kept=one_down_leader == leader)
    assert one_down_leader == leader and one["outage_ms"] < 2000, one

    with Writer(fleet, survivor) as writer:
        for ip in etcd:
            fleet.sh(ip, "systemctl kill -s KILL etcd.service; systemctl stop etcd.service")
        time.sleep(45)  # twice the ttl: without failsafe mode the primary would have demoted itself
        role = fleet.psql(leader, "SELECT CASE WHEN pg_is_in_recovery() THEN 'replica' ELSE 'primary' END")
        wait_until(lambda: writer.progressing(leader), 30, "writes while etcd is down")
        all_down = writer.stop()
    started = time.monotonic()
    for ip in etcd:
        fleet.sh(ip, "systemctl start --no-block etcd.service")
    back = wait_until(lambda: fleet.leader("pg-test", survivor), 120, "a leader once etcd is back")
    recovered = time.monotonic() - started
    figure(
        "etcd: all members lost",
        outage_ms=all_down["outage_ms"],
        primary_kept=role == "primary",
        recovered_s=round(recovered, 1),
    )
    assert role == "primary" and back == leader
    second_apply_changes_nothing(fleet)


def test_point_in_time_restore(fleet: FleetRun):
    meta = "10.10.10.10"
    fleet.psql(meta, "CREATE TABLE IF NOT EXISTS pitr (id int PRIMARY KEY, at timestamptz DEFAULT now())", db="meta")
    backup = fleet.sh(meta, "runuser -u postgres -- /pg/bin/pg-backup full", timeout=600)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    fleet.psql(meta, "INSERT INTO pitr (id) SELECT generate_series(1, 100)", db="meta")
    target = fleet.psql(meta, "SELECT to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS.US+00')")
    time.sleep(1.5)
    fleet.psql(meta, "INSERT INTO pitr (id) SELECT generate_series(101, 200)", db="meta")
    fleet.psql(meta, "SELECT pg_switch_wal()")
    started = time.monotonic()
    restore = fleet.sh(meta, f"/pg/bin/pg-pitr -t '{target}' --yes --timeout 300", timeout=420)
    assert restore.returncode == 0, restore.stdout[-3000:] + restore.stderr[-3000:]
    finish = fleet.sh(meta, "/pg/bin/pg-pitr --finish --yes --timeout 300", timeout=420)
    assert finish.returncode == 0, finish.stdout[-3000:] + finish.stderr[-3000:]
    took = time.monotonic() - started
    rows = fleet.psql(meta, "SELECT count(*), min(id), max(id) FROM pitr", db="meta")
    figure("point-in-time restore", target=target.replace(" ", "T"), rows=rows, took_s=round(took, 1))
    assert rows == "100|1|100", rows
    wait_until(lambda: fleet.leader("pg-meta", meta) == meta, 120, "pg-meta's leader after the restore")
    second_apply_changes_nothing(fleet)


def test_interrupted_apply_converges(fleet: FleetRun):
    data = fleet.inventory()
    vars_ = data["all"]["children"]["pg-test"]["vars"]
    vars_.update(pg_parameters={"max_connections": 200, "work_mem": "8MB"}, pg_rpo=0, pg_rto="fast")
    data["all"]["vars"]["haproxy_admin_password"] = "Testbed.HAProxy.2"  # a change on every host
    assert fleet.build(data).returncode == 0
    proc = subprocess.Popen(
        sty_argv("apply", "-o", str(fleet.outdir), "--yes", "all"),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(4)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the first apply ended before it was killed: nothing interrupted"
    again = fleet.apply()
    leftovers = {ip: fleet.sh(ip, "find /etc /pg -name '.sty-*' 2>/dev/null").stdout.split() for ip in fleet.tb.hosts}
    drift = fleet.sty("apply", "--check", "-o", str(fleet.outdir), "all")
    figure(
        "interrupted apply",
        rerun_changed=again.stdout.strip().splitlines()[-1],
        leftovers=sum(map(len, leftovers.values())),
    )
    assert drift.returncode == 0, drift.stdout[-3000:]
    assert not any(leftovers.values()), leftovers
    second_apply_changes_nothing(fleet)


def test_scale_in_and_out(fleet: FleetRun):
    """pg-test-3's host leaves the inventory: the rest stops pointing at it, then its services stop, its files go
    and its data is moved aside (after a confirmation). Added back, it is cloned afresh and served again."""
    gone = "10.10.10.13"
    data = copy.deepcopy(fleet.last_data)
    del data["all"]["children"]["pg-test"]["hosts"][gone]
    assert fleet.build(data).returncode == 0
    refused = fleet.sty("apply", "-o", str(fleet.outdir), "all")
    assert refused.returncode == 2 and "--yes" in refused.stderr, refused.stdout[-2000:] + refused.stderr
    started = time.monotonic()
    removed = fleet.apply("all")  # FleetRun.apply passes --yes
    took_in = time.monotonic() - started
    # a stopped member's key lives until its lease ends (ttl)
    wait_until(
        lambda: {m["Member"] for m in fleet.members("pg-test", PG_TEST[0])} == {"pg-test-1", "pg-test-2"},
        60,
        "pg-test without pg-test-3",
    )
    backends = fleet.sh(PG_TEST[0], "cat /etc/haproxy/conf.d/pg-test-*.cfg").stdout
    state = fleet.sh(gone, "systemctl is-active patroni haproxy; ls -d /pg/data* ; ls /etc/patroni 2>&1").stdout
    assert gone not in backends and "inactive" in state and "/pg/data.removed-" in state, state
    assert "patroni.yml" not in state, state
    second_apply_changes_nothing(fleet)

    data["all"]["children"]["pg-test"]["hosts"][gone] = {"pg_seq": 3, "pg_role": "replica", "pg_offline_query": True}
    assert fleet.build(data).returncode == 0
    started = time.monotonic()
    fleet.apply()

    def streaming() -> bool:
        me = next((m for m in fleet.members("pg-test", PG_TEST[0]) if m["Member"] == "pg-test-3"), None)
        return bool(me and me.get("State") in ("streaming", "running") and me.get("Role") != "Leader")

    wait_until(streaming, 120, "pg-test-3 cloned and streaming again")
    took_out = time.monotonic() - started
    backends = fleet.sh(PG_TEST[0], "cat /etc/haproxy/conf.d/pg-test-*.cfg").stdout
    figure(
        "scale in / out",
        removed_s=round(took_in, 1),
        readded_s=round(took_out, 1),
        summary=removed.stdout.strip().splitlines()[-1],
    )
    assert gone in backends
    second_apply_changes_nothing(fleet)
