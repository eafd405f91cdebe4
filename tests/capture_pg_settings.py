"""Regenerate compiler/modules/pgsql/pg_settings.json, the context of every PostgreSQL setting per major.

Usage (as root or as any user; as root the PostgreSQL programs run as `nobody`, since postgres refuses root):

    python tests/capture_pg_settings.py                      # every /usr/lib/postgresql/<major>/bin/postgres
    python tests/capture_pg_settings.py --postgres 17=/x/bin/postgres --guc-dat 19=/src/guc_parameters.dat
    python tests/capture_pg_settings.py --check              # exit 1 if the file differs from the installed majors

Only the majors captured in a run are replaced; the file's other majors are kept as they are.

A major is captured from a binary in two ways, which must agree:
* `postgres --describe-config`, which leaves out the settings flagged GUC_NOT_IN_SAMPLE (application_name,
  transaction_isolation, the developer options, every read-only `internal` one ...);
* the `pg_settings` view of a throw-away cluster (initdb, then single-user mode), which lists every setting
  except those flagged GUC_NO_SHOW_ALL (role, seed, is_superuser ... which no configuration file may set).
The second is what is written; the first must be a subset of it with the same contexts. A major that has no
binary yet (a beta) can be read from the source instead: `src/backend/utils/misc/guc_parameters.dat` of a
PostgreSQL checkout (PostgreSQL 19 on), skipping the GUC_NO_SHOW_ALL entries and those built only under an
`ifdef` that release builds leave undefined (LOCK_DEBUG, WAL_DEBUG ...), as the binary would.

Debian's packages (the ones sty's fleet and this repository's tests run) patch in one setting of their own,
`extension_destdir` (superuser); it is added to every major so that a binary built elsewhere gives the same
table as Debian's.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "compiler" / "modules" / "pgsql" / "pg_settings.json"
MAJORS = (13, 14, 15, 16, 17, 18, 19)
INSTALLED = "/usr/lib/postgresql/{major}/bin/postgres"
RUN_AS = "nobody"

# Debian's own patch, present on every major it packages
DEBIAN_EXTRAS = {"extension_destdir": "superuser"}

CONTEXTS = {
    "PGC_INTERNAL": "internal",
    "PGC_POSTMASTER": "postmaster",
    "PGC_SIGHUP": "sighup",
    "PGC_SU_BACKEND": "superuser-backend",
    "PGC_BACKEND": "backend",
    "PGC_SUSET": "superuser",
    "PGC_USERSET": "user",
}


class CaptureError(RuntimeError):
    """A binary or a source file did not give a usable table."""


def _as_user(argv: list[str]) -> list[str]:
    """Run `argv` as RUN_AS when we are root (postgres and initdb refuse to run as root)."""
    return ["runuser", "-u", RUN_AS, "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], stdin: str | None = None) -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "LANG": "C"}
    proc = subprocess.run(_as_user(argv), input=stdin, capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise CaptureError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def binary_major(postgres: str) -> int:
    """The major version a postgres binary reports (`postgres (PostgreSQL) 15.18` -> 15)."""
    found = re.search(r"\(PostgreSQL\) (\d+)", _run([postgres, "--version"]))
    if not found:
        raise CaptureError(f"{postgres} --version: no version found")
    return int(found.group(1))


def describe_config(postgres: str) -> dict[str, str]:
    """name -> context from `postgres --describe-config` (tab-separated: name, context, group, type ...)."""
    table = {}
    for line in _run([postgres, "--describe-config"]).splitlines():
        if line.strip():
            name, context = line.split("\t")[:2]
            table[name] = context
    return table


def pg_settings(postgres: str) -> dict[str, str]:
    """name -> context from the pg_settings view of a throw-away cluster made with the binary's own initdb."""
    initdb = str(Path(postgres).with_name("initdb"))
    with tempfile.TemporaryDirectory(prefix="pg-settings-") as tmp:
        if os.geteuid() == 0:
            os.chown(tmp, pwd.getpwnam(RUN_AS).pw_uid, -1)
        data, out = f"{tmp}/data", f"{tmp}/settings.tsv"
        _run([initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        query = f"COPY (SELECT name, context FROM pg_settings) TO '{out}';\n"
        _run([postgres, "--single", "-D", data, "-c", "fsync=off", "postgres"], stdin=query)
        text = Path(out).read_text()
    return dict(line.split("\t") for line in text.splitlines() if line)


def capture_binary(postgres: str) -> dict[str, str]:
    """The table of one binary: its pg_settings, checked against its --describe-config (core settings only)."""
    full, described = pg_settings(postgres), describe_config(postgres)
    wrong = {n: (c, full.get(n)) for n, c in described.items() if full.get(n) != c}
    if wrong:
        raise CaptureError(f"{postgres}: --describe-config and pg_settings disagree: {wrong}")
    return _core({**full, **DEBIAN_EXTRAS})


def capture_guc_dat(path: str) -> dict[str, str]:
    """The table a release build of a guc_parameters.dat (PostgreSQL 19 on) would show in pg_settings."""
    table = {}
    for entry in re.findall(r"\{\s*name\s*=>.*?\n\}", Path(path).read_text(), flags=re.S):
        fields = dict(re.findall(r"(\w+)\s*=>\s*'((?:[^'\\]|\\.)*)'", entry))
        if "GUC_NO_SHOW_ALL" in fields.get("flags", "") or "ifdef" in fields:
            continue
        table[fields["name"]] = CONTEXTS[fields["context"]]
    if not table:
        raise CaptureError(f"{path}: no GUC entries found")
    return _core({**table, **DEBIAN_EXTRAS})


def _core(table: dict[str, str]) -> dict[str, str]:
    """Drop extension (`prefix.name`) settings and sort."""
    unknown = set(table.values()) - set(CONTEXTS.values())
    if unknown:
        raise CaptureError(f"unexpected contexts {sorted(unknown)}")
    return dict(sorted((n, c) for n, c in table.items() if "." not in n))


def dumps(data: dict[str, dict[str, str]]) -> str:
    """The file's exact text: sorted keys, one entry a line, a final newline."""
    return json.dumps(data, sort_keys=True, indent=1) + "\n"


def _pair(text: str) -> tuple[int, str]:
    major, sep, path = text.partition("=")
    if not sep or not major.isdigit():
        raise argparse.ArgumentTypeError(f"expected MAJOR=PATH, got {text!r}")
    return int(major), path


def _diff(old: dict[str, str], new: dict[str, str]) -> list[str]:
    lines = [f"  + {n} ({new[n]})" for n in sorted(new.keys() - old.keys())]
    lines += [f"  - {n} ({old[n]})" for n in sorted(old.keys() - new.keys())]
    lines += [f"  ~ {n}: {old[n]} -> {new[n]}" for n in sorted(old.keys() & new.keys()) if old[n] != new[n]]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if the file differs")
    parser.add_argument("--postgres", type=_pair, action="append", default=[], metavar="MAJOR=PATH")
    parser.add_argument("--guc-dat", type=_pair, action="append", default=[], metavar="MAJOR=PATH")
    parser.add_argument("--file", type=Path, default=DATA, help=f"default: {DATA.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    shown = args.file.relative_to(ROOT) if args.file.is_relative_to(ROOT) else args.file

    binaries = dict(args.postgres)
    if not binaries and not args.guc_dat:
        binaries = {m: INSTALLED.format(major=m) for m in MAJORS if os.access(INSTALLED.format(major=m), os.X_OK)}
        if not binaries:
            print("no PostgreSQL binary found under /usr/lib/postgresql/*/bin", file=sys.stderr)
            return 2
    if os.geteuid() == 0 and not shutil.which("runuser"):
        print("running as root needs runuser(1) to drop to 'nobody'", file=sys.stderr)
        return 2

    captured: dict[int, dict[str, str]] = {}
    for major, postgres in sorted(binaries.items()):
        reported = binary_major(postgres)
        if reported != major:
            raise CaptureError(f"{postgres} is PostgreSQL {reported}, not {major}")
        captured[major] = capture_binary(postgres)
    for major, path in args.guc_dat:
        captured[major] = capture_guc_dat(path)
    if set(captured) - set(MAJORS):
        raise CaptureError(f"majors {sorted(set(captured) - set(MAJORS))} are not in {MAJORS}")

    current = json.loads(args.file.read_text()) if args.file.exists() else {}
    wanted = {**current, **{str(m): t for m, t in captured.items()}}
    for major, table in sorted(captured.items()):
        changes = _diff(current.get(str(major), {}), table)
        print(f"PostgreSQL {major}: {len(table)} settings, {len(changes)} change(s)")
        print("\n".join(changes[:50]) + ("\n  ..." if len(changes) > 50 else ""), end="\n" if changes else "")

    text = dumps(wanted)
    same = args.file.exists() and args.file.read_text() == text
    if args.check:
        print(f"{shown} is {'up to date' if same else 'OUT OF DATE'}")
        return 0 if same else 1
    if not same:
        args.file.write_text(text)
        print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
