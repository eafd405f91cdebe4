"""sty as a user installs it: a wheel, used outside the checkout, and the shape of the code inside it.

The wheel must carry every schema and template (found with importlib.resources, not beside a checkout),
install one import namespace (`sty`), and build the shipped inventory byte-identically to `outputs/`.
"""

from __future__ import annotations

import ast
import filecmp
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    for stale in [ROOT / "build" / "lib", *(ROOT / "build").glob("bdist.*")]:  # setuptools' in-tree cache keeps
        shutil.rmtree(stale, ignore_errors=True)  # files deleted from the sources; a wheel must not carry them
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (found,) = out.glob("sty_compiler-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel unpacked into a site directory of its own (the dependencies come from this venv)."""
    site = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return site


def _run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_wheel_holds_one_namespace_with_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("sty_compiler-")}
    assert tops == {"sty"}, f"the wheel installs more than the sty namespace: {sorted(tops)}"
    schemas = [n for n in names if n.startswith("sty/schemas/") and n.endswith(".json")]
    templates = [n for n in names if n.startswith("sty/templates/") and not n.endswith(".py")]
    assert len(schemas) == len(list((ROOT / "schemas").rglob("*.json")))
    sources = [p for p in (ROOT / "templates").rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert len(templates) == len(sources)
    assert "sty/py.typed" in names
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    for field in ("License-Expression: MIT", "Classifier: Typing :: Typed", "Requires-Python: >=3.11"):
        assert field in meta


@pytest.mark.slow
def test_installed_sty_builds_outside_the_checkout_identically(installed, tmp_path):
    work = tmp_path / "fleet"
    work.mkdir()
    shutil.copy(ROOT / "pigsty.yml", work / "pigsty.yml")
    where = _run_installed(installed, work, "-c", "import sty.compiler, sty.schemas; print(sty.compiler.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(installed)), f"imported from the checkout, not the wheel: {where.stdout}"
    version = _run_installed(installed, work, "-m", "sty", "--version")
    assert version.returncode == 0 and version.stdout.startswith("sty, version "), version.stderr
    build = _run_installed(installed, work, "-m", "sty", "build", "-q")
    assert build.returncode == 0, build.stderr
    compare = filecmp.dircmp(ROOT / "outputs", work / "outputs")
    assert _differences(compare) == [], "an installed sty builds other bytes than the checkout"


def _differences(cmp: filecmp.dircmp) -> list[str]:
    _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
    out = [*cmp.left_only, *cmp.right_only, *mismatch, *errors]
    for sub in cmp.subdirs.values():
        out += _differences(sub)
    return out


# -- the shape of the code: small files, short functions ------------------------------------------------------


def _code_files() -> list[Path]:
    roots = [ROOT / "sty", ROOT / "compiler", ROOT / "apply", ROOT / "tests" / "testbed"]
    return sorted(p for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_code_file_is_over_the_limit():
    long = {str(p.relative_to(ROOT)): n for p in _code_files() if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"files over {MAX_FILE_LINES} lines: split them by concern: {long}"


def test_no_function_is_over_the_limit():
    long = {}
    for path in _code_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.name}"] = length
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
