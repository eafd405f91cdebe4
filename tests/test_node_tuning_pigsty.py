"""Node tuning as Pigsty v4.5 applies it: for every node_tune profile, sty's sysctl drop-in and tuning unit held to
Pigsty's own tuned profiles and hugepage task (roles/node of PIGSTY_SRC, read in place and rendered here with plain
Jinja2 from the same parameters and memory).

- sysctl: exactly the keys and values Pigsty's node gets: its profile's [sysctl] merged over the profile tuned
  includes (tuned 2.20's network-latency / latency-performance, network-throughput / throughput-performance),
  then Pigsty's /etc/sysctl.d/hugepage.conf, then node_sysctl_params; overcommit 2 only with a ratio;
- the unit: exactly the [vm], [cpu], [scheduler] and [disk-scheduler-*] settings of Pigsty's profile, as sysfs
  writes and the held /dev/cpu_dma_latency value;
- real programs: the unit's commands, run against a stand-in /sys, write those values and skip what the machine
  lacks; systemd-analyze accepts the unit; every sysctl key names a kernel setting of this machine.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from conftest import dump_inventory, shipped_inventory
from shared import PIGSTY_SRC

from sty.apply.checks import PASS
from sty.apply.checks.runner import run_host_checks
from sty.compiler.build import render_targets
from sty.compiler.pipeline import compile_fleet, resolve_target

ROLE = PIGSTY_SRC / "roles" / "node"
SYSCTL = "/etc/sysctl.d/90-sty-node.conf"
UNIT = "/etc/systemd/system/sty-node-tune.service"
HOSTS = {"10.10.10.10": "oltp", "10.10.10.11": "olap", "10.10.10.12": "crit", "10.10.10.13": "tiny"}

# The [sysctl] of the tuned profiles Pigsty's include (tuned 2.20, Debian 12's package); Pigsty's own keys win.
LATENCY = {"vm.dirty_ratio": "10", "vm.dirty_background_ratio": "3", "vm.swappiness": "10"}  # latency-performance
NETWORK_LATENCY = LATENCY | {
    "net.core.busy_read": "50",
    "net.core.busy_poll": "50",
    "net.ipv4.tcp_fastopen": "3",
    "kernel.numa_balancing": "0",
}
THROUGHPUT = {"vm.dirty_ratio": "40", "vm.dirty_background_ratio": "10", "vm.swappiness": "10"}
NETWORK_THROUGHPUT = THROUGHPUT | {
    "net.core.somaxconn": "2048",  # tuned's `=>2048`: at least
    "net.ipv4.tcp_rmem": "4096 87380 16777216",
    "net.ipv4.tcp_wmem": "4096 16384 16777216",
}
INCLUDED = {"network-latency": NETWORK_LATENCY, "network-throughput": NETWORK_THROUGHPUT}

VARIANTS = {
    "defaults": {},
    "ratios": {
        "node_overcommit_ratio": 90,
        "node_hugepage_ratio": 0.25,
        "node_sysctl_params": {"fs.nr_open": 8388608, "vm.swappiness": 7, "net.core.somaxconn": 1024},
    },
    "count": {"node_hugepage_count": 200, "node_hugepage_ratio": 0.5},
    "capped": {"node_hugepage_count": 10**8},  # more than 90 % of memory
}

pytestmark = pytest.mark.skipif(not (ROLE / "templates").is_dir(), reason=f"Pigsty's sources are not at {ROLE}")


def build(variant: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """{ip: (files by host path, the manifest, the host)} of the shipped inventory, each node on its profile."""
    data = shipped_inventory()
    data["all"]["vars"].update(variant)
    data["all"]["children"]["pg-test"]["vars"].pop("node_tune")
    for group in data["all"]["children"].values():
        for ip, host in (group.get("hosts") or {}).items():
            host["node_tune"] = HOSTS[ip]
    compiled = compile_fleet(dump_inventory(data, tmp / "pigsty.yml"))
    rendered = render_targets(compiled, resolve_target(compiled.fleet, "all"))
    out = {}
    for ip, tree in rendered.trees.items():
        files = {rel[len(ip) :]: raw.decode() for rel, raw in tree.items() if rel.startswith(f"{ip}/")}
        out[ip] = (files, yaml.safe_load(tree[f"{ip}.yml"]), compiled.fleet.hosts[ip])
    return out


_BUILT: dict[str, dict[str, Any]] = {}


def built(name: str, tmp: Path) -> dict[str, Any]:
    """The build of a variant, once per test session."""
    if name not in _BUILT:
        _BUILT[name] = build(VARIANTS[name], tmp)
    return _BUILT[name]


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request, tmp_path_factory):
    return request.param, built(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def defaults(tmp_path_factory) -> dict[str, Any]:
    return built("defaults", tmp_path_factory.mktemp("defaults"))


def facts(host) -> dict[str, Any]:
    """What Pigsty's templates read of the node, from sty's facts (4 KiB pages)."""
    p = host.params
    mem_bytes = host.facts.mem_mb * 1048576
    return {
        "node_mem_bytes": mem_bytes,
        "node_pages": mem_bytes // 4096,
        "node_overcommit_ratio": p.get("node_overcommit_ratio"),
        "node_hugepage_count": p.get("node_hugepage_count"),
        "node_hugepage_ratio": p.get("node_hugepage_ratio"),
        "nodename": host.nodename,
        "inventory_hostname": host.ip,
        "node_tuned_profile_dir": "/etc/tuned",
    }


def jinja() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ROLE / "templates")), trim_blocks=True, undefined=jinja2.StrictUndefined
    )
    env.filters["strftime"] = lambda fmt: "(time)"
    return env


def tuned_profile(host, profile: str) -> dict[str, dict[str, str]]:
    """Pigsty's tuned.conf for the profile as {section: {option: value}} (values unquoted, blanks collapsed)."""
    text = jinja().get_template(f"tuned-{profile}.conf").render(**facts(host))
    out: dict[str, dict[str, str]] = {}
    section = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out[section] = {}
            continue
        key, _, value = line.partition("=")
        out[section][key.strip()] = " ".join(value.strip().strip('"').split())
    return out


def pigsty_hugepages(host) -> dict[str, str]:
    """Pigsty's /etc/sysctl.d/hugepage.conf, rendered from its tune task."""
    tasks = yaml.safe_load((ROLE / "tasks" / "tune.yml").read_text())
    block = next(t for t in tasks if t.get("tags") == "node_tune")["block"]
    content = next(t for t in block if t["name"] == "render hugepage sysctl parameter")["copy"]["content"]
    text = jinja2.Environment(trim_blocks=True).from_string(content).render(**facts(host))
    return dict(tuple(w.strip() for w in line.split("=", 1)) for line in text.splitlines() if line.strip())


def pigsty_sysctl(host, profile: str) -> dict[str, str]:
    tuned = tuned_profile(host, profile)
    included = tuned["main"].get("include")
    settings = dict(INCLUDED.get(included, {})) if included else {}
    settings.update(tuned["sysctl"])
    settings.update(pigsty_hugepages(host))
    for key, value in (host.params.get("node_sysctl_params") or {}).items():
        settings[key] = str(value)
    return settings


def sysctl_file(text: str) -> dict[str, str]:
    pairs = [line.split(" = ", 1) for line in text.splitlines() if line and not line.startswith("#")]
    assert all(len(p) == 2 for p in pairs)
    return dict(pairs)


# -- sysctl -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ip", sorted(HOSTS))
def test_sysctl_is_what_pigsty_applies(variant, ip):
    name, hosts = variant
    files, _, host = hosts[ip]
    ours = sysctl_file(files[SYSCTL])
    assert ours == pigsty_sysctl(host, HOSTS[ip]), f"{name}: {HOSTS[ip]}"


def test_overcommit_and_hugepages(variant):
    name, hosts = variant
    for ip, profile in HOSTS.items():
        files, _, host = hosts[ip]
        ours = sysctl_file(files[SYSCTL])
        if name == "ratios":  # strict overcommit in every profile once a ratio is given
            assert (ours["vm.overcommit_memory"], ours["vm.overcommit_ratio"]) == ("2", "90")
        else:  # the profile's own, none in olap
            expected = {"oltp": ("0", "100"), "crit": ("0", "100"), "tiny": ("0", "200")}.get(profile)
            assert (ours.get("vm.overcommit_memory"), ours.get("vm.overcommit_ratio")) == (expected or (None, None))
        pages = host.facts.mem_mb / 2
        want = {"defaults": 0, "ratios": -(-pages * 0.25 // 1), "count": 200, "capped": -(-pages * 0.9 // 1)}[name]
        assert ours["vm.nr_hugepages"] == str(int(want)), (name, profile)


def test_none_renders_only_explicit_settings(tmp_path):
    data = shipped_inventory()
    data["all"]["vars"].update(node_tune="none", node_sysctl_params={})
    data["all"]["children"]["pg-test"]["vars"].pop("node_tune")
    trees = build_none(data, tmp_path / "a")
    assert all(SYSCTL not in files and UNIT not in files for files in trees.values())
    data["all"]["vars"].update(node_overcommit_ratio=80, node_hugepage_count=16)
    for files in build_none(data, tmp_path / "b").values():
        assert sysctl_file(files[SYSCTL]) == {
            "vm.nr_hugepages": "16",
            "vm.overcommit_memory": "2",
            "vm.overcommit_ratio": "80",
        }
        assert UNIT not in files


def build_none(data: dict[str, Any], tmp: Path) -> dict[str, dict[str, str]]:
    compiled = compile_fleet(dump_inventory(data, tmp / "pigsty.yml"))
    rendered = render_targets(compiled, resolve_target(compiled.fleet, "all"))
    return {ip: {rel[len(ip) :]: raw.decode() for rel, raw in tree.items()} for ip, tree in rendered.trees.items()}


def test_ratio_of_ninety_percent_is_refused(tmp_path):
    """Pigsty silently reserves nothing for node_hugepage_ratio >= 0.9; sty's schema refuses it."""
    proc = subprocess.run(
        [str(Path(__file__).parents[1] / ".venv/bin/sty"), "check", "-i", "inv.yml"],
        cwd=dump_inventory(_with(node_hugepage_ratio=0.9), tmp_path / "inv.yml").parent,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "node_hugepage_ratio" in proc.stdout + proc.stderr


def _with(**values: Any) -> dict[str, Any]:
    data = shipped_inventory()
    data["all"]["vars"].update(values)
    return data


# -- the unit ---------------------------------------------------------------------------------------------------

EPB = {"performance": "0", "normal": "6", "powersave": "15"}  # the kernel's energy_perf_bias numbers


def pigsty_writes(host, profile: str) -> tuple[set[tuple[str, str]], str | None]:
    """Pigsty's profile settings outside sysctl as (sysfs glob, value) and the held CPU latency."""
    tuned = tuned_profile(host, profile)
    writes, latency = set(), None
    for section, options in tuned.items():
        for key, value in options.items():
            if (section, key) == ("vm", "transparent_hugepages"):
                writes.add(("/sys/kernel/mm/transparent_hugepage/enabled", value))
            elif (section, key) == ("cpu", "governor"):
                writes.add(("/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor", value))
            elif (section, key) == ("cpu", "energy_perf_bias"):
                writes.add(("/sys/devices/system/cpu/cpu*/power/energy_perf_bias", EPB[value]))
            elif (section, key) == ("cpu", "min_perf_pct"):
                writes.add(("/sys/devices/system/cpu/intel_pstate/min_perf_pct", value))
            elif (section, key) == ("cpu", "force_latency"):
                latency = f"0x{int(value):08x}"
            elif (section, key) == ("scheduler", "sched_migration_cost_ns"):
                writes.add(("/sys/kernel/debug/sched/migration_cost_ns", value))
                writes.add(("/proc/sys/kernel/sched_migration_cost_ns", value))
            elif section.startswith("disk-scheduler-") and key in ("elevator", "readahead", "nomerges"):
                attribute = {"elevator": "scheduler", "readahead": "read_ahead_kb", "nomerges": "nomerges"}[key]
                writes.add((f"/sys/block/{options['devices']}/queue/{attribute}", value))
            else:
                assert section in ("main", "sysctl") or key in ("type", "devices"), (section, key)
    return writes, latency


def unit_writes(text: str) -> tuple[set[tuple[str, str]], str | None]:
    writes = set(re.findall(r"for f in (\S+); do \[ -e \"\$\$f\" \] && echo (\S+) > ", text))
    latency = re.search(r"printf (0x[0-9a-f]{8}) >&3", text)
    return writes, latency[1] if latency else None


@pytest.mark.parametrize("ip", sorted(HOSTS))
def test_unit_applies_what_the_tuned_profile_does(variant, ip):
    _, hosts = variant
    files, manifest, host = hosts[ip]
    assert unit_writes(files[UNIT]) == pigsty_writes(host, HOSTS[ip])
    unit = next(u for u in manifest["units"] if u["name"] == "sty-node-tune.service")
    assert unit["module"] == "node"
    entry = next(f for f in manifest["files"] if f["path"] == UNIT)
    assert entry["actions"] == [{"action": "daemon-reload"}, {"action": "restart", "unit": "sty-node-tune.service"}]


def unit_commands(text: str) -> list[str]:
    """The unit's shell commands as sh reads them (systemd's `$$` is `$`)."""
    return [m.replace("$$", "$") for m in re.findall(r"^Exec\w+=-?/bin/sh -c '(.*)'$", text, re.M)]


@pytest.mark.parametrize("profile", ["oltp", "olap", "crit", "tiny"])
def test_unit_commands_write_a_standin_sys(profile, defaults, tmp_path):
    """Run against a stand-in /sys (two CPUs with cpufreq, no intel_pstate, an NVMe, a virtio and a SCSI disk):
    the values land where they belong, a missing file is skipped, every command exits 0."""
    hosts = defaults
    ip = next(ip for ip, p in HOSTS.items() if p == profile)
    files, _, host = hosts[ip]
    root = tmp_path / "root"
    present = [
        "sys/kernel/mm/transparent_hugepage/enabled",
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
        "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
        "sys/kernel/debug/sched/migration_cost_ns",
        *[f"sys/block/{d}/queue/{a}" for d in ("nvme0n1", "vda", "sda") for a in ("scheduler", "read_ahead_kb")],
        "sys/block/nvme0n1/queue/nomerges",
    ]
    for rel in present:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("untouched\n")
    commands = unit_commands(files[UNIT])
    hold = [c for c in commands if "cpu_dma_latency" in c]
    assert len(hold) == (profile != "tiny")
    for command in commands:
        if command not in hold:
            command = command.replace("/sys/", f"{root}/sys/").replace("/proc/", f"{root}/proc/")
            assert subprocess.run(["sh", "-c", command], timeout=10).returncode == 0, command
    got = {str(p.relative_to(root)): p.read_text().strip() for p in root.rglob("*") if p.is_file()}
    expected = {rel: "untouched" for rel in present}
    writes, _ = pigsty_writes(host, profile)
    for glob, value in writes:
        for path in root.glob(glob.lstrip("/")):
            expected[str(path.relative_to(root))] = value
    assert got == expected
    assert got["sys/kernel/mm/transparent_hugepage/enabled"] == "never" and got["sys/block/sda/queue/scheduler"] == (
        "untouched"
    )


def test_unit_holds_the_cpu_latency_while_it_runs(defaults, tmp_path):
    """The holder opens the device, writes the 10-character hex form the kernel reads, and keeps it open."""
    hosts = defaults
    (hold,) = [c for c in unit_commands(hosts["10.10.10.10"][0][UNIT]) if "cpu_dma_latency" in c]
    device = tmp_path / "cpu_dma_latency"
    device.write_text("")
    proc = subprocess.Popen(["sh", "-c", hold.replace("/dev/cpu_dma_latency", str(device))])
    try:
        for _ in range(50):
            if device.read_text():
                break
            subprocess.run(["sleep", "0.05"])
        assert device.read_text() == "0x00000001"
        assert proc.poll() is None  # still holding
        fds = list(Path(f"/proc/{proc.pid}/fd").iterdir())
        assert any(fd.resolve() == device for fd in fds)
    finally:
        proc.kill()
        proc.wait()


def test_systemd_accepts_the_unit(defaults, tmp_path):
    hosts = defaults
    for ip in ("10.10.10.10", "10.10.10.13"):  # the simple (oltp) and the oneshot (tiny) shape
        files, manifest, _ = hosts[ip]
        root = tmp_path / ip
        (root / UNIT.lstrip("/")).parent.mkdir(parents=True)
        (root / UNIT.lstrip("/")).write_text(files[UNIT])
        manifest["checks"] = [c for c in manifest["checks"] if c["files"] == [UNIT]]
        (result,) = run_host_checks(root, manifest, {"build", "both"}, only={"systemd"})
        assert result.status == PASS, result.output


def test_sysctl_keys_are_kernel_settings(defaults):
    if not Path("/proc/sys/net/core/rmem_max").exists():
        pytest.skip("not in the initial network namespace: global net.core settings are hidden")
    hosts = defaults
    keys = {k for files, _, _ in hosts.values() for k in sysctl_file(files[SYSCTL])}
    missing = {k for k in keys if not Path("/proc/sys", *k.split(".")).exists()}
    assert missing <= {"net.netfilter.nf_conntrack_max"}  # present once nf_conntrack is loaded
