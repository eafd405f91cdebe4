"""Fleet modules in activation order (node, infra, etcd, minio, pgsql, redis)."""

from __future__ import annotations

from functools import cache

from ..module import FleetModule

ORDER = ("node", "infra", "etcd", "minio", "pgsql", "redis")


@cache
def all_modules() -> tuple[FleetModule, ...]:
    from .etcd import EtcdModule
    from .infra import InfraModule
    from .minio import MinioModule
    from .node import NodeModule
    from .pgsql import PgsqlModule
    from .redis import RedisModule

    modules = (NodeModule(), InfraModule(), EtcdModule(), MinioModule(), PgsqlModule(), RedisModule())
    assert tuple(m.name for m in modules) == ORDER
    return modules
