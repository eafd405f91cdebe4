"""Compiled templates kept between processes (compiler/template_cache.py): used only from a private directory of
the user's own, never at the cost of a render, and rendering the same bytes as a fresh compilation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sty.compiler import template_cache

ROOT = Path(__file__).resolve().parent.parent

# a fresh interpreter renders every template through the cache and prints a digest of the texts it got
RENDER_ALL = """
import hashlib
from sty.compiler.render import environment, render
env = environment()
print(type(env.bytecode_cache).__name__ if env.bytecode_cache else "none")
h = hashlib.sha256()
for name in sorted(n for n in env.list_templates() if n.endswith(".j2")):
    h.update(name.encode() + env.get_template(name).root_render_func.__code__.co_code)
h.update(render("infra/hosts.j2", name="x", lines=["10.0.0.1 a"]).encode())
print(h.hexdigest())
"""


def _fresh(cache: str, code: str = RENDER_ALL) -> list[str]:
    env = {**os.environ, "STY_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_a_second_process_loads_what_the_first_compiled(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _fresh(str(cache))
    entries = list((cache / template_cache.cache_dir_name()).glob("*.jinja"))
    assert first[0] == "_Tolerant" and len(entries) >= 50
    mtimes = {p: p.stat().st_mtime_ns for p in entries}
    second = _fresh(str(cache))
    assert second == first  # the same compiled code, read back instead of compiled again
    assert {p: p.stat().st_mtime_ns for p in entries} == mtimes  # nothing rewritten
    assert _fresh("off")[1] == first[1]  # and the same as with no cache at all


def test_a_directory_others_can_write_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could plant an entry (and take the directory away): not sty's cache
    monkeypatch.setenv("STY_CACHE_DIR", str(shared))
    assert template_cache.cache_dir() is None
    shared.chmod(0o1777)  # sticky, as /tmp: nobody can move this user's directory away
    where = template_cache.cache_dir()
    assert where is not None and where.parent == shared and (where.stat().st_mode & 0o777) == 0o700
    where.chmod(0o755)  # the user's own, but open: closed again before use
    assert template_cache.cache_dir() == where and (where.stat().st_mode & 0o777) == 0o700
    where.rmdir()
    where.symlink_to(tmp_path)  # a link in its place is never followed
    assert template_cache.cache_dir() is None
    monkeypatch.setenv("STY_CACHE_DIR", "off")
    assert template_cache.cache_dir() is None and template_cache.bytecode_cache() is None


def test_a_broken_cache_costs_a_compilation_not_a_render(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    reference = _fresh("off")[1]
    _fresh(str(cache))
    for entry in (cache / template_cache.cache_dir_name()).glob("*.jinja"):
        entry.write_bytes(entry.read_bytes()[:40])  # truncated mid-entry
    assert _fresh(str(cache))[1] == reference


def test_an_entry_that_cannot_be_written_is_skipped(tmp_path: Path) -> None:
    """A cache that cannot be written (read-only, full, or gone: here its directory vanished, which holds for
    root too) leaves the template compiled and rendered; Jinja2's own cache would fail the render."""
    import jinja2

    gone = tmp_path / "gone"
    loader = jinja2.DictLoader({"t.j2": "{{ x }}!"})
    tolerant = jinja2.Environment(loader=loader, bytecode_cache=template_cache._Tolerant(str(gone), "%s.jinja"))
    assert tolerant.get_template("t.j2").render(x="ok") == "ok!"
    strict = jinja2.Environment(loader=loader, bytecode_cache=jinja2.FileSystemBytecodeCache(str(gone), "%s.jinja"))
    with pytest.raises(OSError):
        strict.get_template("t.j2")
