"""Writing bundles into an output tree that sty must treat as hostile.

outputs/ is committed and reviewed, so a pull request can plant anything in it (a symlink to /etc, a
FIFO, a directory where a file goes), and sty often runs as root. Hence every operation here works
relative to directory file descriptors opened with O_NOFOLLOW, from the output root down: no symlink
is ever followed, nothing outside the output root can be reached, and a planted link is refused with
one sentence rather than silently replaced. Files are written to a unique temporary name and renamed
over the target, so a reader never sees half a file, and concurrent writers never collide on a
temporary name. Durability is one `syncfs` of the output tree at the end (`Tree.sync`), not one fsync
per file: on ext4 a fsync per file cost 18 of the 42 s a 1000-host build took (52,000 files); the
incremental record is written after that sync, so a crash before it makes the next build re-render
rather than trust files the disk may not hold. Files are deleted only when sty recorded writing them.

outputs/ holds `<host>/` trees and `<host>.yml` manifests; anything else in it is left alone.
"""

from __future__ import annotations

import difflib
import errno
import os
import posixpath
import re
import secrets as _random
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sty.contract.exits import Exit, UsageError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a planted FIFO never hangs
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
TMP_SUFFIX = ".sty-tmp"


def unsafe_path(path: object) -> str:
    """Why `path` cannot be a bundle file's path ("" when it can): the apply stage installs it as root, and
    the writer joins it under the output directory, so only absolute, normalised, one-line paths pass."""
    if not isinstance(path, str) or not path:
        return "is not a path"
    if any(c in path for c in "\x00\n\r"):
        return "contains a NUL or a line break"
    if not path.startswith("/") or path == "/":
        return "is not an absolute file path"
    if posixpath.normpath(path) != path or path.startswith("//") or "/../" in f"{path}/":
        return "is not normalised (no '..', '.', '//' or trailing '/')"
    return ""


class UnsafeTree(UsageError):
    """The output tree holds something sty will not write through (a symlink, a special file): exit 2."""


class WriteFailed(UsageError):
    """The file system refused an operation (permissions, space, a lock held too long): exit 3.

    It is a UsageError so that every command line that catches those prints one sentence, never a
    traceback; `exit_code` tells a command line that distinguishes the two which code to use."""

    exit_code = Exit.FAILED


@dataclass
class WriteStats:
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    stamps: dict[str, list[int]] = field(default_factory=dict)  # rel -> [size, mtime_ns] of files now in place


@dataclass
class Found:
    """A regular file found in the output tree, with the stamp the incremental cache compares."""

    content: bytes
    size: int
    mtime_ns: int


def _unsafe(outdir: Path, rel: str, what: str) -> UnsafeTree:
    return UnsafeTree(f"{os.path.join(outdir, rel)}: {what}; sty follows no link and replaces no special file")


def _failed(outdir: Path, rel: str, exc: OSError) -> WriteFailed:
    return WriteFailed(f"{os.path.join(outdir, rel)}: {exc.strerror or exc}")


def _kind(outdir: Path, dir_fd: int, name: str, rel: str) -> int | None:
    """The file type of `name` (lstat: never through a link), None when absent."""
    try:
        return stat.S_IFMT(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _failed(outdir, rel, exc) from None


class Tree:
    """An output directory opened once, O_NOFOLLOW; every path below it is reached one component at a time."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.stale: list[str] = []  # temporary files of killed builds, removed by the next one
        try:
            if os.path.islink(outdir):
                raise _unsafe(outdir, "", "the output directory is a symbolic link")
            outdir.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(outdir, _DIR_FLAGS)
        except NotADirectoryError:
            raise UnsafeTree(f"{outdir}: the output directory is not a directory") from None
        except FileExistsError:
            raise UnsafeTree(f"{outdir}: the output directory is not a directory") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _unsafe(outdir, "", "the output directory is a symbolic link") from None
            raise _failed(outdir, "", exc) from None

    def close(self) -> None:
        os.close(self.fd)

    def sync(self) -> None:
        """Flush every file written below the output root to disk in one call (syncfs(2) on the tree's file
        system; os.sync where the C library has no syncfs)."""
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syncfs(self.fd) == 0:
                return
        except (OSError, AttributeError):
            pass
        os.sync()

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def opendir(self, rel_dir: str, create: bool) -> int | None:
        """An fd of `rel_dir` (relative, '/'-separated), creating missing directories when asked; None when
        absent and not created. A component that is a link or not a directory is refused."""
        fd = os.dup(self.fd)
        done = ""
        try:
            for part in [p for p in rel_dir.split("/") if p]:
                done = f"{done}/{part}" if done else part
                nfd = self.open_child(fd, part, done, create)
                os.close(fd)
                if nfd is None:
                    return None
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_child(self, fd: int, part: str, done: str, create: bool) -> int | None:
        """An fd of the directory `part` inside the open directory `fd` (`done`: its path under the root, for
        messages), made when missing and `create`; None when missing otherwise. A link or a non-directory is
        refused. `fd` stays open."""
        kind = _kind(self.outdir, fd, part, done)
        if kind is None:
            if not create:
                return None
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass  # another writer made it first: opened below with the same checks
        elif kind == stat.S_IFLNK:
            raise _unsafe(self.outdir, done, "is a symbolic link sty did not make")
        elif kind != stat.S_IFDIR:
            raise _unsafe(self.outdir, done, "is not a directory, and sty needs one here")
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _unsafe(self.outdir, done, "is not a plain directory") from None
            raise _failed(self.outdir, done, exc) from None

    def dir_of(self, rel_dir: str, opened: dict[str, int], create: bool) -> int:
        """`opendir` for many files of one host: each directory is opened once, from its parent's fd kept in
        `opened` (rel dir -> fd; the caller closes them). Raises FileNotFoundError when missing and not `create`."""
        if not rel_dir:
            return self.fd  # the output root itself: never in `opened`, never closed by the caller
        fd = opened.get(rel_dir)
        if fd is not None:
            return fd
        parent, _, name = rel_dir.rpartition("/")
        if not name:
            raise _unsafe(self.outdir, rel_dir, "is not a directory path")
        parent_fd = self.dir_of(parent, opened, create) if parent else self.fd
        fd = self.open_child(parent_fd, name, rel_dir, create)
        if fd is None:
            raise FileNotFoundError(errno.ENOENT, "No such directory", str(self.outdir / rel_dir))
        opened[rel_dir] = fd
        return fd

    def read(self, dir_fd: int, name: str, rel: str) -> Found:
        """A regular file's content, opened O_NOFOLLOW|O_NONBLOCK and checked with fstat."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _unsafe(self.outdir, rel, "is a symbolic link sty did not make") from None
            raise _failed(self.outdir, rel, exc) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _unsafe(self.outdir, rel, "is not a regular file")
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return Found(b"".join(chunks), st.st_size, st.st_mtime_ns)
        except OSError as exc:
            raise _failed(self.outdir, rel, exc) from None
        finally:
            os.close(fd)

    def scan(self, rel_dir: str, out: dict[str, Found]) -> None:
        """Every file below `rel_dir` into `out` (rel path -> Found); a link or special file is refused."""
        fd = self.opendir(rel_dir, create=False)
        if fd is None:
            return
        try:
            for name in sorted(os.listdir(fd)):
                rel = f"{rel_dir}/{name}"
                kind = _kind(self.outdir, fd, name, rel)
                if kind == stat.S_IFDIR:
                    self.scan(rel, out)
                elif kind == stat.S_IFLNK:
                    raise _unsafe(self.outdir, rel, "is a symbolic link sty did not make")
                elif name.endswith(TMP_SUFFIX):
                    self.stale.append(rel)  # left by a killed build: not part of any bundle
                elif kind is not None:
                    out[rel] = self.read(fd, name, rel)
        except OSError as exc:
            raise _failed(self.outdir, rel_dir, exc) from None
        finally:
            os.close(fd)

    def stage(self, dir_fd: int, name: str, rel: str, content: bytes) -> tuple[str, list[int]]:
        """Write `content` to a unique temporary name beside `name` (refused if `name` is a link or not a regular
        file); returns that name and the stamp the file keeps once `place`d (a rename keeps size and mtime)."""
        kind = _kind(self.outdir, dir_fd, name, rel)
        if kind == stat.S_IFLNK:
            raise _unsafe(self.outdir, rel, "is a symbolic link sty did not make")
        if kind not in (None, stat.S_IFREG):
            raise _unsafe(self.outdir, rel, "is not a regular file")
        tmp = f".{name[:100]}.{os.getpid()}.{_random.token_hex(6)}{TMP_SUFFIX}"
        try:
            fd = os.open(tmp, _NEW_FLAGS, 0o644, dir_fd=dir_fd)
            try:
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
                st = os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._abandon(dir_fd, tmp, rel, exc) from None
        return tmp, [st.st_size, st.st_mtime_ns]

    def place(self, dir_fd: int, tmp: str, name: str, rel: str) -> None:
        """Rename a staged file over its target."""
        try:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            raise self._abandon(dir_fd, tmp, rel, exc) from None

    def _abandon(self, dir_fd: int, tmp: str, rel: str, exc: OSError) -> WriteFailed:
        """Remove a temporary file whose write or rename failed; the error to raise, naming the target."""
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        return _failed(self.outdir, rel, exc)

    def remove(self, rel: str) -> bool:
        """Unlink one file sty recorded writing, then the directories its removal left empty (up to the
        host directory). Only a regular file is removed: a link or a directory in its place stays."""
        parent, _, name = rel.rpartition("/")
        fd = self.opendir(parent, create=False)
        if fd is None:
            return False
        try:
            if _kind(self.outdir, fd, name, rel) != stat.S_IFREG:
                return False
            os.unlink(name, dir_fd=fd)
        except OSError as exc:
            raise _failed(self.outdir, rel, exc) from None
        finally:
            os.close(fd)
        self._prune(parent)
        return True

    def _prune(self, rel_dir: str) -> None:
        """rmdir `rel_dir` and its parents while empty; stops at the output root."""
        while rel_dir:
            parent, _, name = rel_dir.rpartition("/")
            fd = self.opendir(parent, create=False)
            if fd is None:
                return
            try:
                os.rmdir(name, dir_fd=fd)  # fails unless empty: files sty did not write keep their directory
            except OSError:
                return
            finally:
                os.close(fd)
            rel_dir = parent


def host_tree(outdir: Path, ip: str, tree: Tree | None = None) -> dict[str, Found]:
    """What exists now for one host: relative path (under outdir) -> Found. Never reads through a link."""
    if tree is None:
        if not outdir.is_dir() or outdir.is_symlink():
            if outdir.is_symlink():
                raise _unsafe(outdir, "", "the output directory is a symbolic link")
            return {}
        with Tree(outdir) as own:
            return host_tree(outdir, ip, own)
    out: dict[str, Found] = {}
    kind = _kind(outdir, tree.fd, f"{ip}.yml", f"{ip}.yml")
    if kind == stat.S_IFLNK:
        raise _unsafe(outdir, f"{ip}.yml", "is a symbolic link sty did not make")
    if kind is not None:
        out[f"{ip}.yml"] = tree.read(tree.fd, f"{ip}.yml", f"{ip}.yml")
    tree.scan(ip, out)
    return out


def host_contents(outdir: Path, ip: str) -> dict[str, bytes]:
    """`host_tree` without the stamps: what `sty diff` compares."""
    return {rel: found.content for rel, found in host_tree(outdir, ip).items()}


def existing_hosts(outdir: Path) -> set[str]:
    """Host names that have a bundle in outdir (IPv4-named entries or manifests)."""
    found: set[str] = set()
    try:
        names = os.listdir(outdir)
    except OSError:
        return found
    for entry in names:
        name = entry[:-4] if entry.endswith(".yml") else entry
        if _IPV4.fullmatch(name):
            found.add(name)
    return found


# what ipaddress.IPv4Address accepts (four decimal octets of 0-255, no leading zero, ASCII digits only), without
# its cost: a no-op build of 1000 hosts spent 45 ms of its 0.6 s parsing its host directories' names
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def manifest_files(ip: str, found: Found | None) -> set[str]:
    """The files a sty manifest says sty wrote for this host (the record that survives `make clean`, when
    the incremental state is gone): rel paths under the output root, the manifest included. A file that
    is not a sty manifest records nothing."""
    if found is None:
        return set()
    import yaml  # here only: the no-op build imports this module, and yaml costs it 25 ms

    try:
        doc = yaml.load(found.content, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, ValueError):
        return set()
    if not isinstance(doc, dict) or "sty_manifest" not in doc or not isinstance(doc.get("files"), list):
        return set()
    out = {f"{ip}.yml"}
    for entry in doc["files"]:
        path = entry.get("path") if isinstance(entry, dict) else None
        if not unsafe_path(path):
            out.add(f"{ip}{path}")
    return out


@contextmanager
def locked(store: Path, outdir: Path, timeout: float) -> Iterator[None]:
    """Hold `<store>/lock` (fcntl) for a whole build: two builds into one output directory would otherwise
    interleave their writes and their cache records. A second build waits up to `timeout` seconds.

    The lock file is removed on release (the store holds only state a user can inspect); a waiter that then
    wins the lock on the removed file sees that the path no longer names its file and locks the new one."""
    import fcntl
    import time

    deadline = time.monotonic() + timeout
    while True:
        fd = open_private(store, "lock", os.O_RDWR | os.O_CREAT)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise WriteFailed(
                        f"{outdir}: another sty build has held this output directory for {timeout:.0f} s; "
                        "try again when it is done"
                    ) from None
                time.sleep(0.05)
        try:
            same = os.stat(store / "lock", follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed it as we waited: lock the current file
    try:
        yield
    finally:
        try:
            os.unlink(store / "lock")  # still holding the lock: nobody else owns this path now
        except OSError:
            pass
        os.close(fd)  # closing releases the lock


def open_private(store: Path, name: str, flags: int, mode: int = 0o600) -> int:
    """Open a file of the store directory (`.sty/<out>/`), which is made when missing; the directory and the
    file must not be links (the store is beside a committed tree, and sty writes it as root)."""
    try:
        for part in (store.parent, store):
            if part.is_symlink():
                raise UnsafeTree(
                    f"{part}: is a symbolic link sty did not make; sty keeps its state only in a plain directory"
                )
        if not store.exists():
            store.mkdir(parents=True, mode=0o700)  # it holds the secret store: private from the start
            os.chmod(store, 0o700)  # mkdir's mode passes through the umask
        return os.open(store / name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeTree(f"{store / name}: is a symbolic link sty did not make") from None
        raise WriteFailed(f"{store / name}: {exc.strerror or exc}") from None


def write_private(store: Path, name: str, content: bytes) -> None:
    """Atomically replace a store file (unique temporary name, fsync, rename)."""
    tmp = f".{name}.{os.getpid()}.{_random.token_hex(6)}.tmp"
    fd = open_private(store, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(store / tmp, store / name)
    except OSError as exc:
        (store / tmp).unlink(missing_ok=True)
        raise WriteFailed(f"{store / name}: {exc.strerror or exc}") from None


def unified(rel: str, old: bytes | None, new: bytes | None) -> str:
    a = (old or b"").decode("utf-8", "replace").splitlines(keepends=True)
    b = (new or b"").decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(
        a,
        b,
        fromfile=f"a/{rel}" if old is not None else "/dev/null",
        tofile=f"b/{rel}" if new is not None else "/dev/null",
    )
    text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
    return text
