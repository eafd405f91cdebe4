"""The quick "yes" of compiler/quick_schema.py: it accepts every real inventory and every value Pigsty's examples
give a parameter (else it saves nothing), and it never accepts what jsonschema refuses (else an invalid value
would pass), on generated inventories and generated parameter values too."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from shared import CORPUS

from sty.compiler.loader import load_inventory
from sty.compiler.quick_schema import surely_valid
from sty.compiler.schema import registry, strict_validator

REGISTRY = registry()
SHAPE = REGISTRY.documents["inventory"]
JUDGE = strict_validator(SHAPE)
INVENTORIES = sorted(CORPUS.rglob("*.yml"))


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_every_pigsty_example_is_surely_valid(inventory) -> None:
    data = yaml.load(inventory.read_text(), Loader=yaml.CSafeLoader)
    assert JUDGE.is_valid(data) and surely_valid(SHAPE, data, SHAPE)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"all": None},
        {"all": {}, "other": {}},
        {"all": {"hostz": {}}},
        {"all": {"children": {"g": {"hosts": []}}}},
        {"all": {"children": {"g": {"hosts": {"10.0.0.1": {1: "x"}}}}}},
        {"all": {"children": {"g": {"vars": ["pg_cluster"]}}}},
        {"all": {"children": {"g": {"children": {"h": {"vars": {"a": 1}, "extra": 1}}}}}},
        {"all": {"vars": "text"}},
        [],
    ],
)
def test_what_jsonschema_refuses_is_never_surely_valid(data) -> None:
    assert not JUDGE.is_valid(data)
    assert not surely_valid(SHAPE, data, SHAPE)


def test_a_keyword_or_type_it_does_not_know_is_not_sure() -> None:
    assert not surely_valid({"type": "object", "minProperties": 1}, {"a": 1}, {})
    assert not surely_valid({"type": "date"}, "2026-11-30", {})
    assert not surely_valid({"$ref": "https://elsewhere/schema.json"}, {}, {})
    assert not surely_valid({"$ref": "#/$defs/missing"}, {}, {"$defs": {}})
    assert surely_valid({"$ref": "#/$defs/a~1b"}, "x", {"$defs": {"a/b": {"type": "string"}}})
    assert not surely_valid({"type": "object"}, True, {})  # a bool is not an object, nor an integer
    assert surely_valid({"type": ["object", "null"]}, None, {})


KEYS = st.sampled_from(["all", "children", "hosts", "vars", "g", "10.0.0.1", "pg_cluster", 1, None, True])
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from(["", "x", "pg-test"]))
DATA = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=25,
)


def _shaped(draw_data: object) -> dict:
    """An inventory whose structure is mostly right, with generated values where groups, hosts and vars go."""
    return {"all": {"children": {"g": {"hosts": {"10.0.0.1": draw_data}, "vars": draw_data}}, "vars": draw_data}}


@settings(max_examples=400, deadline=None, derandomize=True)
@given(DATA, st.booleans())
def test_on_generated_data_a_yes_is_always_jsonschemas_yes(data, shaped) -> None:
    doc = _shaped(data) if shaped else data
    if surely_valid(SHAPE, doc, SHAPE):
        assert JUDGE.is_valid(doc), doc


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_every_value_of_pigsty_examples_is_surely_valid_as_jsonschema_says(inventory) -> None:
    inv = load_inventory(inventory)
    blocks = [inv.all_vars, *(g.vars for g in inv.groups.values()), *(b for d in inv.hosts.values() for b in d.blocks)]
    checked = 0
    for block in blocks:
        for key, value in block.data.items():
            spec = REGISTRY.get(key)
            if spec is not None:
                schema = spec.checked_schema
                assert surely_valid(schema, value, schema) is spec.validator.is_valid(value) is True, (key, value)
                checked += 1
    assert checked


@pytest.mark.parametrize(
    ("schema", "value", "sure"),
    [
        ({"type": "integer"}, 1, True),
        ({"type": "integer"}, True, False),  # strict: a bool is no integer
        ({"type": "integer"}, 1.0, False),
        ({"type": "number"}, 1.5, True),
        ({"type": "number"}, False, False),
        ({"pattern": "^[a-z]+$"}, "name", True),
        ({"pattern": "^[a-z]+$"}, "name\n", False),  # the whole string, as the strict validator matches
        ({"pattern": "[a-z]"}, "1a1", False),
        ({"enum": ["a", 1]}, "a", True),
        ({"enum": [1]}, True, False),  # jsonschema tells 1 from True
        ({"enum": [True]}, 1, False),
        ({"enum": [1]}, 1.0, False),  # jsonschema takes 1.0 for 1: not sure here, so jsonschema says
        ({"const": None}, None, True),
        ({"minimum": 1, "maximum": 3}, 3, True),
        ({"minimum": 1, "maximum": 3}, 4, False),
        ({"exclusiveMaximum": 3}, 3, False),
        ({"minimum": 1}, "text", True),  # number keywords say nothing of strings
        ({"minLength": 2, "maxLength": 3}, "abcd", False),
        ({"items": {"type": "string"}, "minItems": 1}, ["a", "b"], True),
        ({"items": {"type": "string"}}, ["a", 2], False),
        ({"maxItems": 1}, [1, 2], False),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 2, True),
        ({"anyOf": [{"type": "string"}]}, 2, False),
        ({"properties": {"a": {"type": "string"}}, "additionalProperties": False}, {"a": "x"}, True),
        ({"properties": {"a": {"type": "string"}}, "additionalProperties": False}, {"a": "x", "b": 1}, False),
        ({"properties": {"a": {"type": "string"}}}, {"a": 1}, False),
        ({"type": "string", "x-secret": True, "description": "d"}, "s", True),  # annotations are ignored
        ({"format": "ipv4"}, "10.0.0.1", False),  # a keyword it does not know
    ],
)
def test_each_keyword_means_what_the_strict_validator_means(schema, value, sure) -> None:
    assert surely_valid(schema, value, schema) is sure
    if sure:
        assert strict_validator(schema).is_valid(value)


PARAMS = sorted(REGISTRY.params)
VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from([0, 1, -1, 5432, 65535, 65536, 1.0, 0.5, "", "x", "pg-test", "10.10.10.10", "a b", "ab\n"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["name", "password", "state", "port", "x", "roles", "pgbouncer"]), inner),
    ),
    max_leaves=12,
)


@settings(max_examples=600, deadline=None, derandomize=True)
@given(st.sampled_from(PARAMS), VALUES)
def test_on_generated_values_of_every_parameter_a_yes_is_always_jsonschemas_yes(name, value) -> None:
    spec = REGISTRY.params[name]
    schema = spec.checked_schema
    if surely_valid(schema, value, schema):
        assert spec.validator.is_valid(value), (name, value)


def test_every_parameters_default_is_surely_valid() -> None:
    """The defaults are valid by construction: each one the quick path cannot vouch for would cost a jsonschema
    import in every build that sets it."""
    unsure = []
    for name, spec in REGISTRY.params.items():
        schema = spec.checked_schema
        if (
            spec.has_default
            and spec.validator.is_valid(spec.default)
            and not surely_valid(schema, spec.default, schema)
        ):
            unsure.append(name)
    assert unsure == []


EDGES = [None, True, False, 0, 1, -1, 2, 65535, 65536, 1.0, 0.5, "", "x", "pg-test", "ab\n", "10.10.10.10", "primary"]
EDGES += [[], ["x"], [1], [{"name": "x"}], {}, {"name": "x"}, {"name": "x", "unknown": 1}, {"name": 1}]


def test_on_edge_values_of_every_parameter_a_yes_is_always_jsonschemas_yes() -> None:
    """Every parameter against the values where a wrong reading of a keyword shows: bools for integers, 65536
    for ports, a trailing newline for patterns, floats, unknown fields."""
    said_yes = 0
    for name, spec in sorted(REGISTRY.params.items()):
        schema = spec.checked_schema
        for value in [*EDGES, spec.default]:
            if surely_valid(schema, value, schema):
                said_yes += 1
                assert spec.validator.is_valid(value), (name, value)
    assert said_yes > 1000  # the quick path does answer
