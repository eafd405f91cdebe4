"""One module phase across the hosts: its waves in order, then the steps a module defers until every host of
the phase has its new files (a rolling restart needs every member reloaded first), one host at a time.
Kept apart from run.py's SSH work so that the order is tested without hosts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Protocol

from sty.contract.manifest import Manifest

from . import plan as P
from .bundle import ApplyError
from .handlers import deferred_order, is_deferred
from .remote import RemoteError


def split_deferred(steps: list[P.Step]) -> tuple[list[P.Step], list[P.Step]]:
    """The steps to run now, and those a module defers until every host of the phase has its files."""
    return [s for s in steps if not is_deferred(s.kind)], [s for s in steps if is_deferred(s.kind)]


class Deferring(Protocol):
    """What the phase runner needs of a host (implemented by HostRun)."""

    deferred: dict[str, list[P.Step]]

    @property
    def manifest(self) -> Manifest: ...

    def run_deferred(self, step: P.Step, module: str) -> None: ...


def run_deferred(module: str, runs: Mapping[str, Deferring], log: Callable[[str, str], None]) -> list[str]:
    """The phase's deferred steps, one host at a time in the module's order; the first failure stops them."""
    holding = {ip: run for ip, run in runs.items() if run.deferred.get(module)}
    for ip in deferred_order(module, {ip: run.manifest for ip, run in holding.items()}):
        for step in holding[ip].deferred.pop(module):
            try:
                holding[ip].run_deferred(step, module)
            except (ApplyError, RemoteError) as exc:
                log(ip, f"FAILED: {exc}")
                return [str(exc)]
    return []


def run_phase(
    module: str,
    plan_waves: list[list[str]],
    start: Callable[[str], Future],
    runs: Mapping[str, Deferring],
    log: Callable[[str, str], None],
) -> tuple[list[str], set[str]]:
    """One module phase: its waves in order (`start` runs a host's part of a wave, hosts of a wave in
    parallel), then, only when every host succeeded, the deferred steps. Returns failures and failed hosts;
    a host whose deferred step failed is not among them: its files are applied (and recorded)."""
    failures: list[str] = []
    failed: set[str] = set()
    for wave in plan_waves:
        futures = {ip: start(ip) for ip in wave}
        for ip, fut in futures.items():
            try:
                fut.result()
            except (ApplyError, RemoteError) as exc:
                failures.append(str(exc))
                failed.add(ip)
                log(ip, f"FAILED: {exc}")
    if not failures:
        failures += run_deferred(module, runs, log)
    return failures, failed
