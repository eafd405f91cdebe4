"""Real programs judging the files sty emits: the slow tests' thin harness over the registered checkers
(apply/checks/<name>.py, run through apply/checks/runner.py exactly as `sty lint` and the apply stage do).

`run(bundle, host, checker, files)` runs one checker on a bundle directory (`outputs/<ip>/`, the host's
filesystem as sty renders it, or a modified copy of it) with the host's manifest (from outputs/ unless
given) and returns the `CheckResult`: status pass/fail/skip, the program's own output, and a reason.

Network safety: the checkers isolate themselves. Programs that could open connections to the addresses
written in the files (etcd, Patroni) run inside a private network namespace they create, in which the
host's own addresses (and those of its etcd) sit on `lo`; the others only parse under `unshare -n`
(haproxy, chronyd -p, dnsmasq), listen on loopback only (pgbouncer), use a unix socket (PostgreSQL) or no
network at all (systemd-analyze). Never run them against files of a real fleet from a machine that can
reach it without reading them first.

Needs root (namespaces, `setpriv` to the `postgres` user) and the Debian packages of .ci/run.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from sty.apply.checks import CheckContext, CheckResult
from sty.apply.checks.runner import run_check
from sty.apply.checks.util import DUMMY_SECRET, SECRET, netns, substitute, tmpdir  # noqa: F401 - for the tests

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ROOT / "outputs"


def host_addresses(outputs: Path = OUTPUTS) -> list[str]:
    """Hosts with a bundle and a manifest, in address order."""
    found = [p.stem for p in outputs.glob("*.yml") if (outputs / p.stem).is_dir()]
    return sorted(found, key=lambda ip: tuple(int(x) if x.isdigit() else 0 for x in ip.split(".")))


def manifest(host: str, outputs: Path = OUTPUTS) -> dict:
    return yaml.safe_load((outputs / f"{host}.yml").read_text())


def checks(host: str, checker: str, outputs: Path = OUTPUTS) -> list[list[str]]:
    """The file lists of the manifest's checks of this checker (one list per check entry)."""
    return [c["files"] for c in manifest(host, outputs).get("checks", []) if c["checker"] == checker]


def hosts_with(checker: str, outputs: Path = OUTPUTS) -> list[str]:
    return [h for h in host_addresses(outputs) if checks(h, checker, outputs)]


def bundle_file(bundle: Path, path: str) -> Path:
    """The bundle's copy of the host path `path` (`/etc/x` -> `bundle/etc/x`)."""
    return Path(bundle) / path.lstrip("/")


def peers_of(host: str, outputs: Path = OUTPUTS) -> dict[str, Path]:
    """Every other host's bundle, as `sty lint` hands them to the checkers."""
    return {h: outputs / h for h in host_addresses(outputs) if h != host}


def run(
    bundle: Path,
    host: str,
    checker: str,
    files: list[str] | tuple[str, ...] | None = None,
    peers: dict[str, Path] | None = None,
    outputs: Path = OUTPUTS,
) -> CheckResult:
    """Run the registered `checker` on `bundle` (files: the manifest's first entry for it unless given)."""
    m = manifest(host, outputs)
    if files is None:
        entries = [c["files"] for c in m.get("checks", []) if c["checker"] == checker]
        files = entries[0] if entries else ()
    ctx = CheckContext(root=Path(bundle), host=host, manifest=m, files=tuple(files), peers=dict(peers or {}))
    return run_check(ctx, checker)
