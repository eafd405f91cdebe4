"""What every part of the testbed shares: its default parameters, its two errors (exit codes 2 and 3 of
the command line), the progress log, running a program with its output kept for the error message, and
the file lock that serialises two testbeds (or image builds) on the same directory."""

from __future__ import annotations

import contextlib
import fcntl
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INVENTORY = ROOT / "conf" / "testbed.yml"
DEFAULT_SUBNET = "10.10.10.0/24"
DEFAULT_BRIDGE = "stybr0"
DEFAULT_PREFIX = "sty-testbed"
DEFAULT_CACHE_DIR = Path("/var/cache/sty-testbed")
STATE_ROOT = Path("/var/lib/sty-testbed")  # the default state dir is STATE_ROOT/<cgroup prefix>

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9_./+@-]*$")  # goes into overlayfs options and shell words
KEYGEN = ["ssh-keygen", "-q", "-N", "", "-t"]  # + key type


class TestbedError(Exception):
    """The testbed could not be made or used; the message says what and, where known, the program's words."""

    __test__ = False  # not a pytest class


class UsageError(TestbedError):
    """Invalid parameters or inventory (exit code 2)."""


def log(message: str) -> None:
    print(f"testbed: {message}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], check: bool = True, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
    """Run a program; on failure raise TestbedError carrying its output."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise TestbedError(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s") from None
    except FileNotFoundError:
        raise TestbedError(f"`{cmd[0]}` is not installed") from None
    if check and proc.returncode != 0:
        said = ((proc.stderr or "") + (proc.stdout or "")).strip()
        raise TestbedError(f"`{' '.join(cmd)}` exited {proc.returncode}: {said[-3000:]}")
    return proc


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
