"""ETCD: members change one at a time, in `etcd_seq` order, so the cluster keeps its quorum; a new cluster's
members all start at once (each waits for the others to form the quorum). The member started last runs the
authentication script (`etcd-auth`) when it changed, once every member runs."""

from __future__ import annotations

import shlex

from sty.contract.manifest import Manifest
from sty.contract.targets import host_key

from . import HostContext, ModuleHandlers

ACTION = "etcd-auth"


def authenticate(host: HostContext, module: str) -> None:
    for entry in host.manifest.files:
        if entry.module == module and any(a.action == ACTION for a in entry.actions):
            host.log(f"{module}: running {entry.path}")
            host.run(f"bash {shlex.quote(entry.path)}", timeout=300)


def _one_at_a_time(manifests: dict[str, Manifest]) -> list[list[str]]:
    seq = {ip: m.identity.get("etcd", {}).get("seq", 0) for ip, m in manifests.items()}
    return [[ip] for ip in sorted(manifests, key=lambda ip: (seq[ip], host_key(ip)))]


HANDLERS = ModuleHandlers("etcd", {ACTION: authenticate}, waves=_one_at_a_time, together_when_new=True)
