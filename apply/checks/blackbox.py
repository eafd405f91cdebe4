"""blackbox: `blackbox_exporter --config.file=F --config.check`, the exporter's own (strict) parser of its
modules. Runs under `unshare -n`."""

from __future__ import annotations

import shutil

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import joined, replace_paths, require, run, standin_certificates, substitute, tmpdir

PROGRAMS = ("prometheus-blackbox-exporter", "blackbox_exporter")  # Debian's name, upstream's name


@register("blackbox")
def check(ctx: CheckContext) -> CheckResult:
    program = next((p for p in PROGRAMS if shutil.which(p)), None)
    if program is None:
        require(PROGRAMS[0], package="prometheus-blackbox-exporter")
    require("unshare", package="util-linux")
    path = ctx.files[0]
    with tmpdir("blackbox") as tmp:
        text = substitute(ctx.path(path).read_text(), ctx.secret)
        standins, notes = standin_certificates(ctx.manifest, [text], tmp)
        conf = tmp / "blackbox.yml"
        conf.write_text(replace_paths(text, standins))
        proc = run(["unshare", "-n", program, f"--config.file={conf}", "--config.check"])
        out = joined(proc).replace(str(conf), path)
    ok = proc.returncode == 0 and "Config file is ok" in out
    return CheckResult("blackbox", ctx.files, PASS if ok else FAIL, out, "; ".join(notes))
