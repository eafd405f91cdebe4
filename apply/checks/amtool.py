"""amtool: `amtool check-config`, Alertmanager's own parser of alertmanager.yml (routes, receivers,
inhibit rules, matchers). It only parses."""

from __future__ import annotations

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import joined, replace_paths, require, run, standin_certificates, substitute, tmpdir


@register("amtool")
def check(ctx: CheckContext) -> CheckResult:
    require("amtool", package="prometheus-alertmanager")
    path = ctx.files[0]
    with tmpdir("amtool") as tmp:
        text = substitute(ctx.path(path).read_text(), ctx.secret)
        standins, notes = standin_certificates(ctx.manifest, [text], tmp)
        conf = tmp / "alertmanager.yml"
        conf.write_text(replace_paths(text, standins))
        proc = run(["amtool", "check-config", str(conf)])
        out = joined(proc).replace(str(conf), path)
    ok = proc.returncode == 0 and "SUCCESS" in out and "FAILED" not in out
    return CheckResult("amtool", ctx.files, PASS if ok else FAIL, out, "; ".join(notes))
