"""Where the package data lives (`sty.schemas`, `sty.templates`, in a checkout or an installed wheel), and the
digests of everything besides the inventory that shapes a bundle.

The data directories are found from the import system's own record of the packages: importlib.resources would
import zipfile and shutil, 12 ms of every `sty build`, for packages that are always directories.
"""

from __future__ import annotations

import functools
import hashlib
import os
from importlib.util import find_spec
from pathlib import Path


def _package_dir(name: str) -> Path:
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"sty is installed without its package {name}; reinstall it")
    return Path(list(spec.submodule_search_locations)[0])


SCHEMAS = _package_dir("sty.schemas")
TEMPLATES = _package_dir("sty.templates")
CODE = Path(__file__).resolve().parent
CONTRACT = _package_dir("sty.contract")  # the formats' quoting and the manifest's layout shape bundles too

# (name in the digest, directory): what a bundle's bytes depend on besides the inventory, secrets and facts
_SOURCES = (("compiler", CODE), ("contract", CONTRACT), ("schemas", SCHEMAS), ("templates", TEMPLATES))


def _source_files() -> list[tuple[str, os.DirEntry]]:
    """Every source file, as (name in the digest, directory entry), sorted by name; bytecode is not source."""
    found: list[tuple[str, os.DirEntry]] = []
    for top, root in _SOURCES:
        stack = [(str(root), f"{top}/")]
        while stack:
            directory, prefix = stack.pop()
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name != "__pycache__":
                            stack.append((entry.path, f"{prefix}{entry.name}/"))
                    elif entry.is_file() and not entry.name.endswith(".pyc"):
                        found.append((prefix + entry.name, entry))
    found.sort(key=lambda item: item[0])
    return found


@functools.cache
def code_digest() -> str:
    """Digest of the content of every source file (the incremental build's per-host input digests use it: a
    host is skipped only when the code that would render it is byte for byte the code that did). Once per
    process: a build computed it twice (its whole-build fingerprint and the hosts' digests), 35 ms each."""
    h = hashlib.sha256()
    for name, entry in _source_files():
        h.update(name.encode())
        with open(entry.path, "rb") as handle:
            h.update(handle.read())
    return h.hexdigest()


def code_stamps() -> str:
    """Digest of every source file's name, size, modification and change times and inode: what the no-op
    shortcut's fingerprint needs to know that the code did not change, in 3 ms instead of reading it all.
    Any write, copy, checkout or reinstall changes the change time (which no user can set) or the inode; a
    stamp that changes with the content unchanged only sends the next build down the full path."""
    h = hashlib.sha256()
    for name, entry in _source_files():
        st = entry.stat()  # through a link, as code_digest reads it
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
    return h.hexdigest()
