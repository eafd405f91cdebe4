"""The testbed's network: a bridge in a namespace of its own, one veth per host and one for the control
side, each with its peer placed straight into the host's or control namespace (the machine's own
namespace gets nothing), and the control side's way in: programs run there with the testbed's ssh
settings, and the ssh config they use."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from .common import TestbedError, run
from .state import Layout


def veth_name(ip: str) -> str:
    return "h" + ipaddress.IPv4Address(ip).packed.hex()  # the bridge side of a host's veth (9 characters)


class Network(Layout):
    """Network namespaces, veths and the control side (a mixin of `Testbed`)."""

    def _make_bridge(self) -> None:
        """The bridge's namespace and the control side's."""
        self._netns_add(self.net_ns)
        run(["ip", "-n", self.net_ns, "link", "add", self.bridge, "type", "bridge", "forward_delay", "0"])
        run(["ip", "-n", self.net_ns, "link", "set", self.bridge, "up"])
        self._netns_add(self.control_ns)
        self._veth(self.control_ns, "ctl", f"{self.control_ip}/{self.subnet.prefixlen}")

    def _netns_add(self, name: str) -> None:
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _veth(self, ns: str, bridge_side: str, address: str) -> None:
        """A veth made inside the bridge's namespace, its peer `eth0` placed straight into `ns`."""
        run(["ip", "-n", self.net_ns, "link", "add", bridge_side, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "-n", self.net_ns, "link", "set", bridge_side, "master", self.bridge, "up"])
        run(["ip", "-n", ns, "addr", "add", address, "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])

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

    def cut(self, ip: str) -> None:
        """Take a host off the network as a pulled cable would: its bridge-side link goes down, nothing inside
        the host is told (no clean stop), and every packet to or from it is lost until `heal`."""
        run(["ip", "-n", self.net_ns, "link", "set", veth_name(ip), "down"])

    def heal(self, ip: str) -> None:
        run(["ip", "-n", self.net_ns, "link", "set", veth_name(ip), "up"])

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
        lines = ["# sty testbed: the control side's view of the hosts (written by tests/testbed)\n"]
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
