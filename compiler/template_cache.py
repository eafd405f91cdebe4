"""Compiled templates kept between runs, so that a process does not compile every template again.

Why: Jinja2 compiles a template to Python the first time a process renders it, and sty's 57 templates take
0.4 s of CPU to compile: in every `sty build` or `sty diff` process and again in each build worker, which made
it a third of a one-cluster rebuild's rendering. Loaded from this cache they take 0.02 s.

The cache holds only what sty's own templates compile to (Jinja2 checks each entry against the template's
source checksum and its own version, and recompiles a stale one); nothing of an inventory or of outputs/
reaches it. It lives in `$STY_CACHE_DIR`, else `$XDG_CACHE_HOME/sty`, else `~/.cache/sty`, in a directory
per Python version that must be the user's own and private (0700): one another user could write to would be
code sty runs, so it is not used. `STY_CACHE_DIR=off` turns the cache off. Any failure to read or write it
(a read-only home, a corrupt entry) costs a compilation, never a build.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import jinja2
from jinja2.bccache import Bucket

OFF = "off"


class _Tolerant(jinja2.FileSystemBytecodeCache):
    """A cache entry that cannot be read is a miss; one that cannot be written is skipped."""

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - a truncated or foreign entry: compile instead
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:  # read-only, full, or gone: the next process compiles again
            pass


def cache_dir() -> Path | None:
    """Where compiled templates are kept, or None when the cache is off or its place is not safe to use."""
    chosen = os.environ.get("STY_CACHE_DIR")
    if chosen is not None and chosen.strip().lower() in ("", OFF):
        return None
    try:
        base = Path(chosen) if chosen else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sty"
        where = base / cache_dir_name()
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        return where if _private(where) and _not_replaceable(where.parent) else None
    except (OSError, RuntimeError, ValueError):  # no home directory, an unusable path
        return None


def cache_dir_name() -> str:
    return f"templates-py{sys.version_info[0]}{sys.version_info[1]}"


def bytecode_cache() -> jinja2.BytecodeCache | None:
    where = cache_dir()
    return _Tolerant(str(where), "%s.jinja") if where is not None else None


def _private(path: Path) -> bool:
    """A real directory of this user's, closed to everyone else (closed here when it is this user's)."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return False
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return True


def _not_replaceable(parent: Path) -> bool:
    """Nobody else can rename the cache directory away and put theirs in its place: its parent is this user's or
    root's, and writable by others only with the sticky bit (as /tmp is)."""
    st = os.stat(parent)
    owner_ok = st.st_uid in (0, os.geteuid())
    shared_write = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return owner_ok and (not shared_write or bool(st.st_mode & stat.S_ISVTX))
