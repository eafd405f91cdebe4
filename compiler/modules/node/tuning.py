"""Kernel tuning on a node: the sysctl settings of its node_tune profile, hugepages, overcommit and
node_sysctl_params, written to one drop-in that systemd-sysctl applies."""

from __future__ import annotations

from ...bundle import FileSpec, HostBundle, restart
from ...model import Host
from ...render import HEADER, comment, one_line
from .identity import MODULE

SYSCTL_CONF = "/etc/sysctl.d/90-sty-node.conf"

# Kernel settings per node_tune profile (sty's table, following the intent of Pigsty's tuned profiles:
# oltp favours latency, olap throughput, crit durability, tiny small machines).
_COMMON = {
    "fs.aio-max-nr": "1048576",
    "fs.file-max": "16777216",
    "kernel.numa_balancing": "0",
    "net.core.somaxconn": "65535",
    "net.core.netdev_max_backlog": "10000",
    "net.ipv4.ip_local_port_range": "10000 65535",
    "net.ipv4.tcp_fin_timeout": "5",
    "net.ipv4.tcp_max_syn_backlog": "8192",
    "net.ipv4.tcp_tw_reuse": "1",
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv4.tcp_keepalive_time": "60",
    "net.ipv4.tcp_keepalive_intvl": "10",
    "net.ipv4.tcp_keepalive_probes": "6",
}
NODE_TUNE: dict[str, dict[str, str]] = {
    "oltp": {
        **_COMMON,
        "vm.swappiness": "0",
        "vm.dirty_background_ratio": "5",
        "vm.dirty_ratio": "10",
        "vm.overcommit_memory": "0",
        "kernel.sched_autogroup_enabled": "0",
    },
    "olap": {
        **_COMMON,
        "vm.swappiness": "10",
        "vm.dirty_background_ratio": "10",
        "vm.dirty_ratio": "40",
        "vm.overcommit_memory": "0",
    },
    "crit": {
        **_COMMON,
        "vm.swappiness": "0",
        "vm.dirty_background_ratio": "3",
        "vm.dirty_ratio": "5",
        "vm.overcommit_memory": "2",
        "vm.overcommit_ratio": "100",
        "kernel.sched_autogroup_enabled": "0",
    },
    "tiny": {
        "vm.swappiness": "10",
        "vm.dirty_background_ratio": "5",
        "vm.dirty_ratio": "20",
        "net.core.somaxconn": "4096",
        "net.ipv4.tcp_tw_reuse": "1",
    },
    "none": {},
}


def sysctl_settings(host: Host) -> dict[str, str]:
    """The profile's settings, overridden by hugepage and overcommit parameters, then node_sysctl_params."""
    p = host.params
    settings = dict(NODE_TUNE.get(p.get("node_tune") or "none", {}))
    if p.get("node_hugepage_count"):
        settings["vm.nr_hugepages"] = str(p["node_hugepage_count"])
    elif p.get("node_hugepage_ratio"):
        settings["vm.nr_hugepages"] = str(int(host.facts.mem_mb * float(p["node_hugepage_ratio"]) / 2))
    if p.get("node_overcommit_ratio"):
        settings["vm.overcommit_memory"] = "2"
        settings["vm.overcommit_ratio"] = str(p["node_overcommit_ratio"])
    for key, value in (p.get("node_sysctl_params") or {}).items():
        settings[one_line(key)] = one_line(value)
    return settings


def render_sysctl(host: Host, b: HostBundle) -> None:
    settings = sysctl_settings(host)
    if not settings:
        return
    text = HEADER + f"# node_tune: {comment(host.params.get('node_tune'))}\n"
    text += "".join(f"{k} = {v}\n" for k, v in sorted(settings.items()))
    b.add(FileSpec(SYSCTL_CONF, MODULE, text, "sysctl", actions=[restart("systemd-sysctl.service")]))
