"""Kernel tuning on a node: what Pigsty v4.5's tuned profile for `node_tune` (oltp, olap, crit, tiny) applies,
its hugepages and overcommit, and node_sysctl_params.

Two files carry it, both applied by systemd:
- `/etc/sysctl.d/90-sty-node.conf` (systemd-sysctl): every `[sysctl]` key of Pigsty's profile with its value
  (shared memory from the node's memory: `kernel.shmall` 75 % of its pages, `kernel.shmmax` 75 % of its bytes),
  the keys of the tuned profile Pigsty's includes that Pigsty's does not set (oltp and crit include tuned's
  `network-latency`: `net.core.busy_read` and `busy_poll` 50, `net.ipv4.tcp_fastopen` 3; olap's
  `network-throughput` sets nothing Pigsty's does not), `vm.nr_hugepages` (node_hugepage_count, capped at 90 %
  of memory, else node_hugepage_ratio of memory, else 0), then node_sysctl_params, which win as in Pigsty.
  `vm.overcommit_memory = 2` with `vm.overcommit_ratio` only when node_overcommit_ratio is above 0, in every
  profile as in Pigsty; otherwise each profile's own (0 with ratio 100 in oltp and crit, 200 in tiny, none in
  olap).
- `/etc/systemd/system/sty-node-tune.service`: the profile's settings that are not sysctl keys, written to
  /sys at boot and on every change: transparent hugepages `never` (every profile); for oltp, olap and crit
  the CPU governor `performance`, energy_perf_bias 0 (performance), intel_pstate `min_perf_pct` 100,
  `sched_migration_cost_ns` 500000 (debugfs on kernels from 5.13, the sysctl before), and tuned's
  `force_latency=1`: the unit keeps /dev/cpu_dma_latency open with 1 µs while it runs, as the tuned daemon
  does; the block queues of `vd[a-z]`, `xvd[a-z]` and `nvme*` disks get scheduler `none`, NVMe disks the
  profile's `read_ahead_kb` (oltp 64, olap 2048, crit 128) and `nomerges` (2, 0, 1). A setting the machine
  lacks (no cpufreq in a VM, no such disk) is skipped.

`node_tune: none` renders no profile and no unit: only node_sysctl_params and an explicit hugepage or overcommit
setting (below).

Intentional differences from Pigsty, with their reason:
- No tuned daemon (Pigsty installs tuned, writes /etc/tuned/<profile>/tuned.conf and runs `tuned-adm
  profile`): the effect is rendered as two files the build checks and `apply --check` compares, with no
  daemon in between. tuned re-applies on CPU and disk hotplug; the unit applies at boot and on apply. A tuned
  left running on a node Pigsty set up keeps applying its profile (the same values while node_tune is unchanged).
- Settings inherited from tuned's own profiles are taken from tuned 2.20 (Debian 12): the three network-latency
  keys above. Later tuned releases add kernel.hung_task_timeout_secs, kernel.nmi_watchdog, vm.stat_interval
  and kernel.timer_migration to network-latency; they stay at the kernel's defaults (node_sysctl_params sets
  them). throughput-performance's `readahead=>4096` for olap's other disks and network-latency's boot
  command line (`skew_tick=1`, effective only after a bootloader update and a reboot) are not rendered.
- The shared memory values assume 4 KiB pages and the memory of the node's facts (`mem_mb`); Pigsty reads
  `getconf _PHYS_PAGES` and `PAGE_SIZE` on the node.
- Pigsty's three sources (its tuned profile, /etc/sysctl.d/hugepage.conf, node_sysctl_params in
  /etc/sysctl.conf) are one drop-in, with node_sysctl_params last as they take effect in Pigsty. Values are
  written unquoted (`net.ipv4.tcp_rmem = 4096 87380 16777216`), as sysctl.d reads them.
- node_hugepage_ratio must be below 0.9 (schema): Pigsty silently reserves no hugepages for a larger ratio.
  node_overcommit_ratio is a whole number (schema): Pigsty writes a fraction, which the kernel refuses.
- With `node_tune: none`, a node_hugepage_count / node_hugepage_ratio or node_overcommit_ratio above 0 is still
  applied (Pigsty skips them, as they live in its tuned step): an explicit setting is not dropped silently.
  The profiles' zero defaults (`vm.nr_hugepages = 0`, overcommit 0) are not written then.
"""

from __future__ import annotations

import math

from ...bundle import DAEMON_RELOAD, FileSpec, HostBundle, Unit, restart
from ...model import Host
from ...render import HEADER, comment, one_line, render
from .identity import MODULE

SYSCTL_CONF = "/etc/sysctl.d/90-sty-node.conf"
TUNE_UNIT_NAME = "sty-node-tune.service"
TUNE_UNIT = f"/etc/systemd/system/{TUNE_UNIT_NAME}"
PROFILES = ("oltp", "olap", "crit", "tiny")
PAGE_SIZE = 4096
HUGEPAGE_SIZE = 2097152  # 2 MiB
HUGEPAGE_CAP = 0.90  # Pigsty never reserves more than 90 % of memory as hugepages

# The [sysctl] keys of Pigsty's profiles, one column per profile (oltp, olap, crit, tiny); None: not set.
# The shared memory size and overcommit keys depend on the node and the inventory: see `profile_sysctl`.
_TABLE: dict[str, tuple[str | None, str | None, str | None, str | None]] = {
    "kernel.numa_balancing": ("0", "0", "0", "0"),
    "kernel.sched_autogroup_enabled": ("0", "0", "0", "0"),
    "kernel.shmmni": ("8192", "8192", "8192", "8192"),
    "kernel.msgmni": ("32768", "32768", "32768", None),
    "kernel.msgmnb": ("65536", "65536", "65536", None),
    "kernel.msgmax": ("65536", "65536", "65536", None),
    "kernel.pid_max": ("131072", "131072", "131072", None),
    "kernel.sem": ("4096 524288 2048 8192", "4096 524288 2048 8192", "4096 524288 2048 8192", None),
    "vm.swappiness": ("1", "1", "1", "10"),
    "vm.zone_reclaim_mode": ("0", "0", "0", "0"),
    "vm.dirty_background_ratio": ("3", "10", "1", "5"),
    "vm.dirty_ratio": ("15", "80", "5", "30"),
    "vm.dirty_expire_centisecs": ("500", None, "100", None),
    "vm.dirty_writeback_centisecs": ("100", None, "100", None),
    "vm.mmap_min_addr": ("65536", "65536", "65536", "65536"),
    "fs.file-max": ("16777216", "134217728", "16777216", "16777216"),
    "fs.nr_open": ("8388608", "8388608", "8388608", "8388608"),
    "fs.aio-max-nr": ("1048576", "1048576", "1048576", "1048576"),
    "net.core.somaxconn": ("65535", "65535", "65535", "8192"),
    "net.core.netdev_max_backlog": ("8192", "8192", "8192", "2048"),
    "net.core.rmem_default": ("262144", "262144", "262144", "262144"),
    "net.core.wmem_default": ("262144", "262144", "262144", "262144"),
    "net.core.rmem_max": ("4194304", "16777216", "4194304", "4194304"),
    "net.core.wmem_max": ("4194304", "16777216", "4194304", "4194304"),
    "net.ipv4.tcp_rmem": ("4096 87380 16777216", "4096 87380 33554432", "4096 87380 16777216", "4096 87380 16777216"),
    "net.ipv4.tcp_wmem": ("4096 16384 16777216", "4096 16384 33554432", "4096 16384 16777216", "4096 16384 16777216"),
    "net.ipv4.udp_mem": (
        "3145728 4194304 16777216",
        "3145728 4194304 33554432",
        "3145728 4194304 16777216",
        "3145728 4194304 16777216",
    ),
    "net.ipv4.ping_group_range": ("0 65535", "0 65535", "0 65535", "0 65535"),
    "net.ipv4.ip_forward": ("1", "1", "1", "1"),
    "net.ipv4.ip_nonlocal_bind": ("1", "1", "1", "1"),
    "net.ipv4.tcp_timestamps": ("1", "1", "1", "1"),
    "net.ipv4.tcp_syncookies": ("0", "1", "1", "0"),
    "net.ipv4.ip_local_port_range": ("10000 64999", "10000 64999", "10000 64999", "10000 64999"),
    "net.ipv4.tcp_tw_reuse": ("1", "0", "1", "1"),
    "net.ipv4.tcp_synack_retries": ("3", "3", "2", "3"),
    "net.ipv4.tcp_syn_retries": ("3", "3", "2", "3"),
    "net.ipv4.tcp_keepalive_time": ("60", "300", "60", "60"),
    "net.ipv4.tcp_keepalive_intvl": ("20", "60", "20", "20"),
    "net.ipv4.tcp_keepalive_probes": ("3", "5", "3", "3"),
    "net.ipv4.tcp_fin_timeout": ("15", "60", "30", "30"),
    "net.ipv4.tcp_max_tw_buckets": ("262144", "262144", "262144", "262144"),
    "net.ipv4.tcp_max_syn_backlog": ("8192", "8192", "8192", "4096"),
    "net.netfilter.nf_conntrack_max": ("524288", "524288", "524288", "65536"),
    # from tuned's network-latency, which Pigsty's oltp and crit include
    "net.core.busy_read": ("50", None, "50", None),
    "net.core.busy_poll": ("50", None, "50", None),
    "net.ipv4.tcp_fastopen": ("3", None, "3", None),
}
NODE_TUNE: dict[str, dict[str, str]] = {
    name: {k: v[i] for k, v in _TABLE.items() if v[i] is not None} for i, name in enumerate(PROFILES)
}
NODE_TUNE["none"] = {}
# vm.overcommit_memory / vm.overcommit_ratio of a profile when node_overcommit_ratio is 0
_OVERCOMMIT_DEFAULT = {"oltp": ("0", "100"), "olap": None, "crit": ("0", "100"), "tiny": ("0", "200")}

# What the profile sets outside sysctl: (what, sysfs glob, value), per profile.
_THP = ("transparent hugepages", "/sys/kernel/mm/transparent_hugepage/enabled", "never")
_CPU = [
    ("CPU frequency governor", "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor", "performance"),
    ("energy performance bias: performance", "/sys/devices/system/cpu/cpu*/power/energy_perf_bias", "0"),
    ("intel_pstate minimum performance", "/sys/devices/system/cpu/intel_pstate/min_perf_pct", "100"),
    ("scheduler migration cost (kernel 5.13 and later)", "/sys/kernel/debug/sched/migration_cost_ns", "500000"),
    ("scheduler migration cost (before 5.13)", "/proc/sys/kernel/sched_migration_cost_ns", "500000"),
]
_ELEVATOR = [
    (f"I/O scheduler of {disks} disks", f"/sys/block/{disks}/queue/scheduler", "none")
    for disks in ("vd[a-z]", "xvd[a-z]", "nvme*")
]
_NVME = {"oltp": ("64", "2"), "olap": ("2048", "0"), "crit": ("128", "1")}  # read_ahead_kb, nomerges
FORCE_LATENCY_US = 1  # tuned's [cpu] force_latency in oltp, olap and crit


def sysfs_writes(profile: str) -> list[tuple[str, str, str]]:
    """The profile's settings outside sysctl, in the order the unit writes them."""
    if profile not in PROFILES:
        return []
    writes = [_THP]
    if profile != "tiny":
        writes += _CPU
    writes += _ELEVATOR
    if profile in _NVME:
        ahead, merges = _NVME[profile]
        writes += [
            ("NVMe read-ahead in KiB", "/sys/block/nvme*/queue/read_ahead_kb", ahead),
            ("NVMe request merging", "/sys/block/nvme*/queue/nomerges", merges),
        ]
    return writes


def hugepages(host: Host) -> int:
    """Pigsty's vm.nr_hugepages: the count (at most 90 % of memory), else the ratio of memory, else 0."""
    p = host.params
    mem_bytes = host.facts.mem_mb * 1048576
    count, ratio = int(p.get("node_hugepage_count") or 0), float(p.get("node_hugepage_ratio") or 0)
    if count > 0:
        cap = mem_bytes / HUGEPAGE_SIZE * HUGEPAGE_CAP
        return int(math.ceil(cap)) if count >= cap else count
    if 0 < ratio < HUGEPAGE_CAP:
        return int(math.ceil(mem_bytes / HUGEPAGE_SIZE * ratio))
    return 0


def profile_sysctl(host: Host, profile: str) -> dict[str, str]:
    """The sysctl keys Pigsty applies for the profile on this host: the profile's, shared memory, overcommit
    and hugepages. For `none`, only an explicit hugepage or overcommit setting."""
    ratio = int(host.params.get("node_overcommit_ratio") or 0)
    pages = hugepages(host)
    if profile not in PROFILES:
        explicit = {"vm.nr_hugepages": str(pages)} if pages else {}
        if ratio > 0:
            explicit.update({"vm.overcommit_memory": "2", "vm.overcommit_ratio": str(ratio)})
        return explicit
    settings = dict(NODE_TUNE[profile])
    mem_bytes = host.facts.mem_mb * 1048576
    settings["kernel.shmall"] = str(int(mem_bytes // PAGE_SIZE * 0.75))
    settings["kernel.shmmax"] = str(int(mem_bytes * 0.75))
    overcommit = ("2", str(ratio)) if ratio > 0 else _OVERCOMMIT_DEFAULT[profile]
    if overcommit:
        settings["vm.overcommit_memory"], settings["vm.overcommit_ratio"] = overcommit
    settings["vm.nr_hugepages"] = str(pages)
    return settings


def sysctl_settings(host: Host) -> dict[str, str]:
    """The profile's settings, then node_sysctl_params."""
    p = host.params
    settings = profile_sysctl(host, p.get("node_tune") or "none")
    for key, value in (p.get("node_sysctl_params") or {}).items():
        settings[one_line(key)] = one_line(value)
    return settings


def render_sysctl(host: Host, b: HostBundle) -> None:
    """The sysctl drop-in and the unit for the profile's settings outside sysctl."""
    profile = host.params.get("node_tune") or "none"
    settings = sysctl_settings(host)
    if settings:
        text = HEADER + f"# node_tune: {comment(profile)}\n"
        text += "".join(f"{k} = {v}\n" for k, v in sorted(settings.items()))
        b.add(FileSpec(SYSCTL_CONF, MODULE, text, "sysctl", actions=[restart("systemd-sysctl.service")]))
    writes = sysfs_writes(profile)
    if not writes:
        return
    latency = FORCE_LATENCY_US if profile != "tiny" else None
    unit = render(
        "node/node-tune.service.j2",
        profile=profile,
        writes=writes,
        latency=None if latency is None else f"0x{latency:08x}",
    )
    b.add(FileSpec(TUNE_UNIT, MODULE, unit, "systemd", actions=[DAEMON_RELOAD, restart(TUNE_UNIT_NAME)]))
    b.units.add(Unit(TUNE_UNIT_NAME, MODULE))
    b.check("systemd", TUNE_UNIT)
