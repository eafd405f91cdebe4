"""Render hosts and stage their files, in worker processes, holding one host's bundle at a time.

A full build of a big fleet is CPU-bound Python (modules, Jinja2, serialisers) and its bundles are large (about
370 KiB of files per host), so `sty build` does not render every host into memory and then write: each worker
process (forked, so it shares the compiled fleet copy-on-write) renders one host, compares its files with what is
on disk, writes each changed file to a temporary name beside its target, and keeps only the host's record (stamps,
secrets, identity). Nothing is renamed into place until every host is rendered and the whole fleet's rules hold
(secrets shared within a cluster, pinned identities unchanged): `commit` then renames the staged files, `discard`
removes them, so an error still leaves outputs/ as it was.

Output is byte-identical whatever the number of workers: a host's bytes depend only on its inputs, and the
records are merged in host order.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from .manifest import manifest_text
from .modules import all_modules
from .pipeline import Compiled, render_host
from .processes import collector_paused
from .render import RenderError
from .writer import Found, Tree, WriteFailed, WriteStats, host_tree, manifest_files

# below this many hosts to render, forking (about 50 ms) costs more than it saves; a few hosts are worth it when
# they are infra nodes, whose bundles carry the whole fleet (an infra node of a 1000-host fleet takes 0.5 s)
PARALLEL_FROM = 4
CHUNK = 8  # hosts per task at most: small enough to balance a fleet whose infra nodes weigh fifty plain ones


@dataclass
class Staged:
    """One host's rendered record, without its file contents (those are on disk under temporary names)."""

    ip: str
    files: dict[str, list[int]] = field(default_factory=dict)  # rel -> [size, mtime_ns] once committed
    staged: list[tuple[str, str]] = field(default_factory=list)  # (rel, temporary name beside it)
    unchanged: int = 0
    remove: list[str] = field(default_factory=list)  # files sty wrote earlier that this bundle no longer has
    secrets: dict[str, str] = field(default_factory=dict)
    pins: dict[str, Any] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)
    actions: dict[str, list[str]] = field(default_factory=dict)  # rel -> activation actions (for `sty diff`)
    stale: list[str] = field(default_factory=list)  # temporary files of a killed build, found beside its files
    error: str = ""  # the render error, when the host could not be rendered


def render_one(compiled: Compiled, ip: str) -> tuple[dict[str, bytes], Staged]:
    """One host's files (rel path under the output root -> bytes, its manifest included) and its record."""
    host = compiled.fleet.hosts[ip]
    record = Staged(ip)
    try:
        bundle = render_host(host, compiled)
    except RenderError as exc:
        record.error = str(exc)
        return {}, record
    tree = {f"{ip}{path}": (spec.content or "").encode("utf-8") for path, spec in bundle.files.items()}
    tree[f"{ip}.yml"] = manifest_text(host, bundle).encode("utf-8")
    record.actions = {f"{ip}{path}": [str(a) for a in sorted(set(spec.actions))] for path, spec in bundle.files.items()}
    record.secrets = bundle.secrets
    record.identity = bundle.info
    record.pins = {
        f"{m.name}.{key}": bundle.info[m.name].get(key)
        for m in all_modules()
        if m.pinned and m.name in bundle.info
        for key in m.pinned
    }
    return tree, record


def stage_host(tree: Tree, compiled: Compiled, ip: str, recorded: set[str]) -> Staged:
    """Render one host and stage what differs from the files now in place; `recorded` are the files the last
    build recorded writing for it (with its manifest's list, the files sty may remove)."""
    desired, record = render_one(compiled, ip)
    if record.error:
        return record
    seen = len(tree.stale)
    current = host_tree(tree.outdir, ip, tree)
    record.stale = tree.stale[seen:]
    # what sty wrote for this host: the local record, else (a fresh clone) the committed manifest's list, which
    # is the same list but costs a YAML parse (half a second for an infra node's manifest of a 1000-host fleet)
    owned = recorded or manifest_files(ip, current.get(f"{ip}.yml"))
    stage_files(tree, record, desired, current, owned)
    return record


def stage_files(
    tree: Tree, record: Staged, desired: dict[str, bytes], current: dict[str, Found], owned: set[str]
) -> None:
    """Stage into `record` every file of `desired` that differs from `current` (the files now in place), and list
    for removal the files sty wrote (`owned`) that `desired` no longer has. On failure the files staged so far
    are removed."""
    dirs: dict[str, int] = {}
    try:
        for rel, content in sorted(desired.items()):
            now = current.get(rel)
            if now is not None and now.content == content:
                record.unchanged += 1
                record.files[rel] = [now.size, now.mtime_ns]
                continue
            parent, _, name = rel.rpartition("/")
            tmp, record.files[rel] = tree.stage(tree.dir_of(parent, dirs, create=True), name, rel, content)
            record.staged.append((rel, tmp))
    except BaseException:
        _unlink_staged(tree, record)
        raise
    finally:
        for fd in dirs.values():
            os.close(fd)
    record.remove = sorted((set(current) - set(desired)) & owned)


def stage_all(
    tree: Tree, compiled: Compiled, ips: list[str], old_hosts: Mapping[str, dict], jobs: int | None = None
) -> list[Staged]:
    """Stage every host of `ips`, in `jobs` worker processes (default: the CPUs this process may use); the
    records come back in the order of `ips`. A worker's failure (a hostile entry, a full disk) is raised here as
    the worker raised it, after every host staged so far is discarded."""
    return in_workers(
        lambda chunk: _stage_chunk(tree, compiled, chunk, old_hosts),
        ips,
        jobs,
        group=by_groups(compiled),
        undo=lambda done: discard(tree, done),
        died=f"{tree.outdir}: a build worker process died (killed, or out of memory); nothing was put in place",
    )


def in_workers(
    work: Callable[[list[str]], list[Any]],
    ips: list[str],
    jobs: int | None,
    undo: Callable[[list[Any]], None] = lambda _done: None,
    died: str = "a worker process died (killed, or out of memory)",
    group: Callable[[str], object] | None = None,
) -> list[Any]:
    """`work` over `ips` in chunks, in forked worker processes that share the compiled fleet copy-on-write; the
    results in the order of `ips`. On any failure `undo` gets the results received so far, and a worker that died
    is the sentence `died` (exit 3). Consecutive hosts of one `group` (their inventory groups: a cluster) stay in
    one chunk where they can, so that one worker renders what they share once (compiler/shared.py)."""
    global _WORK
    jobs = jobs or len(os.sched_getaffinity(0))
    if jobs <= 1 or len(ips) < PARALLEL_FROM:
        return work(ips)
    chunks = _chunks(ips, max(1, min(CHUNK, len(ips) // (jobs * 4))), group)
    kept = gc.get_freeze_count() > 0  # the process froze its heap for good (sty/cli/common.py): leave it so
    if not kept:
        gc.collect()
    gc.freeze()  # the compiled fleet stays shared: the children's collector never writes to its pages
    _WORK = work
    done: list[Any] = []
    try:
        # the parent only gathers records meanwhile: the collector's full passes over them freed nothing (4 s of
        # a 10,000-host build); the workers, which make and drop a host's objects, collect as usual
        with (
            collector_paused(),
            ProcessPoolExecutor(
                jobs, mp_context=multiprocessing.get_context("fork"), initializer=_worker_start, initargs=(os.getpid(),)
            ) as pool,
        ):
            for data in pool.map(_worker, chunks):
                done.extend(pickle.loads(data))
    except BrokenProcessPool:
        undo(done)
        raise WriteFailed(died) from None
    except BaseException:
        undo(done)
        raise
    finally:
        _WORK = None
        if not kept:
            gc.unfreeze()
    return done


def by_groups(compiled: Compiled) -> Callable[[str], object]:
    """A host's inventory groups (its cluster), by which `in_workers` keeps hosts that share parts together."""
    return lambda ip: compiled.fleet.hosts[ip].groups


def _chunks(ips: list[str], size: int, group: Callable[[str], object] | None) -> list[list[str]]:
    """`ips` cut every `size` hosts, a little later where that would split a group (at most 4 * `size`)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    for ip in ips:
        full = len(current) >= size
        if full and (group is None or len(current) >= 4 * size or group(ip) != group(current[-1])):
            chunks.append(current)
            current = []
        current.append(ip)
    if current:
        chunks.append(current)
    return chunks


_WORK: Callable[[list[str]], list[Any]] | None = None  # what forked workers inherit


def _worker_start(parent: int) -> None:
    gc.enable()  # forked while the parent paused it
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """A worker whose build is killed (SIGKILL, out of memory) must not live on holding the build's output
    pipes and temporary files: Linux's parent-death signal ends it with its parent."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _worker(ips: list[str]) -> bytes:
    """Pickled here, unpickled by the parent's own thread: a result that cannot cross is an error raised there."""
    assert _WORK is not None
    return pickle.dumps(_WORK(ips), pickle.HIGHEST_PROTOCOL)


def _stage_chunk(tree: Tree, compiled: Compiled, ips: list[str], old_hosts: Mapping[str, dict]) -> list[Staged]:
    done: list[Staged] = []
    try:
        for ip in ips:
            entry = old_hosts.get(ip)
            recorded = entry.get("files", {}) if isinstance(entry, dict) else {}
            done.append(stage_host(tree, compiled, ip, set(recorded) if isinstance(recorded, dict) else set()))
    except BaseException:
        discard(tree, done)  # this chunk's own; the caller discards the others
        raise
    return done


def commit(tree: Tree, records: list[Staged]) -> WriteStats:
    """Rename every staged file into place, then remove the files the bundles no longer have."""
    stats = WriteStats()
    for record in records:
        dirs: dict[str, int] = {}
        try:
            for rel, tmp in record.staged:
                parent, _, name = rel.rpartition("/")
                tree.place(tree.dir_of(parent, dirs, create=False), tmp, name, rel)
                stats.written.append(rel)
        finally:
            for fd in dirs.values():
                os.close(fd)
        for rel in record.remove:
            if tree.remove(rel):
                stats.removed.append(rel)
        for rel in record.stale:  # the build lock is held: no other sty writes here now
            tree.remove(rel)
        stats.unchanged += record.unchanged
        stats.stamps.update(record.files)
    return stats


def discard(tree: Tree, records: list[Staged]) -> None:
    """Remove every staged file (an error elsewhere in the fleet: nothing is put in place)."""
    for record in records:
        _unlink_staged(tree, record)


def _unlink_staged(tree: Tree, record: Staged) -> None:
    for rel, tmp in record.staged:
        parent = rel.rpartition("/")[0]
        tree.remove(f"{parent}/{tmp}" if parent else tmp)
    record.staged.clear()
