"""The parameter registry: every inventory parameter, read from the JSON Schemas in schemas/.

The schemas are the single source of truth for types, defaults, descriptions and secrecy;
nothing else in the compiler lists parameters.
"""

from __future__ import annotations

import copy
import difflib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .paths import SCHEMAS


@dataclass
class ParamSpec:
    name: str
    module: str
    schema: dict[str, Any]
    defs: dict[str, Any]

    @property
    def description(self) -> str:
        return self.schema.get("description", "")

    @property
    def has_default(self) -> bool:
        return "default" in self.schema

    @property
    def default(self) -> Any:
        return copy.deepcopy(self.schema.get("default"))

    @property
    def secret(self) -> bool:
        return bool(self.schema.get("x-secret"))

    @property
    def secret_fields(self) -> tuple[str, ...]:
        return tuple(self.schema.get("x-secret-fields", ()))

    @property
    def secret_values(self) -> bool:
        return bool(self.schema.get("x-secret-values"))

    @property
    def type_name(self) -> str:
        t = self.schema.get("type")
        if t is None and "anyOf" in self.schema:
            t = [s.get("type", "object") for s in self.schema["anyOf"]]
        if t is None and "oneOf" in self.schema:
            t = [s.get("type", "object") for s in self.schema["oneOf"]]
        return " or ".join(t) if isinstance(t, list) else str(t)

    @cached_property
    def validator(self):
        from jsonschema import Draft202012Validator

        schema = dict(self.schema)
        if self.defs:
            schema["$defs"] = self.defs
        return Draft202012Validator(schema)


@dataclass
class Registry:
    params: dict[str, ParamSpec] = field(default_factory=dict)
    unrendered: dict[str, str] = field(default_factory=dict)  # parameter -> module sty does not render
    unrendered_prefixes: list[tuple[str, str]] = field(default_factory=list)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, name: str) -> ParamSpec | None:
        return self.params.get(name)

    def unrendered_module(self, name: str) -> str | None:
        if name in self.unrendered:
            return self.unrendered[name]
        for prefix, module in self.unrendered_prefixes:
            if name.startswith(prefix):
                return module
        return None

    def suggest(self, name: str) -> str | None:
        close = difflib.get_close_matches(name, self._names, n=1, cutoff=0.8)
        return close[0] if close else None

    @cached_property
    def _names(self) -> list[str]:
        return sorted(self.params)

    @cached_property
    def defaults(self) -> dict[str, Any]:
        return {n: p.schema["default"] for n, p in sorted(self.params.items()) if "default" in p.schema}

    @cached_property
    def secret_defaults(self) -> dict[str, Any]:
        return {n: p.schema.get("default") for n, p in self.params.items() if p.secret}


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """Load the schemas once per process."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _load()
    return _REGISTRY


def _load() -> Registry:
    # the registered fleet modules name the schemas (imported here: the modules import this file's users)
    from .modules import module_order

    reg = Registry()
    for module in module_order():
        path = SCHEMAS / f"{module}.json"
        if not path.exists():  # a module without parameters of its own
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        reg.documents[module] = doc
        defs = doc.get("$defs", {})
        for name, prop in doc.get("properties", {}).items():
            if name in reg.params:
                raise RuntimeError(f"parameter {name} is defined in both {reg.params[name].module} and {module}")
            reg.params[name] = ParamSpec(name=name, module=module, schema=prop, defs=defs)
    unrendered_file = SCHEMAS / "unrendered.json"
    if unrendered_file.exists():
        doc = json.loads(unrendered_file.read_text(encoding="utf-8"))
        for module, spec in sorted(doc.get("modules", {}).items()):
            for param in spec.get("parameters", []):
                reg.unrendered.setdefault(param, module)
            for prefix in spec.get("prefixes", []):
                reg.unrendered_prefixes.append((prefix, module))
    inventory = SCHEMAS / "inventory.json"
    if inventory.exists():
        reg.documents["inventory"] = json.loads(inventory.read_text(encoding="utf-8"))
    return reg


def code_digest() -> str:
    """Digest of everything besides the inventory that shapes a bundle (code, schemas, templates)."""
    import hashlib

    from .paths import CODE, SCHEMAS, TEMPLATES

    h = hashlib.sha256()
    for top, root in (("compiler", CODE), ("schemas", SCHEMAS), ("templates", TEMPLATES)):
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix not in (".pyc",) and "__pycache__" not in path.parts:
                h.update(f"{top}/{path.relative_to(root)}".encode())
                h.update(path.read_bytes())
    return h.hexdigest()


def humanize(error: Any) -> str:
    """One plain sentence for a jsonschema ValidationError."""
    v = error.validator
    inst = error.instance
    val = error.validator_value
    shown = _short(inst)
    if v == "type":
        want = " or ".join(val) if isinstance(val, list) else val
        return f"expected {_article(want)}, got {shown} ({_json_type(inst)})"
    if v == "enum":
        return f"{shown} is not one of: {', '.join(str(x) for x in val)}"
    if v == "const":
        return f"must be {val!r}, got {shown}"
    if v == "pattern":
        return f"{shown} does not match the pattern {val}"
    if v == "minimum":
        return f"{shown} is below the minimum {val}"
    if v == "maximum":
        return f"{shown} is above the maximum {val}"
    if v == "exclusiveMinimum":
        return f"{shown} must be greater than {val}"
    if v == "minLength":
        return f"{shown} is shorter than {val} character(s)"
    if v == "maxLength":
        return f"{shown} is longer than {val} characters"
    if v == "minItems":
        return f"needs at least {val} item(s)"
    if v == "required":
        missing = [r for r in val if isinstance(inst, dict) and r not in inst]
        return f"missing required field {', '.join(repr(m) for m in missing)}"
    if v == "additionalProperties":
        extra = sorted(k for k in inst if k not in error.schema.get("properties", {})) if isinstance(inst, dict) else []
        return f"unknown field(s) {', '.join(repr(k) for k in extra)}"
    if v in ("anyOf", "oneOf"):
        types = []
        for sub in val:
            t = sub.get("type") or ("object" if "$ref" in sub else None)
            if t:
                types.extend(t if isinstance(t, list) else [t])
            elif "enum" in sub:
                types.append("one of " + ", ".join(map(str, sub["enum"])))
            elif "const" in sub:
                types.append(repr(sub["const"]))
        if types:
            return f"expected {' or '.join(dict.fromkeys(types))}, got {shown} ({_json_type(inst)})"
        return f"{shown} is not valid here"
    return error.message


def _short(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def iter_value_errors(spec: ParamSpec, value: Any):
    """(sub-path parts, sentence) for every schema violation of one value."""
    validator = spec.validator
    if validator.is_valid(value):
        return
    for err in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path))):
        yield list(err.absolute_path), humanize(err)
