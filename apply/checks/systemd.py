"""systemd units: `systemd-analyze verify --man=no` on each unit in a staged root.

The stage holds systemd's own units and the unit under /etc/systemd/system. Each program the unit runs
(Exec*=) is present in the stage as a stub when it is installed on this machine. A program that is missing
here is judged by the package that would bring it (the platform table's, or the manifest package named
like the program):
- a package this machine's sources have: "program X is not installed" (a skip; a failure under CI);
- a package no source of this machine has (vector, victoria-logs on Debian 12; an el9 path on Debian): the
  program is staged as a stub, and the result says it was verified against a stub executable;
- no package at all: the program stays absent, so systemd-analyze reports "Command … is not executable".
systemd-analyze exits 0 on parse warnings: any stderr line naming the unit fails.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import NotInstalled, joined, machine_platform, require, run, tmpdir

STUB = "#!/bin/sh\nexit 0\n"


def unit_binaries(text: str) -> list[str]:
    """Absolute program paths of the Exec*= lines (prefixes @ - : + ! stripped)."""
    out = []
    for line in text.splitlines():
        m = re.match(r"\s*Exec[A-Za-z]+\s*=\s*(.*)", line)
        if m and m.group(1).split():
            prog = m.group(1).split()[0].lstrip("@-:+!")
            if prog.startswith("/"):
                out.append(prog)
    return list(dict.fromkeys(out))


PLATFORM_ENV = "STY_PLATFORM_PROGRAMS"  # JSON {platform: {program path: package}}, set by `sty lint`


def platform_programs(platform: str) -> dict[str, str]:
    """Program path -> package of the programs `platform`'s units run, as the compiler's platform table
    says; the command line hands the table over (the apply stage does not import the compiler). Without
    it (on a host, during apply) there is no platform knowledge and missing programs are judged by name."""
    table = json.loads(os.environ.get(PLATFORM_ENV) or "{}")
    return dict(table.get(platform) or {})


_BASE: list[Path] = []


def _base_stage() -> Path:
    """This process's pristine stage (made once, removed at exit); each check gets a hard-linked copy."""
    if not _BASE:
        base = Path(tempfile.mkdtemp(prefix="sty-systemd-base-"))
        atexit.register(shutil.rmtree, base, True)
        make_stage(base)
        _BASE.append(base)
    return _BASE[0]


def stage_root(stage: Path) -> None:
    """A root for `systemd-analyze --root` in the empty directory `stage` (hard links to a cached base)."""
    proc = run(["cp", "-a", "--link", f"{_base_stage()}/.", f"{stage}/"])
    if proc.returncode != 0:  # another file system: copy
        shutil.rmtree(stage)
        stage.mkdir()
        make_stage(stage)


def make_stage(stage: Path) -> None:
    """systemd's units and the usr-merged top directories."""
    (stage / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", stage / "usr/lib/systemd/system", symlinks=True)
    for d in ("bin", "sbin", "lib"):
        (stage / "usr" / d).mkdir(exist_ok=True)
        if Path(f"/{d}").is_symlink():  # Debian 12 is usr-merged: /bin -> usr/bin
            (stage / d).symlink_to(f"usr/{d}")
        else:
            (stage / d).mkdir()
    (stage / "etc/systemd/system").mkdir(parents=True)


APT_ENV = "STY_APT_CANDIDATES"  # JSON {package: installable} a caller (sty lint) looked up once for all hosts
_APT: dict[str, bool] = {}


def apt_candidates(packages: list[str]) -> dict[str, bool]:
    """Whether this machine's package sources have each package (`apt-cache policy` shows a candidate);
    one apt-cache run for all of them (it rebuilds its cache each time, about a second)."""
    out = {p: False for p in packages}
    if not packages or not shutil.which("apt-cache"):
        return out
    proc = run(["apt-cache", "policy", *packages], env={**os.environ, "LC_ALL": "C"}, timeout=120)
    current = None
    for line in proc.stdout.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1]
        elif current in out and line.strip().startswith("Candidate:"):
            out[current] = line.split(":", 1)[1].strip() != "(none)"
    return out


def apt_installable(package: str, also: list[str] = ()) -> bool:
    if not _APT and os.environ.get(APT_ENV):
        _APT.update(json.loads(os.environ[APT_ENV]))
    if package not in _APT:
        _APT.update(apt_candidates(sorted({package, *also} - set(_APT))))
    return _APT[package]


def package_of(program: str, packages: list[str]) -> str | None:
    """The manifest package that brings `program`: named like it (`vector` -> /usr/bin/vector) or its prefix
    (`grafana` -> /usr/sbin/grafana-server); `_` and `-` are the same."""
    base = Path(program).name.replace("_", "-")
    for pkg in sorted(packages, key=len, reverse=True):
        name = pkg.replace("_", "-")
        if base == name or base.startswith(f"{name}-") or name.startswith(f"{base}-"):
            return pkg
    return None


def verify_unit(
    name: str, text: str, manifest: dict, stubs: frozenset[str] = frozenset()
) -> tuple[bool, str, list[str]]:
    """(ok, output, notes) of systemd-analyze on one unit text."""
    platform = manifest.get("platform")
    here = machine_platform()
    own = platform_programs(here) if here else {}
    foreign = platform_programs(platform) if platform and platform != here else {}
    packages = [str(p) for p in manifest.get("packages") or []]
    with tmpdir("systemd") as stage:
        stage_root(stage)
        (stage / "etc/systemd/system" / name).write_text(text)
        notes = []
        for prog in unit_binaries(text):
            stub = False
            if os.access(prog, os.X_OK) or prog in stubs:
                stub = True
            elif prog in own:
                raise NotInstalled(prog, own[prog])
            elif prog in foreign:
                stub = True
                notes.append(
                    f"{prog} is a {platform} program that cannot be installed on this {here or 'machine'}: "
                    "verified against a stub executable"
                )
            elif (pkg := package_of(prog, packages)) is not None:
                if apt_installable(pkg, packages):
                    raise NotInstalled(prog, pkg)
                stub = True
                notes.append(
                    f"{prog} (package {pkg}) cannot be installed: no package source of this machine has it, so it was "
                    "verified against a stub executable"
                )
            if stub:
                path = stage / prog.lstrip("/")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(STUB)
                path.chmod(0o755)
        proc = run(["systemd-analyze", "verify", "--man=no", f"--root={stage}", f"/etc/systemd/system/{name}"])
        complaints = [line for line in proc.stderr.splitlines() if name in line]
        out = joined(proc).replace(str(stage), "")
    return proc.returncode == 0 and not complaints, out, notes


@register("systemd")
def check(ctx: CheckContext) -> CheckResult:
    require("systemd-analyze", package="systemd")
    outs, notes, ok = [], [], True
    for unit in ctx.files:
        good, out, why = verify_unit(Path(unit).name, ctx.path(unit).read_text(), ctx.manifest)
        ok &= good
        outs.append(out)
        notes += why
    return CheckResult("systemd", ctx.files, PASS if ok else FAIL, "".join(outs), "; ".join(notes))
