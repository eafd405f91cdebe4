"""One JSON Schema for a whole inventory, for editors: completion, hover and typo flags while typing.

It is composed from the schemas `sty check` uses (the inventory's shape and every module's parameters), so an
editor and sty never disagree on a parameter's name, type, default or allowed values. yaml-language-server (VS
Code, Neovim, Helix …) validates with draft-07 and reads newer drafts only partly, so the composition is
draft-07: the module schemas are 2020-12 but keep to keywords both drafts share; `$defs` become
`definitions`, a `$ref` with sibling keywords (ignored beside `$ref` in draft-07) moves into `allOf`, and a
keyword draft-07 lacks is refused here rather than silently ignored by the editor.
"""

from __future__ import annotations

import re
from typing import Any

from .paths import SCHEMAS
from .render import to_json
from .schema import Registry, harden, registry

DRAFT = "http://json-schema.org/draft-07/schema#"
EDITOR_FILE = SCHEMAS / "editor" / "pigsty-inventory.schema.json"
REGENERATE = "sty schema -o schemas/editor/pigsty-inventory.schema.json"

# keywords of draft 2019-09/2020-12 that draft-07 has no equivalent for
_NEWER = frozenset(
    {
        "$anchor",
        "$dynamicAnchor",
        "$dynamicRef",
        "$recursiveAnchor",
        "$recursiveRef",
        "$vocabulary",
        "maxContains",
        "minContains",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
# keywords whose value is a mapping of names to schemas, and those whose value is data, not a schema
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_DATA = frozenset({"default", "enum", "const", "examples", "required", "dependentRequired"})
_LOCAL_DEF = re.compile(r"^#/\$defs/([^/]+)$")


class EditorSchemaError(ValueError):
    """A module schema uses something draft-07 cannot say; the editor schema would be wrong."""


def compose(reg: Registry | None = None) -> dict[str, Any]:
    """The inventory schema: its shape from schemas/inventory.json, and every vars block (`all.vars`, a group's
    `vars`, a host's own) closed to the parameters sty knows, those of modules it accepts without rendering,
    and Ansible's `ansible_*`."""
    reg = reg or registry()
    shape = reg.documents["inventory"]
    definitions: dict[str, Any] = {}
    for name, sub in shape.get("$defs", {}).items():
        definitions[name] = _convert(sub, "")
    for module, doc in reg.documents.items():
        if module == "inventory":
            continue
        for name, sub in harden({"$defs": doc.get("$defs", {})})["$defs"].items():
            definitions[f"{module}.{name}"] = _convert(sub, module)
    definitions["vars"] = _vars(reg, definitions.get("vars", {}))
    top = {k: v for k, v in shape.items() if k not in ("$schema", "$id", "$defs", "title", "description")}
    return {
        "$schema": DRAFT,
        "title": "Pigsty inventory (sty)",
        "description": (
            "a Pigsty inventory with every parameter sty knows; generated from sty's schemas by `sty schema`, "
            "do not edit"
        ),
        **_convert(top, ""),
        "definitions": definitions,
    }


def render(reg: Registry | None = None) -> str:
    """The schema as deterministic JSON: sorted keys, 2-space indent, a trailing newline."""
    return to_json(compose(reg))


def _vars(reg: Registry, base: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, spec in sorted(reg.params.items()):
        prop = _convert(harden(spec.schema, name), spec.module)
        if spec.secret:  # Pigsty's published password: completing it would write it into the inventory
            prop.pop("default", None)
        properties[name] = prop
    for name, module in sorted(reg.unrendered.items()):
        properties.setdefault(name, {"description": _unrendered(module)})
    patterns = {
        f"^{re.escape(prefix)}": {"description": _unrendered(module)} for prefix, module in reg.unrendered_prefixes
    }
    return {
        **{k: v for k, v in base.items() if k not in ("properties", "additionalProperties")},
        "description": "parameters as name: value; sty flags a name it does not know",
        "properties": properties,
        "patternProperties": dict(sorted(patterns.items())),
        "additionalProperties": False,
    }


def _unrendered(module: str) -> str:
    return f"a parameter of the {module} module, which sty accepts but does not render"


def _convert(node: Any, module: str) -> Any:
    """A 2020-12 module schema fragment as draft-07, its `$defs` references pointing into the module's
    namespace of the composed `definitions`; `x-*` annotations (sty's own) are dropped, `x-closed` becoming
    `additionalProperties: false`."""
    if isinstance(node, list):
        return [_convert(item, module) for item in node]
    if not isinstance(node, dict):
        return node
    newer = _NEWER & node.keys()
    if newer:
        raise EditorSchemaError(f"the {module or 'inventory'} schema uses {sorted(newer)[0]}, which draft-07 lacks")
    out: dict[str, Any] = {}
    dependencies: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or key in ("$schema", "$id"):
            continue
        if key == "$ref":
            out[key] = _ref(value, module)
        elif key == "dependentRequired":
            dependencies.update(value)
        elif key == "dependentSchemas":
            dependencies.update({k: _convert(v, module) for k, v in value.items()})
        elif key == "prefixItems":
            out["items"] = _convert(value, module)
            if "items" in node:
                out["additionalItems"] = _convert(node["items"], module)
        elif key == "items" and "prefixItems" in node:
            continue
        elif key in _DATA:
            out[key] = value
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out["definitions" if key == "$defs" else key] = {k: _convert(v, module) for k, v in value.items()}
        else:
            out[key] = _convert(value, module)
    if dependencies:
        out["dependencies"] = dependencies
    if node.get("x-closed") is True:  # sty refuses a field the object does not list (a typo): so does the editor
        out["additionalProperties"] = False
    if "$ref" in out and len(out) > 1:  # draft-07 ignores keywords beside $ref
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _ref(ref: str, module: str) -> str:
    match = _LOCAL_DEF.match(ref)
    if match is None:
        raise EditorSchemaError(f"the {module or 'inventory'} schema refers to {ref}, outside its own $defs")
    return f"#/definitions/{module}.{match[1]}" if module else f"#/definitions/{match[1]}"
