"""What an apply must do on one host for one module: pure decisions, no I/O, unit-tested without hosts.

Inputs are the manifest (what the bundle wants), the desired bytes of each file after secret
substitution, the live state the agent reported, and the record of the previous apply. Output is the
list of files to install or remove and the ordered activation steps.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sty.contract.actions import MODULE_ACTIONS
from sty.contract.manifest import FileEntry, Manifest

UNIT_SUFFIXES = (".service", ".socket", ".timer", ".target", ".path", ".mount")


@dataclass(frozen=True)
class LiveFile:
    exists: bool
    sha256: str | None = None
    owner: str | None = None
    group: str | None = None
    mode: str | None = None

    @classmethod
    def from_agent(cls, data: dict[str, Any]) -> LiveFile:
        return cls(
            exists=bool(data.get("exists")),
            sha256=data.get("sha256"),
            owner=data.get("owner"),
            group=data.get("group"),
            mode=data.get("mode"),
        )


@dataclass(frozen=True)
class Step:
    kind: str  # daemon-reload, start, restart, reload, stop, or a module action (patroni-reload ...)
    unit: str | None = None

    def __str__(self) -> str:
        return f"{self.kind} {self.unit}" if self.unit else self.kind


@dataclass
class FileChange:
    entry: FileEntry
    reasons: tuple[str, ...]  # new | content | owner | mode

    @property
    def path(self) -> str:
        return self.entry.path


@dataclass
class ModulePlan:
    host: str
    module: str
    install: list[FileChange] = field(default_factory=list)
    remove: list[dict[str, Any]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @property
    def changes_anything(self) -> bool:
        return bool(self.install or self.remove or self.steps)

    def summary(self) -> str:
        parts = []
        if self.install:
            parts.append(f"{len(self.install)} file(s) to install")
        if self.remove:
            parts.append(f"{len(self.remove)} file(s) to remove")
        if self.steps:
            parts.append(", ".join(map(str, self.steps)))
        return "; ".join(parts) or "nothing to do"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def applied_entry(entry: FileEntry, data: bytes) -> dict[str, Any]:
    """What the record keeps of an applied file: module, kind, checksum, and the units that read it (for its removal
    to reload them: HAProxy and its conf.d). The first pass compares it with the host's record to see a stale one."""
    out: dict[str, Any] = {"module": entry.module, "kind": entry.kind, "sha256": sha256(data)}
    readers = sorted({a.unit for a in entry.actions if a.action in ("reload", "restart") and a.unit})
    if readers:
        out["reload"] = readers
    return out


def changed_files(entries: list[FileEntry], desired: dict[str, bytes], live: dict[str, LiveFile]) -> list[FileChange]:
    """Files whose content, owner or mode differ from what the bundle wants (blocks: content only)."""
    out = []
    for entry in entries:
        path = entry.path
        state = live.get(path, LiveFile(False))
        if not state.exists:
            out.append(FileChange(entry, ("new",)))
            continue
        reasons = []
        if state.sha256 != sha256(desired[path]):
            reasons.append("content")
        if entry.kind == "file":
            if (state.owner, state.group) != (entry.owner, entry.group):
                reasons.append("owner")
            if state.mode != entry.mode:
                reasons.append("mode")
        if reasons:
            out.append(FileChange(entry, tuple(reasons)))
    return out


def removed_files(record: dict | None, manifest: Manifest, module: str) -> list[dict]:
    """Files the previous apply installed for this module that the bundle no longer contains."""
    if not record:
        return []
    wanted = {f.path for f in manifest.files}
    return [
        {"path": path, "kind": entry.get("kind", "file"), **entry}
        for path, entry in sorted(record.get("files", {}).items())
        if entry.get("module") == module and path not in wanted
    ]


def _is_unit_file(path: str) -> bool:
    return path.startswith(("/etc/systemd/system/", "/usr/lib/systemd/system/")) and path.endswith(UNIT_SUFFIXES)


def plan_steps(
    installed: list[FileChange],
    removed: list[dict],
    units: list[str],
    running: dict[str, bool],
) -> list[Step]:
    """Activation steps, in order: stop what is removed, daemon-reload, start/restart/reload units,
    then the module-level actions (Patroni reload, DCS config, SQL on the primary ...).

    `units` are the module's units in the manifest; `running[u]` says whether u is enabled and active.
    A unit that is not running is started (which also covers any restart or reload it was due).
    """
    steps: list[Step] = []
    removed_units = [e["path"].rsplit("/", 1)[1] for e in removed if _is_unit_file(e["path"])]
    steps += [Step("stop", u) for u in removed_units]

    # an action whose spec says it is not due on a first install (a rolling restart: a freshly started
    # PostgreSQL already runs with the file's settings) is left out for files the host does not have yet
    actions = [
        a
        for change in installed
        for a in change.entry.actions
        if change.reasons != ("new",) or getattr(a.spec, "on_first_install", True)
    ]
    if (
        any(a.action == "daemon-reload" for a in actions)
        or removed_units
        or any(_is_unit_file(c.path) for c in installed)
    ):
        steps.append(Step("daemon-reload"))

    restarts = {a.unit for a in actions if a.action == "restart"}
    reloads = {a.unit for a in actions if a.action == "reload"}
    started: set[str] = set()
    for unit in units:
        if not running.get(unit, False):
            steps.append(Step("start", unit))
            started.add(unit)
        elif unit in restarts:
            steps.append(Step("restart", unit))
            started.add(unit)
        elif unit in reloads:
            steps.append(Step("reload", unit))
    # actions on units this module does not run (e.g. PGSQL reloading NODE's haproxy)
    for unit in sorted((restarts | reloads) - set(units)):
        steps.append(Step("restart" if unit in restarts else "reload", unit))

    kinds = {a.action for a in actions}
    for kind in MODULE_ACTIONS:  # in the contract's order
        if kind == "patroni-reload" and "patroni.service" in started:
            continue  # a started Patroni has read its new file already
        if kind in kinds:
            steps.append(Step(kind))
    return steps


def plan_module(
    host: str,
    module: str,
    manifest: Manifest,
    desired: dict[str, bytes],
    live: dict[str, LiveFile],
    record: dict | None,
    running: dict[str, bool],
) -> ModulePlan:
    installed = changed_files(manifest.files_of(module), desired, live)
    removed = removed_files(record, manifest, module)
    units = manifest.units_of(module)
    return ModulePlan(host, module, installed, removed, plan_steps(installed, removed, units, running))


def phases(manifests: dict[str, Manifest]) -> list[str]:
    """Every module of the fleet in activation order, as the compiler declared it in each manifest."""
    declared = [m.phases for m in manifests.values() if m.phases]
    if declared and any(d != declared[0] for d in declared):
        raise ValueError("the bundles disagree on the order of module phases: rebuild them with one sty")
    order = declared[0] if declared else []
    present = {module for m in manifests.values() for module in m.modules}
    missing = present - set(order)
    if missing:
        raise ValueError(f"the bundles do not say when module(s) {', '.join(sorted(missing))} activate: rebuild them")
    return [m for m in order if m in present]
