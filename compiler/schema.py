"""The parameter registry: every inventory parameter, read from the JSON Schemas in schemas/.

The schemas are the single source of truth for types, defaults, descriptions and secrecy;
nothing else in the compiler lists parameters.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from .paths import CODE, SCHEMAS, code_digest  # noqa: F401 (code_digest: its old home)
from .quick_schema import surely_valid
from .resolve import SecretShape


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
    def checked_schema(self) -> dict[str, Any]:
        """The hardened schema (see `harden`) values are checked against: the registry keeps the schema as
        written, for `sty explain` and defaults."""
        schema = harden(self.schema, self.name)
        if self.defs:
            schema["$defs"] = _hardened_defs(self.module, self.defs)
        return schema

    @cached_property
    def validator(self):
        """A strict validator over `checked_schema`."""
        return strict_validator(self.checked_schema)


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
        """The parameter a misspelt name most likely meant (rendered or not)."""
        return closest(name, self._names)

    @cached_property
    def _names(self) -> list[str]:
        return sorted({*self.params, *self.unrendered})

    @cached_property
    def defaults(self) -> dict[str, Any]:
        return {n: p.schema["default"] for n, p in sorted(self.params.items()) if "default" in p.schema}

    @cached_property
    def secret_shapes(self) -> dict[str, SecretShape]:
        """Parameters that hold secrets, and where (placeholders may copy a secret only into a secret)."""
        return {
            n: SecretShape(whole=p.secret, fields=frozenset(p.secret_fields), values=p.secret_values)
            for n, p in self.params.items()
            if p.secret or p.secret_fields or p.secret_values
        }

    @cached_property
    def secret_defaults(self) -> dict[str, Any]:
        return {n: p.schema.get("default") for n, p in self.params.items() if p.secret}


def closest(name: str, known: Any, cutoff: float = 0.8) -> str | None:
    """The known name `name` most likely misspells, if one is close enough to be worth saying."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=cutoff)
    return close[0] if close else None


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


# -- rules the schemas state loosely, tightened in code -----------------------------------------------------

PORT_RANGE = (1, 65535)
NAME_PATTERNS = ("^[A-Za-z0-9-]+$",)  # cluster names: they become host names and DNS labels
NAME_MAX = 63  # one DNS label


def _strict_integer(_checker: Any, value: Any) -> bool:
    """JSON Schema's `integer` accepts 9102.0, which a template then renders as `:9102.0`; bools are ints in
    Python. An integer parameter takes an int and nothing else."""
    return isinstance(value, int) and not isinstance(value, bool)


def _full_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Any:
    """jsonschema matches `pattern` with re.search, so `^name$` accepts "name\n" (`$` matches before a final
    newline) and the wrong parameter gets blamed later. A pattern describes the whole string: fullmatch."""
    from jsonschema.exceptions import ValidationError

    if isinstance(instance, str) and _regex(pattern).fullmatch(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@lru_cache(maxsize=1)
def _strict_class() -> Any:
    from jsonschema import Draft202012Validator, validators

    checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer)
    return validators.extend(Draft202012Validator, validators={"pattern": _full_pattern}, type_checker=checker)


def strict_validator(schema: dict[str, Any]) -> Any:
    """The Draft 2020-12 validator every inventory check uses: strict integers, whole-string patterns."""
    return _strict_class()(schema)


def harden(schema: Any, name: str = "") -> Any:
    """A copy of a parameter's schema with the limits the schema files leave implicit: a port (`*_port` or
    `port`) is 1-65535 even where no minimum/maximum is written, and a cluster name (the `[A-Za-z0-9-]+`
    pattern) is one DNS label, at most 63 characters, because it becomes part of host and file names."""
    if isinstance(schema, list):
        return [harden(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "$defs", "patternProperties"):
            out[key] = {k: harden(v, k) for k, v in value.items()} if isinstance(value, dict) else value
        elif key in ("default", "enum", "const", "examples"):
            out[key] = value
        else:
            out[key] = harden(value)
    if (name == "port" or name.endswith("_port")) and out.get("type") == "integer":
        out.setdefault("minimum", PORT_RANGE[0])
        out.setdefault("maximum", PORT_RANGE[1])
    if out.get("pattern") in NAME_PATTERNS:
        out.setdefault("maxLength", NAME_MAX)
    return out


_DEFS: dict[str, dict[str, Any]] = {}


def _hardened_defs(module: str, defs: dict[str, Any]) -> dict[str, Any]:
    if module not in _DEFS:
        _DEFS[module] = harden({"$defs": defs})["$defs"]
    return _DEFS[module]


def humanize(error: Any, secret: bool = False) -> str:
    """One plain sentence for a jsonschema ValidationError; a secret value is never quoted."""
    v = error.validator
    inst = error.instance
    val = error.validator_value
    shown = "the secret value" if secret and isinstance(inst, (str, int, float)) else _short(inst)
    if v == "type":
        want = " or ".join(val) if isinstance(val, list) else val
        return f"expected {_article(want)}, got {shown} ({_json_type(inst)})"
    if v == "enum":
        return f"{shown} is not one of: {', '.join(str(x) for x in val)}"
    if v == "const":
        return f"must be {val!r}, got {shown}"
    if v == "pattern":
        return f"{shown} {_pattern_sentence(val, error.schema)}"
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
        props = error.schema.get("properties", {})
        extra = sorted((k for k in inst if k not in props), key=str) if isinstance(inst, dict) else []
        return f"unknown field(s) {', '.join(repr(k) for k in extra)}"
    if v == "maxItems":
        return f"has more than {val} item(s)"
    if v == "exclusiveMaximum":
        return f"{shown} must be less than {val}"
    if v == "uniqueItems":
        return "has the same item more than once"
    if v in ("minProperties", "maxProperties"):
        return f"needs {'at least' if v == 'minProperties' else 'at most'} {val} entr{'y' if val == 1 else 'ies'}"
    if v == "multipleOf":
        return f"{shown} is not a multiple of {val}"
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
    # a rule without a sentence of its own: never jsonschema's text, which may quote a regex
    return f"{shown} breaks this parameter's '{v}' rule"


_IPV4 = r"((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# what each well-known pattern of the schemas means, said to a person (a regex is not a sentence)
PATTERN_SENTENCES = {
    f"^{_IPV4}$": "is not an IPv4 address (like 10.10.10.10)",
    f"^{_IPV4}/([0-9]|[12][0-9]|3[0-2])$": "is not an IPv4 address with a prefix length (like 10.10.10.2/24)",
    "^[A-Za-z0-9-]+$": "is not a valid name: use only letters, digits and '-'",
    "^[A-Za-z0-9_-]+$": "is not a valid name: use only letters, digits, '_' and '-'",
    "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$": (
        "is not a valid name: up to 63 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    ),
    "^[A-Za-z0-9_][A-Za-z0-9_.$-]{0,62}$": (
        "is not a valid name: up to 63 letters, digits, '_', '.', '$' or '-', not starting with '.', '$' or '-'"
    ),
    "^[0-9]+$": "is not a number (digits only)",
    "^[a-z_][a-z0-9_-]{0,31}$": "is not a valid user name: up to 32 lowercase letters, digits, '_' or '-'",
    "^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,252}$": "is not a host name or address (letters, digits, '.', ':', '-' and '_')",
    "^[^/\\s]+\\.ya?ml$": "is not a plain file name ending in .yml or .yaml",
    "^([0-9a-fA-F]{64})?$": "is not 64 hexadecimal digits (or empty)",
}


def pattern_sentence(pattern: str, schema: dict[str, Any]) -> str | None:
    """What a pattern means, said to a person: the schema's own `x-pattern-sentence` beside the pattern, else a
    well-known pattern's sentence; None when neither exists (tests/test_typos.py requires one for every pattern
    of schemas/*.json)."""
    own = schema.get("x-pattern-sentence")
    return str(own) if own else PATTERN_SENTENCES.get(pattern)


def _pattern_sentence(pattern: str, schema: dict[str, Any]) -> str:
    """The sentence for a failed pattern, never the regex itself: the rule's description as a last resort."""
    known = pattern_sentence(pattern, schema)
    if known:
        return known
    what = str(schema.get("description") or "").split(",")[0].strip()
    return f"is not a valid {what}" if what else "is not in the form this parameter takes"


def _short(value: Any) -> str:
    """A value quoted in a message: scalars as JSON, shortened; containers by their keys or length only,
    since a mapping or a list may hold a password next to the field that is wrong."""
    if isinstance(value, dict):
        keys = ", ".join(str(k) for k in list(value)[:6])
        return "{" + keys + (", ..." if len(value) > 6 else "") + "}"
    if isinstance(value, list):
        return f"[{len(value)} item(s)]"
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):  # keys json cannot hold (dates, tuples), a cycle
        text = repr(value)
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
    """(sub-path parts, sentence) for every schema violation of one value; secret values are never quoted, and a
    secret no bundle can carry (a line break, NUL) is refused here, where build and apply agree."""
    from .secrets import secret_problems, touches_secret

    yield from secret_problems(spec, value)
    schema = spec.checked_schema
    if surely_valid(schema, value, schema):  # jsonschema (imported only then) writes the messages
        return
    validator = spec.validator
    if validator.is_valid(value):
        return
    for err in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path))):
        yield list(err.absolute_path), humanize(err, secret=touches_secret(spec, err))


# -- names sty can tell are not Pigsty's: typos ------------------------------------------------------------

_SPLIT = re.compile(r"[,\s]+")  # Pigsty splits package lists on commas and blanks (roles/pgsql/tasks/install.yml)


def iter_unknown_names(spec: ParamSpec, value: Any) -> Iterator[tuple[list[str | int], str]]:
    """(sub-path parts, sentence) for every name in a value that the schema can tell is unknown, so a typo is
    caught instead of silently ignored: a field of an object the schema closes (`x-closed`: its properties are
    every field Pigsty reads), and a name missing from a list of known names (`x-known-names`, a data file of
    compiler/modules/). The caller reports them as unknown names (errors unless --allow-unknown)."""
    stack: list[tuple[Any, Any, list[str | int]]] = [(spec.schema, value, [])]
    while stack:  # bounded: the loader refused alias bombs
        schema, item, sub = stack.pop()
        schema = _resolve(schema, spec.defs)
        if isinstance(item, dict):
            props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
            extra = schema.get("additionalProperties")
            for key, val in item.items():
                here = [*sub, str(key)]
                if key in props:
                    stack.append((props[key], val, here))
                elif schema.get("x-closed"):
                    yield here, _unknown_field(str(key), props)
                elif isinstance(extra, dict):
                    stack.append((extra, val, here))
        elif isinstance(item, list) and isinstance(schema.get("items"), dict):
            stack.extend((schema["items"], v, [*sub, i]) for i, v in enumerate(item))
        elif isinstance(item, str) and schema.get("x-known-names"):
            names = known_names(schema["x-known-names"])
            for name in _SPLIT.split(item.strip()) if names.split else [item]:
                if name and not names.knows(name):
                    yield sub, names.unknown(name)


def _resolve(schema: Any, defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "") if isinstance(schema, dict) else ""
    if ref.startswith("#/$defs/"):
        return defs.get(ref.removeprefix("#/$defs/"), {})
    return schema if isinstance(schema, dict) else {}


def _unknown_field(key: str, props: dict[str, Any]) -> str:
    hint = closest(key, props, cutoff=0.75)
    if hint:
        return f"unknown field '{key}'; did you mean '{hint}'?"
    return f"unknown field '{key}'; the fields here are {', '.join(sorted(props))}"


@dataclass(frozen=True)
class NameList:
    """Names a schema value must be one of (`x-known-names` points at its data file in compiler/modules/):
    `what` they are, for the sentence; `accept`, a regex of names written out in full that need no entry
    (a versioned package); `split`, whether one string holds several names; `advice` when nothing is close."""

    what: str
    names: frozenset[str]
    accept: str = ""
    split: bool = False
    advice: str = ""

    def knows(self, name: str) -> bool:
        return name in self.names or bool(self.accept and _regex(self.accept).search(name))

    def unknown(self, name: str) -> str:
        hint = closest(name, self.names)
        if hint:
            return f"unknown {self.what} '{name}'; did you mean '{hint}'?"
        return f"unknown {self.what} '{name}'" + (f"; {self.advice}" if self.advice else "")


@lru_cache(maxsize=8)
def known_names(ref: str) -> NameList:
    """The list a schema's `x-known-names` points at (`pgsql/package_aliases.json`), read once."""
    root = (CODE / "modules").resolve()
    path = (root / ref).resolve()
    if root not in path.parents:
        raise RuntimeError(f"x-known-names {ref!r} is outside compiler/modules")
    doc = json.loads(path.read_text(encoding="utf-8"))
    names = frozenset(n for group in doc["names"].values() for n in group)
    return NameList(doc["what"], names, doc.get("accept", ""), bool(doc.get("split")), doc.get("advice", ""))
