"""Secret values: where they come from, the rules they obey, and the git-ignored store the apply stage reads.

Bundles carry `<<secret:NAME>>` placeholders; NAME is scoped (`pg-test/pg_admin_password`,
`pg-test/pg_users/dbuser_meta/password`). Values come from, in order: `secrets.yml` next to the
inventory (by scoped name, then by the name without its scope), then the inventory itself.

A secret value never appears in a message: a secret is what its schema marks (`x-secret`, `x-secret-fields`
for fields of list items or mapping entries, `x-secret-values` for every value of a mapping), and messages
about it name the parameter and the rule it breaks. Terminals, CI logs and bug reports keep what is printed.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from sty.contract.store import (
    PendingStore,
    ScramSecret,
    begin_store,
    read_store,
    render_verifier,
    scram_accepts,
    scram_verifier,
    store_dir,
    write_store,
)

from .errors import Report

__all__ = [
    "LINE_BREAK_RULE",
    "PUBLISHED_DEFAULTS",
    "PendingStore",
    "ScramSecret",
    "begin_store",
    "line_break_free",
    "load_overrides",
    "pick",
    "read_store",
    "render_verifier",
    "schema_message",
    "scram_accepts",
    "scram_verifier",
    "secret_problems",
    "store_dir",
    "touches_secret",
    "write_store",
]


# Values Pigsty publishes in its docs and templates; a fleet still using one is warned about.
PUBLISHED_DEFAULTS = {
    "DBUser.DBA",
    "DBUser.Monitor",
    "DBUser.Replicator",
    "DBUser.Meta",
    "DBUser.Viewer",
    "Patroni.API",
    "Etcd.Root",
    "S3User.MinIO",
    "S3User.Backup",
    "S3User.Meta",
    "S3User.Data",
    "pigsty",
    "pgBackRest",
}

# The apply stage writes secrets into line-based formats (sty.contract.formats refuses these characters for
# most of them): build refuses them first, where the parameter can still be named.
LINE_BREAK_RULE = (
    "a secret may not contain a line break, carriage return or NUL: the files it is written into are line-based"
)


def line_break_free(value: Any) -> bool:
    return not (isinstance(value, str) and any(c in value for c in "\n\r\x00"))


def load_overrides(inventory: Path, report: Report) -> tuple[dict[str, str], str]:
    """`secrets.yml` beside the inventory: {scoped-or-bare-name: value}; returns values and a digest."""
    path = inventory.parent / "secrets.yml"
    if not path.exists():
        return {}, ""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:  # the user's file: told, not changed
        report.warning(str(path), f"the secrets file is readable by group or others (mode {mode:04o}); chmod 600 it")
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:  # its text quotes the offending line: a secret
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        report.error(where, "cannot parse the secrets file (YAML syntax error here)")
        return {}, ""
    if not isinstance(data, dict):
        report.error(str(path), "the secrets file must map secret names to values")
        return {}, ""
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, (dict, list)) or value is None:
            report.error(f"{path}:{key}", "a secret value must be a string or a number")
            continue
        if not line_break_free(value):
            report.error(f"{path}:{key}", LINE_BREAK_RULE)
            continue
        out[str(key)] = str(value)
    return out, hashlib.sha256(raw).hexdigest()


def pick(name: str, inventory_value: Any, overrides: dict[str, str]) -> str:
    """The effective value of a secret; a string is returned as it is (a ScramSecret keeps its password)."""
    if name in overrides:
        return overrides[name]
    bare = name.split("/", 1)[1] if "/" in name else name
    if bare in overrides:
        return overrides[bare]
    if inventory_value is None:
        return ""
    return inventory_value if isinstance(inventory_value, str) else str(inventory_value)


# --------------------------------------------------------------------------------------------------
# validation: the rules of secret values, and schema messages that do not print them
# (called by compiler/schema.py iter_value_errors for every vars-block value)
# --------------------------------------------------------------------------------------------------


def _field_leaves(value: Any, fields: tuple[str, ...]) -> Iterator[tuple[tuple, Any]]:
    """(sub-path, value) of every mapping entry named in `fields`, at any depth (list items, mapping entries)."""
    stack: list[tuple[tuple, Any]] = [((), value)]
    while stack:
        where, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, item in items:
            if isinstance(node, dict) and key in fields:
                yield (*where, key), item
            else:
                stack.append(((*where, key), item))


def _secret_leaves(spec: Any, value: Any) -> Iterator[tuple[tuple, Any]]:
    """(sub-path, value) of every secret inside one parameter's value, as its schema marks them."""
    if spec.secret:
        yield (), value
    elif spec.secret_values and isinstance(value, dict):
        yield from (((key,), item) for key, item in value.items())
    elif spec.secret_fields:
        yield from _field_leaves(value, spec.secret_fields)


def secret_problems(spec: Any, value: Any) -> Iterator[tuple[list, str]]:
    """(sub-path parts, sentence) for each secret of a parameter's value that no bundle can carry."""
    for where, leaf in sorted(_secret_leaves(spec, value), key=lambda x: list(map(str, x[0]))):
        if not line_break_free(leaf):
            yield list(where), LINE_BREAK_RULE


def touches_secret(spec: Any, error: Any) -> bool:
    """Whether a schema error's value is, or holds, a secret of this parameter."""
    if spec.secret or spec.secret_values:
        return True
    fields = set(spec.secret_fields)
    if not fields:
        return False
    if any(str(part) in fields for part in error.absolute_path):
        return True
    if error.validator == "type" and not isinstance(error.instance, (dict, list)):
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        if {"object", "array"} & set(wanted):
            return True  # a scalar where an entry holding secrets belongs may be a misplaced secret
    return any(leaf not in (None, "") for _, leaf in _field_leaves(error.instance, spec.secret_fields))


def schema_message(spec: Any, error: Any, humanize: Any) -> str:
    """humanize(error), unless the error's value is or holds a secret: then the rule alone, without the value."""
    if not touches_secret(spec, error):
        return humanize(error)
    return _rule_sentence(error)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    for t, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string")):
        if isinstance(value, t):
            return name
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else type(value).__name__


def _rule_sentence(error: Any) -> str:
    """What jsonschema found wrong, in words that hold the schema's terms but never the instance's value."""
    v, val, inst = error.validator, error.validator_value, error.instance
    if v == "type":
        want = " or ".join(val) if isinstance(val, list) else val
        return f"expected {want}, got {_kind(inst)} (value not shown: secret)"
    if v == "enum":
        return f"is not one of: {', '.join(str(x) for x in val)} (value not shown: secret)"
    if v == "pattern":
        return f"does not match the pattern {val} (value not shown: secret)"
    if v in ("minLength", "maxLength"):
        return f"is {'shorter' if v == 'minLength' else 'longer'} than {val} character(s) (value not shown: secret)"
    if v == "required":
        missing = [r for r in val if isinstance(inst, dict) and r not in inst]
        return f"missing required field {', '.join(repr(m) for m in missing)}"
    if v == "additionalProperties" and isinstance(inst, dict):
        extra = sorted(str(k) for k in inst if k not in error.schema.get("properties", {}))
        return f"unknown field(s) {', '.join(repr(k) for k in extra)}"
    return f"breaks the schema rule '{v}' (value not shown: secret)"
