"""shellcheck: the bundle's bash scripts (PGSQL's /pg/bin tools), judged by `bash -n` and by ShellCheck.

`bash -n` is the shell itself parsing each script; ShellCheck (`-s bash -S warning`, no rc file) finds what
parses but misbehaves: unquoted expansions, unset variables, commands whose failure goes unnoticed. Warnings
and errors fail the check; ShellCheck's info and style notes do not. Secrets are substituted as for every
checker (the scripts carry none). Nothing is executed.
"""

from __future__ import annotations

from pathlib import Path

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import joined, require, run, substitute, tmpdir

SHELLCHECK = ["shellcheck", "--shell=bash", "--severity=warning", "--norc", "--format=gcc"]


def judge(copies: dict[Path, str]) -> tuple[bool, str]:
    """(whether bash and ShellCheck accept every copy, what they said with host paths in place of the copies')."""
    said: list[str] = []
    ok = True
    for copy in copies:
        syntax = run(["bash", "-n", str(copy)])
        if syntax.returncode != 0:
            ok = False
            said.append(joined(syntax).strip())
    lint = run([*SHELLCHECK, *map(str, copies)], timeout=120)  # one process for all: it starts slowly
    ok = ok and lint.returncode == 0
    said.append(joined(lint).strip())
    text = "\n".join(s for s in said if s)
    for copy, host_path in sorted(copies.items(), key=lambda kv: -len(str(kv[0]))):
        text = text.replace(str(copy), host_path)
    return ok, text or f"{', '.join(copies.values())}: bash -n and shellcheck found nothing"


@register("shellcheck")
def check(ctx: CheckContext) -> CheckResult:
    require("bash", package="bash")
    require("shellcheck", package="shellcheck")
    with tmpdir("shellcheck") as tmp:
        copies: dict[Path, str] = {}
        for i, path in enumerate(ctx.files):
            copy = tmp / f"{i}-{Path(path).name}"
            copy.write_text(substitute(ctx.path(path).read_text(), ctx.secret))
            copies[copy] = path
        ok, output = judge(copies)
    return CheckResult("shellcheck", ctx.files, PASS if ok else FAIL, output)
