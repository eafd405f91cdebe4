"""The fleet modules: one registry line each; their order is their declared `phase`.

An entry names a module class as `<module>:<class>`, relative to this package when it starts with a dot. The
classes are imported on first use, so importing one module's package does not import the others, and a test
can register a module of its own (monkeypatch `REGISTRY`).
"""

from __future__ import annotations

import importlib
from functools import cache

from ..module import FleetModule

REGISTRY: tuple[str, ...] = (
    ".node:NodeModule",
    ".infra:InfraModule",
    ".etcd:EtcdModule",
    ".minio:MinioModule",
    ".pgsql:PgsqlModule",
    ".redis:RedisModule",
)


def all_modules() -> tuple[FleetModule, ...]:
    """One instance of every registered module, in phase order (node, infra, etcd, minio, pgsql, redis)."""
    return _instances(REGISTRY)


def module_order() -> tuple[str, ...]:
    """The module names in phase order: the order of `host.modules` and of the manifest's `phases`."""
    return tuple(m.name for m in all_modules())


@cache
def _instances(registry: tuple[str, ...]) -> tuple[FleetModule, ...]:
    classes: list[type[FleetModule]] = []
    for entry in registry:
        where, _, attr = entry.partition(":")
        cls = getattr(importlib.import_module(where, __name__), attr)
        if not (isinstance(cls, type) and issubclass(cls, FleetModule)):
            raise RuntimeError(f"{entry} is not a FleetModule")
        classes.append(cls)
    for what in ("name", "phase"):  # declared once each, and distinct: the order must not depend on the registry's
        missing = [c.__name__ for c in classes if not hasattr(c, what)]
        values = [getattr(c, what, None) for c in classes]
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if missing or twice:
            raise RuntimeError(f"every fleet module declares its own {what}: {', '.join(missing + twice)}")
    return tuple(cls() for cls in sorted(classes, key=lambda c: c.phase))
