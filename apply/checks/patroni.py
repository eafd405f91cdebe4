"""Patroni: `patroni --validate-config` in a private network namespace.

The validator TCP-connects to the DCS endpoints and probes the listen addresses, so it runs in a namespace
made for the check that holds the host's address and every etcd endpoint's address. An endpoint served by an
etcd member whose bundle is at hand (`ctx.peers`, or this host's own) is a real etcd cluster started from
those bundles (all of its members, for quorum); any other endpoint gets a stand-in TCP listener. Secrets are
replaced by `ctx.secret`.

A bin_dir for a PostgreSQL major version this machine cannot install (18 on Debian 12) is checked as the
bin_dir of an installed version, which the result says; a missing bin_dir of an installable or installed
version is left to Patroni to report.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import yaml

from . import FAIL, PASS, CheckContext, CheckResult, register
from .etcd import CONF as ETCD_CONF
from .etcd import Member, cluster_of, peer_members, running
from .util import (
    NotInstalled,
    Unavailable,
    joined,
    netns,
    pg_bin,
    pg_installed,
    pg_version,
    require,
    substitute,
    tmpdir,
    wait_for,
)

PATRONI = "/etc/patroni/patroni.yml"

LISTENER = """
import socket, sys, time
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
while True:
    c, _ = s.accept(); c.close()
"""


def dcs_endpoints(conf: dict) -> list[tuple[str, int]]:
    for key in ("etcd3", "etcd"):
        dcs = conf.get(key) or {}
        hosts = (dcs.get("hosts") or dcs.get("host") or []) if isinstance(dcs, dict) else []
        if isinstance(hosts, str):
            hosts = hosts.split(",")
        out = []
        for h in hosts:
            addr, _, port = str(h).strip().rpartition(":")
            if addr and port.isdigit():
                out.append((addr.strip("[]"), int(port)))
        if out:
            return out
    return []


def _bin_dir(text: str, conf: dict, manifest: dict) -> tuple[str, str]:
    """(text, note): the file, with bin_dir moved to an installed version's when the bundle's version cannot
    be installed here."""
    bin_dir = str((conf.get("postgresql") or {}).get("bin_dir") or "")
    if not bin_dir or Path(bin_dir).is_dir():
        return text, ""
    version = pg_version(manifest, bin_dir)
    if version is None:
        return text, ""
    try:
        pg_bin(version)
        return text, ""  # installed (or NotInstalled): Patroni judges the path
    except Unavailable as exc:
        have = pg_installed()
        if not have:
            raise NotInstalled("postgres", "postgresql") from None
        new = str(have[max(have)])
        text = re.sub(rf"^(\s*bin_dir:\s*){re.escape(bin_dir)}\s*$", rf"\g<1>{new}", text, flags=re.M)
        return text, f"bin_dir {bin_dir} checked as {new}: {exc}"


@register("patroni")
def check(ctx: CheckContext) -> CheckResult:
    require("patroni", package="patroni")
    require("ip", package="iproute2")
    path = ctx.files[0] if ctx.files else PATRONI
    text = substitute(ctx.path(path).read_text(), ctx.secret)
    try:
        conf = yaml.safe_load(text)
    except yaml.YAMLError:
        conf = None
    conf = conf if isinstance(conf, dict) else {}
    text, note = _bin_dir(text, conf, ctx.manifest)
    endpoints = dcs_endpoints(conf)

    # etcd members with a bundle: this host's own and its peers'
    etcds = peer_members(ctx.peers, ctx.secret)
    own = ctx.path(ETCD_CONF)
    if own.is_file():
        etcds.insert(0, Member(ctx.host, substitute(own.read_text(), ctx.secret)))
    cluster: list[Member] = []
    for m in etcds:
        if any(f"{h}:{p}" in u for u in m.client_urls for h, p in endpoints):
            found, missing = cluster_of(m, [o for o in etcds if o is not m])
            if not missing:
                cluster = found
            break
    served = {(h, p) for h, p in endpoints if any(u.endswith(f"{h}:{p}") for m in cluster for u in m.client_urls)}
    addresses = [ctx.host, *(h for h, _ in endpoints), *(a for m in cluster for a in m.addresses())]
    notes = [note] if note else []
    with tmpdir("patroni") as tmp, netns(addresses) as ns, contextlib.ExitStack() as stack:
        (tmp / "patroni.yml").write_text(text)
        if cluster:
            ok, out = stack.enter_context(running(ns, cluster))
            if not ok:
                hosts = ", ".join(m.host for m in cluster)
                return CheckResult("patroni", ctx.files, FAIL, f"the etcd cluster of {hosts} did not start:\n{out}")
            notes.append(f"DCS: a real etcd cluster started from the bundles of {', '.join(m.host for m in cluster)}")
        for h, p in endpoints:
            if (h, p) in served:
                continue
            ns.popen([sys.executable, "-c", LISTENER, h, str(p)])
            if not wait_for(lambda h=h, p=p: ns.tcp_open(h, p), 10):
                return CheckResult("patroni", ctx.files, FAIL, f"stand-in listener on {h}:{p} did not start")
            notes.append(f"DCS: a stand-in TCP listener on {h}:{p}")
        proc = ns.run(["patroni", "--validate-config", str(tmp / "patroni.yml")], timeout=60)
        out = joined(proc).replace(str(tmp / "patroni.yml"), path).replace(str(tmp), str(Path(path).parent))
    return CheckResult("patroni", ctx.files, PASS if proc.returncode == 0 else FAIL, out, "; ".join(notes))
