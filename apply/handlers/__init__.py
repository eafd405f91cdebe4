"""Activation handlers, one file per fleet module that has actions of its own.

Each module file declares `HANDLERS`: the module-level actions of the contract (`sty.contract.actions`)
that it performs, and optionally the order in which its hosts change (`waves`). Unit actions (start,
reload, restart) and daemon-reload are the apply stage's own. Adding a module with actions is one file
here plus one line in `_MODULES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sty.contract.manifest import Manifest
from sty.contract.targets import sort_hosts


class HostContext(Protocol):
    """What a handler may use of the host being applied (implemented by apply.run.HostRun)."""

    ip: str
    manifest: Manifest
    desired: dict[str, bytes]
    values: dict[str, str]

    def run(self, command: str, check: bool = True, timeout: float = 600, stdin: str | None = None) -> Any: ...

    def wait(self, probe: Callable[[], bool], timeout: float, what: str) -> None: ...

    def log(self, message: str) -> None: ...


Action = Callable[[HostContext, str], None]  # (host, module) -> None
Waves = Callable[[dict[str, Manifest]], list[list[str]]]


@dataclass(frozen=True)
class ModuleHandlers:
    module: str
    actions: dict[str, Action] = field(default_factory=dict)
    waves: Waves | None = None  # hosts of a wave change in parallel, waves one after another


def _registry() -> dict[str, ModuleHandlers]:
    from . import etcd, minio, pgsql, redis

    _MODULES = (etcd, minio, pgsql, redis)
    return {m.HANDLERS.module: m.HANDLERS for m in _MODULES}


HANDLERS = _registry()


def action_handler(name: str) -> Action | None:
    return next((h.actions[name] for h in HANDLERS.values() if name in h.actions), None)


def waves(module: str, manifests: dict[str, Manifest]) -> list[list[str]]:
    """Waves of the hosts that run `module`: the module's own order, else all of them at once."""
    members = {ip: m for ip, m in manifests.items() if module in m.modules}
    if not members:
        return []
    handlers = HANDLERS.get(module)
    if handlers and handlers.waves:
        return [w for w in handlers.waves(members) if w]
    return [sort_hosts(members)]
