"""Activation handlers, one file per fleet module that has actions of its own.

Each module file declares `HANDLERS`: the module-level actions of the contract (`sty.contract.actions`)
that it performs, optionally the order in which its hosts change (`waves`), and the actions that must wait
until every host of the phase has its new files (`deferred`, run one host at a time in `deferred_order`: a
rolling restart needs every member reloaded first). Unit actions (start, reload, restart) and daemon-reload
are the apply stage's own. Adding a module with actions is one file here plus one line in `_MODULES`.

When a module leaves a host (apply/remove.py), its handlers may act around the generic removal (stop the
units, remove the files): `before_remove` (PGSQL hands the leadership over) and `after_remove` (PGSQL moves
the data directory aside), and say in `remove_note` what the confirmation should mention.
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


class RemovalContext(HostContext, Protocol):
    """What a removal hook may use besides a HostContext (implemented by apply.run.HostRun)."""

    run_id: str
    removing: frozenset[str]  # addresses of the hosts this module is removed from in this run
    kept: dict[str, Any]  # what `before_remove` leaves for `after_remove` (read before the files go)


Action = Callable[[HostContext, str], None]  # (host, module) -> None
Hook = Callable[[RemovalContext, str], None]  # (host, module) -> None
Waves = Callable[[dict[str, Manifest]], list[list[str]]]
Order = Callable[[dict[str, Manifest]], list[str]]


@dataclass(frozen=True)
class ModuleHandlers:
    module: str
    actions: dict[str, Action] = field(default_factory=dict)
    waves: Waves | None = None  # hosts of a wave change in parallel, waves one after another
    # actions held back until every wave of the phase succeeded, then run host by host (never in parallel)
    deferred: frozenset[str] = frozenset()
    deferred_order: Order | None = None  # the order of those hosts; default: address order
    before_remove: Hook | None = None  # before the module's units stop on a host it leaves
    after_remove: Hook | None = None  # after its files are removed
    remove_note: str = ""  # what the removal does beyond stopping units and removing files, for the confirmation
    # when none of the module's units runs on any member yet, all members start in one wave: a new etcd
    # cluster's first member waits for a quorum that members of later waves would never bring
    together_when_new: bool = False


def member_name(manifest: Manifest, module: str) -> str:
    """How the module's own tools name this host (`pg-test-2`), for messages; else its address."""
    ident = manifest.identity.get(module) or {}
    if ident.get("instance"):
        return str(ident["instance"])
    if ident.get("cluster") and ident.get("seq") is not None:
        return f"{ident['cluster']}-{ident['seq']}"
    return manifest.address


def _registry() -> dict[str, ModuleHandlers]:
    from . import etcd, minio, pgsql, redis

    _MODULES = (etcd, minio, pgsql, redis)
    return {m.HANDLERS.module: m.HANDLERS for m in _MODULES}


HANDLERS = _registry()


def action_handler(name: str) -> Action | None:
    return next((h.actions[name] for h in HANDLERS.values() if name in h.actions), None)


def together_when_new(module: str) -> bool:
    handlers = HANDLERS.get(module)
    return bool(handlers and handlers.together_when_new)


def waves(module: str, manifests: dict[str, Manifest]) -> list[list[str]]:
    """Waves of the hosts that run `module`: the module's own order, else all of them at once."""
    members = {ip: m for ip, m in manifests.items() if module in m.modules}
    if not members:
        return []
    handlers = HANDLERS.get(module)
    if handlers and handlers.waves:
        return [w for w in handlers.waves(members) if w]
    return [sort_hosts(members)]


def is_deferred(action: str) -> bool:
    return any(action in h.deferred for h in HANDLERS.values())


def deferred_order(module: str, manifests: dict[str, Manifest]) -> list[str]:
    """The hosts that hold deferred steps of `module`, in the order they run them, one at a time."""
    handlers = HANDLERS.get(module)
    if handlers and handlers.deferred_order:
        return handlers.deferred_order(manifests)
    return sort_hosts(manifests)


def removal_hooks(module: str) -> tuple[Hook | None, Hook | None]:
    """A module's (before_remove, after_remove); a module without handlers needs none."""
    handlers = HANDLERS.get(module)
    return (handlers.before_remove, handlers.after_remove) if handlers else (None, None)


def remove_note(module: str) -> str:
    handlers = HANDLERS.get(module)
    return handlers.remove_note if handlers else ""
