"""The check runner shared by `sty lint` (on the build machine) and `sty apply` (on the host).

Each checker lives in its own module `apply/checks/<name>.py` and registers a function
`check(ctx: CheckContext) -> CheckResult` under the name the manifests use in
`checks: [{checker, files, where}]`. A checker runs the real program on a temporary copy of
the files (secret placeholders replaced by `ctx.secret(name)`), inside a private network
namespace whenever the program could open a connection to an address in the files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass
class CheckContext:
    root: Path  # the host's files as the bundle has them: `root / "etc/patroni/patroni.yml"`
    host: str  # the host's address
    manifest: dict[str, Any]  # the host's manifest (outputs/<host>.yml)
    files: tuple[str, ...]  # absolute host paths this check covers
    secret: Callable[[str], str] = lambda name: "sty-Dummy-Secret-0"
    peers: dict[str, Path] = field(default_factory=dict)  # other hosts' roots (e.g. etcd members for Patroni)

    def path(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")


@dataclass
class CheckResult:
    checker: str
    files: tuple[str, ...]
    status: str  # pass | fail | skip
    output: str = ""  # what the program said (its own words)
    reason: str = ""  # why skipped, or "verified against a stub executable"

    @property
    def ok(self) -> bool:
        return self.status != FAIL


CheckFn = Callable[[CheckContext], CheckResult]
CHECKERS: dict[str, CheckFn] = {}


def register(name: str) -> Callable[[CheckFn], CheckFn]:
    def wrap(fn: CheckFn) -> CheckFn:
        CHECKERS[name] = fn
        return fn

    return wrap


# checker modules that failed to import: module name -> the error (the runner reports them, never hides them)
LOAD_ERRORS: dict[str, str] = {}
_NOT_CHECKERS = {"util", "runner"}


def load_all() -> dict[str, CheckFn]:
    """Import every checker module of this package (each registers its checkers) and return CHECKERS."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_CHECKERS or info.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"{__name__}.{info.name}")
        except Exception as exc:  # a checker being written must not take the others down
            LOAD_ERRORS[info.name] = f"{type(exc).__name__}: {exc}"
    return CHECKERS
