"""keepalived: `keepalived -t -l -f FILE` (configuration test, messages on the console) on a temporary copy.

keepalived refuses a configuration whose interfaces do not exist, so the test runs inside a private network
namespace made for it (`util.netns`) that has every interface the file names (`interface X`, `dev X`) as a
veth pair (Debian's kernel has no `dummy` links here), the host's address on the first of them. Nothing
leaves the namespace: `-t` only parses, and the namespace has no route out.

keepalived exits 5 on a configuration error; its warnings alone may leave 0, so any line it prints fails
the check. Secret placeholders become `ctx.secret(name)`; the runner's 18-character dummy would itself be
refused ("Truncating auth_pass to 8 characters"), so the dummy is replaced by an 8-character one.
"""

from __future__ import annotations

import os
import re

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import DUMMY_SECRET, Unavailable, joined, netns, require, substitute, tmpdir

CONF = "/etc/keepalived/keepalived.conf"
SHORT_DUMMY = "styDummy"  # keepalived uses 8 characters of a PASS
IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


def interfaces(text: str) -> list[str]:
    """Interface names the configuration refers to, in order of appearance."""
    found = re.findall(r"^\s*(?:interface|dev)\s+(\S+)", text, re.M)
    found += re.findall(r"\sdev\s+(\S+)", text)
    return [name for name in dict.fromkeys(found) if IFNAME.match(name)]


@register("keepalived")
def check(ctx: CheckContext) -> CheckResult:
    require("keepalived", package="keepalived")
    require("ip", package="iproute2")
    if os.geteuid() != 0:
        raise Unavailable("the keepalived check needs root: it makes a network namespace with the file's interfaces")

    def secret(name: str) -> str:
        value = ctx.secret(name)
        return SHORT_DUMMY if value == DUMMY_SECRET else value

    outputs, ok = [], True
    for path in ctx.files or (CONF,):
        text = substitute(ctx.path(path).read_text(), secret)
        with tmpdir("keepalived") as tmp, netns([]) as ns:
            for i, name in enumerate(interfaces(text)):
                ns.run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"sty-peer{i}"]).check_returncode()
                ns.run(["ip", "link", "set", name, "up"]).check_returncode()
                if i == 0:
                    ns.run(["ip", "addr", "add", f"{ctx.host}/32", "dev", name])
            cfg = tmp / "keepalived.conf"
            cfg.write_text(text)
            proc = ns.run(["keepalived", "-t", "-l", "-n", "-f", str(cfg)])
            out = joined(proc).replace(str(cfg), path).replace(str(tmp), os.path.dirname(path))
        good = proc.returncode == 0 and not out.strip()
        ok &= good
        outputs.append(out if out.strip() else f"{path}: keepalived -t: configuration OK\n")
        if proc.returncode != 0 and not out.strip():
            outputs.append(f"{path}: keepalived -t exited {proc.returncode}\n")
    return CheckResult("keepalived", ctx.files, PASS if ok else FAIL, "".join(outputs))
