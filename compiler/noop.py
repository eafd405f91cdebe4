"""The whole-fleet shortcut: nothing changed, so nothing is loaded.

A build of the whole inventory records a fingerprint of everything that shapes outputs/ (sty's code, schemas
and templates, the inventory's bytes and the path it was named by, secrets.yml with its mode, the facts files,
the switches that change what is an error) beside the problems it printed. When the next `sty build` or
`sty diff` has the same fingerprint, and every file the last build recorded is still in place with its size and
mtime (and the secret store too), a render would write exactly what is there: the command replays the recorded
problems and reports "nothing to do" without parsing, validating or modelling the fleet. For 1000 hosts that
is the difference between about 0.4 s and 3 s.

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
from .halves import collector_paused, in_two

RECORD = "fleet"  # the key of state.json that holds the record
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
    from .paths import code_digest

    h = hashlib.sha256()
    h.update(code_digest().encode())
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


def settled(outdir: Path, fingerprint_: str | None, listing: bool = False) -> Settled | None:
    """The last whole build's result when its fingerprint is `fingerprint_` and its files are all in place;
    None otherwise. With `listing`, host directories are listed (for `sty diff`'s notes on files sty did not
    write) instead of one lstat per recorded file."""
    from sty.contract.store import store_dir

    from .stamps import files_in_place, files_in_place_listing, read_state
    from .writer import existing_hosts

    if fingerprint_ is None or not outdir.is_dir() or outdir.is_symlink():
        return None
    state_file = store_dir(outdir) / "state.json"
    if state_file.is_symlink() or not state_file.is_file():  # read_state would make the store: never here
        return None
    try:
        with collector_paused():  # a 10,000-host record is millions of objects: six full collections otherwise
            state = read_state(outdir)
    except Exception:  # an unsafe store: the full path refuses it with its sentence
        return None
    fleet = (state or {}).get(RECORD)
    hosts = (state or {}).get("hosts")
    if not isinstance(fleet, dict) or fleet.get("fingerprint") != fingerprint_ or not isinstance(hosts, dict):
        return None
    store_file = store_dir(outdir) / "secrets.yml"
    if fleet.get("store") != _stamp(store_file):
        return None

    def in_place(part: Sequence[tuple[str, Any]]) -> dict[str, list[str]] | None:
        """None at the first host whose files are not what was recorded; else the foreign files found."""
        foreign: dict[str, list[str]] = {}
        for ip, entry in part:
            if not isinstance(entry, dict):
                return None
            same = files_in_place_listing(outdir, ip, entry, foreign) if listing else files_in_place(outdir, entry)
            if not same:
                return None
        return foreign

    try:
        report = Report([Problem(**p) for p in fleet.get("problems", [])])
        count = int(fleet["hosts"])
        # one half on each core; each half's answer in a tuple, so that one without foreign files is still true
        halves = in_two(list(hosts.items()), lambda part: (found := in_place(part)) is not None and (found,))
        if not all(halves):
            return None
        foreign = {ip: files for (found,) in halves for ip, files in found.items()}
        if not existing_hosts(outdir) <= set(hosts):
            return None
    except (TypeError, ValueError, KeyError, OSError):
        return None
    return Settled(count, report, {ip: sorted(files) for ip, files in foreign.items()})


def _stamp(path: Path) -> list[int] | None:
    """[size, mtime_ns, mode] of a regular file, None when absent or not a regular file."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_mode] if stat.S_ISREG(st.st_mode) else None
