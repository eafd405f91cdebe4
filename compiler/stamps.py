"""The incremental record and its checks: is what the last build wrote still in place? Kept free of the compiler's
heavy imports (jsonschema, Jinja2), because `sty build` and `sty diff` with nothing to do run only this.

`.sty/<outdir>/state.jsonl` holds a line per host (compiler/build.py writes it), in address order:

    <address> TAB <input digest, or -> TAB <JSON: secrets, pins, retired> TAB <JSON: file -> [size, mtime_ns]>

Why lines and not one JSON document: a build that re-renders one cluster carries every other host's line over
as it was read, without parsing or re-serialising it (at 4000 hosts the whole document took 0.44 s to read and
0.75 s to write); the parent reads each skipped host's small middle field (its secrets) and never its files,
which the two processes checking the stamps parse, half each; and the no-op shortcut (compiler/noop.py) reads
the same lines, where it used to need a copy of the stamps of its own.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sty.contract.exits import UsageError
from sty.contract.store import store_dir

from .writer import TMP_SUFFIX, UnsafeTree, open_private

STATE_FILE = "state.jsonl"
EARLIER_FILES = ("state.json", "stamps.jsonl")  # an earlier sty's record: removed when the state is next written


class HostStates(Mapping[str, dict]):
    """The hosts of the state, each parsed when first asked for. `line(ip)` is the host's line as read, which a
    build writes back untouched for a host it skipped; `meta(ip)` parses the small field only."""

    def __init__(self, lines: dict[str, str] | None = None):
        self._lines: dict[str, str] = lines or {}
        self._parsed: dict[str, dict] = {}

    @classmethod
    def parse(cls, text: str) -> HostStates:
        """Lines of four fields; a line that is not (hand-edited, cut short) is left out: that host is re-rendered."""
        lines = {}
        for line in text.split("\n"):
            ip, sep, _ = line.partition("\t")
            if sep and line.count("\t") == 3:
                lines[ip] = line
        return cls(lines)

    def __getitem__(self, ip: str) -> dict:
        entry = self._parsed.get(ip)
        if entry is None:
            _, inputs, meta, files = self._lines[ip].split("\t")
            entry = {**_object(meta), "files": _object(files)}
            if inputs != "-":
                entry["inputs"] = inputs
            self._parsed[ip] = entry
        return entry

    def __iter__(self) -> Iterator[str]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def __contains__(self, ip: object) -> bool:
        return ip in self._lines

    def inputs(self, ip: str) -> str | None:
        """The host's input digest, read without parsing its entry."""
        line = self._lines.get(ip)
        if line is None:
            return None
        inputs = line.split("\t", 2)[1]
        return None if inputs == "-" else inputs

    def meta(self, ip: str) -> dict:
        """The host's secrets, pins and retirement, without its files ({} for a host the state does not know)."""
        if ip in self._parsed:
            return {k: v for k, v in self._parsed[ip].items() if k not in ("inputs", "files")}
        line = self._lines.get(ip)
        return _object(line.split("\t")[2]) if line is not None else {}

    def line(self, ip: str) -> str:
        return self._lines[ip]

    def lines(self) -> dict[str, str]:
        return dict(self._lines)


def _object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def state_line(ip: str, entry: dict[str, Any]) -> str:
    """A host's line: what `HostStates` reads back as `entry` (its `inputs`, `files` and the rest)."""
    meta = {k: v for k, v in entry.items() if k not in ("inputs", "files")}
    files = json.dumps(entry.get("files", {}), sort_keys=True, separators=(",", ":"))
    return f"{ip}\t{entry.get('inputs') or '-'}\t{json.dumps(meta, sort_keys=True, separators=(',', ':'))}\t{files}"


def read_state(outdir: Path) -> HostStates | None:
    """The incremental state: empty when unreadable, None when there is none (sty never built here). An earlier
    sty's `state.json` is read when there are no lines yet: without it, the first build after an upgrade would
    parse every committed manifest to learn which files sty wrote (twice the time of a full build)."""
    store = store_dir(outdir)
    try:
        fd = open_private(store, STATE_FILE, os.O_RDONLY)
    except UnsafeTree:
        raise
    except UsageError:
        return _earlier_state(store)
    try:
        with os.fdopen(fd, "rb") as fh:
            return HostStates.parse(fh.read().decode())
    except (OSError, UnicodeDecodeError):
        return HostStates()


def _earlier_state(store: Path) -> HostStates | None:
    """`state.json` as sty wrote it until 2026-11-30 (`{"hosts": {address: entry}}`), as lines."""
    try:
        fd = open_private(store, EARLIER_FILES[0], os.O_RDONLY)
    except UnsafeTree:
        raise
    except UsageError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            hosts = json.loads(fh.read()).get("hosts")
        return HostStates(
            {
                ip: state_line(ip, e)
                for ip, e in hosts.items()
                if isinstance(e, dict) and "\t" not in ip and "\n" not in ip
            }
        )
    except (OSError, ValueError, AttributeError, TypeError):
        return HostStates()


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
