"""The incremental record's checks: is what the last build wrote still in place? Kept free of the compiler's
heavy imports (jsonschema, Jinja2), because `sty build` and `sty diff` with nothing to do run only this.

`.sty/<outdir>/state.json` holds, per host, the input digest and the [size, mtime_ns] stamp of each file written
for it (compiler/build.py), and, after a whole build, the record of compiler/noop.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from sty.contract.exits import UsageError
from sty.contract.store import store_dir

from .writer import TMP_SUFFIX, UnsafeTree, open_private


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


def files_in_place(outdir: Path, entry: dict) -> bool:
    """Every file the state records for a host is there: a regular file (lstat: a link never is) with its
    recorded size and mtime."""
    base = f"{outdir}/"
    lstat = os.lstat
    for rel, (size, mtime) in entry.get("files", {}).items():
        try:  # plain strings: this runs for every file of every host; lstat: a link is never "unchanged"
            st = lstat(base + rel)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != size or st.st_mtime_ns != mtime:
            return False
    return bool(entry.get("files"))


def files_in_place_listing(outdir: Path, ip: str, entry: dict, foreign: dict[str, list[str]]) -> bool:
    """The build's "unchanged" test (every recorded file there, a regular file with its recorded size and mtime),
    done by listing the host's directory (descriptor-relative, never through a link) instead of one lstat per
    file, so that the same pass finds the files sty did not write (`foreign[ip]`): a skipped host gets the notes a
    full comparison gives, for about the cost of the build's test."""
    recorded = entry.get("files")
    if not isinstance(recorded, dict) or not recorded:
        return False
    base, prefix = str(outdir), f"{ip}/"
    inside = sum(1 for rel in recorded if rel.startswith(prefix))
    for rel in recorded:  # the manifest, beside the host's directory
        if not rel.startswith(prefix) and not _same_stamp(os.path.join(base, rel), recorded[rel]):
            return False
    if not inside and not os.path.isdir(os.path.join(base, ip)):
        return True  # a retired host: its manifest alone
    strays: list[str] = []
    try:
        seen = _walk(os.open(os.path.join(base, ip), _DIR_FLAGS), ip, recorded, strays)
    except OSError:  # gone, a link, not a directory: not unchanged; the full comparison says why
        return False
    except (TypeError, IndexError, KeyError):  # a stamp that is not [size, mtime]: the state is not to be trusted
        return False
    if seen != inside:
        return False
    if strays:
        foreign[ip] = strays
    return True


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _walk(fd: int, rel_dir: str, recorded: dict, strays: list[str]) -> int:
    """How many recorded files below the open directory `fd` match their stamps; -1 at the first that does not.
    Closes `fd`. Files not recorded go to `strays` (a build's temporary files excepted)."""
    seen = 0
    try:
        with os.scandir(fd) as listing:
            for item in listing:
                rel = f"{rel_dir}/{item.name}"
                if item.is_dir(follow_symlinks=False):
                    below = _walk(os.open(item.name, _DIR_FLAGS, dir_fd=fd), rel, recorded, strays)
                    if below < 0:
                        return -1
                    seen += below
                    continue
                stamp = recorded.get(rel)
                if stamp is None:
                    if not item.name.endswith(TMP_SUFFIX):
                        strays.append(rel)
                    continue
                if not item.is_file(follow_symlinks=False):
                    return -1
                st = item.stat(follow_symlinks=False)
                if st.st_size != stamp[0] or st.st_mtime_ns != stamp[1]:
                    return -1
                seen += 1
    finally:
        os.close(fd)
    return seen


def _same_stamp(path: str, stamp: object) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and _stamp_is(st, stamp)


def _stamp_is(st: os.stat_result, stamp: object) -> bool:
    return isinstance(stamp, list) and len(stamp) == 2 and [st.st_size, st.st_mtime_ns] == stamp
