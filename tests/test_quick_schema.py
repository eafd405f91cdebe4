"""The quick "yes" of compiler/quick_schema.py: it accepts every real inventory (else it saves nothing), and it
never accepts what jsonschema refuses (else an invalid shape would pass), on generated inventories too."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from shared import CORPUS

from sty.compiler.quick_schema import surely_valid
from sty.compiler.schema import registry, strict_validator

SHAPE = registry().documents["inventory"]
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
    assert not surely_valid({"type": "integer"}, 1, {})
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
