"""etcd has no dry run: start it on the rendered etcd.conf (data-dir moved to a temp dir) inside a private
network namespace holding the member's addresses, and ask `etcdctl endpoint health` on its advertised client
URLs. The other members of its cluster are started too, from their own bundles (`ctx.peers`), so that the
cluster has quorum; their copies listen on their own addresses only (not 127.0.0.1, which every member of
a real cluster binds on its own machine). When a member's bundle is not at hand, the member is started
alone and passes once it serves its client port, which the result says (no quorum, no health).

Nothing here can reach the real fleet: every process runs in a namespace made for the check.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import Netns, StandinPki, joined, netns, require, stop, substitute, tmpdir, wait_for

CONF = "/etc/etcd/etcd.conf"
URL_KEYS = ("listen-client-urls", "listen-peer-urls", "advertise-client-urls", "initial-advertise-peer-urls")


def _urls(data: dict, key: str) -> list[str]:
    value = data.get(key) or ""
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(u).strip() for u in items if str(u).strip()]


def url_host(url: str) -> str:
    return re.sub(r"^\w+://", "", url).rsplit(":", 1)[0].strip("[]")


def url_port(url: str, default: int = 2379) -> int:
    tail = re.sub(r"^\w+://", "", url).rsplit(":", 1)
    return int(tail[1].split("/")[0]) if len(tail) == 2 and tail[1].split("/")[0].isdigit() else default


@dataclass
class Member:
    """One etcd.conf: the file's text and where it came from (a host address)."""

    host: str
    text: str

    @property
    def data(self) -> dict:
        try:
            data = yaml.safe_load(self.text)
        except yaml.YAMLError:
            return {}  # etcd itself says what is wrong with it
        return data if isinstance(data, dict) else {}

    @property
    def name(self) -> str:
        return str(self.data.get("name") or "")

    @property
    def client_urls(self) -> list[str]:
        return _urls(self.data, "advertise-client-urls")

    @property
    def initial_cluster(self) -> dict[str, str]:
        out = {}
        for item in _urls(self.data, "initial-cluster"):
            name, _, url = item.partition("=")
            out[name.strip()] = url.strip()
        return out

    def addresses(self) -> list[str]:
        """Every host address this member binds or advertises (they must exist in the namespace)."""
        data = self.data
        hosts = {url_host(u) for k in URL_KEYS for u in _urls(data, k)}
        return sorted(h for h in hosts if h and not h.startswith("127.") and h not in ("0.0.0.0", "localhost", "::"))


def cluster_of(member: Member, others: list[Member]) -> tuple[list[Member], list[str]]:
    """The members of `member`'s cluster found among `others` (by name and peer URL), and the names missing."""
    found, missing = [member], []
    for name, url in member.initial_cluster.items():
        if name == member.name:
            continue
        peer = next(
            (o for o in others if o.name == name and url in _urls(o.data, "initial-advertise-peer-urls")),
            None,
        )
        if peer is None:
            missing.append(name)
        else:
            found.append(peer)
    return found, missing


def peer_members(peers: dict[str, Path], secret, path: str = CONF) -> list[Member]:
    out = []
    for host, root in sorted(peers.items()):
        f = Path(root) / path.lstrip("/")
        if f.is_file():
            out.append(Member(host, substitute(f.read_text(), secret)))
    return out


TLS_SECTIONS = ("client-transport-security", "peer-transport-security")


def _copy(member: Member, tmp: Path, loopback: bool, pki: StandinPki, shared: list[str]) -> Path:
    """The member's file with data-dir (and wal-dir) moved into `tmp`; without loopback client listeners
    unless `loopback` (peers started beside the member under test); its TLS files (signed by the fleet CA at
    apply time, so not in the bundle) replaced by a certificate of the check's own CA for the same names."""
    data = member.data
    if not data:  # not a mapping: etcd itself says what is wrong with the file
        out = tmp / "etcd.conf"
        out.write_text(member.text)
        return out
    data["data-dir"] = str(tmp / "data-dir")
    if "wal-dir" in data:
        data["wal-dir"] = str(tmp / "wal-dir")
    if not loopback:
        urls = [u for u in _urls(data, "listen-client-urls") if not url_host(u).startswith("127.")]
        data["listen-client-urls"] = ",".join(urls)
    if any(isinstance(data.get(k), dict) for k in TLS_SECTIONS):
        # every member's addresses: the members share one namespace, whose kernel may pick any of them as the
        # source address of a peer connection, and etcd matches a peer's certificate against that address
        cert, key = pki.issue(member.name or member.host, [*member.addresses(), *shared, member.name, "127.0.0.1"])
        for section in TLS_SECTIONS:
            if isinstance(data.get(section), dict):
                files = {"cert-file": str(cert), "key-file": str(key), "trusted-ca-file": str(pki.ca)}
                data[section].update({k: v for k, v in files.items() if k in data[section]})
    out = tmp / "etcd.conf"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def etcdctl_health(ns: Netns, urls: list[str], pki: StandinPki | None = None) -> subprocess.CompletedProcess:
    """`etcdctl endpoint health`; over TLS as a client of the check's CA (etcd asks clients for a certificate
    when its client side trusts a CA, as Pigsty's and sty's configurations do)."""
    cmd = ["etcdctl", "--endpoints", ",".join(urls), "--dial-timeout=1s", "--command-timeout=2s", "endpoint", "health"]
    if pki is not None and any(u.startswith("https:") for u in urls):
        cert, key = pki.client()
        cmd[1:1] = ["--cacert", str(pki.ca), "--cert", str(cert), "--key", str(key)]
    return ns.run(cmd, env={**os.environ, "ETCDCTL_API": "3"})


@contextlib.contextmanager
def running(ns: Netns, members: list[Member], timeout: float = 20, health: bool = True) -> Iterator[tuple[bool, str]]:
    """Start `members` (the first as is, the others as peers) in `ns`; yields (ok, output) once every member
    is healthy (or, with health=False, once the first serves its client port)."""
    with contextlib.ExitStack() as stack:
        procs, logs = [], []
        pki = StandinPki(stack.enter_context(tmpdir("etcd-pki")))
        for i, m in enumerate(members):
            tmp = stack.enter_context(tmpdir("etcd"))
            conf = _copy(m, tmp, loopback=(i == 0), pki=pki, shared=[a for o in members for a in o.addresses()])
            log = tmp / "etcd.log"
            with open(log, "wb") as fh:
                procs.append(ns.popen(["etcd", "--config-file", str(conf)], stdout=fh, stderr=subprocess.STDOUT))
            logs.append((m, tmp, log))
            stack.callback(stop, procs[-1])
        first = members[0]
        urls = first.client_urls
        all_urls = [u for m in members for u in m.client_urls]
        last: list[subprocess.CompletedProcess] = []

        def ready() -> bool:  # etcdctl only once the port is open: it waits out its timeouts otherwise
            if any(p.poll() is not None for p in procs):
                return False
            if not ns.tcp_open(url_host(urls[0]), url_port(urls[0])):
                return False
            if not health:
                return True
            r = etcdctl_health(ns, all_urls, pki)
            last[:] = [r]
            return r.returncode == 0

        ok = bool(urls) and wait_for(ready, timeout, alive=procs[0])
        if ok and not health:  # a config error shows within moments of the start
            ok = not wait_for(lambda: procs[0].poll() is not None, 1.0)
        out = (joined(last[0]) if last else "" if urls else "no advertise-client-urls\n") + "".join(
            log.read_text(errors="replace").replace(str(tmp), "<tmp>") for m, tmp, log in (logs if not ok else logs[:1])
        )
        yield ok, out


@register("etcd")
def check(ctx: CheckContext) -> CheckResult:
    require("etcd", package="etcd-server")
    require("etcdctl", package="etcd-client")
    require("ip", package="iproute2")
    path = ctx.files[0] if ctx.files else CONF
    me = Member(ctx.host, substitute(ctx.path(path).read_text(), ctx.secret))
    members, missing = cluster_of(me, peer_members(ctx.peers, ctx.secret, path))
    if missing:
        members = [me]
    addresses = [ctx.host, *(a for m in members for a in m.addresses())]
    with netns(addresses) as ns, running(ns, members, health=not missing) as (ok, out):
        pass
    note = ""
    if missing:
        note = (
            f"members {', '.join(missing)} have no bundle here: started alone, its configuration was accepted "
            "but cluster health was not checked"
        )
    elif len(members) > 1:
        note = f"healthy with its {len(members) - 1} peer(s) started from their bundles"
    return CheckResult("etcd", ctx.files, PASS if ok else FAIL, out, note if ok else "")
