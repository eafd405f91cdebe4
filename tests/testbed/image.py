"""The cached Debian 12 image every container boots from: built once with debootstrap and apt (keyed by
a hash of its package list and recipe, so a changed list builds a new one), archived, and unpacked as the
read-only lower layer of each container's overlay."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from .common import DEFAULT_CACHE_DIR, PATH, locked, log, run

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
    "pgbackrest",
)
# Python wheels laid over Debian's packages (pure Python, unpacked into /usr/local/lib/python3.11/dist-packages,
# which Debian's python3 searches first; Debian's /usr/bin/patroni finds the newer distribution by name).
# Debian 12's Patroni 3.0.2 lets an old primary that comes back after a network cut overwrite the new leader's
# etcd key (fixed in 3.0.3, patroni/patroni#2689), which the faults suite hit; Pigsty ships Patroni 4.
WHEELS = ("patroni==4.0.7",)
# postgres:postgres is created with this uid/gid before PostgreSQL is installed, as Pigsty creates its dbsu
# first; conf/testbed.yml says `pg_dbsu_uid: 543` (Pigsty's default 26 is Debian's `tape` group).
DBSU_UID = 543
DBSU_HOME = "/var/lib/postgresql"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
HOST_KEY_TYPES = ("ed25519", "ecdsa")


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
            "wheels": list(WHEELS),
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
        self._add_wheels(root)
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
    def _add_wheels(root: Path) -> None:
        """Download WHEELS with this Python's pip (no dependencies: Debian's packages provide them) and unpack them."""
        site = root / "usr/local/lib/python3.11/dist-packages"
        site.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="sty-wheels-") as tmp:
            for spec in WHEELS:
                run(
                    [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
                    + ["--dest", tmp, spec],
                    timeout=600,
                )
            for wheel in sorted(Path(tmp).glob("*.whl")):
                with zipfile.ZipFile(wheel) as archive:
                    archive.extractall(site)

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
