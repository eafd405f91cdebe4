"""Run a host's manifest checks through the registered checkers.

`sty lint` runs the `build` and `both` checks on the build machine (inside a private network namespace per
host, see apply/lint.py); the apply stage runs the `host` and `both` checks on the staged files on the host.

Outcomes besides the checker's own verdict:
- a checker name nobody registered: skip, "no checker named X";
- a program the check needs is missing: skip, "program X is not installed" — a failure when the environment
  variable CI is set (CI must skip nothing);
- the bundle asks for something this machine cannot install (PostgreSQL 18 on Debian 12, an extension no
  package provides): skip with that reason;
- a checker that raises: a failure with the traceback (a checker bug must not pass as a skip).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from . import CHECKERS, FAIL, LOAD_ERRORS, SKIP, CheckContext, CheckResult, load_all
from .util import DUMMY_SECRET, NOT_INSTALLED, NotInstalled, Unavailable, ci

LINT_WHERE = frozenset({"build", "both"})
HOST_WHERE = frozenset({"host", "both"})


def dummy_secret(name: str) -> str:
    return DUMMY_SECRET


def run_check(ctx: CheckContext, checker: str) -> CheckResult:
    """One check through the registry, with the runner's rules for unknown checkers and missing programs."""
    load_all()
    fn = CHECKERS.get(checker)
    if fn is None:
        reason = f"no checker named {checker}"
        if LOAD_ERRORS:  # a checker module that does not import is a failure, not a silent skip
            errors = "; ".join(f"apply/checks/{m}.py: {e}" for m, e in sorted(LOAD_ERRORS.items()))
            return CheckResult(checker, ctx.files, FAIL, f"checker modules failed to import: {errors}", reason)
        return CheckResult(checker, ctx.files, SKIP, reason=reason)
    try:
        result = fn(ctx)
    except NotInstalled as exc:
        result = CheckResult(checker, ctx.files, SKIP, reason=str(exc))
    except Unavailable as exc:
        result = CheckResult(checker, ctx.files, SKIP, reason=str(exc))
    except Exception:
        return CheckResult(checker, ctx.files, FAIL, traceback.format_exc(), "the checker crashed")
    if result.status == SKIP and NOT_INSTALLED.match(result.reason or "") and ci():
        result.status = FAIL
        result.output = (result.output + "\n" if result.output else "") + f"CI must skip nothing: {result.reason}"
    return result


def run_host_checks(
    root: Path,
    manifest: dict,
    where: Iterable[str],
    secret: Callable[[str], str] = dummy_secret,
    peers: dict[str, Path] | None = None,
    only: Iterable[str] | None = None,
) -> list[CheckResult]:
    """Every check of `manifest` whose `where` is in `where`, in manifest order (`only`: these checkers)."""
    where = set(where)
    only = set(only) if only is not None else None
    results = []
    for check in manifest.get("checks") or []:
        if check.get("where", "both") not in where:
            continue
        if only is not None and check["checker"] not in only:
            continue
        ctx = CheckContext(
            root=Path(root),
            host=str(manifest.get("address") or Path(root).name),
            manifest=manifest,
            files=tuple(check.get("files") or ()),
            secret=secret,
            peers=dict(peers or {}),
        )
        results.append(run_check(ctx, check["checker"]))
    return results
