"""A testbed's parameters and what follows from them: every namespace, cgroup and path name (derived, so
leftovers of a killed run are found again), and state.json, the record of what `up` made, which lets
another process use or remove a testbed it did not start. The mixins of the other modules build on it."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from .common import (
    DEFAULT_BRIDGE,
    DEFAULT_CACHE_DIR,
    DEFAULT_INVENTORY,
    DEFAULT_PREFIX,
    DEFAULT_SUBNET,
    IFNAME_RE,
    NAME_RE,
    SAFE_PATH_RE,
    STATE_ROOT,
    TestbedError,
    UsageError,
)
from .procs import alive, cgroup_roots


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


class Layout:
    """A testbed's parameters, names, paths and recorded state (the base of `Testbed`)."""

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

    def _entry(self, ip: str) -> dict[str, Any]:
        entry = (self.load_state().get("hosts") or {}).get(ip)
        if not entry:
            raise TestbedError(f"{ip} is not a host of the testbed in {self.state_dir} (is it up?)")
        return entry
