"""REDIS: form a native Redis cluster once, from the member the compiler chose, when all members run."""

from __future__ import annotations

import shlex

from . import HostContext, ModuleHandlers


def create_cluster(host: HostContext, module: str) -> None:
    spec = host.manifest.identity.get("redis", {}).get("cluster_create")
    if not spec or spec.get("run_on") != host.ip:
        return
    first = spec["members"][0]
    auth = ""
    if spec.get("password_secret"):
        auth = f"-a {shlex.quote(host.values.get(spec['password_secret'], ''))} --no-auth-warning "
    address, port = first.rsplit(":", 1) if ":" in first else first.split()
    known = host.run(f"redis-cli {auth}-h {address} -p {port} cluster info", check=False).stdout
    if "cluster_known_nodes:1\r" not in known and "cluster_known_nodes:1\n" not in known:
        return  # already formed: creating again would fail (and is not wanted)
    members = " ".join(shlex.quote(m.replace(" ", ":")) for m in spec["members"])
    host.run(
        f"redis-cli {auth}--cluster create {members} --cluster-replicas {int(spec['replicas'])} --cluster-yes",
        timeout=300,
    )


HANDLERS = ModuleHandlers("redis", {"redis-cluster-create": create_cluster})
