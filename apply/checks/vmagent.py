"""vmagent: `vmagent -promscrape.config=F -promscrape.config.dryRun`, VictoriaMetrics' own parser of the
scrape config (strict: it rejects the Prometheus-only keys rule_files, alerting, evaluation_interval and
file_sd refresh_interval). It does not read file_sd files (promtool does). It reads TLS files: the fleet CA
and manifest certificates get stand-ins. Runs under `unshare -n`.
"""

from __future__ import annotations

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import joined, replace_paths, require, run, standin_certificates, substitute, tmpdir


@register("vmagent")
def check(ctx: CheckContext) -> CheckResult:
    require("vmagent", package="victoria-metrics")
    require("unshare", package="util-linux")
    path = ctx.files[0]
    with tmpdir("vmagent") as tmp:
        text = substitute(ctx.path(path).read_text(), ctx.secret)
        standins, notes = standin_certificates(ctx.manifest, [text], tmp)
        conf = tmp / "prometheus.yml"
        conf.write_text(replace_paths(text, standins))
        cmd = ["vmagent", f"-promscrape.config={conf}", "-promscrape.config.dryRun", "-loggerLevel=ERROR"]
        proc = run(["unshare", "-n", *cmd])
        out = joined(proc).replace(str(conf), path)
        for host_path, standin in standins.items():
            out = out.replace(standin, host_path)
    ok = proc.returncode == 0 and "error" not in out.lower()
    return CheckResult("vmagent", ctx.files, PASS if ok else FAIL, out, "; ".join(notes))
