"""Effective parameters of a host: defaults < all.vars < group vars < host vars, plus Pigsty's
list rules and `${...}` placeholders.

Resolution is lazy: a host's `Params` answers lookups through its layers and substitutes
placeholders only in the values that templates actually read, so a 1000-host fleet costs little.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import join_path
from .loader import Group, HostDecl, Inventory, VarsBlock

# Pigsty concatenates these: the effective list is `<default> + <extra>`.
LIST_RULES: dict[str, str] = {
    "pg_services": "pg_default_services",
    "pg_hba_rules": "pg_default_hba_rules",
    "pgb_hba_rules": "pgb_default_hba_rules",
    "node_etc_hosts": "node_default_etc_hosts",
    "pg_users": "pg_default_roles",
}

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# `${name}` aliases that are not parameters themselves
ALIASES = {
    "dbsu": "pg_dbsu",
    "repl": "pg_replication_username",
    "monitor": "pg_monitor_username",
    "admin": "pg_admin_username",
}


def host_layers(inv: Inventory, decl: HostDecl) -> list[VarsBlock]:
    """Blocks from weakest to strongest: all.vars, groups (by depth, then name), host declarations."""
    groups: list[Group] = sorted((inv.groups[g] for g in decl.groups), key=lambda g: (g.depth, g.name))
    return [inv.all_vars, *(g.vars for g in groups), *decl.blocks]


class Params(Mapping[str, Any]):
    """A host's effective parameters with placeholders resolved on read."""

    __slots__ = ("ip", "layers", "defaults", "_cache")

    def __init__(self, ip: str, layers: list[VarsBlock], defaults: Mapping[str, Any]):
        self.ip = ip
        self.layers = layers
        self.defaults = defaults
        self._cache: dict[str, Any] = {}

    def raw(self, key: str, default: Any = None) -> Any:
        """The value before placeholder substitution."""
        for block in reversed(self.layers):
            if key in block.data:
                return block.data[key]
        return self.defaults.get(key, default)

    def source(self, key: str) -> str:
        """Inventory path of the value in effect; for a schema default, `all.vars.<key>`."""
        for block in reversed(self.layers):
            if key in block.data:
                return join_path(block.path, key)
        return join_path("all.vars", key)  # a default: all.vars is where one would override it

    def is_set(self, key: str) -> bool:
        return any(key in block.data for block in self.layers)

    def __getitem__(self, key: str) -> Any:
        try:
            return self._cache[key]
        except KeyError:
            pass
        for block in reversed(self.layers):
            if key in block.data:
                value = block.data[key]
                break
        else:
            if key not in self.defaults:
                raise KeyError(key)
            value = self.defaults[key]
        value = self.substitute(value)
        self._cache[key] = value
        return value

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for block in reversed(self.layers):
            for key in block.data:
                if key not in seen:
                    seen.add(key)
                    yield key
        for key in self.defaults:
            if key not in seen:
                seen.add(key)
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def combined(self, key: str) -> list[Any]:
        """Pigsty's list rule: the default list followed by the user's list (`pg_default_services + pg_services`)."""
        base = LIST_RULES.get(key)
        head = self.get(base) if base else None
        tail = self.get(key)
        return [*(head if isinstance(head, list) else []), *(tail if isinstance(tail, list) else [])]

    def effective(self) -> dict[str, Any]:
        """Every parameter, sorted, placeholders resolved (for `sty show`)."""
        return {key: self[key] for key in sorted(self)}

    # -- placeholders -------------------------------------------------------------------------
    def placeholder(self, name: str, depth: int = 0) -> str | None:
        if depth > 8:  # a placeholder that refers to itself stays literal
            return None
        if name == "ip":
            return self.ip
        if name == "lo":
            return "127.0.0.1"
        if name == "vip":
            vip = self.raw("pg_vip_address")
            return str(vip).split("/")[0] if vip else None
        name = ALIASES.get(name, name)
        value = self.raw(name)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return PLACEHOLDER.sub(lambda m: self.placeholder(m.group(1), depth + 1) or m.group(0), str(value))
        return None

    def substitute(self, value: Any) -> Any:
        if isinstance(value, str):
            if "${" not in value:
                return value
            return PLACEHOLDER.sub(lambda m: self.placeholder(m.group(1)) or m.group(0), value)
        if isinstance(value, list):
            return [self.substitute(v) for v in value]
        if isinstance(value, dict):
            return {k: self.substitute(v) for k, v in value.items()}
        return value
