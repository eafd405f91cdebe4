"""The first pass of `sty apply`: what would change on each host, read there without changing anything.

Per host: the bundle rendered locally (secrets put in, certificates signed); then one round trip, the agent's `look`
sent in the command line: the checksum, owner and mode of every managed path, the record of the previous apply, the
state of the manifest's units and, when the manifest lists packages, OS users, directories or distribution units
that would hold our ports, the output of one read-only probe of those. From them `apply/plan.py` decides per module
what the phases would do, and the records give the fleet's removals. Nothing is written to any host, not even the
stage, so a plan that is not confirmed leaves every host as it was; the phases then reuse what was read, and skip
the hosts with nothing to do, which cost this connection and this one command and nothing more.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from sty.contract.manifest import Manifest
from sty.contract.plan import Activation, HostPlan, Plan

from . import plan as P
from . import remove as R
from .bundle import ApplyError, Bundle
from .remote import Remote, RemoteError

SECTION = "--sty-probe--"
GROUP_MODULES = ("pgsql", "redis", "minio", "etcd")  # whose cluster names a host's group in the plan, first wins


@dataclass
class Needs:
    """What `prepare` and `disable_conflicts` would do on the host (read by the probe)."""

    packages: list[str] = field(default_factory=list)  # to install
    ensure: list[str] = field(default_factory=list)  # `user dba`, `directory /pg/data`, `mode of /pg`
    conflicts: list[str] = field(default_factory=list)  # units a package runs that would hold our ports

    def notes(self) -> list[str]:
        out = []
        if self.packages:
            out.append(f"install package(s) {', '.join(self.packages)}")
        if self.ensure:
            out.append(f"create or fix {', '.join(self.ensure)}")
        if self.conflicts:
            out.append(f"disable {', '.join(self.conflicts)} (it would hold our ports)")
        return out


@dataclass
class Look:
    """What the first pass read on one host and what it means there."""

    running: dict[str, bool]  # every unit of the manifest: enabled and active
    needs: Needs
    plans: dict[str, P.ModulePlan]  # per module of the manifest, as its phase would plan it now
    stale_record: bool  # the files are right but the record does not say so (an apply killed before it wrote it)
    seconds: dict[str, float] = field(default_factory=dict)  # render, read (connect included), plan: for timings

    @property
    def pending(self) -> bool:
        """The host has something for the phases to do (removals aside)."""
        needs = self.needs.packages or self.needs.ensure or self.needs.conflicts
        return bool(needs) or self.stale_record or any(p.changes_anything for p in self.plans.values())


class Looking(Protocol):
    """What the first pass needs of a host (implemented by apply.run.HostRun)."""

    bundle: Bundle
    remote: Remote
    desired: dict[str, bytes]
    live: dict[str, P.LiveFile]
    record: dict | None
    look: Look | None

    @property
    def ip(self) -> str: ...

    @property
    def manifest(self) -> Manifest: ...

    def render(self) -> None: ...


# -- packages, users, directories, conflicting units: one read-only command -----------------------------------


def conflict_units(manifest: Manifest) -> list[str]:
    return sorted({str(u) for v in manifest.identity.values() for u in v.get("disable_units", [])})


def probe_command(manifest: Manifest) -> str | None:
    """One shell command that reads what `prepare` would install or create; None when the manifest lists none."""
    script = probe_script(manifest)
    return None if script is None else "sh -c " + shlex.quote(script)


def probe_script(manifest: Manifest) -> str | None:
    """The shell script of `probe_command` (the agent's `look` runs it with `sh -c`)."""
    pkgs, users = manifest.packages, [u.name for u in manifest.users]
    dirs, units = [d.path for d in manifest.directories], conflict_units(manifest)
    if not (pkgs or users or dirs or units):
        return None
    q = " ".join
    names = q(map(shlex.quote, pkgs))
    if manifest.package_manager == "apt":
        packages = f"dpkg-query -W -f='${{Package}} ${{Status}}\\n' {names}"
    else:  # rpm prints `package x is not installed` on stdout for a missing one: it never ends like this
        packages = f"rpm -q --qf '%{{NAME}} install ok installed\\n' {names}"
    parts = [
        f"{packages} 2>/dev/null" if pkgs else ":",
        f'for u in {q(map(shlex.quote, users))}; do getent passwd "$u" >/dev/null && echo "$u"; done' if users else ":",
        # -L: the agent follows a link root made, as /pg often is
        f"stat -L --printf '%n\\t%F\\t%U\\t%G\\t%a\\n' -- {q(map(shlex.quote, dirs))} 2>/dev/null" if dirs else ":",
        f'for u in {q(map(shlex.quote, units))}; do echo "$u $(systemctl is-enabled "$u" 2>/dev/null)"; done'
        if units
        else ":",
    ]
    return f"; echo {SECTION}; ".join(parts) + "; true"


def parse_probe(manifest: Manifest, stdout: str) -> Needs:
    sections: list[list[str]] = [[]]
    for line in stdout.splitlines():
        if line.strip() == SECTION:
            sections.append([])
        elif line.strip():
            sections[-1].append(line)
    if len(sections) != 4:
        raise ApplyError(f"{manifest.address}: the probe of packages and directories answered unreadably")
    pkgs, users, dirs, units = sections
    installed = {line.split()[0] for line in pkgs if line.endswith("install ok installed")}
    present = {line.strip() for line in users}
    seen = {}
    for line in dirs:
        path, kind, owner, group, mode = (line.split("\t") + [""] * 5)[:5]
        seen[path] = (kind, owner, group, mode)
    ensure = [f"user {u.name}" for u in manifest.users if u.name not in present]
    for d in manifest.directories:
        kind, owner, group, mode = seen.get(d.path, ("", "", "", ""))
        if kind != "directory":
            ensure.append(f"directory {d.path}")
        elif (owner, group) != (d.owner, d.group):
            ensure.append(f"owner of {d.path}")
        elif not mode.isdigit() or int(mode, 8) != int(d.mode, 8):
            ensure.append(f"mode of {d.path}")
    states = dict((line.split(" ", 1) + [""])[:2] for line in units)
    conflicts = [u for u in conflict_units(manifest) if states.get(u, "").strip() not in ("masked", "not-found", "")]
    return Needs([p for p in manifest.packages if p not in installed], ensure, conflicts)


def probe(remote: Remote, manifest: Manifest) -> Needs:
    command = probe_command(manifest)
    if command is None:
        return Needs()
    return parse_probe(manifest, remote.run(command, check=False).stdout)


# -- one host ---------------------------------------------------------------------------------------------


def recorded_files(manifest: Manifest, desired: Mapping[str, bytes], record: dict | None) -> dict[str, dict]:
    """The record's files once every module of the manifest is applied (as HostRun.write_record writes them)."""
    applied = {e.path: P.applied_entry(e, desired[e.path]) for e in manifest.files if e.path in desired}
    modules = {entry["module"] for entry in applied.values()}
    previous = (record or {}).get("files") or {}
    kept = {p: e for p, e in previous.items() if isinstance(e, dict) and e.get("module") not in modules}
    return dict(sorted((kept | applied).items()))


def unit_states(units: list[str], active: list[str], enabled: list[str]) -> dict[str, bool]:
    """Enabled and active, per unit, from the words `systemctl is-active` and `is-enabled` print (one per unit)."""
    return {
        u: (i < len(active) and active[i] == "active") and (i < len(enabled) and enabled[i] == "enabled")
        for i, u in enumerate(units)
    }


def live_of(answer: dict) -> tuple[dict[str, P.LiveFile], dict | None]:
    """The managed paths' state and the record, from the agent's `inspect` (or `look`) answer."""
    record = answer.get("record")
    return {p: P.LiveFile.from_agent(s) for p, s in answer["files"].items()}, record if isinstance(
        record, dict
    ) else None


def look(run: Looking) -> Look:
    """Read the host in one round trip (nothing written) and plan every module of its manifest as the phases
    would now."""
    started = time.monotonic()
    run.render()
    manifest = run.manifest
    rendered = time.monotonic()
    units = [u.name for u in manifest.units]
    files = [{"path": f.path, "kind": f.kind} for f in manifest.files]
    script = probe_script(manifest)
    request: dict = {"files": files, "units": units} | ({"probe": script} if script else {})
    answer = run.remote.agent("look", request, staged=False)
    read = time.monotonic()
    run.live, run.record = live_of(answer)
    running = unit_states(units, answer.get("is-active") or [], answer.get("is-enabled") or [])
    needs = parse_probe(manifest, answer.get("probe") or "") if script else Needs()
    plans = {
        m: P.plan_module(
            run.ip, m, manifest, run.desired, run.live, run.record, {u: running[u] for u in manifest.units_of(m)}
        )
        for m in manifest.modules
    }
    stale = not manifest.retired and recorded_files(manifest, run.desired, run.record) != (
        (run.record or {}).get("files") or {}
    )
    seconds = {"render": rendered - started, "read": read - rendered, "plan": time.monotonic() - read}
    return Look(running, needs, plans, stale, seconds)


def group_of(manifest: Manifest) -> str:
    """The cluster a host's plan is shown under: its PostgreSQL cluster, else its Redis, MinIO or etcd one."""
    for module in GROUP_MODULES:
        cluster = (manifest.identity.get(module) or {}).get("cluster")
        if cluster:
            return str(cluster)
    return ""


def host_plan(run: Looking, removals: list[R.Removal]) -> HostPlan | None:
    """The host's part of the plan, None when it has nothing to do."""
    seen = run.look
    if seen is None or not (seen.pending or removals):
        return None
    installs = [c for p in seen.plans.values() for c in p.install]
    removed = {str(e["path"]) for p in seen.plans.values() for e in p.remove} | {p for r in removals for p in r.paths}
    activations = [Activation.of(str(step)) for p in seen.plans.values() for step in p.steps]
    notes = seen.needs.notes() + [r.summary() for r in removals]
    if seen.stale_record and not (installs or removed or activations or notes):
        notes.append("the record of the applied files is rewritten (the files are in place already)")
    if run.manifest.retired:
        status = "remove"
    else:
        status = "add" if run.record is None else "change"
    return HostPlan(
        host=run.ip,
        status=status,
        group=group_of(run.manifest),
        added=sorted(c.path for c in installs if c.reasons == ("new",)),
        changed=sorted(c.path for c in installs if c.reasons != ("new",)),
        removed=sorted(removed),
        activations=[a for a in activations if a is not None],
        note="; ".join(notes),
    )


# -- the fleet ---------------------------------------------------------------------------------------------


@dataclass
class Preview:
    """The plan of a run, and what the phases and removals need of it."""

    hosts: list[str]  # every host of TARGET, retired ones included
    plan: Plan
    removals: list[R.Removal]
    pending: set[str]  # hosts the phases have something to do on
    failures: list[str]  # hosts that could not be read
    blocked: bool  # a host that is not retired could not be read: nothing may change anywhere


def look_all(
    runs: Mapping[str, Looking], pool: ThreadPoolExecutor, log: Callable[[str, str], None], order: list[str]
) -> Preview:
    """Every host read in parallel (bounded by the pool); a retired host that cannot be read is a failure naming
    it while the rest goes on, any other blocks the run."""
    futures = {ip: pool.submit(look, run) for ip, run in runs.items()}
    failures: list[str] = []
    blocked = False
    for ip, fut in futures.items():
        try:
            runs[ip].look = fut.result()
        except (RemoteError, ApplyError, ValueError, KeyError) as exc:
            if runs[ip].manifest.retired:
                failures.append(f"{ip}: the retired host cannot be reached, so nothing was removed from it: {exc}")
            else:
                failures.append(f"{ip}: cannot be read, so nothing was changed on any host: {exc}")
                blocked = True
            log(ip, f"FAILED: {failures[-1]}")
    seen = {ip: run for ip, run in runs.items() if run.look is not None}
    records = {ip: run.record for ip, run in seen.items()}
    removals = R.plan_removals(records, {ip: run.manifest for ip, run in seen.items()}, order)
    hosts: list[HostPlan] = []
    for ip, run in seen.items():
        hp = host_plan(run, [r for r in removals if r.host == ip])
        if hp is not None:
            hosts.append(hp)
    pending = {ip for ip, run in seen.items() if run.look is not None and run.look.pending and not run.manifest.retired}
    plan = Plan(hosts, unchanged=len(seen) - len(hosts))
    return Preview(list(runs), plan, removals, pending, failures, blocked)
