"""`sty diff`: what a build would change, as unified diffs and as a plan (sty.contract.plan).

The plan speaks of hosts, not files: per host its status (add, change, retire, remove), its files as host paths
and what their change sets off (restart, reload, run). The manifest `<host>.yml` is bookkeeping: it is never a
changed file of the plan, and a host whose manifest alone changes says so.

A host whose inputs and files are unchanged since the last build (the incremental state of `sty build`) is not
rendered: its outputs are what a render would write. Without a state (a fresh clone) every host is rendered and
compared, which is slower but just as correct.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sty.contract.actions import ACTIONS
from sty.contract.manifest import MAX_MANIFEST_BYTES
from sty.contract.plan import Activation, HostPlan, Plan

from .build import check_rendered, refuse_pin_changes, unchanged_hosts
from .pipeline import Compiled, resolve_target
from .retire import IMPACT, retirement_tree, was_retired
from .stage import Staged, by_groups, in_workers, render_one
from .stamps import HostStates, files_in_place_listing, read_state
from .writer import Found, existing_hosts, host_contents, host_tree, manifest_files, unified

# the identity a host's plan is collapsed under, first found wins: a PostgreSQL cluster, then the others
GROUP_MODULES = ("pgsql", "redis", "minio", "etcd")
MANIFEST_ONLY = "manifest only: the files it ships are unchanged"
ALREADY_RETIRED = "already retired: its retirement manifest changes"
REMOVED = "host removed from the inventory: its files would be deleted (no manifest to retire)"
RETURNS = "returns to the inventory: its bundle replaces the retirement manifest"


@dataclass
class DiffResult:
    plan: Plan
    diffs: dict[str, dict[str, str]] = field(default_factory=dict)  # ip -> rel path under outdir -> unified diff
    foreign: dict[str, list[str]] = field(default_factory=dict)  # ip -> files sty did not write (left alone)
    rendered: int = 0  # hosts rendered; the other targets were unchanged since the last build

    @property
    def changed(self) -> bool:
        return self.plan.changed


def is_manifest(ip: str, rel: str) -> bool:
    return rel == f"{ip}.yml"


def host_path(ip: str, rel: str) -> str:
    """`10.10.10.11/etc/hosts` -> `/etc/hosts`; the manifest keeps its name under outputs/ (`10.10.10.11.yml`)."""
    return rel[len(ip) :] if rel.startswith(f"{ip}/") else rel


def diff(
    compiled: Compiled,
    outdir: Path,
    target: str | None = None,
    allow_upgrade: bool = False,
    use_cache: bool = True,
    jobs: int | None = None,
) -> DiffResult:
    """What a build would change. A file sty did not write is not a change (a build leaves it where it is and
    apply never ships it): it is listed apart, so the reviewer knows it is not part of the bundle."""
    targets = resolve_target(compiled.fleet, target)
    old_hosts = read_state(outdir) or HostStates()
    result = DiffResult(Plan())
    found: dict[str, list[str]] = {}  # foreign files of the hosts found unchanged

    def same(out: Path, ip: str, entry: dict) -> bool:
        return files_in_place_listing(out, ip, entry, found)

    _, skip = unchanged_hosts(compiled, outdir, targets, old_hosts, same) if use_cache else ({}, set())
    todo = [ip for ip in targets if ip not in skip]
    compared: list[HostDiff] = in_workers(
        lambda ips: [_compare(compiled, outdir, old_hosts, ip) for ip in ips],
        todo,
        jobs,
        group=by_groups(compiled),
    )
    check_rendered(compiled, [c.record for c in compared])
    if not allow_upgrade:
        refuse_pin_changes(compiled, {c.record.ip: c.record.pins for c in compared}, outdir, old_hosts)
    result.rendered = len(compared)
    by_ip = {c.record.ip: c for c in compared}
    for ip in targets:
        if ip in skip:
            if found.get(ip):
                result.foreign[ip] = sorted(found[ip])
            result.plan.unchanged += 1
            continue
        c = by_ip[ip]
        if c.foreign:
            result.foreign.setdefault(ip, []).extend(c.foreign)
        if c.diffs:
            result.diffs[ip] = c.diffs
        if not c.changes:
            result.plan.unchanged += 1
            continue
        identity = c.record.identity
        hp = _host_plan(ip, "change", c.changes, identity)
        if c.status is not None:  # a new host, or a retired one back
            hp.status = "add"
            hp.note = c.status or hp.note
        hp.activations = _activations(hp, c.changes, c.record.actions, identity)
        result.plan.hosts.append(hp)
    if target in (None, "", "all"):
        for ip in sorted(existing_hosts(outdir) - set(compiled.fleet.hosts)):
            _diff_gone(outdir, ip, old_hosts, result)
    return result


Change = tuple[str, bytes | None, bytes | None]  # rel path, old content, new content


@dataclass
class HostDiff:
    """One rendered host compared with its files in place: what a worker process sends back (the changed files
    only, not the bundle)."""

    record: Staged
    changes: list[Change] = field(default_factory=list)
    diffs: dict[str, str] = field(default_factory=dict)  # rel -> unified diff
    foreign: list[str] = field(default_factory=list)
    status: str | None = None  # None: a change; "" a new host; RETURNS: a retired host back in the inventory


def _compare(compiled: Compiled, outdir: Path, old_hosts: Mapping[str, dict], ip: str) -> HostDiff:
    desired, record = render_one(compiled, ip)
    out = HostDiff(record)
    if record.error:
        return out
    current = host_contents(outdir, ip)
    # whose files the extra ones are matters only when there are some: that reads the manifest (YAML)
    owned = _owned(ip, old_hosts, current) if current.keys() - desired.keys() else set()
    partial = DiffResult(Plan())
    out.changes = _diff_files(ip, current, desired, owned, partial)
    out.diffs, out.foreign = partial.diffs.get(ip, {}), partial.foreign.get(ip, [])
    if out.changes:
        manifest = current.get(f"{ip}.yml")
        if manifest is None:
            out.status = ""
        elif was_retired(outdir, ip, _found(manifest)):
            out.status = RETURNS
    return out


def _diff_files(
    ip: str, current: dict[str, bytes], desired: dict[str, bytes], owned: set[str], result: DiffResult
) -> list[Change]:
    """Record the unified diff of every file that differs; files sty did not write are listed apart (never a
    change). Returns the changes, the manifest's included."""
    changes: list[Change] = []
    for rel in sorted(set(desired) | set(current)):
        old, new = current.get(rel), desired.get(rel)
        if old == new:
            continue
        if new is None and rel not in owned:
            result.foreign.setdefault(ip, []).append(rel)
            continue
        changes.append((rel, old, new))
        result.diffs.setdefault(ip, {})[rel] = unified(rel, old, new)
    return changes


def _host_plan(ip: str, status: str, changes: list[Change], identity: dict[str, Any]) -> HostPlan:
    hp = HostPlan(ip, status, group=group_of(identity))
    for rel, old, new in changes:
        if is_manifest(ip, rel):
            continue
        path = host_path(ip, rel)
        (hp.added if old is None else hp.removed if new is None else hp.changed).append(path)
    if not (hp.added or hp.changed or hp.removed):
        hp.note = MANIFEST_ONLY
    return hp


def _activations(
    hp: HostPlan, changes: list[Change], actions: dict[str, list[str]], identity: dict[str, Any]
) -> list[Activation]:
    """What the changed files set off, from their manifest actions, each named as the plan says it."""
    due = {rel: actions.get(rel, []) for rel, _, _ in changes}
    if hp.status == "add":
        due = _fold_units(hp, due)
    found: set[Activation] = set()
    for rel, old, new in changes:
        for name in due[rel]:
            label = plan_name(name, identity, old, new)
            act = Activation.of(name, label) if label != "none" else None
            if act is not None:
                found.add(act)
    return sorted(found)


def _fold_units(hp: HostPlan, due: dict[str, list[str]]) -> dict[str, list[str]]:
    """A new host starts every unit it has: that is what "new host" means, not a restart to weigh, so its unit
    actions become one note (`starts 3 unit(s): chrony, haproxy, patroni`) and only module actions stay."""
    started = {n.split(" ", 1)[1] for names in due.values() for n in names if _takes_unit(n)}
    units = sorted(unit.removesuffix(".service") for unit in started)
    if units:
        said = f"starts {len(units)} unit(s): {', '.join(units)}"
        hp.note = f"{hp.note}; {said}" if hp.note else said
    return {rel: [n for n in names if n != "daemon-reload" and not _takes_unit(n)] for rel, names in due.items()}


def _takes_unit(action: str) -> bool:
    spec = ACTIONS.get(action.split(" ", 1)[0])
    return spec is not None and spec.takes_unit


def group_of(identity: dict[str, Any]) -> str:
    """The cluster a host's plan may be collapsed with its peers' under; "" for infra and plain nodes."""
    for module in GROUP_MODULES:
        ident = identity.get(module)
        if isinstance(ident, dict) and isinstance(ident.get("cluster"), str):
            return ident["cluster"]
    return ""


def _diff_gone(outdir: Path, ip: str, old_hosts: Mapping[str, dict], result: DiffResult) -> None:
    """A host gone from the inventory: its bundle files go, its manifest becomes a retirement manifest."""
    found = host_tree(outdir, ip)
    current = {rel: f.content for rel, f in found.items()}
    owned = _owned(ip, old_hosts, current)
    desired = retirement_tree(outdir, ip, found, owned)
    changes = _diff_files(ip, current, desired, owned, result)
    if not changes:
        return
    hp = _host_plan(ip, "retire", changes, _manifest_identity(current.get(f"{ip}.yml")))
    if desired and not was_retired(outdir, ip, found.get(f"{ip}.yml")):
        hp.note = IMPACT
    elif desired:
        hp.status, hp.note = "change", ALREADY_RETIRED
    else:
        hp.status, hp.note = "remove", REMOVED
    result.plan.hosts.append(hp)


def _manifest_identity(content: bytes | None) -> dict[str, Any]:
    """The identity a committed manifest records (a gone host is not rendered); {} when unreadable."""
    try:
        doc = yaml.load(content[:MAX_MANIFEST_BYTES], Loader=yaml.CSafeLoader) if content else None
    except (yaml.YAMLError, ValueError):
        return {}
    identity = doc.get("identity") if isinstance(doc, dict) else None
    return identity if isinstance(identity, dict) else {}


def plan_name(action: str, identity: dict[str, Any], old: bytes | None, new: bytes | None) -> str:
    """An action as the plan says it: by its plan name with the settings that changed, where the contract gives
    one (`rolling restart of pg-test: max_connections`), else by its name; "none" for an action not due on a
    file's first install."""
    spec = ACTIONS.get(action.split(" ", 1)[0])
    if spec is None:
        return action
    if old is None and not spec.on_first_install:
        return "none"
    if spec.plan is None:
        return action
    try:
        label = spec.plan.format_map(identity)
    except (KeyError, IndexError, TypeError, ValueError):
        return action
    keys = _changed_keys(old, new)
    return f"{label}: {', '.join(keys)}" if keys else label


def _changed_keys(old: bytes | None, new: bytes | None) -> list[str]:
    """The top-level keys whose values differ between two YAML mappings (a new file: all of them)."""

    def mapping(data: bytes | None) -> dict:
        try:
            doc = yaml.load(data, Loader=yaml.CSafeLoader) if data else {}
        except yaml.YAMLError:
            return {}
        return doc if isinstance(doc, dict) else {}

    before, after = mapping(old), mapping(new)
    return sorted(str(k) for k in set(before) | set(after) if before.get(k) != after.get(k))


def _found(content: bytes) -> Found:
    return Found(content, len(content), 0)


def _owned(ip: str, old_hosts: Mapping[str, dict], current: dict[str, bytes]) -> set[str]:
    """The files sty recorded writing for a host: the incremental state's record and the host's manifest."""
    recorded = old_hosts.get(ip, {}).get("files", {}) if isinstance(old_hosts.get(ip), dict) else {}
    manifest = current.get(f"{ip}.yml")
    found = _found(manifest) if manifest is not None else None
    return set(recorded if isinstance(recorded, dict) else ()) | manifest_files(ip, found)
