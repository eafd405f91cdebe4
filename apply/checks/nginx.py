"""nginx: `nginx -t` on the bundle's nginx.conf and every server of conf.d/, as nginx loads them.

The files are copied under a temporary prefix and their paths rewritten into it: /etc/nginx/ (includes,
htpasswd), /var/log/nginx/ and the pid file, so nothing on this machine is touched. What nginx needs
and the bundle does not carry:
- certificates: the fleet CA and the manifest's certificates are provided by the apply stage; other
  certificate files are used where they exist on this machine; anything else gets a stand-in, and the
  result says so;
- mime.types: the one installed with nginx here (or an empty types block);
- names in `proxy_pass`/`server` (upstreams), which `nginx -t` resolves: the check runs in a private
  network and mount namespace (`unshare -n -m`) whose /etc/hosts maps each such name to 127.0.0.1, so
  no lookup leaves the machine;
- the worker `user`: kept when it exists here, else replaced by `nobody` (noted).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from pathlib import Path

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import joined, replace_paths, require, run, standin_certificates, substitute, tmpdir

MAIN = "/etc/nginx/nginx.conf"
PREFIX = "/etc/nginx/"
_CERT = re.compile(r"^\s*ssl_(?:certificate|certificate_key|trusted_certificate|client_certificate)\s+(\S+?);", re.M)
_UPSTREAM = re.compile(r"^\s*upstream\s+(\S+)\s*\{", re.M)
_SERVER = re.compile(r"^\s*server\s+([^\s;:]+)(?::\d+)?[\s;]", re.M)
_PROXY = re.compile(r"proxy_pass\s+[a-z]+://([^/:;$\s]+)", re.M)
_USER = re.compile(r"^(\s*user\s+)(\S+?)((?:\s+\S+)?;)", re.M)
_IP = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]|unix)$")


def _bundle_files(ctx: CheckContext) -> dict[str, Path]:
    """Host path -> bundle file, for every file the check covers (directories expanded)."""
    out: dict[str, Path] = {}
    for path in ctx.files or (MAIN,):
        src = ctx.path(path)
        if src.is_dir():
            for f in sorted(p for p in src.rglob("*") if p.is_file()):
                out[f"{path.rstrip('/')}/{f.relative_to(src)}"] = f
        elif src.is_file():
            out[path] = src
    return out


def _names(texts: list[str]) -> list[str]:
    """Host names nginx would resolve: upstream servers and proxy_pass hosts that are no upstream."""
    upstreams = {m for t in texts for m in _UPSTREAM.findall(t)}
    names = set()
    for t in texts:
        for block in re.findall(r"upstream\s+\S+\s*\{([^}]*)\}", t):
            names.update(_SERVER.findall(block))
        names.update(_PROXY.findall(t))
    return sorted(n for n in names - upstreams if not _IP.match(n) and n != "localhost")


@register("nginx")
def check(ctx: CheckContext) -> CheckResult:
    require("nginx", package="nginx-light")
    require("unshare", package="util-linux")
    files = _bundle_files(ctx)
    main = next((p for p in files if p.endswith("nginx.conf")), MAIN)
    if main not in files:
        return CheckResult("nginx", ctx.files, FAIL, f"{main}: no such file in the bundle")
    notes: list[str] = []
    with tmpdir("nginx") as tmp:
        root = tmp / "root"
        texts = {path: substitute(src.read_text(), ctx.secret) for path, src in files.items()}
        standins, notes = standin_certificates(ctx.manifest, list(texts.values()), tmp)
        # certificates neither in the bundle nor provided by the apply stage: real file here, else a stand-in
        for cert in sorted({c for t in texts.values() for c in _CERT.findall(t)}):
            if cert in standins or cert in texts or Path(cert).exists():
                continue
            extra = tmp / f"extra-{len(standins)}"
            extra.mkdir()
            other, more = standin_certificates({"certificates": [{"cert": cert}]}, [cert], extra)
            standins.update(other)
            notes += [n.replace("is provided by the apply stage", "is not on this machine") for n in more]
        moved = {PREFIX: f"{root}{PREFIX}", "/var/log/nginx/": f"{tmp}/log/", "/run/nginx.pid": f"{tmp}/nginx.pid"}
        for path, text in texts.items():
            text = replace_paths(text, standins)
            text = replace_paths(text, moved)
            dst = root / path.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(text)
        mime = root / "etc/nginx/mime.types"
        if not mime.exists():
            here = Path("/etc/nginx/mime.types")
            mime.write_text(here.read_text() if here.exists() else "types {}\n")
        (tmp / "log").mkdir()
        conf = root / main.lstrip("/")
        text = conf.read_text()
        m = _USER.search(text)
        if m:
            try:
                pwd.getpwnam(m.group(2))
            except KeyError:
                me = f"{pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name}"
                conf.write_text(text[: m.start(2)] + me + text[m.end(3) - 1 :])
                notes.append(f"worker user {m.group(2)} does not exist here: checked as {me}")
        hosts = tmp / "hosts"
        names = _names(list(texts.values()))
        hosts.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {n}\n" for n in names))
        if names:
            notes.append("upstream names resolved to 127.0.0.1 in the check's namespace: " + ", ".join(names))
        script = 'mount --bind "$1" /etc/hosts && exec nginx -t -q -e stderr -p "$2/" -c "$3"'
        proc = run(["unshare", "-n", "-m", "sh", "-c", script, "sh", str(hosts), str(tmp), str(conf)])
        out = joined(proc)
        for host_path, standin in standins.items():
            out = out.replace(standin, host_path)
        out = out.replace(f"{root}/", "/").replace(f"{tmp}/log/", "/var/log/nginx/").replace(str(tmp), "")
    ok = proc.returncode == 0 and "[emerg]" not in out and "[warn]" not in out
    return CheckResult("nginx", ctx.files, PASS if ok else FAIL, out, "; ".join(notes))
