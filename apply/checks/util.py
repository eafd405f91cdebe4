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

from sty.contract.formats import SECRET  # noqa: E402  (shipped to hosts with the checks, see apply/run.py)

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


# --------------------------------------------------------------------------------------------------
# what this machine can run: missing programs, PostgreSQL versions, platforms
# --------------------------------------------------------------------------------------------------


class NotInstalled(Exception):
    """A program the check needs is missing but could be installed here: the runner reports a skip,
    a failure under CI (CI must skip nothing). The message is always "program X is not installed"."""

    def __init__(self, program: str, package: str | None = None):
        self.program = program
        self.package = package
        super().__init__(f"program {program} is not installed" + (f" (Debian package {package})" if package else ""))


class Unavailable(Exception):
    """The bundle asks for something that cannot be installed on this machine (PostgreSQL 18 on Debian 12, an
    extension no package provides here): the runner reports a skip with this reason, under CI too."""


NOT_INSTALLED = re.compile(r"^program (\S+) is not installed")


def require(*programs: str, package: str | None = None) -> None:
    """Raise NotInstalled for the first program that is neither on PATH nor an existing path."""
    for prog in programs:
        if not (shutil.which(prog) or (prog.startswith("/") and os.access(prog, os.X_OK))):
            raise NotInstalled(prog, package)


def machine_platform() -> str | None:
    """This machine as a sty platform name (`debian12`, `el9`), from /etc/os-release; None if unknown."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return None
    info = dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', text, re.M))
    ident, version = info.get("ID", ""), info.get("VERSION_ID", "").split(".")[0]
    if ident == "debian":
        return f"debian{version}"
    if ident in ("rhel", "rocky", "almalinux", "centos", "ol"):
        return f"el{version}"
    return None


# PostgreSQL major versions each platform's own package sources provide (Debian 12 ships 15 only; PGDG is
# not a source this project's machines reach).
INSTALLABLE_PG: dict[str, set[int]] = {"debian12": {15}}


def pg_installed() -> dict[int, Path]:
    """Installed PostgreSQL servers: major version -> bin dir (Debian layout)."""
    found = {}
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        if d.parent.name.isdigit() and (d / "postgres").exists():
            found[int(d.parent.name)] = d
    return dict(sorted(found.items()))


def pg_bin(version: int) -> Path:
    """The bin dir of PostgreSQL `version` here; NotInstalled when this machine's packages have it,
    Unavailable when they cannot."""
    have = pg_installed()
    if version in have:
        return have[version]
    if version in INSTALLABLE_PG.get(machine_platform() or "", set()):
        raise NotInstalled(f"/usr/lib/postgresql/{version}/bin/postgres", f"postgresql-{version}")
    has = ", ".join(str(v) for v in have) or "none"
    raise Unavailable(
        f"PostgreSQL {version} is not installed here and cannot be: this machine's package sources "
        f"({machine_platform() or 'unknown platform'}) do not have it (installed: {has})"
    )


def pg_version(manifest: dict, bin_dir: str = "") -> int | None:
    """The PostgreSQL major version a bundle targets: from its packages, else from its bin_dir."""
    for pkg in manifest.get("packages") or []:
        m = re.fullmatch(r"postgresql-?(\d+)(-server)?", str(pkg))
        if m:
            return int(m.group(1))
    m = re.search(r"(?:postgresql/|pgsql-)(\d+)", bin_dir)
    return int(m.group(1)) if m else None


def ci() -> bool:
    """Under CI a missing program is a failure, never a skip."""
    return bool(os.environ.get("CI"))


def netns_id() -> str:
    """The current process's network namespace (`net:[4026531840]`)."""
    return os.readlink("/proc/self/ns/net")


# --------------------------------------------------------------------------------------------------
# files the apply stage provides (the fleet CA, certificates signed at apply time)
# --------------------------------------------------------------------------------------------------


def provided_files(manifest: dict) -> list[str]:
    """Host paths a bundle may reference that are not in it because the apply stage provides them."""
    paths = [str(p) for p in manifest.get("trust") or []]
    for cert in manifest.get("certificates") or []:
        if isinstance(cert, dict):
            paths += [str(cert[k]) for k in ("cert", "key") if cert.get(k)]
    return list(dict.fromkeys(paths))


def standin_certificates(manifest: dict, texts: list[str], tmp: Path) -> tuple[dict[str, str], list[str]]:
    """For each provided file that one of `texts` references: a stand-in (a self-signed certificate with its
    key in the same PEM, or the key alone for key paths) under `tmp`. Returns (host path -> stand-in path,
    notes for the result)."""
    wanted = [p for p in provided_files(manifest) if any(p in t for t in texts)]
    if not wanted:
        return {}, []
    base = tmp / "standin"
    base.mkdir(exist_ok=True)
    key, crt = base / "standin.key", base / "standin.crt"
    openssl = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=sty-standin -days 2"
    run([*openssl.split(), "-keyout", str(key), "-out", str(crt)]).check_returncode()
    mapping, notes = {}, []
    for i, path in enumerate(wanted):
        dst = base / f"{i}-{Path(path).name}"
        keyish = path.endswith(".key")
        dst.write_text(key.read_text() if keyish else crt.read_text() + key.read_text())
        dst.chmod(0o644)
        mapping[path] = str(dst)
        what = "key" if keyish else "certificate"
        notes.append(f"{path} is provided by the apply stage: checked with a stand-in {what}")
    return mapping, notes


def replace_paths(text: str, mapping: dict[str, str]) -> str:
    for src, dst in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(src, dst)
    return text


class StandinPki:
    """A throwaway CA under `base` and certificates it signs for the names and addresses a stand-in daemon serves,
    so that TLS between stand-ins (etcd peers, their clients) is verified as it is on the hosts, where the fleet
    CA signs them at apply time."""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.ca, self.ca_key = base / "ca.crt", base / "ca.key"
        run([
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", "/CN=sty-standin-ca", "-days", "2", "-keyout", str(self.ca_key), "-out", str(self.ca),
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ]).check_returncode()  # fmt: skip
        self.issued = 0
        self._client: tuple[Path, Path] | None = None

    def client(self) -> tuple[Path, Path]:
        """One client certificate for the check's own tools (etcdctl)."""
        if self._client is None:
            self._client = self.issue("sty-standin-client", ["localhost"])
        return self._client

    def issue(self, name: str, sans: list[str]) -> tuple[Path, Path]:
        """(certificate, key) for `name`, valid for `sans` (addresses and DNS names), as server and client."""
        self.issued += 1
        cert, key = self.base / f"{self.issued}.crt", self.base / f"{self.issued}.key"
        csr, ext = self.base / f"{self.issued}.csr", self.base / f"{self.issued}.ext"
        alt = ",".join(("IP:" if _is_ip(s) else "DNS:") + s for s in dict.fromkeys(sans) if s)
        ext.write_text(f"subjectAltName={alt}\nextendedKeyUsage=serverAuth,clientAuth\n")
        run([
            "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr),
        ]).check_returncode()  # fmt: skip
        run([
            "openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
        ]).check_returncode()  # fmt: skip
        return cert, key


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
