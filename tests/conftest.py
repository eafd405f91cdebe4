"""Shared fixtures: the shipped inventory as a mutable dict, writing inventories to a temporary
directory, compiling them, and running the `sty` command line as a real program."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "pigsty.yml"
STY_BIN = ROOT / ".venv" / "bin" / "sty"

_SHIPPED_DATA: dict[str, Any] | None = None


def _hand_platforms_to_checkers() -> None:
    """What `sty lint` does: give the checkers (which do not import the compiler) its platform table."""
    import json

    from sty.apply.checks.systemd import PLATFORM_ENV
    from sty.compiler.platform import program_packages

    os.environ.setdefault(PLATFORM_ENV, json.dumps(program_packages()))


_hand_platforms_to_checkers()


def shipped_inventory() -> dict[str, Any]:
    """A fresh deep copy of /work/main/pigsty.yml (parsed once per session)."""
    global _SHIPPED_DATA
    if _SHIPPED_DATA is None:
        _SHIPPED_DATA = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    return copy.deepcopy(_SHIPPED_DATA)


def dump_inventory(data: Any, path: Path) -> Path:
    """Write an inventory, keeping key order (host declaration order matters for error paths)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), encoding="utf-8")
    return path


@pytest.fixture
def inventory() -> dict[str, Any]:
    """The shipped inventory as a dict to mutate."""
    return shipped_inventory()


@pytest.fixture
def write_inventory(tmp_path: Path) -> Callable[..., Path]:
    """write_inventory(data, name="pigsty.yml") -> path of the written file in tmp_path."""

    def write(data: Any, name: str = "pigsty.yml") -> Path:
        return dump_inventory(data, tmp_path / name)

    return write


@pytest.fixture
def compile_inv(write_inventory) -> Callable[..., Any]:
    """compile_inv(data, strict=False) -> Compiled (raises InventoryError like compile_fleet)."""
    from sty.compiler.pipeline import compile_fleet

    def run(data: Any, strict: bool = False, facts_dir: Path | None = None):
        return compile_fleet(write_inventory(data), facts_dir, strict=strict)

    return run


# -- the command line ----------------------------------------------------------------------------


def sty_command() -> list[str]:
    if STY_BIN.exists():
        return [str(STY_BIN)]
    return [sys.executable, "-m", "sty"]


def run_sty(*args: str, cwd: Path, check_rc: int | None = None) -> subprocess.CompletedProcess:
    """Run `sty ARGS` in cwd; with check_rc, fail the test unless the exit code matches."""
    env = dict(os.environ)
    env.setdefault("LC_ALL", "C.UTF-8")
    proc = subprocess.run(
        [*sty_command(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check_rc is not None and proc.returncode != check_rc:
        pytest.fail(
            f"sty {' '.join(args)} exited {proc.returncode}, expected {check_rc}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def sty() -> Callable[..., subprocess.CompletedProcess]:
    return run_sty


@pytest.fixture(scope="session")
def built_template(tmp_path_factory) -> Path:
    """A directory holding the shipped pigsty.yml and the result of one `sty build` (do not modify)."""
    work = tmp_path_factory.mktemp("built")
    shutil.copy(SHIPPED, work / "pigsty.yml")
    run_sty("build", "-q", cwd=work, check_rc=0)
    return work


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A fresh directory with a copy of the shipped pigsty.yml and nothing built."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(SHIPPED, work / "pigsty.yml")
    return work


@pytest.fixture
def built(built_template: Path, tmp_path: Path) -> Path:
    """A private copy of a built directory (inventory, outputs/ and .sty/, mtimes preserved)."""
    work = tmp_path / "built"
    shutil.copytree(built_template, work, copy_function=shutil.copy2)
    return work


@dataclass
class RenderedFleet:
    """An inventory rendered in memory: each host's files by host path (its manifest under "manifest"), the
    secrets each bundle registers, each host's resolved parameters, and the build's report."""

    files: dict[str, dict[str, str]]
    secrets: dict[str, dict[str, str]]
    params: dict[str, Any]
    report: Any

    def yaml(self, ip: str, path: str) -> Any:
        return yaml.safe_load(self.files[ip][path])

    def manifest(self, ip: str) -> dict[str, Any]:
        return self.yaml(ip, "manifest")


def render_fleet(data: dict[str, Any], tmp: Path) -> RenderedFleet:
    """Compile and render `data` (written to `tmp`) without writing any bundle."""
    from sty.compiler.build import render_targets
    from sty.compiler.pipeline import compile_fleet, resolve_target

    compiled = compile_fleet(dump_inventory(data, tmp / "pigsty.yml"))
    rendered = render_targets(compiled, resolve_target(compiled.fleet, "all"))
    files: dict[str, dict[str, str]] = {}
    for ip, tree in rendered.trees.items():
        files[ip] = {rel[len(ip) :]: raw.decode() for rel, raw in tree.items() if rel.startswith(f"{ip}/")}
        files[ip]["manifest"] = tree[f"{ip}.yml"].decode()
    params = {ip: host.params for ip, host in compiled.fleet.hosts.items()}
    return RenderedFleet(files, rendered.secrets, params, compiled.report)


# the applied testbed, one per session, shared by the end-to-end tests and the fault scenarios
from fleet_testbed import FIGURES, fleet_testbed  # noqa: E402,F401


def pytest_terminal_summary(terminalreporter) -> None:
    """The fault scenarios' figures, one line each, whatever the verbosity."""
    if FIGURES:
        terminalreporter.section("fault scenarios")
        for line in FIGURES:
            terminalreporter.write_line(line)
