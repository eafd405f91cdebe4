"""`Testbed`: bringing a testbed up from nothing (leftovers of an earlier run with the same parameters are
removed first) and taking it down again, leaving only the image cache and the console logs. The steps
themselves live in the mixins: state, network and containers."""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .common import KEYGEN, TestbedError, locked, log, run
from .containers import NSPAWN_RUN, Containers
from .image import Image
from .network import Network, veth_name
from .procs import (
    alive,
    cgroup_procs,
    cgroup_roots,
    kill,
    limits_warning,
    missing_requirements,
    mounts_under,
    remove_cgroup_tree,
)
from .state import inventory_hosts


class Testbed(Network, Containers):
    """One testbed: its parameters, what it made (state.json), and how to reach its hosts.

    `Testbed(...).up()` makes it from nothing (removing leftovers of an earlier run with the same
    parameters first), `down()` removes every trace but the image cache. A testbed brought up by another
    process is used by constructing `Testbed` with the same cgroup prefix / state dir: the hosts, their
    addresses and PIDs are read from the state dir.
    """

    __test__ = False  # not a pytest class

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

        self._make_bridge()
        len_ = self.subnet.prefixlen

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
        tops = [root / self.prefix for root in cgroup_roots()]
        self._stop(recorded, tops, stop_timeout)
        left = self._remove(state, ips, tops)
        if left:
            raise TestbedError(f"cgroups still busy after teardown: {', '.join(left)}")

    def _stop(self, recorded: dict[str, Any], tops: list[Path], stop_timeout: float) -> None:
        """A clean poweroff: SIGTERM to each systemd-nspawn, then SIGKILL to what is left, recorded or in the
        testbed's cgroups (the orphaned systemd of a killed run lives on there)."""
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

    def _remove(self, state: dict[str, Any], ips: list[str], tops: list[Path]) -> list[str]:
        """Namespaces (with them the bridge and every veth), then cgroups, then files; returns the cgroups that
        are still busy."""
        recorded = state.get("hosts") or {}
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
        return left

    def _still(self, pid: int, start: int | None) -> bool:
        for proc in self._procs.values():
            if proc.pid == pid:
                proc.poll()
        return alive(pid, start)

    def __enter__(self) -> Testbed:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()
