"""This machine as its /proc shows it: whether the testbed can run here at all, processes identified by
PID and start time (so a reused PID is never killed), the cgroup hierarchies containers are placed in, and
mount points. Nothing here knows about a particular testbed."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
from pathlib import Path

from .common import PATH

CAP_SYS_RESOURCE = 24


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
