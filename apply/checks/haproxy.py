"""haproxy: `haproxy -c` on haproxy.cfg plus every file of conf.d/, as the unit loads them.

Zero-warning mode (`-dW`): haproxy's warnings alone leave the exit code 0, and `-q` would hide them.
Secrets are replaced by `ctx.secret`. Runs under `unshare -n`: server addresses are IPs and are only parsed.
"""

from __future__ import annotations

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import joined, replace_paths, require, run, standin_certificates, substitute, tmpdir

CFG, CONFD = "/etc/haproxy/haproxy.cfg", "/etc/haproxy/conf.d"


@register("haproxy")
def check(ctx: CheckContext) -> CheckResult:
    require("haproxy", package="haproxy")
    require("unshare", package="util-linux")
    cfg_path = next((f for f in ctx.files if f.endswith(".cfg")), CFG)
    confd_path = next((f for f in ctx.files if not f.endswith(".cfg")), CONFD)
    src_confd = ctx.path(confd_path)
    with tmpdir("haproxy") as tmp:
        cfg, confd = tmp / "haproxy.cfg", tmp / "conf.d"
        texts = {cfg: substitute(ctx.path(cfg_path).read_text(), ctx.secret)}
        for f in sorted(src_confd.glob("*")) if src_confd.is_dir() else []:
            texts[confd / f.name] = substitute(f.read_text(), ctx.secret)
        standins, notes = standin_certificates(ctx.manifest, list(texts.values()), tmp)
        confd.mkdir()
        for dst, text in texts.items():
            dst.write_text(replace_paths(text, standins))
        proc = run(["unshare", "-n", "haproxy", "-c", "-dW", "-f", str(cfg), "-f", str(confd)])
        out = joined(proc).replace(str(confd), confd_path.rstrip("/")).replace(str(cfg), cfg_path)
        for host_path, standin in standins.items():
            out = out.replace(standin, host_path)
        out = out.replace(str(tmp), "/etc/haproxy")
    ok = proc.returncode == 0 and "[ALERT]" not in out and "[WARNING]" not in out
    return CheckResult("haproxy", ctx.files, PASS if ok else FAIL, out, "; ".join(notes))
