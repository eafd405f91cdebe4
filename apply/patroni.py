"""Patroni as the apply stage drives it: patronictl run on a cluster member, its member list read tolerantly,
and the two operations a rolling restart and `sty switchover` are made of (restart one member, switch over),
each waiting until Patroni reports the result rather than trusting patronictl's exit code (3.0's patronictl
prints `Failed: ...` and still exits 0).

Facts from Patroni 3.0.2's patronictl: `list -f json` gives one object per member with the columns
Cluster, Member, Host, Role (Leader, Replica, Sync Standby, Standby Leader), State, TL, Lag in MB, and with
`-e` Pending restart ("*"), Scheduled restart and Tags; empty values are left out, so the leader has no lag
and a member with nothing pending has no "Pending restart". Later versions rename the lag ("Receive Lag in
MB", "Replay Lag in MB"), report replicas as "streaming" and may add "Quorum Standby".
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

from .bundle import ApplyError
from .remote import RemoteError

PATRONI_CONF = "/etc/patroni/patroni.yml"
CTL = f"patronictl -c {PATRONI_CONF}"
HEALTHY_STATES = frozenset({"running", "streaming"})
LEADER_ROLES = frozenset({"leader", "standby leader", "master", "primary"})
DEFAULT_LOOP_WAIT = 10
# settings a hot standby must run with at least its primary's values (PostgreSQL refuses to start it otherwise)
REPLICA_FLOORS = frozenset(
    {
        "max_connections",
        "max_locks_per_transaction",
        "max_prepared_transactions",
        "max_wal_senders",
        "max_worker_processes",
    }
)
RESTART_TIMEOUT = 180.0
SWITCHOVER_TIMEOUT = 180.0


class Shell(Protocol):
    """What the helpers need of a member's host (apply.run.HostRun, apply.switchover.RemoteShell)."""

    def run(self, command: str, check: bool = True, timeout: float = 600, stdin: str | None = None) -> Any: ...

    def wait(self, probe: Callable[[], bool], timeout: float, what: str) -> None: ...


@dataclass(frozen=True)
class Member:
    name: str
    host: str = ""
    role: str = ""  # lower case: leader, replica, sync standby, standby leader, quorum standby
    state: str = ""  # lower case: running, streaming, starting, stopped ...
    timeline: int | None = None
    lag_mb: float | None = None  # None: unknown (or the leader, which has none)
    pending: bool = False
    nofailover: bool = False
    # Patroni 4's "Pending restart reason": setting -> (running value, value after a restart)
    reasons: tuple[tuple[str, str, str], ...] = ()

    @property
    def lowers_a_floor(self) -> bool:
        """A pending change lowers a setting no replica may run below its primary: the primary restarts first."""
        for name, old, new in self.reasons:
            before, after = _number(old), _number(new)
            if name in REPLICA_FLOORS and before is not None and after is not None and after < before:
                return True
        return False

    @property
    def leader(self) -> bool:
        return self.role in LEADER_ROLES

    @property
    def sync(self) -> bool:
        return not self.leader and ("sync" in self.role or "quorum" in self.role)

    @property
    def healthy(self) -> bool:
        return self.state in HEALTHY_STATES

    def __str__(self) -> str:
        return f"{self.name} ({self.role or 'no role'}, {self.state or 'no state'})"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() not in ("", "false", "no", "0", "none")


def parse_member(item: dict[str, Any]) -> Member | None:
    keys = {str(k).strip().lower(): v for k, v in item.items()}
    name = keys.get("member")
    if not name:
        return None
    lags = [v for k, v in keys.items() if "lag" in k]
    numbers = [_number(v) for v in lags]
    lag = max(n for n in numbers if n is not None) if lags and all(n is not None for n in numbers) else None
    tags = keys.get("tags")
    if not isinstance(tags, dict):
        try:
            tags = yaml.safe_load(tags) if isinstance(tags, str) else {}
        except yaml.YAMLError:
            tags = {}
    tags = tags if isinstance(tags, dict) else {}
    timeline = _number(keys.get("tl"))
    never = _flag(tags.get("nofailover")) or (tags.get("failover_priority") in (0, "0"))
    return Member(
        name=str(name),
        host=str(keys.get("host", "")),
        role=str(keys.get("role", "")).strip().lower(),
        state=str(keys.get("state", "")).strip().lower(),
        timeline=int(timeline) if timeline is not None else None,
        lag_mb=lag,
        pending=_flag(keys.get("pending restart")),
        nofailover=never,
        reasons=_reasons(keys.get("pending restart reason")),
    )


def _reasons(value: Any) -> tuple[tuple[str, str, str], ...]:
    """`max_connections: 300->250` lines (Patroni 4), as (setting, running value, new value)."""
    out = []
    for line in str(value or "").splitlines():
        name, sep, change = line.partition(": ")
        old, arrow, new = change.partition("->")
        if sep and arrow and name.strip():
            out.append((name.strip(), old.strip(), new.strip()))
    return tuple(out)


def parse_members(text: str) -> list[Member]:
    """patronictl's `list -f json`, of any 3.x/4.x version; ValueError when it is not such a list."""
    data = json.loads(text.strip() or "null")
    if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
        raise ValueError("patronictl list did not print a JSON list of members")
    return [m for m in (parse_member(i) for i in data) if m is not None]


def leader_of(members: list[Member]) -> Member | None:
    return next((m for m in members if m.leader), None)


def candidates(members: list[Member]) -> list[Member]:
    """Replicas Patroni can promote, best first: a synchronous standby, then the least lag (then by name).
    Healthy, lag known, failover allowed, and on the leader's timeline."""
    leader = leader_of(members)
    tl = leader.timeline if leader else None
    fit = [
        m
        for m in members
        if not m.leader
        and m.healthy
        and not m.nofailover
        and m.lag_mb is not None
        and (tl is None or m.timeline is None or m.timeline == tl)
    ]
    # a member restarted already (nothing pending) takes over first: the rolling restart then needs no second one
    return sorted(fit, key=lambda m: (not m.sync, m.pending, m.lag_mb, m.name))


def poll(shell: Shell, probe: Callable[[], bool], timeout: float, what: str) -> bool:
    """The host's own wait, where running out of time is an answer (False) for the caller to word."""
    try:
        shell.wait(probe, timeout, what)
    except ApplyError:
        return False
    return True


def _failed(output: str) -> str | None:
    """patronictl's own failure line, which it prints with exit code 0."""
    for line in output.splitlines():
        if line.strip().lower().startswith("failed") or " failed, details" in line.lower():
            return line.strip()
    return None


@dataclass
class Patroni:
    """patronictl for one cluster, run on one member's host."""

    shell: Shell
    cluster: str
    last: list[Member] | None = None  # the last list read
    error: str = ""  # why the last read failed
    _leader_option: str | None = None

    @property
    def quoted(self) -> str:
        return shlex.quote(self.cluster)

    def members(self) -> list[Member]:
        result = self.shell.run(f"{CTL} list -e -f json {self.quoted}", check=False, timeout=60)
        said = (result.stderr or result.stdout or "").strip()
        if result.exited != 0:
            raise ApplyError(f"patronictl list {self.cluster} exited {result.exited}: {said}")
        try:
            members = parse_members(result.stdout)
        except ValueError:
            raise ApplyError(f"patronictl list {self.cluster} printed no member list: {said}") from None
        self.last = members
        return members

    def peek(self) -> list[Member] | None:
        """members() for probes: a failed read is remembered (`error`) and tried again, not raised."""
        try:
            return self.members()
        except (ApplyError, RemoteError) as exc:
            self.error = str(exc)
            return None

    def member(self, name: str) -> Member | None:
        return next((m for m in self.peek() or [] if m.name == name), None)

    def loop_wait(self) -> int:
        result = self.shell.run(f"{CTL} show-config {self.quoted}", check=False, timeout=60)
        try:
            value = (yaml.safe_load(result.stdout or "") or {}).get("loop_wait") if result.exited == 0 else None
        except (yaml.YAMLError, AttributeError):
            value = None
        number = _number(value) if value is not None else None
        return int(number) if number and number > 0 else DEFAULT_LOOP_WAIT

    def leader_option(self) -> str:
        """`--leader` (Patroni 3.0.2 also knows `--primary` and `--master`; older ones only `--master`)."""
        if self._leader_option is None:
            helptext = self.shell.run(f"{CTL} switchover --help", check=False, timeout=60).stdout or ""
            self._leader_option = "--leader" if "--leader" in helptext else "--master"
        return self._leader_option

    def restart(self, name: str) -> None:
        result = self.shell.run(
            f"{CTL} restart --force {self.quoted} {shlex.quote(name)}", timeout=RESTART_TIMEOUT + 60
        )
        if said := _failed(result.stdout or ""):
            raise ApplyError(f"patronictl could not restart {name}: {said}")

    def switchover(self, leader: str, candidate: str) -> None:
        option = self.leader_option()
        result = self.shell.run(
            f"{CTL} switchover {option} {shlex.quote(leader)} --candidate {shlex.quote(candidate)} --force "
            f"{self.quoted}",
            timeout=SWITCHOVER_TIMEOUT + 60,
        )
        if said := _failed(result.stdout or ""):
            raise ApplyError(f"patronictl could not switch over {leader} -> {candidate}: {said}")

    def seen(self) -> str:
        """The last state read, for messages."""
        if self.last is None:
            return f"patronictl did not answer ({self.error})" if self.error else "patronictl did not answer"
        return ", ".join(map(str, self.last)) or "no members"


# -- the operations --------------------------------------------------------------------------------


def restart_member(ctl: Patroni, name: str, *, as_leader: bool = False, timeout: float = RESTART_TIMEOUT) -> float:
    """Restart one member and wait until it runs again with nothing pending: a replica streaming on the
    leader's timeline, or (the only member) the leader again. Returns the seconds it took."""
    started = time.monotonic()
    ctl.restart(name)

    def back() -> bool:
        members = ctl.peek()
        if members is None:
            return False
        me = next((m for m in members if m.name == name), None)
        if me is None or not me.healthy or me.pending:
            return False
        if as_leader:
            return me.leader
        leader = leader_of(members)
        if leader is None or me.leader:
            return False
        return me.timeline is None or leader.timeline is None or me.timeline == leader.timeline

    if not poll(ctl.shell, back, timeout, f"{name} to run again"):
        raise ApplyError(
            f"{name} did not come back {'as leader' if as_leader else 'as a streaming replica'} with nothing "
            f"pending within {timeout:.0f}s after its restart: {ctl.seen()}"
        )
    return time.monotonic() - started


def switch_over(
    ctl: Patroni, leader: str, candidate: str, *, old_must_follow: bool = True, timeout: float = SWITCHOVER_TIMEOUT
) -> float:
    """Hand the leadership to `candidate` and wait until Patroni reports it leading (and, when asked, the old
    leader running as its replica). Returns the seconds it took."""
    started = time.monotonic()
    ctl.switchover(leader, candidate)

    def done() -> bool:
        members = ctl.peek()
        if members is None:
            return False
        new = next((m for m in members if m.name == candidate), None)
        if new is None or not new.leader or not new.healthy:
            return False
        if not old_must_follow:
            return True
        old = next((m for m in members if m.name == leader), None)
        return old is not None and not old.leader and old.healthy

    if not poll(ctl.shell, done, timeout, f"{candidate} to lead {ctl.cluster}"):
        follow = f" and {leader} to follow it" if old_must_follow else ""
        raise ApplyError(
            f"the switchover {leader} -> {candidate} did not complete within {timeout:.0f}s (waiting for "
            f"{candidate} to lead{follow}): {ctl.seen()}"
        )
    return time.monotonic() - started
