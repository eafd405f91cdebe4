"""The containers: each host's own files written into its overlay's upper layer, systemd-nspawn started
in a private mount namespace inside the host's cgroups (so its overlay mount vanishes with it, even when
killed), the wait for its systemd to finish booting, and running programs inside a host."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import KEYGEN, PATH, TestbedError, run
from .image import HOST_KEY_TYPES
from .procs import alive, starttime
from .state import Layout

NSPAWN_RUN = "/run/systemd/nspawn"  # systemd-nspawn's lock files and per-machine propagation directories

# Runs as the future systemd-nspawn process (same PID through every exec), already inside its private mount
# namespace: join the container's cgroups, mount its overlayfs (visible only in this namespace), start it.
LAUNCH = (
    'for f in $STY_CGROUPS; do echo $$ > "$f" || exit 1; done; '
    'mount -t overlay sty-testbed -o "$STY_OVERLAY" "$STY_ROOT" || exit 1; '
    'exec "$@"'
)


class Containers(Layout):
    """Preparing, starting, waiting for and entering the hosts' containers (a mixin of `Testbed`)."""

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
