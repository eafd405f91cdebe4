"""Removing modules from hosts, the equivalent of Pigsty's `pgsql-rm` and `node-rm`.

A module is removed from a host when the host's record lists it but the host's manifest does not: the host
left a cluster, or left the inventory (its retirement manifest lists no module at all). Without this, the
phases (which only cover the modules a manifest lists) would leave its units running and its files in place.

Pure decisions here, unit-tested without hosts: which modules, files and units, in which order. `sty apply`
computes them from the records it reads before any phase, has them confirmed, and runs them after every phase
of the fleet (the rest of the cluster then no longer points at what goes: HAProxy backends, Patroni members),
one host at a time, each host's modules in reverse activation order (PGSQL before ETCD before NODE).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sty.contract.manifest import Manifest
from sty.contract.targets import sort_hosts

from .bundle import CA_PATH, ApplyError
from .handlers import remove_note
from .plan import UNIT_SUFFIXES
from .remote import RemoteError

UNIT_DIRS = ("/etc/systemd/system/", "/usr/lib/systemd/system/", "/lib/systemd/system/")


@dataclass(frozen=True)
class Removal:
    """One module leaving one host."""

    host: str
    module: str
    files: tuple[dict[str, Any], ...]  # the record's entries, each with its path and kind, for the agent
    units: tuple[str, ...]  # stopped and disabled first: their unit files are among the files
    reloads: tuple[str, ...] = ()  # units the host keeps that read some of the files (HAProxy and its conf.d)
    note: str = ""  # what the module's hooks add (PGSQL: the data directory is moved aside)

    @property
    def paths(self) -> set[str]:
        return {str(f["path"]) for f in self.files}

    def summary(self) -> str:
        """`remove pgsql (stop patroni.service, pgbouncer.service; 24 file(s); data moved aside)`"""
        parts = [f"stop {', '.join(self.units)}"] if self.units else []
        parts.append(f"{len(self.files)} file(s)")
        if self.reloads:
            parts.append(f"reload {', '.join(self.reloads)}")
        if self.note:
            parts.append(self.note)
        return f"remove {self.module} ({'; '.join(parts)})"


def _entries(record: Any) -> dict[str, dict[str, Any]]:
    """The record's files, tolerating a damaged record (a host's file, not sty's to trust blindly)."""
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict):
        return {}
    return {
        str(path): entry
        for path, entry in files.items()
        if isinstance(entry, dict) and isinstance(entry.get("module"), str) and str(path).startswith("/")
    }


def unit_of(path: str) -> str | None:
    """The unit a unit file defines (`/etc/systemd/system/patroni.service` -> patroni.service); a drop-in
    (`x.service.d/sty.conf`) or any other file defines none."""
    if path.startswith(UNIT_DIRS) and path.endswith(UNIT_SUFFIXES) and "/" not in path.split("/system/", 1)[1]:
        return posixpath.basename(path)
    return None


def declared_order(manifests: Iterable[Manifest]) -> list[str]:
    """Every module in activation order as the bundles declare it, a live bundle's declaration first (a
    retirement manifest only repeats it)."""
    for manifest in sorted(manifests, key=lambda m: m.retired):
        if manifest.phases:
            return list(manifest.phases)
    return []


def removed_modules(record: Any, manifest: Manifest, order: list[str]) -> list[str]:
    """The modules the record lists on the host and its manifest does not (every one for a retired host), in
    removal order: reverse activation order, modules this sty does not know first."""
    gone = {e["module"] for e in _entries(record).values()} - set(manifest.modules)
    return sorted(gone - set(order)) + [m for m in reversed(order) if m in gone]


def _wanted(manifest: Manifest) -> set[str]:
    """Paths the bundle still installs, whichever module owns them now (certificates are signed at apply time)."""
    paths = {f.path for f in manifest.files} | set(manifest.trust)
    paths |= {p for c in manifest.certificates for p in (c.cert, c.key)}
    if manifest.certificates or manifest.trust:
        paths.add(CA_PATH)
    return paths


def plan_removal(host: str, module: str, record: Any, manifest: Manifest) -> Removal:
    """The files the record lists for `module` that the bundle no longer has, the units whose unit files are
    among them (a unit the bundle still runs is never stopped), and the kept units that read some of them."""
    wanted = _wanted(manifest)
    files = tuple(
        {**entry, "path": path, "kind": entry.get("kind", "file")}
        for path, entry in sorted(_entries(record).items())
        if entry["module"] == module and path not in wanted
    )
    kept = {u.name for u in manifest.units}
    units = sorted({u for f in files if (u := unit_of(f["path"])) and u not in kept})
    readers = {str(u) for f in files for u in (f.get("reload") if isinstance(f.get("reload"), list) else [])}
    return Removal(host, module, files, tuple(units), tuple(sorted((readers & kept) - set(units))), remove_note(module))


def plan_removals(records: Mapping[str, Any], manifests: Mapping[str, Manifest], order: list[str]) -> list[Removal]:
    """Every removal of the run, hosts in address order, each host's modules in removal order. A host whose
    record could not be read (absent from `records`) has none."""
    out = []
    for ip in sort_hosts(h for h in manifests if h in records):
        for module in removed_modules(records[ip], manifests[ip], order):
            removal = plan_removal(ip, module, records[ip], manifests[ip])
            if removal.files:
                out.append(removal)
    return out


class Remover(Protocol):
    """What the removal runner needs of a host (implemented by apply.run.HostRun)."""

    removing: frozenset[str]

    def remove_module(self, removal: Removal) -> None: ...


def run_removals(
    removals: list[Removal], runs: Mapping[str, Remover], log: Callable[[str, str], None]
) -> tuple[list[str], set[str]]:
    """The removals one at a time, in order. A host's failure skips its other modules (a later one may be what
    the failed one needed, as etcd is to Patroni) but not other hosts: a retired host gone dark must not keep
    the rest of the fleet from being cleaned. Returns the failures and the hosts that failed."""
    hosts_of: dict[str, set[str]] = {}
    for removal in removals:
        hosts_of.setdefault(removal.module, set()).add(removal.host)
    failures: list[str] = []
    failed: set[str] = set()
    for removal in removals:
        if removal.host in failed:
            continue
        run = runs[removal.host]
        run.removing = frozenset(hosts_of[removal.module])
        try:
            run.remove_module(removal)
        except (ApplyError, RemoteError) as exc:
            log(removal.host, f"FAILED: {exc}")
            failures.append(str(exc))
            failed.add(removal.host)
    return failures, failed
