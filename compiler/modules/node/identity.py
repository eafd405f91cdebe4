"""Who a node is: its nodename and node cluster (Pigsty lets a PGSQL node borrow its instance's identity),
and the address order the node concerns share, so that peers, VRRP groups and log receivers come out in
the same order on every build and every host."""

from __future__ import annotations

from ...contrib import ip_key
from ...model import Host

__all__ = ["MODULE", "ip_key", "node_identity"]

MODULE = "node"  # the module name that owns every file, unit and port of this package


def node_identity(host: Host) -> tuple[str | None, str]:
    """(nodename, node_cluster): Pigsty lets a PGSQL node borrow its instance's identity."""
    p = host.params
    nodename, cluster = p.get("nodename"), p.get("node_cluster") or "nodes"
    if p.get("node_id_from_pg") and p.raw("pg_cluster") and p.raw("pg_seq") is not None:
        nodename = nodename or f"{p['pg_cluster']}-{p['pg_seq']}"
        if not p.is_set("node_cluster"):
            cluster = p["pg_cluster"]
    return (str(nodename) if nodename else None), str(cluster)
