"""Process, temp-dir and network-namespace helpers shared by the checkers.

Network safety: a checker that could open connections to the addresses written in a file (etcd,
Patroni, vip-manager, keepalived) runs inside a private namespace made by `netns()`, in which the host's
own addresses sit on `lo`; nothing can leave it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

SECRET = re.compile(r"<<secret:([^<>\s]+)>>")
DUMMY_SECRET = "sty-Dummy-Secret-0"
AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]


def substitute(text: str, value: str | Callable[[str], str] = DUMMY_SECRET) -> str:
    """Replace every `<<secret:NAME>>` placeholder by `value` (or `value(NAME)`)."""
    return SECRET.sub(lambda m: value(m.group(1)) if callable(value) else value, text)


def run(cmd: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def joined(proc: subprocess.CompletedProcess) -> str:
    return (proc.stdout or "") + (proc.stderr or "")


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Signal one process we started and reap it (SIGKILL if it does not stop in time)."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def wait_for(predicate: Callable[[], bool], timeout: float, alive: subprocess.Popen | None = None) -> bool:
    """Poll `predicate` until it holds; give up at `timeout` or once `alive` (the server probed) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            return False
        if predicate():
            return True
        time.sleep(0.05)
    return False


def tcp_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_user() -> pwd.struct_passwd:
    return pwd.getpwnam("postgres")


@contextlib.contextmanager
def tmpdir(prefix: str, owner: str | None = None) -> Iterator[Path]:
    """A temporary directory under /tmp (reachable by other users, unlike pytest's), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"sty-{prefix}-"))
    try:
        if owner:
            pw = pwd.getpwnam(owner)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def chown_tree(path: Path, owner: str = "postgres") -> None:
    pw = pwd.getpwnam(owner)
    for p in [path, *path.rglob("*")]:
        os.chown(p, pw.pw_uid, pw.pw_gid)


@dataclass
class Netns:
    """A network namespace made by the harness; `lo` holds the given addresses. Processes started with
    `popen` are stopped when the namespace is torn down."""

    name: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def run(self, cmd: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        return run([*self.prefix, *cmd], timeout=timeout, **kw)

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen([*self.prefix, *cmd], **kw)  # `ip netns exec` execs: the PID is the program's
        self.procs.append(proc)
        return proc

    def tcp_open(self, host: str, port: int) -> bool:
        probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=0.5).close()"
        return self.run([sys.executable, "-c", probe], timeout=10).returncode == 0


@contextlib.contextmanager
def netns(addresses: list[str]) -> Iterator[Netns]:
    """`ip netns add sty-test-<random>` with `lo` up and carrying `addresses` (/32); deleted afterwards."""
    ns = Netns(f"sty-test-{secrets.token_hex(4)}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True, timeout=10)
    try:
        ns.run(["ip", "link", "set", "lo", "up"]).check_returncode()
        for addr in dict.fromkeys(addresses):
            ns.run(["ip", "addr", "add", f"{addr}/32", "dev", "lo"]).check_returncode()
        yield ns
    finally:
        for proc in ns.procs:
            stop(proc)
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=10)
