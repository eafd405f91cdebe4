"""MINIO: buckets, users and policies, provisioned once from the member the compiler chose."""

from __future__ import annotations

import shlex

from . import HostContext, ModuleHandlers


def provision(host: HostContext, module: str) -> None:
    if host.manifest.identity.get("minio", {}).get("provision_on") != host.ip:
        return
    for entry in host.manifest.files:
        if any(a.action == "minio-provision" for a in entry.actions):
            host.run(f"bash {shlex.quote(entry.path)}", timeout=600)


HANDLERS = ModuleHandlers("minio", {"minio-provision": provision})
