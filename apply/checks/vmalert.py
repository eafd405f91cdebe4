"""vmalert: `vmalert -dryRun -rule=DIR/*.yml`, VictoriaMetrics' own parser of the alerting and recording
rules (MetricsQL expressions, templates in annotations). Runs under `unshare -n` (a dry run contacts
nothing; the namespace makes sure)."""

from __future__ import annotations

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import joined, require, run, substitute, tmpdir


@register("vmalert")
def check(ctx: CheckContext) -> CheckResult:
    require("vmalert", package="victoria-metrics")
    require("unshare", package="util-linux")
    with tmpdir("vmalert") as tmp:
        names: dict[str, str] = {}
        for path in ctx.files:
            src = ctx.path(path)
            files = sorted(src.glob("*.y*ml")) if src.is_dir() else [src]
            for f in files:
                dst = tmp / f"{len(names):03d}-{f.name}"
                dst.write_text(substitute(f.read_text(), ctx.secret))
                names[str(dst)] = f"{path.rstrip('/')}/{f.name}" if src.is_dir() else path
        if not names:
            return CheckResult("vmalert", ctx.files, FAIL, "no rule files among the files")
        rules = [f"-rule={name}" for name in names]
        proc = run(["unshare", "-n", "vmalert", "-dryRun", *rules, "-loggerLevel=ERROR"])
        out = joined(proc)
        for tmp_name, host_path in names.items():
            out = out.replace(tmp_name, host_path)
    ok = proc.returncode == 0 and not out.strip()
    return CheckResult("vmalert", ctx.files, PASS if ok else FAIL, out)
