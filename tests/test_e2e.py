"""End to end: testbed up from nothing, `sty apply all` on conf/testbed.yml, `sty verify all` green, a
second apply changes and restarts nothing, drift check clean, then a change is applied with only the
activation it needs, and the testbed goes down. `make e2e` runs it alone; `make test` includes it.

`sty apply` and `sty verify` run inside the testbed's control namespace (`python tests/testbed exec`),
so no packet can leave the test network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from fleet_testbed import ROOT, FleetRun, sty_argv
from testbed import Testbed

UNITS = ("patroni.service", "pgbouncer.service", "haproxy.service", "etcd.service", "node_exporter.service")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def testbed(fleet_testbed: FleetRun) -> Testbed:
    return fleet_testbed.tb


@pytest.fixture(scope="module")
def outdir(fleet_testbed: FleetRun) -> Path:
    return fleet_testbed.outdir


def sty(tb: Testbed, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run sty in the control namespace with the testbed's SSH settings."""
    return subprocess.run(sty_argv(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def start_times(tb: Testbed) -> dict[str, str]:
    out = {}
    for ip in tb.hosts:
        for unit in UNITS:
            proc = tb.host_exec(ip, ["systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "--value", unit])
            out[f"{ip} {unit}"] = proc.stdout.strip()
    return out


def test_apply_verify_reapply(fleet_testbed: FleetRun, testbed: Testbed, outdir: Path):
    timings = dict(fleet_testbed.timings)
    first = fleet_testbed.first_apply
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "4 host(s): 4 changed" in first.stdout

    started = time.monotonic()
    verify = sty(testbed, "verify", "-o", str(outdir), "all")
    timings["verify"] = time.monotonic() - started
    assert verify.returncode == 0, verify.stdout[-6000:]
    assert "verified: every check passed" in verify.stdout and "F" not in verify.stdout.split("\n")[0]

    before = start_times(testbed)
    started = time.monotonic()
    second = sty(testbed, "apply", "-o", str(outdir), "--yes", "all")
    timings["second apply"] = time.monotonic() - started
    assert second.returncode == 0, second.stderr
    assert "4 host(s): 0 changed" in second.stdout, second.stdout
    assert start_times(testbed) == before, "a second apply with nothing changed restarted something"

    drift = sty(testbed, "apply", "--check", "-o", str(outdir), "all")
    assert drift.returncode == 0 and "no drift" in drift.stdout, drift.stdout + drift.stderr

    # a hand edit on a host is drift: shown (secrets masked), exit 1, nothing changed by --check
    testbed.host_exec("10.10.10.11", ["sh", "-c", "echo '# hand edit' >> /etc/haproxy/haproxy.cfg"])
    drift = sty(testbed, "apply", "--check", "-o", str(outdir), "10.10.10.11")
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert "+# hand edit" not in drift.stdout and "-# hand edit" in drift.stdout
    assert "<<secret:10.10.10.11/haproxy_admin_password>>" in drift.stdout or "stats auth" not in drift.stdout

    # re-apply repairs it with a reload of haproxy only
    patroni_before = start_times(testbed)["10.10.10.11 patroni.service"]
    fix = sty(testbed, "apply", "-o", str(outdir), "--yes", "10.10.10.11")
    assert fix.returncode == 0, fix.stderr
    assert "/etc/haproxy/haproxy.cfg" in fix.stdout and "reload haproxy.service" in fix.stdout, fix.stdout
    assert " 10.10.10.11 node: installing 1 file\n" in fix.stderr, fix.stderr
    assert start_times(testbed)["10.10.10.11 patroni.service"] == patroni_before

    # facts of a host, over SSH, into facts/<host>.yml for the next build's tuning
    facts_dir = outdir.parent / "facts"
    gathered = sty(testbed, "facts", "-o", str(outdir), "--facts", str(facts_dir), "10.10.10.12")
    assert gathered.returncode == 0, gathered.stderr
    facts = yaml.safe_load((facts_dir / "10.10.10.12.yml").read_text())
    assert facts["cpu"] == os.cpu_count() and facts["mem_mb"] > 256 and facts["disk_gb"] >= 1

    print("\n" + "\n".join(f"{k:>14}: {v:6.1f}s" for k, v in timings.items()))


def test_failed_activation_rolls_back(testbed: Testbed, outdir: Path, tmp_path: Path):
    """A bundle whose pgbouncer cannot start: apply fails with pgbouncer's own words and restores the file."""
    bad = tmp_path / "outputs"
    shutil.copytree(outdir, bad)
    shutil.copytree(outdir.parent / ".sty", tmp_path / ".sty", dirs_exist_ok=True)
    ini = bad / "10.10.10.12/etc/pgbouncer/pgbouncer.ini"
    ini.write_text(ini.read_text().replace("pool_mode = transaction", "pool_mode = transactional"))
    manifest = bad / "10.10.10.12.yml"
    doc = yaml.safe_load(manifest.read_text())
    for entry in doc["files"]:
        if entry["path"] == "/etc/pgbouncer/pgbouncer.ini":  # a config change that needs a restart
            entry["actions"] = [{"action": "restart", "unit": "pgbouncer.service"}]
    manifest.write_text(yaml.safe_dump(doc))
    live_before = testbed.host_exec("10.10.10.12", ["cat", "/etc/pgbouncer/pgbouncer.ini"]).stdout

    result = sty(testbed, "apply", "-o", str(bad), "--yes", "10.10.10.12")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "transactional" in result.stderr or "pgbouncer" in result.stderr
    assert testbed.host_exec("10.10.10.12", ["cat", "/etc/pgbouncer/pgbouncer.ini"]).stdout == live_before
    active = testbed.host_exec("10.10.10.12", ["systemctl", "is-active", "pgbouncer.service"]).stdout.strip()
    assert active == "active"
