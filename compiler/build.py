"""`sty build`: render targets, compare with outputs/, write what changed (`sty diff` is compiler/diff.py).

Incremental: `.sty/<outdir>/state.json` remembers each host's input digest and the size and
mtime of the files written for it; a host whose inputs and files are unchanged is not rendered.
The same record says which files sty wrote, and sty deletes nothing else (a manifest's `files`
stands in for it when the state is gone, e.g. in a fresh clone of a repository with outputs/).

A build holds `.sty/<outdir>/lock` from reading the state to writing it, so that concurrent builds
into one directory run one after the other instead of interleaving their files and cache records.

A host gone from the inventory keeps a retirement manifest (compiler/retire.py) so that apply can clean it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sty.contract.exits import UsageError
from sty.contract.manifest import MAX_MANIFEST_BYTES

from .errors import InventoryError, Report
from .manifest import manifest_text
from .modules import all_modules
from .pipeline import Compiled, input_digest, render_host, resolve_target
from .render import RenderError
from .retire import retirement_tree
from .schema import code_digest
from .secrets import read_store, store_dir, write_store
from .writer import (
    Found,
    Tree,
    UnsafeTree,
    WriteStats,
    existing_hosts,
    host_tree,
    locked,
    manifest_files,
    open_private,
    remove_host,
    write_host,
    write_private,
)

# how long a build waits for another build of the same output directory before giving up (exit 3)
LOCK_TIMEOUT = float(os.environ.get("STY_LOCK_TIMEOUT", "300"))
# files a user may keep in an output directory before sty ever wrote to it
_NEUTRAL = {".gitkeep", ".gitignore"}


@dataclass
class Rendered:
    trees: dict[str, dict[str, bytes]] = field(default_factory=dict)  # ip -> rel path -> content
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # ip -> name -> value
    actions: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # ip -> rel -> actions
    pins: dict[str, dict[str, Any]] = field(default_factory=dict)  # ip -> "module.key" -> pinned identity value
    identity: dict[str, dict[str, Any]] = field(default_factory=dict)  # ip -> the manifest's identity
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
        out.identity[ip] = bundle.info
        out.pins[ip] = {
            f"{m.name}.{key}": bundle.info[m.name].get(key)
            for m in all_modules()
            if m.pinned and m.name in bundle.info
            for key in m.pinned
        }
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


def _state_path(outdir: Path) -> Path:
    return store_dir(outdir) / "state.json"


def read_state(outdir: Path) -> dict | None:
    """The incremental state, {} when unreadable, None when there is none (sty never built here)."""
    try:
        fd = open_private(store_dir(outdir), "state.json", os.O_RDONLY)
    except UnsafeTree:
        raise
    except UsageError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _unchanged(outdir: Path, entry: dict) -> bool:
    base = str(outdir)
    for rel, (size, mtime) in entry.get("files", {}).items():
        try:  # plain strings: this runs for every file of every host; lstat: a link is never "unchanged"
            st = os.lstat(os.path.join(base, rel))
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != size or st.st_mtime_ns != mtime:
            return False
    return bool(entry.get("files"))


def unchanged_hosts(
    compiled: Compiled,
    outdir: Path,
    targets: list[str],
    old_hosts: dict,
    same: Callable[[Path, str, dict], bool] | None = None,
) -> tuple[dict[str, str], set[str]]:
    """Each target's input digest, and the targets whose inputs and files are what the last build recorded
    (`same(outdir, ip, entry)`, by default the recorded stamps): their outputs are what a render would write, so
    build and diff skip them."""
    code = code_digest()
    digests = {ip: input_digest(compiled.fleet.hosts[ip], compiled, code) for ip in targets}
    same = same or (lambda out, _ip, entry: _unchanged(out, entry))
    skip = {
        ip
        for ip in targets
        if isinstance(old_hosts.get(ip), dict)
        and old_hosts[ip].get("inputs") == digests[ip]
        and same(outdir, ip, old_hosts[ip])
    }
    return digests, skip


def check_output_dir(outdir: Path, inventory: str) -> None:
    """Refuse output directories a build would wreck: the file-system root, a directory holding the inventory
    (`-o .`: its hosts' trees would be mixed with the repository, and the store `.sty/<name>` would land
    outside the inventory's directory), a link, or something that is not a directory."""
    if outdir.is_symlink():
        raise UnsafeTree(f"{outdir}: the output directory is a symbolic link; give the real directory")
    if outdir.exists() and not outdir.is_dir():
        raise UnsafeTree(f"{outdir}: the output directory is not a directory")
    resolved = outdir.resolve()
    if resolved == Path(resolved.anchor) or not resolved.name:
        raise UsageError(f"{outdir}: the file-system root cannot be an output directory")
    inv_dir = Path(inventory).resolve().parent
    if inv_dir == resolved or resolved in inv_dir.parents:
        raise UsageError(
            f"{outdir}: the output directory holds the inventory {inventory}; "
            "build into a directory of its own, such as outputs"
        )


def _refuse_foreign(tree: Tree) -> None:
    """Without sty state, write only into an empty directory or one holding sty's manifests: a directory sty
    does not own (`-o /srv`) is refused instead of adopted."""
    try:
        names = [n for n in os.listdir(tree.fd) if n not in _NEUTRAL]
    except OSError:
        names = []
    if not names:
        return
    for ip in sorted(existing_hosts(tree.outdir)):
        name = f"{ip}.yml"
        if name in names and stat.S_ISREG(os.stat(name, dir_fd=tree.fd, follow_symlinks=False).st_mode):
            if manifest_files(ip, tree.read(tree.fd, name, name)):
                return
    raise UsageError(
        f"{tree.outdir}: the output directory is not empty and sty never built into it "
        "(no state in .sty, no sty manifest); choose a new or empty directory"
    )


def _map(fn, items: list) -> list:
    """Overlap file-system latency (not CPU) for big builds; the writer is fd-relative, hence thread-safe."""
    if len(items) <= 8:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(fn, items))


def _write_all(
    tree: Tree, trees: dict[str, dict[str, bytes]], gone: list[str], old_hosts: dict
) -> tuple[WriteStats, dict[str, dict[str, bytes]]]:
    """Read every affected host's current files first (a hostile entry or a manifest that cannot be retired is
    refused before anything is written), then write, then, for hosts no longer produced, remove what sty recorded
    writing except their retirement manifests. Returns the stats and those manifests (ip -> tree)."""
    ips = sorted(trees) + gone
    current: dict[str, dict[str, Found]] = dict(
        zip(ips, _map(lambda ip: host_tree(tree.outdir, ip, tree), ips), strict=True)
    )

    def owned(ip: str) -> set[str]:
        entry = old_hosts.get(ip)
        recorded = entry.get("files", {}) if isinstance(entry, dict) else {}
        return set(recorded) | manifest_files(ip, current[ip].get(f"{ip}.yml"))

    retiring = {ip: retirement_tree(tree.outdir, ip, current[ip], owned(ip)) for ip in gone}
    results = _map(lambda ip: write_host(tree, ip, trees[ip], current[ip], owned(ip)), sorted(trees))
    results += [
        write_host(tree, ip, retiring[ip], current[ip], owned(ip))
        if retiring[ip]
        else remove_host(tree, current[ip], owned(ip))
        for ip in gone
    ]
    for rel in tree.stale:  # the build lock is held: no other sty writes here now
        tree.remove(rel)
    stats = WriteStats()
    for one in results:
        stats.written += one.written
        stats.removed += one.removed
        stats.unchanged += one.unchanged
        stats.stamps.update(one.stamps)
    return stats, {ip: files for ip, files in retiring.items() if files}


@dataclass
class BuildResult:
    stats: WriteStats
    rendered: int
    skipped: int
    hosts: int


def build(
    compiled: Compiled,
    outdir: Path,
    target: str | None = None,
    use_cache: bool = True,
    allow_upgrade: bool = False,
) -> BuildResult:
    """Render what changed and write it, holding the output directory's lock throughout."""
    targets = resolve_target(compiled.fleet, target)
    whole = target in (None, "", "all")
    check_output_dir(outdir, compiled.fleet.inventory.source)
    with locked(store_dir(outdir), outdir, LOCK_TIMEOUT):
        state = read_state(outdir)
        if state is None and outdir.is_dir():
            with Tree(outdir) as tree:
                _refuse_foreign(tree)
        old_hosts = (state or {}).get("hosts", {})
        if not isinstance(old_hosts, dict):
            old_hosts = {}
        digests, skip = unchanged_hosts(compiled, outdir, targets, old_hosts)
        if not use_cache:
            skip = set()
        rendered = render_targets(
            compiled, targets, skip
        )  # before the output directory is made: an error writes nothing
        if not allow_upgrade:
            refuse_pin_changes(compiled, rendered, outdir, old_hosts)
        with Tree(outdir) as tree:
            gone = sorted(existing_hosts(outdir) - set(compiled.fleet.hosts)) if whole else []
            stats, retired = _write_all(tree, rendered.trees, gone, old_hosts)
        _save_secrets(outdir, rendered, old_hosts, whole)
        _save_state(outdir, rendered, old_hosts, digests, stats, whole, retired)
    return BuildResult(stats, len(rendered.trees), len(rendered.skipped), len(targets))


def _save_secrets(outdir: Path, rendered: Rendered, old_hosts: dict, whole: bool) -> None:
    """Fresh values for rendered hosts, previous ones for hosts skipped as unchanged."""
    old_store = read_store(outdir)
    store: dict[str, str] = {} if whole else dict(old_store)
    for ip in rendered.skipped:
        for name in old_hosts.get(ip, {}).get("secrets", []):
            if name in old_store:
                store[name] = old_store[name]
    for values in rendered.secrets.values():
        store.update(values)
    write_store(outdir, store)


def _save_state(
    outdir: Path,
    rendered: Rendered,
    old_hosts: dict,
    digests: dict[str, str],
    stats: WriteStats,
    whole: bool,
    retired: dict[str, dict[str, bytes]],
) -> None:
    """Record what this build put in place (the stamps of the files it wrote or found identical) and
    nothing else: a stamp taken later could describe another writer's file. A retired host's entry has no
    input digest (it is never skipped as unchanged) and records its retirement manifest as sty's."""
    new_hosts = {} if whole else dict(old_hosts)
    for ip, tree in retired.items():
        new_hosts[ip] = {"retired": True, "files": {rel: stats.stamps[rel] for rel in sorted(tree)}}
    for ip in rendered.skipped:
        new_hosts[ip] = old_hosts[ip]
    for ip, tree in rendered.trees.items():
        new_hosts[ip] = {
            "inputs": digests[ip],
            "files": {rel: stats.stamps[rel] for rel in sorted(tree)},
            "secrets": sorted(rendered.secrets[ip]),
            "pins": rendered.pins[ip],
        }
    write_state(outdir, new_hosts)


def write_state(outdir: Path, hosts: dict) -> None:
    """The incremental state, rewritten only when it changes (a no-op build touches nothing)."""
    text = json.dumps({"hosts": dict(sorted(hosts.items()))}, sort_keys=True)
    path = _state_path(outdir)
    try:
        same = path.is_file() and not path.is_symlink() and path.read_text() == text
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        write_private(store_dir(outdir), "state.json", text.encode())


def refuse_pin_changes(compiled: Compiled, rendered: Rendered, outdir: Path, old_hosts: dict) -> None:
    """A rendered host whose pinned identity (PostgreSQL's major version) differs from what outputs/ holds is an
    error at the parameter that changed it: an upgrade is a procedure, not a rebuild."""
    report = Report()
    modules = {m.name: m for m in all_modules()}
    for ip in sorted(rendered.trees):
        pins = rendered.pins.get(ip)
        if not pins:
            continue
        entry = old_hosts.get(ip)
        old = entry.get("pins") if isinstance(entry, dict) and isinstance(entry.get("pins"), dict) else None
        if old is None:
            old = _manifest_pins(outdir, ip, pins)
        host = compiled.fleet.hosts[ip]
        for name, new in sorted(pins.items()):
            before = old.get(name)
            if before is None or new is None or before == new:
                continue
            module, key = name.split(".", 1)
            param = modules[module].pinned[key]
            report.error(host.params.source(param), modules[module].pin_refusal(key, before, new, host))
    if report.errors:
        raise InventoryError(report)


def _manifest_pins(outdir: Path, ip: str, pins: dict[str, Any]) -> dict[str, Any]:
    """Pinned values from a host's committed manifest (a fresh clone has no incremental state); links are not
    followed and an unreadable manifest pins nothing."""
    import yaml

    try:
        fd = os.open(outdir / f"{ip}.yml", os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            data = yaml.load(fh.read(MAX_MANIFEST_BYTES + 1)[:MAX_MANIFEST_BYTES], Loader=yaml.CSafeLoader)
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    identity = data.get("identity") if isinstance(data, dict) else None
    if not isinstance(identity, dict):
        return {}
    out = {}
    for name in pins:
        module, key = name.split(".", 1)
        if isinstance(identity.get(module), dict) and isinstance(identity[module].get(key), (int, str)):
            out[name] = identity[module][key]
    return out
