"""Fleet modules in activation order (node, infra, etcd, minio, pgsql, redis)."""

from __future__ import annotations

from functools import cache

from ..module import FleetModule


@cache
def all_modules() -> tuple[FleetModule, ...]:
    from .etcd import EtcdModule
    from .infra import InfraModule
    from .node import NodeModule
    from .pgsql import PgsqlModule

    return (NodeModule(), InfraModule(), EtcdModule(), PgsqlModule())


# modules Pigsty has whose hosts are recognised; listed here until they render files
MEMBERSHIP_ONLY = {
    "minio": lambda host: bool(host.params.raw("minio_cluster")),
    "redis": lambda host: bool(host.params.raw("redis_cluster")),
}

ORDER = ("node", "infra", "etcd", "minio", "pgsql", "redis")
