"""PGSQL: what a changed PostgreSQL bundle needs beyond its units, always through Patroni.

Cluster-wide steps (DCS configuration, SQL, the pgBackRest stanza) run once, on the member that is primary
in the bundle, after Patroni reports it as leader. Primaries change first. The rolling restart is deferred
until every member has its files and reloaded (Patroni only then knows what is pending), and runs one member
at a time: replicas first, the primaries last, each switching over before its own restart.

A member leaving (its host left the cluster or the inventory) hands the leadership over first when it leads and
a member that stays can take over, and its data directory is moved aside rather than deleted: a member added
back later is cloned fresh, and the data stays recoverable.
"""

from __future__ import annotations

import json
import posixpath
import shlex

import yaml

from sty.contract.manifest import Manifest
from sty.contract.targets import sort_hosts

from ..bundle import ApplyError
from ..patroni import PATRONI_CONF, Member, Patroni, candidates, leader_of, poll, restart_member, switch_over
from . import HostContext, ModuleHandlers, RemovalContext, member_name

LEADER_TIMEOUT = 180.0
ROLLING_RESTART = "pg-rolling-restart"
DEFAULT_PG_DATA = "/pg/data"  # Pigsty's pg_data
DATA_DIR = "pgsql.data_dir"  # where before_remove leaves the data directory for after_remove


def _pg(host: HostContext) -> dict:
    return host.manifest.identity.get("pgsql", {})


def _is_primary(host: HostContext) -> bool:
    return _pg(host).get("role") == "primary"


def _dbsu(host: HostContext) -> str:
    return shlex.quote(_pg(host).get("dbsu", "postgres"))


def patroni_reload(host: HostContext, module: str) -> None:
    host.run("systemctl reload patroni.service")


def live_leader(host: HostContext, module: str) -> str:
    """The member Patroni reports leading this host's cluster, once it has one: after a failover or a
    switchover it is not the bundle's primary, and cluster-wide steps follow Patroni, not the inventory."""
    cluster = str(_pg(host)["cluster"])
    ctl = Patroni(host, cluster)
    found: list[str] = []

    def has_leader() -> bool:
        members = ctl.peek()
        lead = leader_of(members) if members else None
        if lead is not None:
            found.append(lead.name)
        return lead is not None

    host.wait(has_leader, LEADER_TIMEOUT, f"a leader of {cluster} (patronictl list on {host.ip})")
    return found[-1]


def leads(host: HostContext, module: str) -> bool:
    return live_leader(host, module) == member_name(host.manifest, module)


def dcs_config(host: HostContext, module: str) -> None:
    """Push bootstrap.dcs to the running cluster, once per cluster, from the bundle's primary (patronictl writes
    the DCS, which every member reads, whoever leads)."""
    if not _is_primary(host):
        return
    doc = yaml.safe_load(host.desired[PATRONI_CONF])
    live_leader(host, module)
    stage = "/var/lib/sty/stage/dcs.json"
    host.run(f"cat > {stage}", stdin=json.dumps(doc["bootstrap"]["dcs"], sort_keys=True))
    host.run(f"patronictl -c {PATRONI_CONF} edit-config --force --replace {stage}")


def sql_on_primary(host: HostContext, module: str) -> None:
    """The cluster's SQL runs on the member that leads it now (every member carries the same files)."""
    if not leads(host, module):
        return
    for entry in host.manifest.files_of(module):
        if any(a.action == "pg-sql-primary" for a in entry.actions):
            host.run(
                f"runuser -u {_dbsu(host)} -- psql -X -q -v ON_ERROR_STOP=1 -d postgres -f {shlex.quote(entry.path)}",
                timeout=600,
            )


def stanza(host: HostContext, module: str) -> None:
    """The stanza (and the first full backup) on the member that leads the cluster now."""
    if not leads(host, module):
        return
    name, dbsu = shlex.quote(_pg(host)["cluster"]), _dbsu(host)
    host.run(f"runuser -u {dbsu} -- pgbackrest --stanza={name} stanza-create", timeout=600)
    if _pg(host).get("init_backup"):
        info = host.run(f"runuser -u {dbsu} -- pgbackrest --stanza={name} info", check=False)
        if "status: error (no valid backups)" in info.stdout:
            host.run(f"runuser -u {dbsu} -- pgbackrest --stanza={name} --type=full backup", timeout=3600)


def rolling_restart(host: HostContext, module: str) -> None:
    """Restart this member if Patroni reports a restart pending: in place when it is a replica (or the only
    member), after a switchover to the best replica when it leads. The bundle's primary goes last, so its
    step also proves that no member of the cluster is left pending."""
    cluster, me = str(_pg(host)["cluster"]), member_name(host.manifest, module)
    ctl = Patroni(host, cluster)
    if me not in {m.name for m in ctl.members()}:
        raise ApplyError(f"{me} is not a member of {cluster} as Patroni on {host.ip} sees it: {ctl.seen()}")
    window = 2 * ctl.loop_wait() + 10  # a DCS change reaches a member on its next loop

    def pending() -> bool:
        mine = ctl.member(me)
        return mine is not None and mine.pending

    ctl.last = None  # set again by every read that succeeds while waiting
    if poll(host, pending, window, f"{me} to report a pending restart"):
        _restart(host, ctl, me, module)
    elif ctl.last is None:
        raise ApplyError(f"Patroni on {host.ip} did not answer while waiting for {me}: {ctl.error}")
    else:
        host.log(f"{module}: {me}: no restart pending after {window}s; the change is in effect already")
    if _is_primary(host):
        left = [m.name for m in ctl.members() if m.pending]
        if left:
            raise ApplyError(
                f"{', '.join(left)} of {cluster} still report{'s' if len(left) == 1 else ''} a pending restart "
                f"after the rolling restart; restart {'it' if len(left) == 1 else 'them'} with "
                f"`patronictl -c {PATRONI_CONF} restart --pending {cluster}`"
            )


def _restart(host: HostContext, ctl: Patroni, me: str, module: str) -> None:
    members = ctl.members()
    mine = next(m for m in members if m.name == me)
    if any(m.lowers_a_floor for m in members):
        if mine.leader:  # no switchover: a replica that took over would keep the higher value (its controldata)
            seconds = restart_member(ctl, me, as_leader=True)
            host.log(f"{module}: restarted the leader {me} in place (a lowered setting) in {seconds:.1f}s")
            return
        _leader_first(host, ctl, module)
    if not mine.leader:
        host.log(f"{module}: restarted {me} in {restart_member(ctl, me):.1f}s")
        return
    if len(members) == 1:
        seconds = restart_member(ctl, me, as_leader=True)
        host.log(f"{module}: restarted {me} in place (the only member) in {seconds:.1f}s")
        return
    best = candidates(members)
    if not best:
        raise ApplyError(
            f"{me} leads {ctl.cluster} and no other member is a healthy replica to take over "
            f"({ctl.seen()}); its restart is left pending"
        )
    target = best[0].name
    host.log(f"{module}: switched over {me} -> {target} in {switch_over(ctl, me, target):.1f}s")
    after = ctl.member(me)
    if after is not None and not after.pending:
        host.log(f"{module}: {me} restarted as a replica when it was demoted; nothing left pending")
        return
    host.log(f"{module}: restarted {me} in {restart_member(ctl, me):.1f}s")


def _leader_first(host: HostContext, ctl: Patroni, module: str) -> None:
    """A replica cannot run below its primary: a lowered max_connections (and the like) starts at the leader,
    restarted in place once Patroni there has the new value pending (its next loop), before any replica."""
    found: list[str] = []

    def leader_pending() -> bool:
        lead = leader_of(ctl.peek() or [])
        if lead is not None and lead.pending:
            found.append(lead.name)
        return bool(found)

    if not poll(host, leader_pending, 2 * ctl.loop_wait() + 10, "the leader to report the lowered setting pending"):
        return  # restarted already (an earlier member's step), or the change is in effect there
    seconds = restart_member(ctl, found[-1], as_leader=True)
    host.log(f"{module}: restarted the leader {found[-1]} in place first (a lowered setting) in {seconds:.1f}s")


def _host_conf(host: HostContext) -> dict | None:
    """The Patroni configuration on the host (the one applied last), None when there is none."""
    result = host.run(f"cat {PATRONI_CONF}", check=False, timeout=60)
    if result.exited != 0:
        return None
    try:
        doc = yaml.safe_load(result.stdout or "")
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict) else None


def _data_dir(conf: dict | None) -> str:
    postgresql = conf.get("postgresql") if conf else None
    value = postgresql.get("data_dir") if isinstance(postgresql, dict) else None
    if value is None:
        return DEFAULT_PG_DATA
    path = str(value)
    if not path.startswith("/") or path == "/" or posixpath.normpath(path) != path or any(c in path for c in "\0\n\r"):
        raise ApplyError(f"{PATRONI_CONF} names the data directory {path!r}, not an absolute normalised path")
    return path


def _address(member: Member) -> str:
    """The member's host as patronictl lists it, without a port (`10.10.10.12:5433`)."""
    return member.host.rsplit(":", 1)[0] if member.host.count(":") == 1 else member.host


def before_remove(host: RemovalContext, module: str) -> None:
    """Read the data directory while the configuration is there; if this member leads, hand the leadership to
    the best healthy replica that stays. A leader with no member staying goes as it is (the whole cluster is
    removed); one whose staying members cannot take over is refused: removing it would leave them leaderless."""
    conf = _host_conf(host)
    host.kept[DATA_DIR] = _data_dir(conf)
    cluster, me = (conf or {}).get("scope"), (conf or {}).get("name")
    if not cluster or not me:
        host.log(f"{module}: no Patroni member is configured here; there is no leadership to hand over")
        return
    ctl = Patroni(host, str(cluster))
    members = ctl.members()
    mine = next((m for m in members if m.name == str(me)), None)
    if mine is None or not mine.leader:
        return
    staying = [m for m in members if m.name != mine.name and _address(m) not in host.removing]
    best = [m for m in candidates(members) if m in staying]
    if best:
        seconds = switch_over(ctl, mine.name, best[0].name, old_must_follow=False)
        host.log(f"{module}: switched over {me} -> {best[0].name} in {seconds:.1f}s before removing {me}")
    elif staying:
        raise ApplyError(
            f"{me} leads {cluster} and no member that stays is a healthy replica to take over ({ctl.seen()}); "
            "nothing was removed"
        )
    else:
        host.log(f"{module}: {me} leads {cluster} and no member stays: the whole cluster is removed")


def after_remove(host: RemovalContext, module: str) -> None:
    """Move the data directory aside (`<pg_data>.removed-<run id>`), never delete it."""
    data = str(host.kept.pop(DATA_DIR, DEFAULT_PG_DATA))
    aside = f"{data}.removed-{host.run_id}"
    src, dst = shlex.quote(data), shlex.quote(aside)
    result = host.run(f"if [ -e {src} ] || [ -L {src} ]; then mv -T {src} {dst} && echo moved; fi", timeout=600)
    if "moved" in (result.stdout or ""):
        host.log(f"{module}: data directory {data} moved aside to {aside}; delete it once it is not needed")
    else:
        host.log(f"{module}: no data directory at {data}")


def primaries_first(manifests: dict[str, Manifest]) -> list[list[str]]:
    """The first bootstrap needs the primary up; replicas follow in one wave."""
    primaries = [ip for ip, m in manifests.items() if m.identity.get("pgsql", {}).get("role") == "primary"]
    return [sort_hosts(primaries), sort_hosts(set(manifests) - set(primaries))]


def replicas_then_primaries(manifests: dict[str, Manifest]) -> list[str]:
    """A rolling restart restarts the leader last (one switchover per cluster)."""
    primaries = {ip for ip, m in manifests.items() if m.identity.get("pgsql", {}).get("role") == "primary"}
    return sort_hosts(set(manifests) - primaries) + sort_hosts(primaries)


HANDLERS = ModuleHandlers(
    "pgsql",
    {
        "patroni-reload": patroni_reload,
        "patroni-dcs-config": dcs_config,
        "pg-sql-primary": sql_on_primary,
        "pgbackrest-stanza": stanza,
        ROLLING_RESTART: rolling_restart,
    },
    primaries_first,
    deferred=frozenset({ROLLING_RESTART}),
    deferred_order=replicas_then_primaries,
    before_remove=before_remove,
    after_remove=after_remove,
    remove_note="data moved aside",
)
