"""The editor schema (schemas/editor/pigsty-inventory.schema.json, `sty schema`): never stale, valid draft-07
(what yaml-language-server validates with), accepts every Pigsty example inventory and sty's own, and flags a
misspelt parameter, a wrong type or a value outside its rules in every vars block."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import yaml
from conftest import ROOT, run_sty, shipped_inventory
from jsonschema import Draft7Validator
from shared import CORPUS

from sty.compiler.editor_schema import DRAFT, EDITOR_FILE, EditorSchemaError, compose, render
from sty.compiler.schema import ParamSpec, registry

INVENTORIES = [*sorted(CORPUS.rglob("*.yml")), ROOT / "pigsty.yml", *sorted((ROOT / "conf").glob("*.yml"))]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return json.loads(EDITOR_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator(doc) -> Draft7Validator:
    return Draft7Validator(doc)


def messages(validator: Draft7Validator, data: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(data)]


# -- the shipped file --------------------------------------------------------------------------------------


def test_shipped_schema_equals_a_fresh_generation():
    assert EDITOR_FILE.read_text(encoding="utf-8") == render(), (
        "schemas/editor/pigsty-inventory.schema.json is stale: "
        "run .venv/bin/sty schema -o schemas/editor/pigsty-inventory.schema.json"
    )


def test_sty_schema_prints_it_and_writes_it(tmp_path):
    shipped = EDITOR_FILE.read_text(encoding="utf-8")
    assert run_sty("schema", cwd=tmp_path, check_rc=0).stdout == shipped
    run_sty("schema", "-o", "inv.schema.json", cwd=tmp_path, check_rc=0)
    assert (tmp_path / "inv.schema.json").read_text(encoding="utf-8") == shipped


def test_sty_schema_to_an_unwritable_place_fails_with_a_sentence(tmp_path):
    proc = run_sty("schema", "-o", str(tmp_path / "missing" / "x.json"), cwd=tmp_path, check_rc=3)
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")


def test_json_is_deterministic():
    text = EDITOR_FILE.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert render() == render()


def test_is_a_valid_draft07_schema_whose_references_all_resolve(doc):
    assert doc["$schema"] == DRAFT
    Draft7Validator.check_schema(doc)
    text = json.dumps(doc)
    assert "$defs" not in text  # draft-07 has `definitions`; a `$defs` reference would dangle in the editor

    def refs(node: Any):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for v in node.values():
                yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    targets = set(refs(doc))
    assert "#/definitions/pgsql.user" in targets and "#/definitions/vars" in targets
    for ref in targets:
        assert ref.startswith("#/definitions/") and ref.removeprefix("#/definitions/") in doc["definitions"], ref


def test_every_parameter_with_its_type_default_description_and_rules(doc):
    block = doc["definitions"]["vars"]
    props = block["properties"]
    assert block["additionalProperties"] is False
    reg = registry()
    for name, spec in reg.params.items():
        prop = props[name]
        assert prop.get("description") == spec.description, name
        for key in ("type", "enum", "pattern", "items", "examples"):
            if key in spec.schema and key != "items":
                assert prop[key] == spec.schema[key], (name, key)
            elif key == "items" and "items" in spec.schema:
                assert "items" in prop, name
        if spec.secret:  # Pigsty's published password is never offered for completion
            assert "default" not in prop, name
        elif spec.has_default:
            assert prop["default"] == spec.default, name
    assert props["pg_port"]["maximum"] == 65535  # sty's implicit port range is stated for the editor too
    for name in reg.unrendered:
        assert name in props, name


# -- inventories -------------------------------------------------------------------------------------------


def test_the_corpus_is_there():
    assert len(INVENTORIES) >= 20


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_example_inventories_are_valid(validator, path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert messages(validator, data) == []


def _blocks(data: dict[str, Any]) -> dict[str, tuple[dict[str, Any], list[Any]]]:
    return {
        "all": (data["all"]["vars"], ["all", "vars"]),
        "group": (data["all"]["children"]["pg-test"]["vars"], ["all", "children", "pg-test", "vars"]),
        "host": (
            data["all"]["children"]["pg-test"]["hosts"]["10.10.10.11"],
            ["all", "children", "pg-test", "hosts", "10.10.10.11"],
        ),
    }


@pytest.mark.parametrize("where", ["all", "group", "host"])
def test_a_misspelt_parameter_is_flagged_in_every_vars_block(validator, where):
    data = shipped_inventory()
    block, path = _blocks(data)[where]
    block["pg_verison"] = 16
    errors = list(validator.iter_errors(data))
    assert len(errors) == 1
    assert list(errors[0].absolute_path) == path and "pg_verison" in errors[0].message


@pytest.mark.parametrize(
    "key, value",
    [
        ("pg_port", "5432"),  # wrong type
        ("pg_port", 70000),  # outside sty's port range
        ("pg_io_method", "fast"),  # outside the enum
        ("admin_ip", "10.10.10"),  # pattern
        ("pg_users", [{"name": "app", "login": "yes"}]),  # a field of an item
        ("pg_users", [{"pgbouncer": True}]),  # an item without its required name
        ("pg_hba_rules", [{"user": "all", "db": "all"}]),  # neither addr nor rules (anyOf)
        ("redis_instances", {"port": {}}),  # keys are ports
    ],
)
def test_a_wrong_value_is_invalid(validator, key, value):
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["vars"][key] = value
    assert messages(validator, data)


@pytest.mark.parametrize(
    "key", ["ansible_become_password", "ansible_anything_new", "kafka_cluster", "docker_registry", "app"]
)
def test_ansible_and_unrendered_modules_parameters_are_allowed(validator, key):
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"][key] = "x"
    assert messages(validator, data) == []


def test_null_vars_and_hosts_are_allowed(validator):
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["vars"]["pg_cluster"] = "pg-test"
    data["all"]["children"]["pg-test"]["hosts"]["10.10.10.13"] = None
    data["all"]["children"]["extra"] = {"hosts": None, "vars": None}
    assert messages(validator, data) == []


def test_an_unknown_top_level_key_is_flagged(validator):
    data = shipped_inventory()
    data["al"] = {}
    assert any("'al'" in m for m in messages(validator, data))


# -- composition rules -------------------------------------------------------------------------------------


def _with_param(schema: dict[str, Any]):
    reg = registry()
    defs = reg.params["pg_users"].defs
    params = {**reg.params, "pg_toy": ParamSpec("pg_toy", "pgsql", schema, defs)}
    return dataclasses.replace(reg, params=params)


def test_a_keyword_draft07_lacks_is_refused_not_dropped():
    reg = _with_param({"type": "object", "unevaluatedProperties": False, "description": "toy"})
    with pytest.raises(EditorSchemaError, match="unevaluatedProperties"):
        compose(reg)


def test_ref_beside_other_keywords_still_validates_in_draft07():
    """Draft-07 ignores keywords beside `$ref`; the composition keeps both by moving the reference into allOf."""
    reg = _with_param({"$ref": "#/$defs/user", "description": "one user", "x-secret-fields": ["password"]})
    doc = compose(reg)
    prop = doc["definitions"]["vars"]["properties"]["pg_toy"]
    assert prop["allOf"] == [{"$ref": "#/definitions/pgsql.user"}] and prop["description"] == "one user"
    assert not any(k.startswith("x-") for k in prop)
    data = {"all": {"vars": {"pg_toy": {"name": "u", "login": "yes"}}}}
    assert messages(Draft7Validator(doc), data)


def test_dependent_required_becomes_dependencies():
    reg = _with_param({"type": "object", "dependentRequired": {"a": ["b"]}, "description": "toy"})
    doc = compose(reg)
    assert doc["definitions"]["vars"]["properties"]["pg_toy"]["dependencies"] == {"a": ["b"]}
    v = Draft7Validator(doc)
    assert messages(v, {"all": {"vars": {"pg_toy": {"a": 1}}}})
    assert not messages(v, {"all": {"vars": {"pg_toy": {"a": 1, "b": 2}}}})


def test_objects_sty_closes_are_closed_for_the_editor(doc, validator):
    """`x-closed` (every field Pigsty reads is listed, so sty refuses another) becomes additionalProperties false."""
    reg = registry()
    closed = [
        f"{module}.{name}"
        for module, document in reg.documents.items()
        for name, sub in document.get("$defs", {}).items()
        if sub.get("x-closed")
    ]
    for name in closed:
        assert doc["definitions"][name]["additionalProperties"] is False, name
    if "pgsql.user" in closed:
        data = shipped_inventory()
        data["all"]["children"]["pg-test"]["vars"]["pg_users"][0]["pgbouncr"] = True
        assert any("pgbouncr" in m for m in messages(validator, data))
