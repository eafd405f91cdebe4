"""`sty build`: render targets, compare with outputs/, write what changed (`sty diff` is compiler/diff.py).

Incremental: `.sty/<outdir>/state.jsonl` (compiler/stamps.py) remembers each host's input digest and the size and
mtime of the files written for it; a host whose inputs and files are unchanged is not rendered.
The same record says which files sty wrote, and sty deletes nothing else (a manifest's `files`
stands in for it when the state is gone, e.g. in a fresh clone of a repository with outputs/).

A build holds `.sty/<outdir>/lock` from reading the state to writing it, so that concurrent builds
into one directory run one after the other instead of interleaving their files and cache records.

A host gone from the inventory keeps a retirement manifest (compiler/retire.py) so that apply can clean it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sty.contract.exits import UsageError
from sty.contract.manifest import MAX_MANIFEST_BYTES

from . import noop
from .early_stamps import EarlyCheck
from .errors import InventoryError, Report
from .modules import all_modules
from .paths import code_digest
from .pipeline import Compiled, input_digest, resolve_target
from .processes import in_two
from .retire import retirement_tree
from .secrets import PendingStore, begin_store, read_store, store_dir
from .stage import Staged, commit, discard, render_one, stage_all, stage_files
from .stamps import EARLIER_FILES, STATE_FILE, HostStates, files_in_place, read_state, state_line
from .writer import (
    TMP_SUFFIX,
    Found,
    Tree,
    UnsafeTree,
    WriteStats,
    existing_hosts,
    host_tree,
    locked,
    manifest_files,
    open_private,
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
    """Every target's files in memory, for tests; `sty build` streams them (compiler/stage.py) and `sty diff`
    compares them in workers (compiler/diff.py)."""
    out = Rendered()
    records: list[Staged] = []
    for ip in targets:
        if skip and ip in skip:
            out.skipped.append(ip)
            continue
        tree, record = render_one(compiled, ip)
        records.append(record)
        if record.error:
            continue
        out.trees[ip] = tree
        out.secrets[ip] = record.secrets
        out.identity[ip] = record.identity
        out.pins[ip] = record.pins
        out.actions[ip] = record.actions
    check_rendered(compiled, records)
    return out


def _check_secret_conflicts(compiled: Compiled, records: list[Staged], report: Report) -> None:
    seen: dict[str, tuple[str, str]] = {}
    for record in records:
        ip = record.ip
        for name, value in record.secrets.items():
            if name in seen and seen[name][1] != value:
                report.error(
                    compiled.fleet.hosts[ip].path,
                    f"secret {name} has a different value here than on {seen[name][0]}; "
                    "members of one cluster must share it",
                )
            seen.setdefault(name, (ip, value))


def unchanged_hosts(
    compiled: Compiled,
    outdir: Path,
    targets: list[str],
    old_hosts: HostStates,
    same: Callable[[Path, str, dict], bool] | None = None,
    prechecked: set[str] | None = None,
) -> tuple[dict[str, str], set[str]]:
    """Each target's input digest, and the targets whose inputs and files are what the last build recorded
    (`same(outdir, ip, entry)`, by default the recorded stamps, or `prechecked`: the hosts whose stamps a check
    begun before the compile found in place): their outputs are what a render would write, so build and diff
    skip them."""
    code = code_digest()
    digests = {ip: input_digest(compiled.fleet.hosts[ip], compiled, code) for ip in targets}
    candidates = [ip for ip in targets if old_hosts.inputs(ip) == digests[ip]]
    if same is not None:  # the caller's test (it may note what it finds): in this process
        return digests, {ip for ip in candidates if same(outdir, ip, old_hosts[ip])}
    if prechecked is not None:
        return digests, {ip for ip in candidates if ip in prechecked}

    def in_place(ips: Sequence[str]) -> tuple[str, list[str]]:  # never false: both halves are wanted
        return "checked", [ip for ip in ips if files_in_place(outdir, old_hosts[ip])]

    return digests, {ip for _, found in in_two(candidates, in_place) for ip in found}


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
    if not names or _only_leftovers(tree, names):
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


def _only_leftovers(tree: Tree, names: list[str]) -> bool:
    """Only directories holding nothing but temporary files of sty's (a first build killed before it put
    anything in place): sty's own, not a foreign directory. A link anywhere is refused by the scan."""
    found: dict[str, Found] = {}
    for name in names:
        if name.endswith(TMP_SUFFIX):
            continue
        if not stat.S_ISDIR(os.stat(name, dir_fd=tree.fd, follow_symlinks=False).st_mode):
            return False
        tree.scan(name, found)
        if found:
            return False
    return True


def _retire_gone(
    tree: Tree, gone: list[str], old_hosts: Mapping[str, dict]
) -> dict[str, tuple[dict[str, Found], set[str], dict]]:
    """Each host no longer produced: its files now, those sty recorded writing, and its retirement manifest (read
    before anything is written: a manifest that cannot be retired is refused)."""
    out = {}
    for ip in gone:
        current = host_tree(tree.outdir, ip, tree)
        entry = old_hosts.get(ip)
        recorded = entry.get("files", {}) if isinstance(entry, dict) else {}
        owned = set(recorded) | manifest_files(ip, current.get(f"{ip}.yml"))
        out[ip] = (current, owned, retirement_tree(tree.outdir, ip, current, owned))
    return out


def _write_gone(tree: Tree, retiring: dict, stats: WriteStats) -> dict[str, dict[str, bytes]]:
    """Retire or remove the hosts gone from the inventory (their retirement manifest staged and put in place like
    any bundle, every other file sty wrote for them removed); returns the manifests kept (ip -> tree)."""
    records = []
    for ip, (current, owned, manifest) in sorted(retiring.items()):
        record = Staged(ip)
        stage_files(tree, record, manifest, current, owned)
        records.append(record)
    gone = commit(tree, records)
    stats.written += gone.written
    stats.removed += gone.removed
    stats.stamps.update(gone.stamps)
    for rel in tree.stale:  # found while reading the gone hosts; the build lock is held
        tree.remove(rel)
    return {ip: manifest for ip, (_, _, manifest) in retiring.items() if manifest}


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
    fingerprint: str | None = None,
    jobs: int | None = None,
    early: EarlyCheck | None = None,
) -> BuildResult:
    """Render what changed and write it, holding the output directory's lock throughout. A whole build given
    its inputs' `fingerprint` (compiler/noop.py) records it, so that the next build of the same inputs can
    skip everything. `early` is the stamp check begun before the compile (compiler/early_stamps.py)."""
    targets = resolve_target(compiled.fleet, target)
    whole = target in (None, "", "all")
    check_output_dir(outdir, compiled.fleet.inventory.source)
    with locked(store_dir(outdir), outdir, LOCK_TIMEOUT):
        state = read_state(outdir)
        if state is None and outdir.is_dir():
            with Tree(outdir) as tree:
                _refuse_foreign(tree)
        old_hosts = state if state is not None else HostStates()
        if not use_cache:
            prechecked: set[str] | None = set()  # every host is rendered: no stamp is worth checking
        else:
            prechecked = early.hosts_in_place(outdir) if early is not None else None
        digests, skip = unchanged_hosts(compiled, outdir, targets, old_hosts, prechecked=prechecked)
        fresh = not outdir.exists()
        with Tree(outdir) as tree:
            gone = sorted(existing_hosts(outdir) - set(compiled.fleet.hosts)) if whole else []
            retiring = _retire_gone(tree, gone, old_hosts)
            records = stage_all(tree, compiled, [ip for ip in targets if ip not in skip], old_hosts, jobs)
            skipped = [ip for ip in targets if ip in skip]
            try:
                check_rendered(compiled, records)
                if not allow_upgrade:
                    refuse_pin_changes(compiled, {r.ip: r.pins for r in records}, outdir, old_hosts)
            except BaseException:
                discard(tree, records)
                if fresh:
                    _remove_if_empty(outdir)  # an error writes nothing, not even the output directory
                raise
            secrets = _begin_secrets(outdir, records, skipped, old_hosts, whole)
            try:
                stats = commit(tree, records)
                retired = _write_gone(tree, retiring, stats)
                if stats.written or stats.removed:
                    tree.sync()  # before the record that says these files are in place
            except BaseException:
                secrets.cancel()
                raise
        secrets.finish()
        fleet = None
        if whole and fingerprint:
            fleet = noop.record(fingerprint, len(targets), compiled.report, store_dir(outdir) / "secrets.yml")
        _save_state(outdir, records, skipped, old_hosts, digests, stats, whole, retired, fleet)
    return BuildResult(stats, len(records), len(skipped), len(targets))


def _remove_if_empty(outdir: Path) -> None:
    try:
        outdir.rmdir()
    except OSError:
        pass


def check_rendered(compiled: Compiled, records: list[Staged]) -> None:
    """The whole fleet's rules on what was rendered (build, diff), before anything is put in place or shown:
    every host rendered, and secrets shared within a cluster. Pinned identities are `refuse_pin_changes`."""
    report = Report()
    for record in records:
        if record.error:
            report.error(compiled.fleet.hosts[record.ip].path, f"cannot render this host: {record.error}")
    _check_secret_conflicts(compiled, records, report)
    if report.errors:
        raise InventoryError(report)


def _begin_secrets(
    outdir: Path, records: list[Staged], skipped: list[str], old_hosts: HostStates, whole: bool
) -> PendingStore:
    """Fresh values for rendered hosts, previous ones for hosts skipped as unchanged. Begun before the files are
    put in place: a fleet's fresh SCRAM verifiers (4096 PBKDF2 rounds each, 1.3 s for a new 1000-host fleet)
    are computed in threads while the renames and the sync run; the store is written after them, as before."""
    old_store = read_store(outdir)
    store: dict[str, str] = {} if whole else dict(old_store)
    for ip in skipped:
        for name in old_hosts.meta(ip).get("secrets", []):
            if name in old_store:
                store[name] = old_store[name]
    for record in records:
        store.update(record.secrets)
    return begin_store(outdir, store, old_store)


def _save_state(
    outdir: Path,
    records: list[Staged],
    skipped: list[str],
    old_hosts: HostStates,
    digests: dict[str, str],
    stats: WriteStats,
    whole: bool,
    retired: dict[str, dict[str, bytes]],
    fleet: dict[str, Any] | None = None,
) -> None:
    """Record what this build put in place (the stamps of the files it wrote or found identical) and
    nothing else: a stamp taken later could describe another writer's file. A retired host's entry has no
    input digest (it is never skipped as unchanged) and records its retirement manifest as sty's. A skipped
    host's line is carried over as it was read."""
    lines = {} if whole else old_hosts.lines()
    for ip, tree in retired.items():
        lines[ip] = state_line(ip, {"retired": True, "files": {rel: stats.stamps[rel] for rel in sorted(tree)}})
    for ip in skipped:
        lines[ip] = old_hosts.line(ip)
    for record in records:
        entry = {
            "inputs": digests[record.ip],
            "files": {rel: stats.stamps[rel] for rel in sorted(record.files)},
            "secrets": sorted(record.secrets),
            "pins": record.pins,
        }
        lines[record.ip] = state_line(record.ip, entry)
    write_state(outdir, lines, fleet)


def write_state(outdir: Path, lines: dict[str, str], fleet: dict[str, Any] | None = None) -> None:
    """The incremental state, a line per host (`state_line`), rewritten only when it changes (a no-op build
    touches nothing). `fleet` is the whole-build record of compiler/noop.py, written beside it; any other write
    drops it (the fleet is no longer known whole). An earlier sty's record files are removed."""
    store = store_dir(outdir)
    data = "\n".join(lines[ip] for ip in sorted(lines)).encode()
    try:
        fd = open_private(store, STATE_FILE, os.O_RDONLY)
        with os.fdopen(fd, "rb") as fh:
            same = fh.read(len(data) + 1) == data
    except (UsageError, OSError):
        same = False
    if not same:
        write_private(store, STATE_FILE, data)
    for name in EARLIER_FILES:
        try:
            if stat.S_ISREG(os.lstat(store / name).st_mode):
                os.unlink(store / name)
        except OSError:
            pass
    noop.write_record(store, fleet)


def refuse_pin_changes(
    compiled: Compiled, pinned: dict[str, dict[str, Any]], outdir: Path, old_hosts: Mapping[str, dict]
) -> None:
    """A rendered host whose pinned identity (PostgreSQL's major version) differs from what outputs/ holds is an
    error at the parameter that changed it: an upgrade is a procedure, not a rebuild."""
    report = Report()
    modules = {m.name: m for m in all_modules()}
    for ip in sorted(pinned):
        pins = pinned.get(ip)
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
