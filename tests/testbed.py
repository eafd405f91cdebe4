"""The local multi-host testbed: one systemd-nspawn container (real systemd as PID 1) per inventory host,
on a bridge that lives in a network namespace of its own.

    python tests/testbed.py up   [--inventory conf/testbed.yml] [--subnet 10.10.10.0/24] [--bridge stybr0]
                                 [--cgroup-prefix sty-testbed] [--state-dir DIR] [--cache-dir DIR]
    python tests/testbed.py exec -- CMD...     # CMD runs in the control namespace (`sty apply` goes here)
    python tests/testbed.py status | down | image

What it makes, with P the cgroup prefix (every name derives from the parameters, so leftovers of a killed
run are found again and removed by the next `up` or `down`):

    netns P-net       the bridge (no address), one veth end per host and one for the control side
    netns P-ctl       eth0 = the control side's address (the subnet's last host address, .254 in a /24)
    netns P-<ip>      eth0 = the host's address; the container's network namespace
    cgroups           <hierarchy>/P/<ip> in the `name=systemd` and cgroup2 hierarchies, one per container
    mounts            none in the machine's mount namespace: each container's overlayfs (lower = the cached
                      image, upper/work under the state dir) is mounted in a private mount namespace made for
                      its systemd-nspawn and disappears with it, even when everything is killed
    state dir         state.json (what was made: namespaces, cgroups, pids), id_ed25519 (the testbed key),
                      known_hosts and ssh_config for the control side, hosts/<ip>/, logs/<ip>.log (console)
    cache dir         debian12-<key>.tar.zst, the image, keyed by a hash of its package list and recipe, and
                      debian12-<key>.rootfs, the same tree unpacked (the overlay's read-only lower layer)

Network safety: the machine's own network namespace gets nothing; veths are created inside P-net with their
peer placed directly in the host or control namespace. No namespace has a route out: a packet can only reach
the test hosts' addresses on the bridge. Run everything that talks to the hosts through `control_run()` or
`python tests/testbed.py exec`.

Containers and the kernel: /proc/sys is read-only in a container and the clock is the machine's. The testbed
adds no capability (no CAP_SYS_TIME, default system-call filter); conf/testbed.yml turns sysctl tuning and
chrony off instead (`node_tune: none`, empty `node_sysctl_params`, `node_ntp_enabled: false`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INVENTORY = ROOT / "conf" / "testbed.yml"
DEFAULT_SUBNET = "10.10.10.0/24"
DEFAULT_BRIDGE = "stybr0"
DEFAULT_PREFIX = "sty-testbed"
DEFAULT_CACHE_DIR = Path("/var/cache/sty-testbed")
STATE_ROOT = Path("/var/lib/sty-testbed")  # the default state dir is STATE_ROOT/<cgroup prefix>

# -- the image ---------------------------------------------------------------------------------------------
SUITE = "bookworm"
IMAGE_RECIPE = 1  # bump whenever the build steps change: it is part of the cache key
BASE_PACKAGES = (  # debootstrap --variant=minbase --include=...
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "rsync",
    "iproute2",
    "sudo",
    "iputils-ping",
    "procps",
    "netcat-openbsd",
    "curl",
)
FLEET_PACKAGES = (  # what the bundles of conf/testbed.yml need, installed with apt inside the image
    "postgresql-15",
    "postgresql-client-15",
    "etcd-server",
    "etcd-client",
    "haproxy",
    "patroni",
    "python3-etcd",
    "python3-psycopg2",
    "pgbouncer",
    "prometheus-node-exporter",
    "chrony",
    "dnsmasq",
    "dnsmasq-base",
    "victoria-metrics",
)
# postgres:postgres is created with this uid/gid before PostgreSQL is installed, as Pigsty creates its dbsu
# first; conf/testbed.yml says `pg_dbsu_uid: 543` (Pigsty's default 26 is Debian's `tape` group).
DBSU_UID = 543
DBSU_HOME = "/var/lib/postgresql"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
HOST_KEY_TYPES = ("ed25519", "ecdsa")
KEYGEN = ["ssh-keygen", "-q", "-N", "", "-t"]  # + key type
NSPAWN_RUN = "/run/systemd/nspawn"  # systemd-nspawn's lock files and per-machine propagation directories
CAP_SYS_RESOURCE = 24

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9_./+@-]*$")  # goes into overlayfs options and shell words

# Runs as the future systemd-nspawn process (same PID through every exec), already inside its private mount
# namespace: join the container's cgroups, mount its overlayfs (visible only in this namespace), start it.
LAUNCH = (
    'for f in $STY_CGROUPS; do echo $$ > "$f" || exit 1; done; '
    'mount -t overlay sty-testbed -o "$STY_OVERLAY" "$STY_ROOT" || exit 1; '
    'exec "$@"'
)


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


def missing_requirements() -> list[str]:
    """Why the testbed cannot run on this machine (empty when it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root (network namespaces, cgroups, systemd-nspawn)")
    for prog, package in (
        ("systemd-nspawn", "systemd-container"),
        ("debootstrap", "debootstrap"),
        ("zstd", "zstd"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("ip", "iproute2"),
        ("ssh-keygen", "openssh-client"),
    ):
        if shutil.which(prog, path=os.environ.get("PATH", "") + ":" + PATH) is None:
            problems.append(f"`{prog}` is missing (Debian package {package})")
    return problems


def limits_warning() -> str | None:
    """Containers inherit this process's hard open-files limit and cannot raise it without CAP_SYS_RESOURCE."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    bounding = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            bounding = int(line.split()[1], 16)
    if hard >= 1048576 or bounding >> CAP_SYS_RESOURCE & 1:
        return None
    return (
        f"containers inherit a hard open-files limit of {hard} and cannot raise it (CAP_SYS_RESOURCE is not in "
        "this machine's capability bounding set): a unit with LimitNOFILE above it gets the lower limit, "
        "and HAProxy lowers its maxconn to fit (sty renders `no strict-limits`)"
    )


# -- processes -------------------------------------------------------------------------------------------
def starttime(pid: int) -> int | None:
    """The kernel's start time of a process (identifies it across PID reuse), None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int | None, start: int | None) -> bool:
    return bool(pid) and start is not None and starttime(pid) == start


def kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def cgroup_roots() -> list[Path]:
    """The hierarchies a container must be placed in: `name=systemd` (cgroup v1) and every cgroup2 mount."""
    roots = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _dev, mnt, fstype, opts = line.split()[:4]
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in opts.split(",")):
            roots.append(Path(mnt.replace("\\040", " ")))
    return roots


def cgroup_procs(top: Path) -> list[int]:
    """PIDs in a cgroup subtree."""
    pids: list[int] = []
    if not top.is_dir():
        return pids
    for dirpath, _dirs, _files in os.walk(top):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (Path(dirpath) / "cgroup.procs").read_text().split()]
    return pids


def remove_cgroup_tree(top: Path) -> bool:
    """rmdir a cgroup subtree bottom-up; True when it is gone."""
    if not top.exists():
        return True
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
    return not top.exists()


def mounts_under(path: Path) -> list[str]:
    """Mount points in the machine's mount namespace at or below `path`."""
    found = []
    prefix = str(path).rstrip("/") + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(path) or point.startswith(prefix):
            found.append(point)
    return found


# -- apt sources -------------------------------------------------------------------------------------------
def apt_mirrors() -> tuple[str, str]:
    """(Debian mirror, security mirror) from this machine's apt sources; $STY_TESTBED_MIRROR wins."""
    entries: list[tuple[str, list[str]]] = []
    apt = Path("/etc/apt")
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for block in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields: dict[str, str] = {}
            for line in block.splitlines():
                if ":" in line and not line.startswith(("#", " ", "\t")):
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            for uri in fields.get("uris", "").split():
                entries.append((uri, fields.get("suites", "").split()))
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                entries.append((words[1], [words[2]]))
    main = next((u for u, s in entries if SUITE in s and u.startswith(("http://", "https://"))), DEFAULT_MIRROR)
    security = next((u for u, s in entries if f"{SUITE}-security" in s), DEFAULT_SECURITY_MIRROR)
    return os.environ.get("STY_TESTBED_MIRROR", main), os.environ.get("STY_TESTBED_SECURITY_MIRROR", security)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Image:
    """The cached Debian 12 root file system every container boots from (read-only overlay lower layer)."""

    def __init__(self, cache_dir: Path | str = DEFAULT_CACHE_DIR, packages: Sequence[str] = FLEET_PACKAGES):
        self.cache_dir = Path(cache_dir).resolve()
        self.packages = tuple(sorted(set(packages)))

    @property
    def key(self) -> str:
        spec = {
            "suite": SUITE,
            "variant": "minbase",
            "base": sorted(BASE_PACKAGES),
            "packages": list(self.packages),
            "dbsu": [DBSU_UID, DBSU_HOME],
            "recipe": IMAGE_RECIPE,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        return f"debian12-{self.key}"

    @property
    def tarball(self) -> Path:
        return self.cache_dir / f"{self.name}.tar.zst"

    @property
    def rootfs(self) -> Path:
        return self.cache_dir / f"{self.name}.rootfs"

    @property
    def _ready(self) -> Path:
        return self.cache_dir / f"{self.name}.ready"

    def ensure(self) -> tuple[Path, str]:
        """The unpacked image, building or unpacking it first if needed; returns (rootfs, cached|unpacked|built)."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with locked(self.cache_dir / ".lock"):
            if self._ready.exists() and self.rootfs.is_dir():
                return self.rootfs, "cached"
            self._ready.unlink(missing_ok=True)
            shutil.rmtree(self.rootfs, ignore_errors=True)
            for stale in self.cache_dir.glob(f".{self.name}.*"):  # a build, unpack or archive that was killed
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
            how = "unpacked" if self.tarball.exists() else "built"
            work = Path(tempfile.mkdtemp(prefix=f".{self.name}.", dir=self.cache_dir))
            try:
                tree = work / "rootfs"
                if how == "built":
                    self._build(tree)
                    self._archive(tree)
                else:
                    tree.mkdir()
                    run(
                        ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-I", "zstd -T0"]
                        + ["-C", str(tree), "-xpf", str(self.tarball)],
                        timeout=900,
                    )
                tree.rename(self.rootfs)
                self._ready.write_text(self.key + "\n")
            finally:
                shutil.rmtree(work, ignore_errors=True)
            return self.rootfs, how

    def _build(self, root: Path) -> None:
        mirror, security = apt_mirrors()
        log(f"building image {self.name} from {mirror} (debootstrap minbase + {len(self.packages)} packages)")
        env = {"PATH": PATH, "LANG": "C", "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}
        for var in ("http_proxy", "https_proxy", "no_proxy"):
            if var in os.environ:
                env[var] = os.environ[var]
        run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(root), mirror],
            timeout=1800,
            env=env,
        )
        (root / "etc/apt/sources.list").write_text(
            f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\ndeb {security} {SUITE}-security main\n"
        )
        with contextlib.suppress(OSError):
            shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
        enabled_before = self._enabled_units(root)
        script = f"""
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
mkdir -p /etc/postgresql-common/createcluster.d
echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/sty-testbed.conf
groupadd --system --gid {DBSU_UID} postgres
useradd --system --uid {DBSU_UID} --gid postgres --home-dir {DBSU_HOME} --no-create-home \\
    --shell /bin/bash --comment 'PostgreSQL administrator' postgres
apt-get update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends {" ".join(self.packages)}
apt-get clean
rm -f /usr/sbin/policy-rc.d
"""
        # /proc lives in a private mount namespace (and PID namespace) that dies with the installer: nothing
        # to unmount before archiving, nothing left behind if this is killed.
        run(
            ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", f"--mount-proc={root / 'proc'}"]
            + ["chroot", str(root), "/bin/sh", "-ec", script],
            timeout=1800,
            env=env,
        )
        # Packages enable their services; a testbed host boots with the software installed and nothing of
        # the fleet running, so that the apply stage starts what the manifests list. No network: no apt timers.
        disable = sorted((self._enabled_units(root) - enabled_before) | {"apt-daily.timer", "apt-daily-upgrade.timer"})
        run(["systemctl", f"--root={root}", "--no-reload", "disable", *disable], check=False)
        for key in root.glob("etc/ssh/ssh_host_*"):
            key.unlink()
        (root / "etc/ssh/sshd_config.d").mkdir(exist_ok=True)
        (root / "etc/ssh/sshd_config.d/sty-testbed.conf").write_text(
            "# sty testbed: each container gets its own host keys of these types at start\n"
            + "".join(f"HostKey /etc/ssh/ssh_host_{t}_key\n" for t in HOST_KEY_TYPES)
        )
        (root / "etc/machine-id").write_text("")
        (root / "etc/hostname").write_text("localhost\n")
        (root / "etc/resolv.conf").unlink(missing_ok=True)
        (root / "etc/resolv.conf").write_text("# sty testbed: no resolver until the bundle adds one\n")
        (root / "etc/sty-testbed-image").write_text(
            json.dumps({"key": self.key, "suite": SUITE, "packages": list(self.packages)}, indent=1) + "\n"
        )

    @staticmethod
    def _enabled_units(root: Path) -> set[str]:
        out = run(["systemctl", f"--root={root}", "list-unit-files", "--state=enabled", "--no-legend", "--no-pager"])
        return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}

    def _archive(self, tree: Path) -> None:
        tmp = self.tarball.with_name(f".{self.tarball.name}.tmp")
        run(
            ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-I", "zstd -T0 -3", "-C", str(tree)]
            + ["-cf", str(tmp), "."],
            timeout=900,
        )
        tmp.rename(self.tarball)

    def prune(self) -> list[Path]:
        """Remove the cached images of other package lists or recipes (not this one); returns what was removed."""
        removed = []
        with locked(self.cache_dir / ".lock"):
            for path in sorted(self.cache_dir.glob("debian12-*")):
                if not path.name.startswith(self.name + "."):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                    removed.append(path)
        return removed


# -- the testbed -----------------------------------------------------------------------------------------
def inventory_hosts(inventory: Path | str) -> dict[str, str]:
    """{ip: nodename} of an inventory, validated by the compiler (raises UsageError with every problem)."""
    from sty.compiler.errors import InventoryError
    from sty.compiler.pipeline import compile_fleet

    try:
        compiled = compile_fleet(inventory)
    except InventoryError as exc:
        problems = "\n".join(str(p) for p in exc.report.sorted() if p.severity == "error")
        raise UsageError(f"{inventory}: invalid inventory\n{problems}") from None
    except OSError as exc:
        raise UsageError(f"{inventory}: {exc}") from None
    return {ip: host.nodename for ip, host in compiled.fleet.hosts.items()}


def veth_name(ip: str) -> str:
    return "h" + ipaddress.IPv4Address(ip).packed.hex()  # the bridge side of a host's veth (9 characters)


class Testbed:
    """One testbed: its parameters, what it made (state.json), and how to reach its hosts.

    `Testbed(...).up()` makes it from nothing (removing leftovers of an earlier run with the same
    parameters first), `down()` removes every trace but the image cache. A testbed brought up by another
    process is used by constructing `Testbed` with the same cgroup prefix / state dir: the hosts, their
    addresses and PIDs are read from the state dir.
    """

    __test__ = False  # not a pytest class

    def __init__(
        self,
        inventory: Path | str = DEFAULT_INVENTORY,
        subnet: str = DEFAULT_SUBNET,
        bridge: str = DEFAULT_BRIDGE,
        cgroup_prefix: str = DEFAULT_PREFIX,
        state_dir: Path | str | None = None,
        cache_dir: Path | str = DEFAULT_CACHE_DIR,
        hosts: dict[str, str] | None = None,
        boot_timeout: float = 180,
    ):
        if not NAME_RE.match(cgroup_prefix):
            raise UsageError(f"cgroup prefix {cgroup_prefix!r}: use 1-31 letters, digits, '.', '_' or '-'")
        if not IFNAME_RE.match(bridge):
            raise UsageError(f"bridge {bridge!r}: an interface name has 1-15 letters, digits, '.', '_' or '-'")
        try:
            self.subnet = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise UsageError(f"subnet {subnet!r}: {exc}") from None
        if self.subnet.prefixlen > 29:
            raise UsageError(f"subnet {subnet}: too small for hosts and the control side")
        self.inventory = Path(inventory)
        self.bridge = bridge
        self.prefix = cgroup_prefix
        self.state_dir = Path(state_dir or STATE_ROOT / cgroup_prefix).absolute()
        self.cache_dir = Path(cache_dir)
        for path in (self.state_dir, self.cache_dir.absolute()):
            if not SAFE_PATH_RE.match(str(path)):
                raise UsageError(f"{path}: use a path of letters, digits and ./_+@- only (it goes into mount options)")
        self.boot_timeout = boot_timeout
        self._hosts = dict(hosts) if hosts is not None else None
        self._procs: dict[str, subprocess.Popen] = {}
        self.timings: dict[str, float] = {}
        self.image_status = ""

    # -- names and paths -------------------------------------------------------------------------------
    @property
    def net_ns(self) -> str:
        return f"{self.prefix}-net"

    @property
    def control_ns(self) -> str:
        return f"{self.prefix}-ctl"

    def host_ns(self, ip: str) -> str:
        return f"{self.prefix}-{ip}"

    def machine(self, ip: str) -> str:
        """systemd-nspawn's machine name (unique per testbed: it names /run/systemd/nspawn/propagate/<machine>)."""
        return f"{self.prefix}-{ip}"

    @property
    def control_ip(self) -> str:
        return str(self.subnet.broadcast_address - 1)

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def identity(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    def ssh_config(self) -> Path:
        """OpenSSH client config for the control side: user root, the testbed key, host keys checked against
        the testbed's known_hosts only. Fabric/paramiko read it too (apply/remote.py: $STY_SSH_CONFIG)."""
        return self.state_dir / "ssh_config"

    def control_env(self) -> dict[str, str]:
        """Environment for programs on the control side (apply/remote.py reads the STY_SSH_* variables)."""
        return {
            "STY_SSH_CONFIG": str(self.ssh_config()),
            "STY_SSH_IDENTITY": str(self.identity),
            "STY_SSH_KNOWN_HOSTS": str(self.known_hosts),
            "STY_TESTBED_STATE": str(self.state_dir),
        }

    def _host_dir(self, ip: str) -> Path:
        return self.state_dir / "hosts" / ip

    def _log_file(self, ip: str) -> Path:
        return self.state_dir / "logs" / f"{ip}.log"

    def _cgroups(self, ip: str) -> list[Path]:
        return [root / self.prefix / ip for root in cgroup_roots()]

    # -- state -----------------------------------------------------------------------------------------
    def load_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.state_file)

    @property
    def hosts(self) -> dict[str, str]:
        """{ip: name} of the hosts: the running testbed's, else the inventory's."""
        if self._hosts is None:
            recorded = self.load_state().get("hosts")
            if recorded:
                self._hosts = {ip: h["name"] for ip, h in recorded.items()}
            else:
                self._hosts = inventory_hosts(self.inventory)
        return self._hosts

    def _check_hosts(self, hosts: dict[str, str]) -> None:
        if not hosts:
            raise UsageError(f"{self.inventory}: no hosts")
        names: dict[str, str] = {}
        for ip, name in hosts.items():
            addr = ipaddress.IPv4Address(ip)
            if addr not in self.subnet or addr in (self.subnet.network_address, self.subnet.broadcast_address):
                raise UsageError(f"host {ip} is not a host address of the testbed subnet {self.subnet}")
            if ip == self.control_ip:
                raise UsageError(f"host {ip} is the control side's address; use a larger subnet or another host")
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$", name):
                raise UsageError(f"host {ip}: nodename {name!r} is not a valid host name")
            if name in names:
                raise UsageError(f"hosts {names[name]} and {ip} have the same nodename {name!r}")
            names[name] = ip

    def is_up(self) -> bool:
        state = self.load_state()
        hosts = state.get("hosts") or {}
        return bool(hosts) and all(alive(h.get("pid"), h.get("pid_start")) for h in hosts.values())

    # -- up --------------------------------------------------------------------------------------------
    def up(self, keep_on_failure: bool = False) -> Testbed:
        problems = missing_requirements()
        if problems:
            raise TestbedError("cannot run here: " + "; ".join(problems))
        hosts = self.hosts if self._hosts is not None else inventory_hosts(self.inventory)
        self._hosts = hosts
        self._check_hosts(hosts)
        warning = limits_warning()
        if warning:
            log(f"warning: {warning}")
        with locked(self.state_dir / ".lock"):
            t0 = time.monotonic()
            self._teardown(self.load_state())
            self.timings["cleanup_s"] = time.monotonic() - t0

            t = time.monotonic()
            lower, self.image_status = Image(self.cache_dir).ensure()
            self.timings["image_s"] = time.monotonic() - t

            t = time.monotonic()
            try:
                self._start(hosts, lower)
            except BaseException:
                if not keep_on_failure:
                    with contextlib.suppress(Exception):
                        self._teardown(self.load_state())
                raise
            self.timings["start_s"] = time.monotonic() - t
        return self

    def _start(self, hosts: dict[str, str], lower: Path) -> None:
        state: dict[str, Any] = {
            "version": 1,
            "prefix": self.prefix,
            "subnet": str(self.subnet),
            "bridge": self.bridge,
            "control_ip": self.control_ip,
            "image": str(lower),
            "netns": [self.net_ns, self.control_ns],
            "hosts": {},
        }
        self._save(state)
        for sub in ("hosts", "logs"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.identity.unlink(missing_ok=True)
        self.identity.with_suffix(".pub").unlink(missing_ok=True)
        run([*KEYGEN, "ed25519", "-C", f"sty-testbed@{self.prefix}", "-f", str(self.identity)])
        pubkey = self.identity.with_suffix(".pub").read_text()

        # the bridge's namespace and the control side's
        len_ = self.subnet.prefixlen
        self._netns_add(self.net_ns)
        run(["ip", "-n", self.net_ns, "link", "add", self.bridge, "type", "bridge", "forward_delay", "0"])
        run(["ip", "-n", self.net_ns, "link", "set", self.bridge, "up"])
        self._netns_add(self.control_ns)
        self._veth(self.control_ns, "ctl", f"{self.control_ip}/{len_}")

        known: list[str] = []
        for ip, name in hosts.items():
            entry = {"name": name, "netns": self.host_ns(ip), "cgroups": [str(c) for c in self._cgroups(ip)]}
            state["hosts"][ip] = entry
            state["netns"].append(entry["netns"])
            self._save(state)  # recorded before it exists: a killed `up` is cleaned up by the next run
            self._netns_add(entry["netns"])
            self._veth(entry["netns"], veth_name(ip), f"{ip}/{len_}")
            known += self._prepare_root(ip, name, lower, pubkey)
            entry.update(self._launch(ip, name, lower))
            self._save(state)

        self.known_hosts.write_text("".join(known))
        self._write_ssh_config(hosts)

        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            booted = dict(zip(hosts, pool.map(self._wait_booted, hosts), strict=True))
        for ip, found in booted.items():
            state["hosts"][ip].update(found)
        self._save(state)
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            list(pool.map(self._wait_ssh, hosts))

    def _netns_add(self, name: str) -> None:
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _veth(self, ns: str, bridge_side: str, address: str) -> None:
        """A veth made inside the bridge's namespace, its peer `eth0` placed straight into `ns`."""
        run(["ip", "-n", self.net_ns, "link", "add", bridge_side, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "-n", self.net_ns, "link", "set", bridge_side, "master", self.bridge, "up"])
        run(["ip", "-n", ns, "addr", "add", address, "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])

    def _prepare_root(self, ip: str, name: str, lower: Path, pubkey: str) -> list[str]:
        """The host's own files, written into its overlay's upper layer before boot; returns known_hosts lines."""
        hostdir = self._host_dir(ip)
        shutil.rmtree(hostdir, ignore_errors=True)
        upper = hostdir / "upper"
        for sub in ("upper", "work", "merged"):
            (hostdir / sub).mkdir(parents=True)

        def put(rel: str, text: str, mode: int) -> Path:
            path = self._upper_dir(upper, lower, str(Path(rel).parent)) / Path(rel).name
            path.write_text(text)
            os.chmod(path, mode)
            return path

        put("etc/hostname", f"{name}\n", 0o644)
        put("etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644)
        put("etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
        put("root/.ssh/authorized_keys", pubkey, 0o600)
        keydir = self._upper_dir(upper, lower, "etc/ssh")
        lines = []
        for kind in HOST_KEY_TYPES:
            key = keydir / f"ssh_host_{kind}_key"
            run([*KEYGEN, kind, "-C", f"root@{name}", "-f", str(key)])
            kind_, blob = key.with_name(key.name + ".pub").read_text().split()[:2]
            lines.append(f"{ip},{name} {kind_} {blob}\n")
        return lines

    @staticmethod
    def _upper_dir(upper: Path, lower: Path, rel: str) -> Path:
        """Create `rel` in the upper layer with the owner and mode the image gives it (else root 0755/0700)."""
        path = upper
        for part in Path(rel).parts:
            below = lower / path.relative_to(upper) / part
            path = path / part
            if path.exists():
                continue
            path.mkdir()
            if below.is_dir() and not below.is_symlink():
                st = below.stat()
                os.chown(path, st.st_uid, st.st_gid)
                os.chmod(path, st.st_mode & 0o7777)
            else:
                os.chmod(path, 0o700 if part == ".ssh" else 0o755)
        return path

    def _launch(self, ip: str, name: str, lower: Path) -> dict[str, Any]:
        hostdir = self._host_dir(ip)
        cgroups = self._cgroups(ip)
        for cg in cgroups:
            cg.mkdir(parents=True, exist_ok=True)
        nspawn = [
            "systemd-nspawn",
            "--boot",
            f"--directory={hostdir / 'merged'}",
            f"--machine={self.machine(ip)}",
            f"--hostname={name}",
            "--register=no",
            "--keep-unit",
            f"--network-namespace-path=/run/netns/{self.host_ns(ip)}",
            "--console=read-only",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
        ]
        env = {
            "PATH": PATH,
            "LANG": "C",
            "STY_CGROUPS": " ".join(str(cg / "cgroup.procs") for cg in cgroups),
            "STY_OVERLAY": f"lowerdir={lower},upperdir={hostdir / 'upper'},workdir={hostdir / 'work'}",
            "STY_ROOT": str(hostdir / "merged"),
        }
        cmd = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", LAUNCH, "sh", *nspawn]
        with open(self._log_file(ip), "ab") as out:
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs[ip] = proc
        start = None
        for _ in range(100):
            start = starttime(proc.pid)
            if start is not None or proc.poll() is not None:
                break
            time.sleep(0.01)
        return {"pid": proc.pid, "pid_start": start}

    def _entry(self, ip: str) -> dict[str, Any]:
        entry = (self.load_state().get("hosts") or {}).get(ip)
        if not entry:
            raise TestbedError(f"{ip} is not a host of the testbed in {self.state_dir} (is it up?)")
        return entry

    def _log_tail(self, ip: str, lines: int = 25) -> str:
        try:
            text = self._log_file(ip).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_booted(self, ip: str) -> dict[str, Any]:
        """Wait for the container's systemd to finish booting; returns its pid and start time, and the lock file
        systemd-nspawn keeps for the root directory (left behind when systemd-nspawn is killed)."""
        entry = self._entry(ip)
        pid, start = entry["pid"], entry["pid_start"]
        deadline = time.monotonic() + self.boot_timeout
        leader = None
        while leader is None:
            proc = self._procs.get(ip)
            if (proc is not None and proc.poll() is not None) or not alive(pid, start):
                raise TestbedError(f"{ip}: systemd-nspawn exited while starting:\n{self._log_tail(ip)}")
            leader = self._find_leader(pid)
            if leader is None:
                if time.monotonic() > deadline:
                    raise TestbedError(
                        f"{ip}: no container init after {self.boot_timeout:.0f} s:\n{self._log_tail(ip)}"
                    )
                time.sleep(0.05)
        leader_start = starttime(leader)
        assert leader_start is not None
        lock = None
        with contextlib.suppress(OSError):  # the overlay is mounted only in systemd-nspawn's mount namespace
            st = os.stat(f"/proc/{pid}/root{self._host_dir(ip) / 'merged'}")
            lock = f"{NSPAWN_RUN}/locks/inode-{st.st_dev}:{st.st_ino}"
        state = ""
        while time.monotonic() < deadline:
            left = max(1.0, deadline - time.monotonic())
            try:
                out = self._nsenter(leader, ["systemctl", "is-system-running", "--wait"], timeout=left)
                state = out.stdout.strip()
            except subprocess.TimeoutExpired:
                break
            if state in ("running", "degraded"):
                return {"leader": leader, "leader_start": leader_start, "lock": lock}
            if state in ("maintenance", "stopping"):
                break
            time.sleep(0.1)  # "offline" or nothing: the container's systemd does not answer yet
        raise TestbedError(
            f"{ip}: boot did not finish (is-system-running: {state or 'no answer'}):\n{self._log_tail(ip)}"
        )

    @staticmethod
    def _find_leader(nspawn_pid: int) -> int | None:
        """The container's PID 1: the child of systemd-nspawn that runs in a PID namespace of its own."""
        try:
            children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").read_text().split()
            own = os.readlink(f"/proc/{nspawn_pid}/ns/pid")
        except OSError:
            return None
        for child in children:
            with contextlib.suppress(OSError):
                comm = Path(f"/proc/{child}/comm").read_text().strip()
                if os.readlink(f"/proc/{child}/ns/pid") != own and comm in ("systemd", "init"):
                    return int(child)
        return None

    def _wait_ssh(self, ip: str) -> None:
        deadline = time.monotonic() + self.boot_timeout
        while True:
            out = self.control_run(["ssh", "-F", str(self.ssh_config()), ip, "true"], timeout=30)
            if out.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TestbedError(f"{ip}: ssh from the control side fails: {(out.stderr or out.stdout).strip()}")
            time.sleep(0.1)

    def _write_ssh_config(self, hosts: dict[str, str]) -> None:
        lines = ["# sty testbed: the control side's view of the hosts (written by apply/testbed.py)\n"]
        for ip, name in hosts.items():
            lines.append(f"Host {ip} {name}\n    HostName {ip}\n")
        patterns = " ".join([*hosts, *hosts.values()])
        lines.append(
            f"Host {patterns}\n"
            "    User root\n"
            f"    IdentityFile {self.identity}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {self.known_hosts}\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    StrictHostKeyChecking yes\n"
            "    CheckHostIP no\n"
            "    BatchMode yes\n"
            "    ConnectTimeout 5\n"
            "    LogLevel ERROR\n"
        )
        self.ssh_config().write_text("".join(lines))

    # -- use -------------------------------------------------------------------------------------------
    def control_run(
        self,
        cmd: Sequence[str],
        timeout: float = 300,
        check: bool = False,
        env: dict[str, str] | None = None,
        **kw: Any,
    ) -> subprocess.CompletedProcess:
        """Run a program in the control namespace (the testbed's only way in), with `control_env()` set."""
        full = ["nsenter", f"--net=/run/netns/{self.control_ns}", "--", *cmd]
        environ = {**os.environ, **self.control_env(), **(env or {})}
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        proc = subprocess.run(full, env=environ, timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise TestbedError(f"control: `{' '.join(cmd)}` exited {proc.returncode}: {proc.stderr or proc.stdout}")
        return proc

    def host_exec(
        self, ip: str, cmd: Sequence[str] | str, timeout: float = 300, check: bool = False, **kw: Any
    ) -> subprocess.CompletedProcess:
        """Run a program inside a host (all its namespaces, as its root; a string goes to /bin/sh -c)."""
        entry = self._entry(ip)
        leader, start = entry.get("leader"), entry.get("leader_start")
        if not alive(leader, start):
            raise TestbedError(f"{ip}: the container is not running")
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        proc = self._nsenter(leader, argv, timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise TestbedError(f"{ip}: `{' '.join(argv)}` exited {proc.returncode}: {proc.stderr or proc.stdout}")
        return proc

    @staticmethod
    def _nsenter(leader: int, argv: Sequence[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess:
        clean = ["env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8", "USER=root", "LOGNAME=root"]
        full = ["nsenter", f"--target={leader}", "--all", "--root", "--wd", "--", *clean, *argv]
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(full, timeout=timeout, **kw)

    def status(self) -> dict[str, Any]:
        state = self.load_state()
        out = {}
        for ip, h in (state.get("hosts") or {}).items():
            out[ip] = {
                "name": h["name"],
                "running": alive(h.get("pid"), h.get("pid_start")),
                "pid": h.get("pid"),
                "leader": h.get("leader"),
            }
        return out

    # -- down ------------------------------------------------------------------------------------------
    def down(self) -> Testbed:
        with locked(self.state_dir / ".lock"):
            t = time.monotonic()
            state = self.load_state()
            if not state.get("hosts") and self._hosts is None:  # state lost: the inventory names the namespaces
                with contextlib.suppress(TestbedError):
                    self._hosts = inventory_hosts(self.inventory)
            self._teardown(state)
            self.timings["down_s"] = time.monotonic() - t
        return self

    def _teardown(self, state: dict[str, Any], stop_timeout: float = 30) -> None:
        """Remove what a run with these parameters made, recorded or not (processes only by recorded PID or by
        membership in this testbed's own cgroups)."""
        recorded = state.get("hosts") or {}
        ips = list(dict.fromkeys([*recorded, *(self._hosts or {})]))

        # 1. a clean poweroff: SIGTERM to each systemd-nspawn, then SIGKILL to what is left
        nspawns = [(h["pid"], h.get("pid_start")) for h in recorded.values() if alive(h.get("pid"), h.get("pid_start"))]
        for pid, _ in nspawns:
            kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + stop_timeout
        while time.monotonic() < deadline and any(self._still(pid, start) for pid, start in nspawns):
            time.sleep(0.05)
        for h in recorded.values():
            for pid_key in ("leader", "pid"):
                if alive(h.get(pid_key), h.get(f"{pid_key}_start")):
                    kill(h[pid_key], signal.SIGKILL)
        tops = [root / self.prefix for root in cgroup_roots()]
        deadline = time.monotonic() + 15
        while True:
            pids = sorted({p for top in tops for p in cgroup_procs(top)})
            for pid in pids:
                kill(pid, signal.SIGKILL)
            for proc in self._procs.values():
                proc.poll()
            if not pids or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self._procs.clear()

        # 2. namespaces (with them the bridge and every veth), then cgroups, then files
        names = dict.fromkeys([*state.get("netns", []), self.net_ns, self.control_ns, *map(self.host_ns, ips)])
        for name in reversed(list(names)):
            if (Path("/run/netns") / name).exists():
                run(["ip", "netns", "del", name], check=False)
        cgroups = [Path(c) for h in recorded.values() for c in h.get("cgroups", [])] + tops
        deadline = time.monotonic() + 15
        while not all(remove_cgroup_tree(cg) for cg in cgroups) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [str(cg) for cg in cgroups if cg.exists()]
        for ip in ips:  # what systemd-nspawn removes itself on a clean exit (not when killed)
            shutil.rmtree(Path(NSPAWN_RUN, "propagate", self.machine(ip)), ignore_errors=True)
        for h in recorded.values():
            if h.get("lock"):
                Path(h["lock"]).unlink(missing_ok=True)
        for point in reversed(mounts_under(self.state_dir)):  # none are made there; an older layout's leftovers
            run(["umount", "--lazy", point], check=False)
        shutil.rmtree(self.state_dir / "hosts", ignore_errors=True)
        for path in (
            self.state_file,
            self.known_hosts,
            self.ssh_config(),
            self.identity,
            self.identity.with_suffix(".pub"),
        ):
            path.unlink(missing_ok=True)
        if left:
            raise TestbedError(f"cgroups still busy after teardown: {', '.join(left)}")

    def _still(self, pid: int, start: int | None) -> bool:
        for proc in self._procs.values():
            if proc.pid == pid:
                proc.poll()
        return alive(pid, start)

    def __enter__(self) -> Testbed:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()


# -- command line ----------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--inventory", "-i", default=str(DEFAULT_INVENTORY), help="inventory (default: %(default)s)")
    common.add_argument("--subnet", default=DEFAULT_SUBNET, help="test network (default: %(default)s)")
    common.add_argument(
        "--bridge", default=DEFAULT_BRIDGE, help="bridge name inside its namespace (default: %(default)s)"
    )
    common.add_argument(
        "--cgroup-prefix",
        default=DEFAULT_PREFIX,
        help="names of cgroups and namespaces start with it (default: %(default)s)",
    )
    common.add_argument("--state-dir", default=None, help=f"default: {STATE_ROOT}/<cgroup prefix>")
    common.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR), help="image cache (default: %(default)s)")
    parser = argparse.ArgumentParser(prog="python tests/testbed.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", parents=[common], help="build or reuse the image and start one container per host")
    up.add_argument("--boot-timeout", type=float, default=180, help="seconds per host to boot and answer ssh")
    up.add_argument("--keep-on-failure", action="store_true", help="leave a failed testbed for inspection")
    sub.add_parser(
        "down", parents=[common], help="stop the containers and remove every trace but the image cache and console logs"
    )
    sub.add_parser("status", parents=[common], help="the hosts and whether they run")
    image = sub.add_parser("image", parents=[common], help="build (or unpack) the cached image only")
    image.add_argument("--prune", action="store_true", help="remove cached images of other package lists")
    ex = sub.add_parser("exec", parents=[common], help="run CMD in the control namespace: exec -- CMD...")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        tb = Testbed(args.inventory, args.subnet, args.bridge, args.cgroup_prefix, args.state_dir, args.cache_dir)
        if args.command == "up":
            tb.boot_timeout = args.boot_timeout
            tb.up(keep_on_failure=args.keep_on_failure)
            t = tb.timings
            print(f"image: {Image(tb.cache_dir).rootfs} ({tb.image_status} in {t['image_s']:.1f} s)")
            for ip, h in tb.status().items():
                print(f"{ip}\t{h['name']}\tpid {h['pid']}\tnetns {tb.host_ns(ip)}")
            print(f"{len(tb.hosts)} host(s) up, ssh ready, in {t['start_s']:.1f} s (cleanup {t['cleanup_s']:.1f} s)")
            print(f"control side: {tb.control_ip} in netns {tb.control_ns}; ssh config: {tb.ssh_config()}")
            print(f"use: python tests/testbed.py exec -- ssh -F {tb.ssh_config()} {next(iter(tb.hosts))}")
        elif args.command == "down":
            tb.down()
            print(f"down in {tb.timings['down_s']:.1f} s")
        elif args.command == "status":
            status = tb.status()
            if not status:
                print("not up")
                return 3
            for ip, h in status.items():
                print(f"{ip}\t{h['name']}\t{'running' if h['running'] else 'stopped'}\tpid {h['pid']}")
            return 0 if all(h["running"] for h in status.values()) else 3
        elif args.command == "image":
            image = Image(tb.cache_dir)
            t = time.monotonic()
            rootfs, how = image.ensure()
            print(f"{rootfs} ({how} in {time.monotonic() - t:.1f} s); archive {image.tarball}")
            if args.prune:
                for path in image.prune():
                    print(f"removed {path}")
        elif args.command == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                raise UsageError("exec needs a command: python tests/testbed.py exec -- CMD...")
            if not tb.is_up() or not (Path("/run/netns") / tb.control_ns).exists():
                raise TestbedError(f"the testbed of {tb.state_dir} is not up")
            os.environ.update(tb.control_env())
            os.execvp("nsenter", ["nsenter", f"--net=/run/netns/{tb.control_ns}", "--", *cmd])
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
