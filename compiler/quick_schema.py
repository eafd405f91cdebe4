"""A quick "yes" for JSON Schemas made of common keywords, before jsonschema is asked.

Why: every inventory value is checked against its schema, and jsonschema's machinery (its import, `$ref`
resolution, an iterator per keyword) made that most of validation: the inventory's shape took 160 µs per
host, 0.16 s of a 1000-host compile; a parameter value 30 to 400 µs; importing jsonschema 0.08 s of every
build. The schemas stay the one source of truth: this reads them, knows the keywords sty's schemas use, with
the semantics of sty's strict Draft 2020-12 validator (an integer is an int and not a bool, a pattern matches
the whole string), and answers only "surely valid". Anything else (a keyword it does not know, a value that
fails, an enum of numbers, where jsonschema's equality is not Python's) is "not sure": the caller asks
jsonschema, which also writes the messages. So a mistake here could only accept what jsonschema refuses,
which tests/test_quick_schema.py checks against jsonschema on Pigsty's examples and on generated values.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

_ANNOTATIONS = {"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"}
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "integer": (int,),  # strict: a bool's type is bool, not int; 9102.0 is not an integer
    "number": (int, float),
}


def surely_valid(schema: Any, value: Any, root: dict[str, Any]) -> bool:
    """True when `value` conforms to `schema` (whose local `$ref`s point into `root`) by the keywords this
    module knows; False when it does not, or when the schema uses any other keyword."""
    if schema is True:
        return True
    if type(schema) is not dict:
        return False
    for keyword, argument in schema.items():
        check = _CHECKS.get(keyword)
        if check is None:
            if keyword in _ANNOTATIONS or keyword.startswith("x-"):
                continue  # sty's own annotations (x-secret, x-closed ...): jsonschema ignores them too
            return False
        if not check(argument, value, schema, root):
            return False
    return True


def _type(kinds: Any, value: Any, _schema: dict, _root: dict) -> bool:
    kind = type(value)
    for name in kinds if type(kinds) is list else (kinds,):
        if type(name) is str and kind in _TYPES.get(name, ()):
            return True
    return False


def _ref(ref: Any, value: Any, _schema: dict, root: dict) -> bool:
    return surely_valid(_local(root, ref), value, root)


def _properties(props: Any, value: Any, schema: dict, root: dict) -> bool:
    if type(value) is not dict:
        return True
    if type(props) is not dict:
        return False
    if "additionalProperties" in schema:  # that keyword walks every key, these included
        return True
    return all(key not in props or surely_valid(props[key], item, root) for key, item in value.items())


def _additional(extra: Any, value: Any, schema: dict, root: dict) -> bool:
    if type(value) is not dict:
        return True
    props = schema.get("properties", {})
    if type(props) is not dict or "patternProperties" in schema:
        return False
    for key, item in value.items():
        sub = props[key] if type(key) is str and key in props else extra
        if sub is not True and not surely_valid(sub, item, root):
            return False
    return True


def _required(names: Any, value: Any, _schema: dict, _root: dict) -> bool:
    if type(value) is not dict:
        return True
    return type(names) is list and all(name in value for name in names)


def _property_names(names: Any, value: Any, _schema: dict, root: dict) -> bool:
    return type(value) is not dict or all(surely_valid(names, key, root) for key in value)


def _items(items: Any, value: Any, _schema: dict, root: dict) -> bool:
    if type(value) is not list:
        return True
    return type(items) is dict and all(surely_valid(items, item, root) for item in value)


def _number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _minimum(bound: Any, value: Any, _schema: dict, _root: dict) -> bool:
    return not _number(value) or (_number(bound) and value >= bound)


def _maximum(bound: Any, value: Any, _schema: dict, _root: dict) -> bool:
    return not _number(value) or (_number(bound) and value <= bound)


def _exclusive_minimum(bound: Any, value: Any, _schema: dict, _root: dict) -> bool:
    return not _number(value) or (_number(bound) and value > bound)


def _exclusive_maximum(bound: Any, value: Any, _schema: dict, _root: dict) -> bool:
    return not _number(value) or (_number(bound) and value < bound)


def _min_length(bound: Any, value: Any, _schema: dict, _root: dict) -> bool:
    return type(value) is not str or (type(bound) is int and len(value) >= bound)


def _max_length(bound: Any, value: Any, _schema: dict, _root: dict) -> bool:
    return type(value) is not str or (type(bound) is int and len(value) <= bound)


def _min_items(bound: Any, value: Any, _schema: dict, _root: dict) -> bool:
    return type(value) is not list or (type(bound) is int and len(value) >= bound)


def _max_items(bound: Any, value: Any, _schema: dict, _root: dict) -> bool:
    return type(value) is not list or (type(bound) is int and len(value) <= bound)


def _pattern(pattern: Any, value: Any, _schema: dict, _root: dict) -> bool:
    """The strict validator's rule: the pattern matches the whole string."""
    if type(value) is not str:
        return True
    return type(pattern) is str and _regex(pattern).fullmatch(value) is not None


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _enum(options: Any, value: Any, _schema: dict, _root: dict) -> bool:
    """Strings, bools, None and ints only, compared with their type: jsonschema's equality tells 1 from True
    and takes 1.0 for 1, which Python's `in` does not."""
    kind = type(value)
    if kind not in (str, bool, int, type(None)) or type(options) is not list:
        return False
    return any(type(option) is kind and option == value for option in options)


def _const(option: Any, value: Any, schema: dict, root: dict) -> bool:
    return _enum([option], value, schema, root)


def _any_of(options: Any, value: Any, _schema: dict, root: dict) -> bool:
    return type(options) is list and any(surely_valid(option, value, root) for option in options)


_CHECKS = {
    "type": _type,
    "$ref": _ref,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _required,
    "propertyNames": _property_names,
    "items": _items,
    "minimum": _minimum,
    "maximum": _maximum,
    "exclusiveMinimum": _exclusive_minimum,
    "exclusiveMaximum": _exclusive_maximum,
    "minLength": _min_length,
    "maxLength": _max_length,
    "minItems": _min_items,
    "maxItems": _max_items,
    "pattern": _pattern,
    "enum": _enum,
    "const": _const,
    "anyOf": _any_of,
}


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
