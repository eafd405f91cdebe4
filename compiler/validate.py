"""Validation of what the user wrote: the inventory's shape and each vars block against the
parameter schemas. Each block is validated once, whatever the number of hosts it reaches.

Cross-host rules live with the module that owns them (compiler/modules/*.py).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .errors import PUBLISHED_SECRET, UNKNOWN, Report, join_path
from .loader import Inventory, VarsBlock
from .quick_schema import surely_valid
from .schema import ParamSpec, Registry, humanize, iter_unknown_names, iter_value_errors, strict_validator

# Ansible's own connection and behaviour variables are legal anywhere and not ours to check.
ANSIBLE_PREFIXES = ("ansible_",)


def validate_shape(data: Any, reg: Registry, report: Report) -> None:
    """The inventory's structure (all / children / hosts / vars) against schemas/inventory.json."""
    doc = reg.documents.get("inventory")
    if doc is None:
        return
    if surely_valid(doc, data, doc):  # jsonschema, which writes the messages, is asked only when not sure
        return
    validator = strict_validator(doc)
    if validator.is_valid(data):
        return
    for err in validator.iter_errors(data):
        where = join_path(*map(str, err.absolute_path)) or "inventory"
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = sorted(err.schema.get("properties", {}))
            for key in sorted((k for k in err.instance if k not in err.schema.get("properties", {})), key=str):
                report.error(join_path(where, str(key)), f"unknown key '{key}' here; use {', '.join(allowed)}")
            continue
        report.error(where, humanize(err))


def validate_blocks(inv: Inventory, reg: Registry, report: Report) -> None:
    """Every key of every vars block against its parameter's schema. A name sty does not know (a parameter, a
    field of a list item, a package alias) is an error of kind UNKNOWN: a typo must not quietly fall back to
    the default (the pipeline's policy makes them warnings under --allow-unknown). The one exception is an
    anchor holder: a name sty does not know whose value defines a YAML anchor that an alias or a merge key
    uses elsewhere (`x-users: &users [...]`, then `pg_users: *users`); it is dropped from its block, silently.
    An anchor nothing uses stays an unknown parameter: such a key is most likely a typo."""
    blocks: list[VarsBlock] = [inv.all_vars]
    blocks += [g.vars for g in inv.groups.values()]
    for decl in inv.hosts.values():
        blocks += decl.blocks
    unrendered_seen: set[str] = set()
    for block in blocks:
        holders: list[str] = []
        for key, value in block.data.items():
            path = join_path(block.path, key)
            spec = reg.get(key)
            if not _keys_ok(value, path, spec, report):
                continue  # a schema check (and later, the digest) would compare keys of different types
            if spec is not None:
                for sub, message in iter_value_errors(spec, value):
                    report.error(join_path(path, *sub), message)
                for sub, message in iter_unknown_names(spec, value):
                    report.error(join_path(path, *sub), message, UNKNOWN)
                _warn_published_items(spec, value, path, report)
                continue
            if key.startswith(ANSIBLE_PREFIXES):
                continue
            module = reg.unrendered_module(key)
            if module is not None:
                if module not in unrendered_seen:
                    unrendered_seen.add(module)
                    report.note(path, f"parameters of the {module} module are accepted but sty does not render them")
                continue
            anchor = inv.positions.anchor(path) if inv.positions is not None else None
            if anchor is not None and anchor[1]:
                holders.append(key)  # `x-users: &users [...]` reused as `*users`: it holds an anchor, not a parameter
                continue
            hint = reg.suggest(key)
            report.error(
                path,
                f"unknown parameter '{key}'"
                + (
                    f"; did you mean '{hint}'?"
                    if hint
                    else "; sty knows no such Pigsty parameter (--allow-unknown accepts another tool's variables)"
                )
                + (
                    f"; it defines the anchor &{anchor[0]} but no alias uses it, so it is no anchor holder"
                    if anchor is not None
                    else ""
                ),
                UNKNOWN,
            )
        for key in holders:  # never a parameter of any host: not in its effective parameters nor its digest
            del block.data[key]


def validate_host_keys(inv: Inventory, report: Report) -> None:
    for name, decl in inv.hosts.items():
        try:
            addr = ipaddress.IPv4Address(name)
        except ValueError:
            report.error(decl.path, f"host key '{name}' is not an IPv4 address; sty identifies hosts by address")
            continue
        if str(addr) != name:
            report.error(decl.path, f"host key '{name}' is not in canonical form ({addr})")


def _numeric_keys(spec: ParamSpec | None) -> bool:
    """Parameters keyed by number (`redis_instances: {6379: {}}`): Pigsty writes the keys unquoted."""
    names = spec.schema.get("propertyNames", {}) if spec is not None else {}
    return isinstance(names, dict) and names.get("pattern") == "^[0-9]+$"


def _keys_ok(value: Any, path: str, spec: ParamSpec | None, report: Report) -> bool:
    """Every mapping inside a parameter's value has string keys: YAML turns `1:`, `yes:` or `2024-01-01:` into
    a number, a boolean or a date, which no template expects and which cannot be sorted next to strings.
    The one exception is a mapping keyed by number (ports), where a number and the same number written as a
    string would be the same entry twice. The walk is bounded: the loader refused alias bombs."""
    ok = True
    stack: list[tuple[Any, str, bool]] = [(value, path, _numeric_keys(spec))]
    while stack:
        item, where, numeric = stack.pop()
        if isinstance(item, list):
            stack.extend((v, join_path(where, i), False) for i, v in enumerate(item))
            continue
        if not isinstance(item, dict):
            continue
        seen: dict[str, Any] = {}
        for key, val in item.items():
            kpath = join_path(where, str(key))
            is_number = isinstance(key, int) and not isinstance(key, bool)
            if not isinstance(key, str) and not (numeric and is_number):
                report.error(kpath, f"a key must be a string, not {_kind(key)} {key!r}; quote it")
                ok = False
            elif str(key) in seen:
                first = _kind(seen[str(key)]).split()[-1]
                report.error(
                    kpath, f"the key {key} appears twice, once as a {first} and once as a {_kind(key).split()[-1]}"
                )
                ok = False
            seen.setdefault(str(key), key)
            stack.append((val, kpath, False))
    return ok


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "the boolean"
    if isinstance(value, (int, float)):
        return "the number"
    if isinstance(value, str):
        return "the string"
    return f"a {type(value).__name__}"


# the identity parameter that names a host's cluster, per module
def validate_one_cluster_per_module(inv: Inventory, report: Report, cluster_keys: dict[str, str]) -> None:
    """A host belongs to at most one cluster per module: two groups (or declarations) of the same
    host must not name different clusters, which Ansible's precedence would silently resolve."""
    for decl in inv.hosts.values():
        groups = [inv.groups[g].vars for g in decl.groups]
        for module, key in cluster_keys.items():
            values: dict[str, str] = {}
            for block in [*groups, *decl.blocks]:
                if key in block.data:
                    values.setdefault(str(block.data[key]), join_path(block.path, key))
            if len(values) > 1:
                shown = ", ".join(f"'{v}' at {path}" for v, path in values.items())
                report.error(decl.path, f"{decl.name} is placed in more than one {module} cluster: {shown}")


def _warn_published_items(spec, value: Any, path: str, report: Report) -> None:
    """Secrets inside list items (pg_users[].password ...) that still hold a value Pigsty publishes."""
    from .secrets import PUBLISHED_DEFAULTS

    if not spec.secret_fields or not isinstance(value, list):
        return
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            continue
        for field in spec.secret_fields:
            if isinstance(item.get(field), str) and item[field] in PUBLISHED_DEFAULTS:
                report.warning(
                    join_path(path, i, field),
                    "this secret still has a value Pigsty publishes in its examples; set your own in secrets.yml",
                    PUBLISHED_SECRET,
                )
