"""The local multi-host testbed (apply/testbed.py) and its inventory (conf/testbed.yml).

The e2e test brings the testbed up for the 4 hosts of conf/testbed.yml from nothing (the image is built on
the first run and cached in /var/cache/sty-testbed), checks it from the control namespace, and takes it down.
It runs where the testbed can run (root, systemd-nspawn, debootstrap) and is skipped elsewhere.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testbed as tbm
from testbed import Image, Testbed, UsageError

ROOT = Path(__file__).resolve().parents[1]
INVENTORY = ROOT / "conf" / "testbed.yml"
NODES = {"10.10.10.10": "pg-meta-1", "10.10.10.11": "pg-test-1", "10.10.10.12": "pg-test-2", "10.10.10.13": "pg-test-3"}
PREFIX = "sty-testbed-pytest"  # not the default: a developer's testbed may be up at the same time


def _skip_reason() -> str | None:
    reasons = []
    if os.geteuid() != 0:
        reasons.append("not root")
    for prog, package in (("systemd-nspawn", "systemd-container"), ("debootstrap", "debootstrap")):
        if shutil.which(prog) is None and not Path("/usr/sbin", prog).exists():
            reasons.append(f"{prog} missing (apt-get install {package})")
    return "the testbed needs root, systemd-nspawn and debootstrap: " + ", ".join(reasons) if reasons else None


# -- the inventory ---------------------------------------------------------------------------------------
def _bundles():
    from sty.compiler.pipeline import compile_fleet, render_host

    compiled = compile_fleet(INVENTORY)
    return {ip: render_host(host, compiled) for ip, host in compiled.fleet.hosts.items()}


def test_testbed_inventory_hosts():
    assert tbm.inventory_hosts(INVENTORY) == NODES


def test_testbed_inventory_fits_the_image():
    """Every package a bundle needs is installed in the image; no sysctl or chrony files (containers)."""
    image = set(tbm.BASE_PACKAGES) | set(Image().packages)
    for ip, bundle in _bundles().items():
        assert set(bundle.packages) <= image, f"{ip}: packages missing from the testbed image"
        assert not any(p.startswith("/etc/sysctl.d/") or "chrony" in p for p in bundle.files), ip


def test_testbed_inventory_checks_and_builds(tmp_path):
    sty = ROOT / ".venv" / "bin" / "sty"
    assert subprocess.run([sty, "check", "-i", INVENTORY], capture_output=True).returncode == 0
    out = tmp_path / "outputs"
    proc = subprocess.run([sty, "build", "-i", INVENTORY, "-o", out], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = out / "10.10.10.11.yml"
    assert manifest.exists()
    assert not (out / "10.10.10.11" / "etc" / "sysctl.d").exists()
    assert not (out / "10.10.10.11" / "etc" / "chrony").exists()


# -- parameters (no root needed) -------------------------------------------------------------------------
def test_names_addresses_and_paths(tmp_path):
    tb = Testbed(subnet="192.168.77.0/24", bridge="br-x", cgroup_prefix="tb1", state_dir=tmp_path, hosts=NODES)
    assert (tb.net_ns, tb.control_ns, tb.host_ns("10.10.10.11")) == ("tb1-net", "tb1-ctl", "tb1-10.10.10.11")
    assert tb.control_ip == "192.168.77.254"
    assert tb.ssh_config() == tmp_path / "ssh_config"
    assert tb.control_env()["STY_SSH_CONFIG"] == str(tmp_path / "ssh_config")
    assert tbm.veth_name("10.10.10.11") == "h0a0a0a0b"
    assert Testbed(cgroup_prefix="x").state_dir == tbm.STATE_ROOT / "x"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cgroup_prefix": "a/b"},
        {"cgroup_prefix": ""},
        {"bridge": "a-bridge-name-too-long"},
        {"subnet": "10.10.10.1/24"},
        {"subnet": "10.10.10.0/30"},
        {"state_dir": "/tmp/with,comma"},
    ],
)
def test_rejects_bad_parameters(kwargs):
    with pytest.raises(UsageError):
        Testbed(**kwargs)


@pytest.mark.parametrize(
    "hosts",
    [{"10.10.11.5": "a"}, {"10.10.10.254": "a"}, {"10.10.10.255": "a"}, {"10.10.10.5": "a", "10.10.10.6": "a"}],
)
def test_rejects_hosts_that_do_not_fit(hosts, tmp_path):
    tb = Testbed(state_dir=tmp_path, hosts=hosts)
    with pytest.raises(UsageError):
        tb._check_hosts(hosts)


def test_image_key_follows_the_package_list():
    assert Image("/x").key == Image("/y").key
    assert Image("/x").key != Image("/x", packages=[*tbm.FLEET_PACKAGES, "vim"]).key
    assert Image("/x").tarball.name.endswith(".tar.zst")


def test_ssh_config_checks_host_keys(tmp_path):
    tb = Testbed(state_dir=tmp_path, hosts=NODES)
    tb._write_ssh_config(NODES)
    text = tb.ssh_config().read_text()
    assert "StrictHostKeyChecking yes" in text and f"UserKnownHostsFile {tb.known_hosts}" in text
    assert "Host 10.10.10.11 pg-test-1\n    HostName 10.10.10.11" in text


# -- the testbed itself ----------------------------------------------------------------------------------
def _machine_links() -> set[str]:
    return {link["ifname"] for link in json.loads(subprocess.check_output(["ip", "-j", "link", "show"]))}


def _machine_reaches_subnet(subnet: ipaddress.IPv4Network) -> list[str]:
    """Addresses or routes of the machine's own network namespace inside the test subnet."""
    found = []
    for link in json.loads(subprocess.check_output(["ip", "-j", "-4", "addr", "show"])):
        for a in link.get("addr_info", []):
            if ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}").network.overlaps(subnet):
                found.append(f"address {a['local']}/{a['prefixlen']} on {link['ifname']}")
    for route in json.loads(subprocess.check_output(["ip", "-j", "-4", "route", "show", "table", "all"])):
        dst = route.get("dst", "")
        if dst not in ("default", "") and ipaddress.IPv4Network(dst, strict=False).overlaps(subnet):
            found.append(f"route {dst} dev {route.get('dev')}")
    return found


def _leftovers(tb: Testbed, state: dict) -> list[str]:
    left = [f"netns {n}" for n in [tb.net_ns, tb.control_ns, *map(tb.host_ns, NODES)] if Path("/run/netns", n).exists()]
    mountinfo = Path("/proc/self/mountinfo").read_text()
    left += [f"mount {line.split()[4]}" for line in mountinfo.splitlines() if tb.prefix in line]
    left += [f"mount {m}" for m in tbm.mounts_under(tb.state_dir)]
    for ip, h in state.get("hosts", {}).items():
        for key in ("pid", "leader"):
            if tbm.alive(h.get(key), h.get(f"{key}_start")):
                left.append(f"process {h[key]} ({ip} {key})")
    left += [f"cgroup {root / tb.prefix}" for root in tbm.cgroup_roots() if (root / tb.prefix).exists()]
    left += [f"link {name}" for name in _machine_links() if name in {tb.bridge, "ctl"} or name.startswith("h0a0a")]
    left += [f"nspawn {p}" for p in map(tb.machine, NODES) if Path(tbm.NSPAWN_RUN, "propagate", p).exists()]
    left += [f"nspawn lock {h['lock']}" for h in state.get("hosts", {}).values() if Path(h.get("lock") or "-").exists()]
    return left


PARAMIKO_PROBE = """
import sys, paramiko
host, key, known = sys.argv[1:4]
client = paramiko.SSHClient()
client.load_host_keys(known)
client.set_missing_host_key_policy(paramiko.RejectPolicy())
client.connect(host, username="root", key_filename=key, look_for_keys=False, allow_agent=False, timeout=10)
_, out, _ = client.exec_command("id -un")
print(out.read().decode().strip())
client.close()
"""


def _cli(tb: Testbed, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        ROOT / "tests/testbed.py",
        *args[:1],
        "--cgroup-prefix",
        tb.prefix,
        "--state-dir",
        tb.state_dir,
    ]
    return subprocess.run([*map(str, cmd), *args[1:]], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
def test_testbed_up_check_down(tmp_path_factory, capsys):
    state_dir = tmp_path_factory.mktemp("testbed-state")
    tb = Testbed(INVENTORY, cgroup_prefix=PREFIX, state_dir=state_dir)
    links_before = _machine_links()
    cold = not Image(tb.cache_dir).tarball.exists()
    again = None

    t0 = time.monotonic()
    tb.up()
    up_s = time.monotonic() - t0
    state = tb.load_state()
    try:
        assert tb.hosts == NODES
        ssh = ["ssh", "-F", str(tb.ssh_config())]

        # every host answers ssh as root, host keys checked against the testbed's known_hosts only
        for ip, name in NODES.items():
            out = tb.control_run([*ssh, ip, "id -un; hostname; systemctl is-system-running"], timeout=60)
            assert out.returncode in (0, 1), out.stderr  # is-system-running exits 1 when degraded
            user, hostname, system = out.stdout.split()
            assert (user, hostname) == ("root", name)
            assert system in ("running", "degraded")
            out = tb.control_run([*ssh, "-o", "UserKnownHostsFile=/dev/null", ip, "true"], timeout=60)
            assert out.returncode != 0 and "Host key verification failed" in out.stderr
        # the same with paramiko (what fabric uses in apply/remote.py), RejectPolicy on unknown keys
        if subprocess.run([sys.executable, "-c", "import paramiko"], capture_output=True).returncode == 0:
            for ip in NODES:
                probe = [sys.executable, "-c", PARAMIKO_PROBE, ip, str(tb.identity), str(tb.known_hosts)]
                out = tb.control_run(probe, timeout=60)
                assert out.returncode == 0 and out.stdout.strip() == "root", out.stderr
        # the command line: `exec` runs in the control namespace with the ssh settings in the environment
        out = _cli(tb, "exec", "--", "sh", "-c", "ip -4 -o addr show dev eth0; echo $STY_SSH_CONFIG")
        assert out.returncode == 0 and f"inet {tb.control_ip}/24" in out.stdout, out.stderr
        assert out.stdout.split()[-1] == str(tb.ssh_config())
        assert _cli(tb, "status").returncode == 0

        # inside each host: systemd is up, the bundle's packages are installed, the only route is the subnet
        packages = {ip: sorted(bundle.packages) for ip, bundle in _bundles().items()}
        for ip in NODES:
            out = tb.host_exec(ip, ["systemctl", "is-system-running"])
            assert out.stdout.strip() in ("running", "degraded"), out
            out = tb.host_exec(ip, ["dpkg-query", "-W", "-f", "${Status}\n", *packages[ip]])
            assert out.returncode == 0 and set(out.stdout.split("\n")[:-1]) == {"install ok installed"}, out
            routes = json.loads(tb.host_exec(ip, ["ip", "-j", "route"], check=True).stdout)
            assert [r["dst"] for r in routes] == [str(tb.subnet)]
        routes = json.loads(tb.control_run(["ip", "-j", "route"], check=True).stdout)
        assert [r["dst"] for r in routes] == [str(tb.subnet)]

        # hosts reach each other on the bridge
        for ip in NODES:
            others = " ".join(o for o in NODES if o != ip)
            script = f"for o in {others}; do ping -c1 -W2 $o >/dev/null && nc -z -w2 $o 22 || echo unreachable $o; done"
            out = tb.host_exec(ip, script)
            assert out.returncode == 0 and out.stdout == "", f"{ip}: {out.stdout}{out.stderr}"

        # the machine's own namespace: nothing in the subnet, no new interfaces
        assert _machine_reaches_subnet(tb.subnet) == []
        assert _machine_links() == links_before

        # a run killed hard (SIGKILL to every systemd-nspawn: the containers' systemd keep running, orphaned);
        # the next `up`, from a fresh object, removes all of it and starts afresh
        for h in state["hosts"].values():
            os.kill(h["pid"], signal.SIGKILL)
        t1 = time.monotonic()
        again = Testbed(INVENTORY, cgroup_prefix=PREFIX, state_dir=state_dir).up()
        restart_s = time.monotonic() - t1
        old, state = state, again.load_state()
        assert not any(tbm.alive(h[k], h[f"{k}_start"]) for h in old["hosts"].values() for k in ("pid", "leader"))
        # a killed nspawn's lock is gone, unless the new container's overlay got the same inode (same path)
        held = {h["lock"] for h in state["hosts"].values() if h.get("lock")}
        assert not any(Path(h["lock"]).exists() for h in old["hosts"].values() if h["lock"] and h["lock"] not in held)
        out = again.control_run([*ssh, "10.10.10.13", "true"], timeout=60)
        assert out.returncode == 0, out.stderr
    finally:
        t2 = time.monotonic()
        Testbed(INVENTORY, cgroup_prefix=PREFIX, state_dir=state_dir).down()  # a clean poweroff
        down_s = time.monotonic() - t2
        for testbed in (tb, again):
            for proc in getattr(testbed, "_procs", {}).values():  # reap the systemd-nspawns this process started
                proc.poll()

    assert _leftovers(tb, state) == []
    assert _machine_links() == links_before
    assert not tb.state_file.exists()

    with capsys.disabled():
        print(
            f"\ntestbed: image {'built (cold)' if cold else tb.image_status} in {tb.timings['image_s']:.1f} s; "
            f"4 hosts up with ssh in {tb.timings['start_s']:.1f} s (up total {up_s:.1f} s); "
            f"up after a killed run {restart_s:.1f} s; down {down_s:.1f} s"
        )
