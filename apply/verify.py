"""`sty verify TARGET`: prove the applied state with pytest-testinfra, checks generated from the manifests.

verify_tests.py gathers every host's facts in one round trip each, hosts in parallel; `Progress` replaces pytest's
dots by one line per host once its checks are judged (pytest's failure report and summary stay as they are).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from .bundle import Bundle, select_hosts
from .remote import SshOptions

TESTS = Path(__file__).with_name("verify_tests.py")


class Progress:
    """A pytest plugin: `verify ADDRESS: N checks passed` (or how many failed, in which tests) per host."""

    def __init__(self) -> None:
        self.host_of: dict[str, str] = {}  # test id -> host address
        self.total: Counter[str] = Counter()
        self.done: Counter[str] = Counter()
        self.checks: Counter[str] = Counter()
        self.failed_checks: Counter[str] = Counter()
        self.failed_tests: dict[str, list[str]] = defaultdict(list)
        self.skipped: Counter[str] = Counter()
        self.config: pytest.Config | None = None

    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            host = getattr(item, "callspec", None) and item.callspec.params.get("_testinfra_host")
            address = host.backend.hostname if host is not None else "?"
            self.host_of[item.nodeid] = address
            self.total[address] += 1

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config) -> Any:
        """No dots: the outcome still counts in pytest's summary, the per-host line says the rest."""
        if report.when == "call":
            return report.outcome, "", report.outcome.upper()
        if report.failed:
            return "error", "", "ERROR"
        if report.skipped:
            return "skipped", "", "SKIPPED"
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        address = self.host_of.get(report.nodeid, "?")
        judged = dict(report.user_properties).get("sty_checks")
        name = report.nodeid.split("::")[-1].split("[")[0]
        if report.failed:
            checks, failed = judged if judged and report.when == "call" else (1, 1)
            self.failed_tests[address].append(name)
            self.failed_checks[address] += failed
            self.checks[address] += checks
        elif report.when == "call" and judged:
            self.checks[address] += judged[0]
        if report.skipped:
            self.skipped[address] += 1
        if report.when == "teardown":
            self.done[address] += 1
            if self.done[address] == self.total[address]:
                self.host_line(address)

    def host_line(self, address: str) -> None:
        tests, skipped, checks = self.total[address], self.skipped[address], self.checks[address]
        failed = self.failed_checks[address]
        if failed:
            line = f"{failed} of {checks} checks failed ({', '.join(self.failed_tests[address])})"
        else:
            line = f"{checks} checks passed ({tests - skipped} tests, {skipped} not applicable)"
        reporter = self.config and self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"verify {address}: {line}")


def verify(
    outdir: Path,
    target: str | None,
    ssh: SshOptions | None = None,
    extra: list[str] | None = None,
    jobs: int | None = None,
) -> int:
    """Run the generated checks against every selected host; pytest's exit code (0 = all green). `jobs`: hosts
    gathered at once (default min(16, hosts))."""
    ssh = ssh or SshOptions.from_env()
    hosts = select_hosts(Path(outdir), target)
    specs = []
    for ip in hosts:
        specs.append(f"paramiko://{Bundle.load(Path(outdir), ip).manifest.ssh.user}@{ip}")
    args = [str(TESTS), "-q", "-p", "no:cacheprovider", "--rootdir", str(TESTS.parent), f"--hosts={','.join(specs)}"]
    # only testinfra's plugin and plain asserts: other installed plugins and assertion rewriting cost seconds
    args += ["-p", "testinfra.plugin", "--assert=plain", "-o", "console_output_style=classic"]
    if ssh.config:
        args.append(f"--ssh-config={ssh.config}")
    if ssh.identity:
        args.append(f"--ssh-identity-file={ssh.identity}")
    os.environ["STY_VERIFY_OUTDIR"] = str(Path(outdir).resolve())
    os.environ["STY_VERIFY_JOBS"] = str(jobs or min(16, len(hosts)))
    autoload = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        return int(pytest.main([*args, *(extra or [])], plugins=[Progress()]))
    finally:
        if autoload is None:
            del os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"]
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = autoload
