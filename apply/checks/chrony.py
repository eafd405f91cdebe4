"""chrony: `chronyd -p -f FILE` parses the configuration and prints it back.

Never `-q`/`-Q`: they contact the configured NTP servers. Runs under `unshare -n` all the same.
"""

from __future__ import annotations

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import joined, require, run, substitute, tmpdir


@register("chrony")
def check(ctx: CheckContext) -> CheckResult:
    require("chronyd", package="chrony")
    require("unshare", package="util-linux")
    path = ctx.files[0]
    with tmpdir("chrony") as tmp:
        conf = tmp / "chrony.conf"
        conf.write_text(substitute(ctx.path(path).read_text(), ctx.secret))
        proc = run(["unshare", "-n", "chronyd", "-p", "-f", str(conf)])
        out = joined(proc).replace(str(conf), path)
    ok = proc.returncode == 0 and not proc.stderr.strip()
    return CheckResult("chrony", ctx.files, PASS if ok else FAIL, out)
