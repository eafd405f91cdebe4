"""`sty build` and `sty diff`: render targets, compare with outputs/, write what changed.

Incremental: `.sty/<outdir>/state.json` remembers each host's input digest and the size and
mtime of the files written for it; a host whose inputs and files are unchanged is not rendered.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InventoryError, Report
from .manifest import manifest_text
from .pipeline import Compiled, input_digest, render_host, resolve_target
from .render import RenderError
from .schema import code_digest
from .secrets import read_store, store_dir, write_store
from .writer import WriteStats, existing_hosts, host_tree, remove_host, unified, write_host


@dataclass
class Rendered:
    trees: dict[str, dict[str, bytes]] = field(default_factory=dict)  # ip -> rel path -> content
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # ip -> name -> value
    actions: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # ip -> rel -> actions
    skipped: list[str] = field(default_factory=list)


def render_targets(compiled: Compiled, targets: list[str], skip: set[str] | None = None) -> Rendered:
    out = Rendered()
    report = Report()
    for ip in targets:
        if skip and ip in skip:
            out.skipped.append(ip)
            continue
        host = compiled.fleet.hosts[ip]
        try:
            bundle = render_host(host, compiled)
        except RenderError as exc:
            report.error(host.path, f"cannot render this host: {exc}")
            continue
        tree: dict[str, bytes] = {}
        acts: dict[str, list[str]] = {}
        for path, spec in bundle.files.items():
            rel = f"{ip}{path}"
            tree[rel] = (spec.content or "").encode("utf-8")
            acts[rel] = [str(a) for a in sorted(set(spec.actions))]
        tree[f"{ip}.yml"] = manifest_text(host, bundle).encode("utf-8")
        out.trees[ip] = tree
        out.secrets[ip] = bundle.secrets
        out.actions[ip] = acts
    _check_secret_conflicts(compiled, out, report)
    if report.errors:
        raise InventoryError(report)
    return out


def _check_secret_conflicts(compiled: Compiled, out: Rendered, report: Report) -> None:
    seen: dict[str, tuple[str, str]] = {}
    for ip, values in out.secrets.items():
        for name, value in values.items():
            if name in seen and seen[name][1] != value:
                report.error(
                    compiled.fleet.hosts[ip].path,
                    f"secret {name} has a different value here than on {seen[name][0]}; "
                    "members of one cluster must share it",
                )
            seen.setdefault(name, (ip, value))


def _stamp(outdir: Path, tree_names: list[str]) -> dict[str, list[int]]:
    stamps = {}
    for rel in tree_names:
        st = os.stat(outdir / rel)
        stamps[rel] = [st.st_size, st.st_mtime_ns]
    return stamps


def _state_path(outdir: Path) -> Path:
    return store_dir(outdir) / "state.json"


def _read_state(outdir: Path) -> dict:
    try:
        return json.loads(_state_path(outdir).read_text())
    except (OSError, ValueError):
        return {}


def _unchanged(outdir: Path, entry: dict) -> bool:
    base = str(outdir)
    for rel, (size, mtime) in entry.get("files", {}).items():
        try:
            st = os.stat(os.path.join(base, rel))  # plain strings: this runs for every file of every host
        except OSError:
            return False
        if st.st_size != size or st.st_mtime_ns != mtime:
            return False
    return bool(entry.get("files"))


@dataclass
class BuildResult:
    stats: WriteStats
    rendered: int
    skipped: int
    hosts: int


def build(compiled: Compiled, outdir: Path, target: str | None = None, use_cache: bool = True) -> BuildResult:
    targets = resolve_target(compiled.fleet, target)
    whole = target in (None, "", "all")
    code = code_digest()
    state = _read_state(outdir) if use_cache else {}
    old_hosts = state.get("hosts", {})
    digests = {ip: input_digest(compiled.fleet.hosts[ip], compiled, code) for ip in targets}
    skip = {
        ip
        for ip in targets
        if use_cache and old_hosts.get(ip, {}).get("inputs") == digests[ip] and _unchanged(outdir, old_hosts[ip])
    }
    rendered = render_targets(compiled, targets, skip)

    stats = WriteStats()
    outdir.mkdir(parents=True, exist_ok=True)
    if len(rendered.trees) > 8:  # file-system latency, not CPU, bounds a big build: overlap the writes
        from concurrent.futures import ThreadPoolExecutor

        def one(item: tuple[str, dict[str, bytes]]) -> WriteStats:
            mine = WriteStats()
            write_host(outdir, item[0], item[1], mine)
            return mine

        with ThreadPoolExecutor(max_workers=8) as pool:
            for mine in pool.map(one, sorted(rendered.trees.items())):
                stats.written += mine.written
                stats.removed += mine.removed
                stats.unchanged += mine.unchanged
    else:
        for ip, tree in rendered.trees.items():
            write_host(outdir, ip, tree, stats)
    if whole:
        for ip in sorted(existing_hosts(outdir) - set(compiled.fleet.hosts)):
            remove_host(outdir, ip, stats)

    # secret store: fresh values for rendered hosts, previous ones for hosts skipped as unchanged
    old_store = read_store(outdir)
    store: dict[str, str] = {} if whole else dict(old_store)
    for ip in rendered.skipped:
        for name in old_hosts.get(ip, {}).get("secrets", []):
            if name in old_store:
                store[name] = old_store[name]
    for values in rendered.secrets.values():
        store.update(values)
    write_store(outdir, store)

    new_hosts = {} if whole else dict(old_hosts)
    for ip in rendered.skipped:
        new_hosts[ip] = old_hosts[ip]
    for ip, tree in rendered.trees.items():
        new_hosts[ip] = {
            "inputs": digests[ip],
            "files": _stamp(outdir, sorted(tree)),
            "secrets": sorted(rendered.secrets[ip]),
        }
    path = _state_path(outdir)
    text = json.dumps({"hosts": dict(sorted(new_hosts.items()))}, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return BuildResult(stats, len(rendered.trees), len(rendered.skipped), len(targets))


@dataclass
class DiffResult:
    diffs: list[str]
    impact: dict[str, list[str]]  # ip -> human summary lines

    @property
    def changed(self) -> bool:
        return bool(self.diffs)


def diff(compiled: Compiled, outdir: Path, target: str | None = None) -> DiffResult:
    targets = resolve_target(compiled.fleet, target)
    rendered = render_targets(compiled, targets)
    diffs: list[str] = []
    impact: dict[str, list[str]] = {}
    for ip in targets:
        desired = rendered.trees[ip]
        current = host_tree(outdir, ip)
        actions: set[str] = set()
        changed_files = 0
        for rel in sorted(set(desired) | set(current)):
            old, new = current.get(rel), desired.get(rel)
            if old == new:
                continue
            changed_files += 1
            diffs.append(unified(rel, old, new))
            actions.update(rendered.actions[ip].get(rel, []))
        if changed_files:
            shown = sorted(a for a in actions if a != "none") or ["no activation"]
            impact[ip] = [f"{changed_files} file(s) change", *shown]
    if target in (None, "", "all"):
        for ip in sorted(existing_hosts(outdir) - set(compiled.fleet.hosts)):
            for rel, old in sorted(host_tree(outdir, ip).items()):
                diffs.append(unified(rel, old, None))
            impact[ip] = ["host removed from the inventory: its bundle would be deleted"]
    return DiffResult(diffs, impact)
