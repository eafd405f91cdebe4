"""A quick "yes" for schemas made of a few structural keywords, before jsonschema is asked.

Why: the inventory's shape (schemas/inventory.json: all / children / hosts / vars) is checked for every host, and
jsonschema's `$ref` resolution made that 160 µs per host: 0.16 s of every 1000-host compile, 0.9 s at 10,000
hosts. The schema stays the one source of truth: this reads it, knows a handful of keywords (`type` for
object, array, string, boolean and null; `properties`, `additionalProperties`, `required`, `propertyNames`,
local `$ref`, and annotations), and answers only "surely valid". Anything else (a keyword it does not know, a
number type, a value that fails) is "not sure", and the caller asks jsonschema, which also writes the messages.
So a mistake here can only cost time, never accept what jsonschema refuses, as tests/test_quick_schema.py checks
on Pigsty's examples and on generated inventories.
"""

from __future__ import annotations

from typing import Any

_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"})
_STRUCTURAL = frozenset({"$ref", "type", "properties", "additionalProperties", "required", "propertyNames"})
_KNOWN = _ANNOTATIONS | _STRUCTURAL
_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def surely_valid(schema: Any, value: Any, root: dict[str, Any]) -> bool:
    """True when `value` conforms to `schema` (whose local `$ref`s point into `root`) by the keywords this
    module knows; False when it does not or when the schema uses any other keyword."""
    if schema is True:
        return True
    if type(schema) is not dict or not _KNOWN.issuperset(schema):
        return False
    ref = schema.get("$ref")
    if ref is not None and not surely_valid(_local(root, ref), value, root):
        return False
    kinds = schema.get("type")
    if kinds is not None and not _has_type(value, kinds):
        return False
    if type(value) is not dict:
        return True  # the object keywords say nothing of other values
    required = schema.get("required", [])
    if type(required) is not list or any(name not in value for name in required):
        return False
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    names = schema.get("propertyNames")
    if type(props) is not dict:
        return False
    for key, item in value.items():
        if names is not None and not surely_valid(names, key, root):
            return False
        sub = props[key] if type(key) is str and key in props else extra
        if sub is not True and not surely_valid(sub, item, root):
            return False
    return True


def _has_type(value: Any, kinds: Any) -> bool:
    """Exact types: a bool is not taken for an integer here, nor anything else for a number (those are not
    known, so "not sure")."""
    for kind in kinds if type(kinds) is list else (kinds,):
        if type(kind) is str and type(value) is _TYPES.get(kind):
            return True
    return False


def _local(root: dict[str, Any], ref: Any) -> Any:
    """The schema a `#/...` reference names in `root`; None (never valid here) for any other reference."""
    if type(ref) is not str or not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if type(node) is not dict or part not in node:
            return None
        node = node[part]
    return node
