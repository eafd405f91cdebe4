"""The secret store: `.sty/<outdir>/secrets.yml`, written by `sty build`, read by the apply stage.

It maps each placeholder name (`pg-test/pg_users/dbuser_meta/password`) to its value, written as JSON (which is
YAML, and reads ten times faster: a 1000-host fleet's store holds 4000 values); names ending in
`/scram` hold PostgreSQL SCRAM-SHA-256 verifiers. The store is git-ignored and private: its directory is
0700 and the file 0600, repaired (with a warning) when found looser, and it is replaced through a fresh
temporary file (O_EXCL|O_NOFOLLOW, fsynced, renamed) so a planted symlink is never followed.

SCRAM verifiers get a random salt the first time a password is seen and are kept in the store: a rebuild
reuses the stored verifier as long as it still accepts the password (outputs and the store stay stable),
and a changed password gets a new salt. A salt derived from the password would make equal passwords give
equal verifiers across clusters and installations, which reveals reuse and allows precomputation.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DIR_MODE = 0o700
FILE_MODE = 0o600
_SCRAM = re.compile(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)")


def _stderr_warning(path: str, message: str) -> None:
    print(f"warning: {path}: {message}", file=sys.stderr)


# How a repaired permission is reported; the command line's format by default (the contract has no Report).
warn: Callable[[str, str], None] = _stderr_warning
_warned: set[tuple[str, int]] = set()


class ScramSecret(str):
    """A verifier computed at render time that still knows its password, so the store can keep the verifier
    it already has for that password (or salt a new one). As a string it is a deterministic verifier
    (`render_verifier`): members of one cluster agree on it and a render is reproducible; only the store turns
    it into the salted one a host gets."""

    password: str

    def __new__(cls, verifier: str, password: str) -> ScramSecret:
        obj = super().__new__(cls, verifier)
        obj.password = password
        return obj

    def __getnewargs__(self) -> tuple[str, str]:  # build workers send it back to the parent pickled
        return (str(self), self.password)


def store_dir(outdir: Path) -> Path:
    """`.sty/<outdir name>/` beside the output directory: git-ignored state of one bundle tree."""
    outdir = outdir.resolve()
    return outdir.parent / ".sty" / outdir.name


def _tighten(path: Path, mode: int, what: str) -> None:
    """Give a store path `mode` if it allows more; say so once, since a looser mode may already have leaked it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        return  # never chmod through a link; write_store replaces a linked file
    current = stat.S_IMODE(st.st_mode)
    if current & ~mode & 0o777:
        os.chmod(path, mode)
        key = (str(path), current)
        if key not in _warned:
            _warned.add(key)
            warn(str(path), f"the secret {what} was mode {current:04o}, readable by others; set to {mode:04o}")


def secure_store(outdir: Path) -> Path:
    """The store's directory, created 0700, with the directory and the file tightened when found looser."""
    directory = store_dir(outdir)
    if not directory.exists():
        directory.mkdir(parents=True, mode=DIR_MODE)
        os.chmod(directory, DIR_MODE)  # mkdir's mode passes through the umask
    _tighten(directory, DIR_MODE, "store directory")
    _tighten(directory / "secrets.yml", FILE_MODE, "store")
    return directory


def read_store(outdir: Path) -> dict[str, str]:
    path = store_dir(outdir) / "secrets.yml"
    if path.is_symlink():  # sty never makes one: read nothing through it, and write_store replaces it
        warn(str(path), "the secret store is a symbolic link; it is ignored and will be replaced by a file")
        return {}
    if not path.exists():
        return {}
    secure_store(outdir)
    text = path.read_text(encoding="utf-8")
    try:  # written as JSON (a subset of YAML): parsed ten times faster than YAML
        data = json.loads(text) if text.startswith("{") else None
    except ValueError:
        data = None
    if data is None:  # a store written by an earlier sty, or by hand
        import yaml  # here only: importing it costs 25 ms of every build that has nothing to do

        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def write_store(outdir: Path, values: dict[str, str], old: dict[str, str] | None = None) -> None:
    """Rewrite the store only when its content changes (mode 0600 in a 0700 directory); SCRAM verifiers
    computed at render time become the stored ones (see ScramSecret)."""
    begin_store(outdir, values, old).finish()


def begin_store(outdir: Path, values: dict[str, str], old: dict[str, str] | None = None) -> PendingStore:
    """Start a store update: the PBKDF2 it needs (to salt a fresh verifier, or to check a stored one the memo does
    not vouch for) runs in threads from here on, since hashlib releases the GIL, so that a build can put its
    files in place meanwhile; `finish()` waits for it and writes the store. Nothing is written before then."""
    old = read_store(outdir) if old is None else old  # the caller's read of it, when it has one
    directory = secure_store(outdir)
    return PendingStore(outdir, directory, dict(values), old, _read_memo(directory))


class PendingStore:
    """A store update under way (see begin_store): the values whose stored form is known, and those still being
    computed. The thread pool is ended by `finish`, or by `cancel` when the build fails before it."""

    def __init__(self, outdir: Path, directory: Path, values: dict[str, str], old: dict[str, str], memo: dict):
        self.outdir, self.directory, self.values, self.old, self.memo = outdir, directory, values, old, memo
        self.final: dict[str, str] = {}
        todo: dict[str, tuple[str, str]] = {}
        for name, value in values.items():
            previous = old.get(name, "")
            if not isinstance(value, ScramSecret):
                self.final[name] = str(value)
            elif previous and memo.get(name) == _memo_key(value, previous):
                self.final[name] = previous  # this verifier was checked against this password by an earlier build
            else:
                todo[name] = (value, previous)  # PBKDF2 to check the stored verifier, or to salt a new one
        self._pool = None
        self._futures: dict[str, Any] = {}
        if len(todo) > 8:  # a thousand fresh verifiers take half the time on two cores, and overlap the file writes
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(len(os.sched_getaffinity(0)))
            self._futures = {name: self._pool.submit(_stored_value, *item) for name, item in todo.items()}
        else:
            self.final.update((name, _stored_value(*item)) for name, item in todo.items())

    def cancel(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def finish(self) -> None:
        final, old, memo, values, directory = self.final, self.old, self.memo, self.values, self.directory
        try:
            final.update((name, future.result()) for name, future in self._futures.items())
        finally:
            self.cancel()
        # a value carried over unchanged (a host the build skipped) keeps its memo, which binds a render-time
        # verifier to the stored one and so stays true while that is unchanged: dropping it cost the next full
        # build a PBKDF2 per user
        checked = {
            n: _memo_key(v, final[n]) if isinstance(v, ScramSecret) else memo[n]
            for n, v in sorted(values.items())
            if isinstance(v, ScramSecret) or (n in memo and final[n] == old.get(n))
        }
        if checked != memo:
            _replace(directory, directory / MEMO, json.dumps(checked, sort_keys=True))
        path = directory / "secrets.yml"
        if final == old and stat.S_ISREG(_lstat_mode(path)):
            return  # the file `old` was read from holds these values already: nothing to serialise or compare
        text = json.dumps(final, indent=1, sort_keys=True) + "\n"  # YAML too; \u escapes keep it one line per value
        if not path.is_symlink() and path.exists() and path.read_text(encoding="utf-8") == text:
            return
        _replace(directory, path, text)


def _lstat_mode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


# Which stored verifier was found to accept which password, as digests of (render-time verifier, stored one): the
# render-time verifier is derived from the password, so an unchanged pair needs no PBKDF2 (4096 rounds each,
# 3 s for the 1200 users of a 1000-host fleet) to be known good again.
MEMO = "verified.json"


def _memo_key(value: str, stored: str) -> str:
    return hashlib.sha256(f"{value}\0{stored}".encode()).hexdigest()


def _read_memo(directory: Path) -> dict[str, str]:
    try:
        fd = os.open(directory / MEMO, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return {}
    try:
        with os.fdopen(fd, "rb") as fh:
            data = json.loads(fh.read(1 << 24))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _stored_value(value: str, previous: str) -> str:
    """A render-time SCRAM verifier becomes the stored verifier while that still accepts the password, else
    one with a fresh random salt; every other value is stored as it is."""
    if not isinstance(value, ScramSecret):
        return str(value)
    password = value.password
    if not password or password.startswith(("SCRAM-SHA-256$", "md5")):
        return str(value)  # empty, or given as a verifier already
    if previous and scram_accepts(previous, password):
        return previous
    return scram_verifier(password)


def _replace(directory: Path, path: Path, text: str) -> None:
    """Write a unique temporary file that cannot be a planted link (O_EXCL|O_NOFOLLOW), fsync it and rename it
    over the store, so a reader sees the old store or the new one, never a part or another file."""
    tmp = directory / f".secrets.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _verifier(password: str, salt: bytes, iterations: int) -> str:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def scram_verifier(password: str, seed: str | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of a password, with a random salt. With a seed the salt is derived
    from the seed and the password instead: only for values that never reach a host (the checkers' stand-ins,
    the render-time value a ScramSecret carries), where reproducibility matters and secrecy does not."""
    if password.startswith(("SCRAM-SHA-256$", "md5")):
        return password  # already a verifier
    if seed is None:
        return _verifier(password, os.urandom(16), iterations)
    return _seeded(password, seed, iterations)


# A render-time verifier is never shipped: the store salts the one a host gets, with PostgreSQL's 4096 rounds. What it
# is used for (members of a cluster agreeing on it, the memo of verified.json recognising the password) needs no
# strength, so it takes one PBKDF2 round: a new fleet with its own passwords per cluster paid 4096 rounds per user
# twice, at render time and in the store (2.6 s of CPU each for 1200 users).
RENDER_ITERATIONS = 1


def render_verifier(password: str, seed: str) -> str:
    """The deterministic verifier a ScramSecret carries (a verifier given as the password stays as it is)."""
    return scram_verifier(password, seed, RENDER_ITERATIONS)


@functools.lru_cache(maxsize=4096)
def _seeded(password: str, seed: str, iterations: int) -> str:
    """A reproducible verifier (cached: every member of a cluster renders the same users)."""
    return _verifier(password, hashlib.sha256(f"sty-scram:{seed}:{password}".encode()).digest()[:16], iterations)


def scram_accepts(verifier: str, password: str) -> bool:
    """Whether a SCRAM-SHA-256 verifier was made from this password (what the server checks at login)."""
    m = _SCRAM.fullmatch(verifier or "")
    if not m:
        return False
    try:
        salt = base64.b64decode(m[2], validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(_verifier(password, salt, int(m[1])), verifier)
