"""Writing bundles: only changed files are rewritten, files no longer produced are removed.

outputs/ holds `<host>/` trees and `<host>.yml` manifests; anything else in it is left alone.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class WriteStats:
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0


def host_tree(outdir: Path, ip: str) -> dict[str, bytes]:
    """What exists now for one host: relative path (under outdir) -> content."""
    out: dict[str, bytes] = {}
    manifest = outdir / f"{ip}.yml"
    if manifest.is_file():
        out[f"{ip}.yml"] = manifest.read_bytes()
    root = outdir / ip
    if root.is_dir():
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                full = Path(dirpath) / name
                out[str(full.relative_to(outdir))] = full.read_bytes()
    return out


def existing_hosts(outdir: Path) -> set[str]:
    """Host names that have a bundle in outdir (IPv4-named dirs or manifests)."""
    found: set[str] = set()
    if not outdir.is_dir():
        return found
    for entry in outdir.iterdir():
        name = entry.name[:-4] if entry.name.endswith(".yml") else entry.name
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            continue
        found.add(name)
    return found


def write_host(outdir: Path, ip: str, desired: dict[str, bytes], stats: WriteStats) -> None:
    current = host_tree(outdir, ip)
    made: set[str] = set()
    for rel, content in sorted(desired.items()):
        if current.get(rel) == content:
            stats.unchanged += 1
            continue
        target = os.path.join(outdir, rel)
        parent = os.path.dirname(target)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        if rel in current:  # replace atomically: readers never see half a file
            tmp = os.path.join(parent, f".{os.path.basename(target)}.sty-tmp")
            _write(tmp, content)
            os.replace(tmp, target)
        else:
            _write(target, content)
        stats.written.append(rel)
    for rel in sorted(set(current) - set(desired)):
        (outdir / rel).unlink()
        stats.removed.append(rel)
    _prune_empty_dirs(outdir / ip)


def _write(path: str, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def remove_host(outdir: Path, ip: str, stats: WriteStats) -> None:
    for rel in sorted(host_tree(outdir, ip)):
        stats.removed.append(rel)
    manifest = outdir / f"{ip}.yml"
    if manifest.exists():
        manifest.unlink()
    if (outdir / ip).is_dir():
        shutil.rmtree(outdir / ip)


def _prune_empty_dirs(root: Path) -> None:
    if not root.is_dir():
        return
    for dirpath, dirs, files in os.walk(root, topdown=False):
        if not dirs and not files and Path(dirpath) != root:
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
        elif Path(dirpath) != root:
            try:
                os.rmdir(dirpath)  # succeeds only when empty after children were pruned
            except OSError:
                pass


def unified(rel: str, old: bytes | None, new: bytes | None) -> str:
    a = (old or b"").decode("utf-8", "replace").splitlines(keepends=True)
    b = (new or b"").decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(
        a,
        b,
        fromfile=f"a/{rel}" if old is not None else "/dev/null",
        tofile=f"b/{rel}" if new is not None else "/dev/null",
    )
    text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
    return text
