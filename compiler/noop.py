"""The whole-fleet shortcut: nothing changed, so nothing is loaded.

A build of the whole inventory records a fingerprint of everything that shapes outputs/ (the stamps of sty's
code, schemas and templates, compiler/paths.py `code_stamps`; the inventory's bytes and the path it was named by,
secrets.yml with its mode, the facts files, the switches that change what is an error) beside the problems it
printed. When the next `sty build` or `sty diff` has the same fingerprint, and every file the last build
recorded is still in place with its size and mtime (and the secret store too), a render would write exactly
what is there: the command replays the recorded problems and reports "nothing to do" without parsing,
validating or modelling the fleet. For 1000 hosts that is the difference between about 0.4 s and 3 s.

The record is `.sty/<outdir>/noop.json` with the stamps of the files it vouches for: the state
(compiler/stamps.py; any other writer of the state makes it stale) and the secret store. The state's lines carry
each host's files with their size and mtime, which two processes check half each, parsing only that field.

Anything unexpected (no record, a file touched, an input unreadable or over the loader's limit, a host
directory the state does not know) falls back to the full path, which explains what it finds.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import Problem, Report
from .processes import collector_paused, in_two
from .stamps import STATE_FILE

MAX_FACTS = 100_000  # facts files hashed before the shortcut gives up (the full path reads only the hosts')


@dataclass
class Settled:
    """What the last build left, still true: the hosts it built and the problems it printed."""

    hosts: int
    report: Report
    foreign: dict[str, list[str]] = field(default_factory=dict)  # filled by `settled(..., listing=True)`


def fingerprint(inventory: Path, facts_dir: str | None, switches: dict[str, Any]) -> str | None:
    """Digest of every input of a whole build; None when one cannot be read within the loader's limits."""
    from .limits import MAX_BYTES
    from .paths import code_stamps

    h = hashlib.sha256()
    h.update(code_stamps().encode())  # the stamps, not the content: this runs before every no-op build
    h.update(json.dumps([str(inventory), facts_dir, sorted(switches.items())]).encode())
    try:
        with open(inventory, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            return None
        h.update(b"\0inventory\0" + hashlib.sha256(raw).digest())
        secrets = inventory.parent / "secrets.yml"
        if secrets.exists():
            h.update(f"\0secrets {stat.S_IMODE(secrets.stat().st_mode):o}\0".encode() + secrets.read_bytes())
        facts = Path(facts_dir) if facts_dir else inventory.parent / "facts"
        if facts.is_dir():
            names = sorted(n for n in os.listdir(facts) if n.endswith(".yml"))
            if len(names) > MAX_FACTS:
                return None
            for name in names:
                h.update(f"\0facts {name}\0".encode() + (facts / name).read_bytes())
    except (OSError, ValueError):
        return None
    return h.hexdigest()


def record(fingerprint_: str, hosts: int, report: Report, store_file: Path) -> dict[str, Any]:
    """The state's record of a whole build: its fingerprint, its host count, its problems and the secret store's
    stamp (taken after the store was written)."""
    return {
        "fingerprint": fingerprint_,
        "hosts": hosts,
        "problems": [asdict(p) for p in report.problems],
        "store": _stamp(store_file),
    }


RECORD_FILE = "noop.json"  # the record, with the stamps of the state and the store: what the shortcut reads


def write_record(store: Path, fleet: dict[str, Any] | None) -> None:
    """After the state is written: the shortcut's record, which carries the state's stamp, so that any later
    write of the state (a limited build, a retirement) makes it stale; without `fleet` (not a whole build) it is
    removed."""
    from .writer import write_private

    if fleet is None:
        try:
            os.unlink(store / RECORD_FILE)
        except FileNotFoundError:
            pass
        return
    doc = {**fleet, "state": _stamp(store / STATE_FILE)}
    text = json.dumps(doc, sort_keys=True).encode()
    if _read(store / RECORD_FILE) != text:
        write_private(store, RECORD_FILE, text)


def settled(outdir: Path, fingerprint_: str | None, listing: bool = False) -> Settled | None:
    """The last whole build's result when its fingerprint is `fingerprint_` and its files are all in place;
    None otherwise. With `listing`, host directories are listed (for `sty diff`'s notes on files sty did not
    write) instead of one lstat per recorded file."""
    from sty.contract.store import store_dir

    from .stamps import files_in_place, files_in_place_listing
    from .writer import existing_hosts

    if fingerprint_ is None or not outdir.is_dir() or outdir.is_symlink():
        return None
    store = store_dir(outdir)
    try:
        fleet = json.loads(_read(store / RECORD_FILE) or b"null")
    except ValueError:
        return None
    if not isinstance(fleet, dict) or fleet.get("fingerprint") != fingerprint_:
        return None
    if any(fleet.get(key) != _stamp(store / name) for key, name in _STAMPED):
        return None  # the state or the secret store was written since (or is not a regular file)

    def in_place(lines: Sequence[bytes]) -> tuple[dict[str, list[str]], list[str]] | bool:
        """False at the first host whose files are not what was recorded; else (foreign files, hosts seen)."""
        foreign: dict[str, list[str]] = {}
        seen: list[str] = []
        for line in lines:
            address, _, _, files = line.split(b"\t")
            ip = address.decode()
            entry = {"files": json.loads(files)}
            seen.append(ip)
            same = files_in_place_listing(outdir, ip, entry, foreign) if listing else files_in_place(outdir, entry)
            if not same:
                return False
        return foreign, seen

    try:
        report = Report([Problem(**p) for p in fleet.get("problems", [])])
        count = int(fleet["hosts"])
        data = _read(store / STATE_FILE)
        lines = data.split(b"\n") if data else []
        with collector_paused():  # millions of small objects at 10,000 hosts: full collections would walk them
            halves = in_two(lines, in_place)  # one half of the hosts on each core
        if not all(halves):
            return None
        foreign = {ip: files for found, _ in halves for ip, files in found.items()}
        if not existing_hosts(outdir) <= {ip for _, seen in halves for ip in seen}:
            return None
    except (TypeError, ValueError, KeyError, OSError, AttributeError):
        return None
    return Settled(count, report, {ip: sorted(files) for ip, files in foreign.items()})


_STAMPED = (("state", STATE_FILE), ("store", "secrets.yml"))


def _read(path: Path) -> bytes | None:
    """A store file's bytes, never through a link (the file's, the store's or `.sty`'s: a pull request can plant
    one); None when it cannot be read. Never makes the store, as the full path's reader would."""
    store = path.parent
    try:
        if store.parent.is_symlink() or store.is_symlink() or not store.is_dir():
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _stamp(path: Path) -> list[int] | None:
    """[size, mtime_ns, mode] of a regular file, None when absent or not a regular file."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_mode] if stat.S_ISREG(st.st_mode) else None
