"""Effective parameters of a host: defaults < all.vars < group vars < host vars, plus Pigsty's
list rules and `${...}` placeholders.

Resolution is lazy: a host's `Params` answers lookups through its layers and substitutes
placeholders only in the values that templates actually read, so a 1000-host fleet costs little.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InventoryError, Report, join_path
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

# Characters placeholders may produce for one parameter: `a: "${b}${b}..."`, `b: "${c}${c}..."` grows tenfold a
# level; eight levels make 10**8 characters from a few hundred bytes of inventory.
MAX_EXPANSION = 1024 * 1024


@dataclass(frozen=True)
class SecretShape:
    """Where a parameter holds secrets (its schema's `x-secret`, `x-secret-fields`, `x-secret-values`)."""

    whole: bool = False
    fields: frozenset[str] = frozenset()
    values: bool = False


class _Budget:
    """One parameter read's placeholder work: the characters produced so far, and each `${name}` result at
    each depth computed once (a name used ten times is not expanded ten times; results are the same)."""

    __slots__ = ("params", "key", "left", "memo", "secret")

    def __init__(self, params: Params, key: str | None):
        self.params = params
        self.key = key
        self.left = MAX_EXPANSION
        self.memo: dict[tuple[str, int], str | None] = {}
        self.secret = False  # whether the string being substituted is itself a secret

    def refuse_secret(self, name: str) -> None:
        """A secret copied into a value that is not one would be written to outputs/ and shown by `sty show`."""
        report = Report()
        where = self.params.source(self.key) if self.key else join_path("all.vars")
        report.error(
            where,
            f"`${{{name}}}` names a secret parameter: a placeholder may copy a secret only into another secret, "
            "because other values are written to outputs/ and printed",
        )
        raise InventoryError(report)

    def spend(self, text: str) -> str:
        self.left -= len(text)
        if self.left < 0:
            report = Report()
            where = self.params.source(self.key) if self.key else join_path("all.vars")
            report.error(where, f"`${{...}}` placeholders expand to more than {MAX_EXPANSION:,} characters here")
            raise InventoryError(report)
        return text


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

    __slots__ = ("ip", "layers", "defaults", "secrets", "_cache", "_literal", "_results")

    def __init__(
        self,
        ip: str,
        layers: list[VarsBlock],
        defaults: Mapping[str, Any],
        secrets: Mapping[str, SecretShape] | None = None,
        literal: dict[int, tuple[Any, bool]] | None = None,
        results: dict[int, Any] | None = None,
    ):
        self.ip = ip
        self.layers = layers
        self.defaults = defaults
        self.secrets: Mapping[str, SecretShape] = secrets or {}
        self._cache: dict[str, Any] = {}
        # shared by the hosts of one build: whether a list or mapping of the inventory (or a default) holds no
        # placeholder at all, by identity (the value is kept alive beside its answer)
        self._literal = literal if literal is not None else {}
        # shared too: what substitution made of such a value for earlier hosts (see `_shared`)
        self._results = results if results is not None else {}

    def raw(self, key: str, default: Any = None) -> Any:
        """The value before placeholder substitution."""
        for block in reversed(self.layers):
            if key in block.data:
                return block.data[key]
        return self.defaults.get(key, default)

    def source(self, key: str) -> str:
        """Inventory path of the value in effect; for a schema default, `all.vars.<key>`."""
        for block in reversed(self.layers):  # the rules call this for every host: no join_path here
            if key in block.data:
                return f"{block.path}.{key}" if block.path else key
        return f"all.vars.{key}"  # a default: all.vars is where one would override it

    def is_set(self, key: str) -> bool:
        return any(key in block.data for block in self.layers)

    def origin(self, key: str) -> str | None:
        """Inventory path of the vars block whose value is in effect; None for a schema default (which `source`
        reports as `all.vars.<key>`, where one would override it)."""
        for block in reversed(self.layers):
            if key in block.data:
                return block.path
        return None

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
        if not self._is_literal(value):
            value = self._substituted(key, value)
        self._cache[key] = value
        return value

    def _substituted(self, key: str, raw: Any) -> Any:
        """`raw` read as `key`, its placeholders resolved: what an earlier host got when its placeholders expand
        to the same text here (substitution is a function of the value, of the parameter holding it and of those
        expansions), else substituted afresh and shared (`_shared`). The default hba rules, substituted for every
        cluster's checks and every host's render, were a tenth of a 4000-host compile."""
        entry = self._results.get(id(raw))
        if entry is None or entry.raw is not raw:  # the value is kept alive beside its results: ids stay unique
            entry = self._results[id(raw)] = _Outcomes(raw, _placeholder_names(raw))
        inputs = self._expansions(entry.names)
        memo = (key, inputs) if inputs is not None else None
        if memo is not None and memo in entry.by_inputs:
            return entry.by_inputs[memo]
        value = self._shared(entry, self.substitute(raw, _Budget(self, key), self.secrets.get(key)))
        if memo is not None and len(entry.by_inputs) < 64:  # a value naming the host (`${ip}`) is not kept per host
            entry.by_inputs[memo] = value
        return value

    def _expansions(self, names: tuple[str, ...]) -> tuple[str | None, ...] | None:
        """What each placeholder name expands to on this host; None when one cannot be expanded quietly (a
        placeholder bomb): the substitution itself then says why."""
        probe = _Budget(self, None)
        probe.secret = True  # no refusal while probing: the substitution, run once per distinct inputs, refuses
        try:
            return tuple(self.placeholder(name, 0, probe) for name in names)
        except InventoryError:
            return None

    @staticmethod
    def _shared(entry: _Outcomes, value: Any) -> Any:
        """A list or mapping substitution made equal to one an earlier host got from the same inventory value is
        that earlier object: the default hba rules' `${dbsu}` becomes `postgres` on every host of a fleet, and one
        shared set of rule objects is judged once (hba.rule_problems) instead of once per cluster and per host.
        Equal is exact here: two results of one value differ only in the strings substitution made."""
        if type(value) is not list and type(value) is not dict:
            return value
        for seen in entry.values:
            if seen == value:
                return seen
        if len(entry.values) < 8:  # a value that differs on every host (one naming the host) is not kept per host
            entry.values.append(value)
        return value

    def _is_literal(self, value: Any) -> bool:
        """Whether `value` holds no `${...}`, so that every host reading it gets the same object: copying the
        default lists (`pg_default_hba_rules`, `pg_default_roles` ...) for each host cost most of a large fleet's
        modelling. Callers never modify what they read (tests/test_resolve.py renders whole examples and checks)."""
        kind = type(value)
        if kind is not list and kind is not dict:
            return not (kind is str and "${" in value)
        known = self._literal.get(id(value))
        if known is None:
            known = self._literal[id(value)] = (value, not _holds_placeholder(value))
        return known[1]

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
    def placeholder(self, name: str, depth: int = 0, budget: _Budget | None = None) -> str | None:
        budget = budget if budget is not None else _Budget(self, None)
        if not budget.secret and self.secrets.get(ALIASES.get(name, name), _PLAIN).whole:
            budget.refuse_secret(name)
        memo = (name, depth)
        if memo not in budget.memo:
            budget.memo[memo] = self._expand(name, depth, budget)
        return budget.memo[memo]

    def _expand(self, name: str, depth: int, budget: _Budget) -> str | None:
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
            return PLACEHOLDER.sub(lambda m: self._replace(m, depth + 1, budget), str(value))
        return None

    def _replace(self, match: re.Match[str], depth: int, budget: _Budget) -> str:
        """One `${name}` occurrence: its value (charged to the budget as it is inserted) or itself."""
        return budget.spend(self.placeholder(match.group(1), depth, budget) or match.group(0))

    def substitute(self, value: Any, budget: _Budget | None = None, shape: SecretShape | None = None) -> Any:
        """`value` with its placeholders resolved; `shape` says which parts of it are secret. What no placeholder
        changed is returned as the very same object, at any depth (a placeholder sty does not know stays as
        written), so that `_shared` and the memos keyed by identity (hba.rule_problems) see one object."""
        budget = budget if budget is not None else _Budget(self, None)
        shape = shape or _PLAIN
        if isinstance(value, str):
            if "${" not in value:
                return value
            budget.secret = shape.whole
            out = PLACEHOLDER.sub(lambda m: self._replace(m, 0, budget), value)
            return value if out == value else out
        if isinstance(value, list):
            items = [self.substitute(v, budget, shape) for v in value]
            return value if all(new is old for new, old in zip(items, value, strict=True)) else items
        if isinstance(value, dict):
            entries = {k: self.substitute(v, budget, _inner(shape, k)) for k, v in value.items()}
            return value if all(entries[k] is v for k, v in value.items()) else entries
        return value


_PLAIN = SecretShape()
_SECRET = SecretShape(whole=True)


@dataclass
class _Outcomes:
    """What substitution made of one inventory value (or default) for the hosts of a build, which share this
    record: the value itself (kept alive, so that its id stays its own), the placeholder names it holds, the
    distinct results (`Params._shared`) and the result for each parameter and set of expansions."""

    raw: Any
    names: tuple[str, ...]
    values: list[Any] = field(default_factory=list)
    by_inputs: dict[tuple[str, tuple[str | None, ...]], Any] = field(default_factory=dict)


def _placeholder_names(value: Any) -> tuple[str, ...]:
    """Every `${name}` in a value's strings, at any depth, each once (in an order fixed by the value)."""
    found: dict[str, None] = {}
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.update(dict.fromkeys(PLACEHOLDER.findall(item)))
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return tuple(found)


def _holds_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, list):
        return any(_holds_placeholder(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_placeholder(v) for v in value.values())
    return False


def _inner(shape: SecretShape, key: Any) -> SecretShape:
    """The shape of a mapping's entry: secret when the whole is, when every value is, or when it is a secret field
    (fields apply at any depth of list items, as `x-secret-fields` do)."""
    if shape.whole or shape.values or key in shape.fields:
        return _SECRET
    return shape
