"""ETCD: members change one at a time, in `etcd_seq` order, so the cluster keeps its quorum."""

from __future__ import annotations

from sty.contract.manifest import Manifest
from sty.contract.targets import host_key

from . import ModuleHandlers


def _one_at_a_time(manifests: dict[str, Manifest]) -> list[list[str]]:
    seq = {ip: m.identity.get("etcd", {}).get("seq", 0) for ip, m in manifests.items()}
    return [[ip] for ip in sorted(manifests, key=lambda ip: (seq[ip], host_key(ip)))]


HANDLERS = ModuleHandlers("etcd", waves=_one_at_a_time)
