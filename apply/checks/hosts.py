"""/etc/hosts (sty's marked block): dnsmasq reads it as an additional hosts file and says what it cannot
use ("bad address at … line N", "bad name at …"); the number of names it reports reading must match the
file's. dnsmasq runs in the foreground with no upstream servers, on a loopback port, under `unshare -n`,
and is stopped as soon as it has read the file."""

from __future__ import annotations

import subprocess

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import free_port, require, stop, substitute, tmpdir, wait_for

HOSTS = "/etc/hosts"


def expected_names(text: str) -> int:
    """Names on the file's records (comments and blank lines ignored), as dnsmasq counts them."""
    count = 0
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        count += max(len(fields) - 1, 0)
    return count


@register("hosts")
def check(ctx: CheckContext, timeout: float = 10) -> CheckResult:
    require("dnsmasq", package="dnsmasq-base")
    require("unshare", package="util-linux")
    require("ip", package="iproute2")
    path = ctx.files[0] if ctx.files else HOSTS
    text = substitute(ctx.path(path).read_text(), ctx.secret)
    with tmpdir("hosts") as tmp:
        hosts = tmp / "hosts"
        hosts.write_text(text)
        log = tmp / "dnsmasq.log"
        port = free_port()
        cmd = (
            f"ip link set lo up && exec dnsmasq -d --conf-file=/dev/null --no-hosts --no-resolv --pid-file= "
            f"--addn-hosts={hosts} --port {port} --listen-address=127.0.0.1 --bind-interfaces"
        )
        with open(log, "wb") as fh:
            proc = subprocess.Popen(["unshare", "-n", "sh", "-c", cmd], stdout=fh, stderr=subprocess.STDOUT)
        try:
            done = wait_for(lambda: f"read {hosts}" in log.read_text(errors="replace"), timeout, alive=proc)
        finally:
            stop(proc)
        out = log.read_text(errors="replace").replace(str(hosts), path)
    lines = [line for line in out.splitlines() if "exiting on receipt" not in line]
    bad = [line for line in lines if "bad address" in line or "bad name" in line or "failed" in line]
    if not done:
        bad.append(f"dnsmasq did not read {path} (it exited or took longer than {timeout}s)")
    else:
        read = next((line for line in lines if f"read {path}" in line), "")
        want = expected_names(text)
        if f"- {want} names" not in read and not bad:
            bad.append(f"dnsmasq read a different number of names than the file's {want}: {read}")
    return CheckResult("hosts", ctx.files, FAIL if bad else PASS, "\n".join(bad + ([""] if bad else []) + lines))
