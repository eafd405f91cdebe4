"""The applied testbed, shared by the end-to-end tests and the fault scenarios (one per session).

`fleet_testbed` brings the testbed of conf/testbed.yml up, builds it into a temporary output directory and runs
the first `sty apply all`; every test after it starts from a running fleet. `sty` runs in the control namespace
(`python tests/testbed exec`) and commands on a host run inside it (`Testbed.host_exec`): nothing leaves the
test network.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from testbed import Testbed

ROOT = Path(__file__).resolve().parents[1]
INVENTORY = ROOT / "conf" / "testbed.yml"
PREFIX = "sty-e2e"
BRIDGE = "stye2e0"
SUBNET = "10.10.10.0/24"
PATRONI_CONF = "/etc/patroni/patroni.yml"
FIGURES: list[str] = []  # one line per fault scenario, printed at the end of the run


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the testbed needs root"
    for prog in ("systemd-nspawn", "debootstrap", "rsync"):
        if shutil.which(prog) is None and not Path("/usr/sbin", prog).exists():
            return f"the testbed needs {prog}"
    return None


def wait_until(probe: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll until `probe` returns something true; its value, or AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)


def sty_argv(*args: str) -> list[str]:
    """`sty ARGS` as run in the testbed's control namespace."""
    testbed = ["exec", "--cgroup-prefix", PREFIX, "--bridge", BRIDGE, "--subnet", SUBNET, "--"]
    return [str(ROOT / ".venv/bin/python"), str(ROOT / "tests/testbed"), *testbed, str(ROOT / ".venv/bin/sty"), *args]


@dataclass
class FleetRun:
    tb: Testbed
    outdir: Path
    work: Path
    first_apply: subprocess.CompletedProcess
    timings: dict[str, float] = field(default_factory=dict)
    last_data: dict[str, Any] = field(default_factory=dict)  # the inventory the output directory was last built from

    # -- sty --------------------------------------------------------------------------------------
    def sty(self, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
        """sty in the control namespace with the testbed's SSH settings."""
        return subprocess.run(
            sty_argv(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL
        )

    def inventory(self) -> dict[str, Any]:
        return yaml.safe_load(INVENTORY.read_text())

    def variant(self, data: dict[str, Any]) -> Path:
        """A variant of conf/testbed.yml written to a file of its own (not in the output directory)."""
        source = self.work / "inventories" / f"variant-{time.monotonic_ns()}.yml"
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(yaml.safe_dump(data, sort_keys=False))
        return source

    def build(self, data: dict[str, Any] | None = None, *extra: str) -> subprocess.CompletedProcess:
        """Rebuild the output directory from conf/testbed.yml, or from a variant of it."""
        source = INVENTORY if data is None else self.variant(data)
        self.last_data = copy.deepcopy(data) if data is not None else self.inventory()
        return subprocess.run(
            [ROOT / ".venv/bin/sty", "build", "-q", "-i", source, "-o", self.outdir, *extra],
            capture_output=True,
            text=True,
        )

    def apply(self, target: str = "all", *extra: str) -> subprocess.CompletedProcess:
        result = self.sty("apply", "-o", str(self.outdir), "--yes", *extra, target)
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
        return result

    # -- hosts --------------------------------------------------------------------------------------
    def sh(self, ip: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.tb.host_exec(ip, command, timeout=timeout)

    def psql(self, ip: str, sql: str, db: str = "postgres") -> str:
        """One statement as the dbsu on a host's local socket; its unaligned output."""
        out = self.tb.host_exec(ip, ["runuser", "-u", "postgres", "--", "psql", "-AtXq", "-d", db, "-c", sql])
        assert out.returncode == 0, f"{ip}: psql {sql!r}: {out.stderr}"
        return out.stdout.strip()

    def members(self, cluster: str, via: str) -> list[dict[str, Any]]:
        """`patronictl list` as data, asked on `via` ([] when Patroni cannot answer there).

        While a link is cut patronictl can spend its whole retry budget on the unreachable etcd
        member; that is "no answer yet", not a failure of the probe.
        """
        try:
            out = self.tb.host_exec(
                via, ["patronictl", "-c", PATRONI_CONF, "list", "-e", "-f", "json", cluster], timeout=30
            )
        except subprocess.TimeoutExpired:
            return []
        try:
            return json.loads(out.stdout) if out.returncode == 0 else []
        except ValueError:
            return []

    def leader(self, cluster: str, via: str) -> str | None:
        """The address of the member Patroni reports as leader, asked on `via`."""
        for m in self.members(cluster, via):
            if m.get("Role") in ("Leader", "Standby Leader") and m.get("State") == "running":
                return str(m["Host"]).split(":")[0]
        return None

    def pending_restart(self, cluster: str, via: str) -> list[str]:
        return [m["Member"] for m in self.members(cluster, via) if m.get("Pending restart")]


@pytest.fixture(scope="session")
def fleet_testbed(tmp_path_factory) -> FleetRun:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("fleet")
    outdir = work / "outputs"
    tb = Testbed(INVENTORY, subnet=SUBNET, bridge=BRIDGE, cgroup_prefix=PREFIX)
    timings: dict[str, float] = {}
    started = time.monotonic()
    tb.up()
    timings["testbed up"] = time.monotonic() - started
    try:
        run = FleetRun(tb, outdir, work, subprocess.CompletedProcess([], 0), timings)
        built = run.build()
        assert built.returncode == 0, built.stderr
        started = time.monotonic()
        run.first_apply = run.sty("apply", "-o", str(outdir), "--yes", "all")
        timings["first apply"] = time.monotonic() - started
        yield run
    finally:
        if os.environ.get("STY_KEEP_TESTBED"):  # for a look after a failure: `python tests/testbed down` later
            print(f"\ntestbed kept (STY_KEEP_TESTBED): python tests/testbed down --cgroup-prefix {PREFIX}")
        else:
            started = time.monotonic()
            tb.down()
            print(f"\ntestbed down in {time.monotonic() - started:.1f}s")
