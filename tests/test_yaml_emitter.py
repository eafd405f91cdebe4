"""The fast YAML writer (compiler/yaml_emitter.py) is byte-identical to PyYAML's dump with sty's settings, on
random data built to hit quoting, literal blocks and nesting. Every document of every Pigsty example's build is
compared too, in tests/test_corpus.py (which renders them anyway), and the shipped inventories in
test_shipped_inventories_are_byte_identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from shared import ROOT

from sty.compiler import render, yaml_emitter
from sty.compiler.build import render_targets
from sty.compiler.pipeline import compile_fleet, resolve_target

FAST_DUMP = yaml_emitter.dump  # taken before a test patches the module with a spy
TRICKY = [
    "",
    " ",
    "-",
    "- x",
    "?",
    ": x",
    "a: b",
    "a #b",
    "#x",
    "x#",
    "yes",
    "No",
    "on",
    "null",
    "~",
    "=",
    "<<",
    "123",
    "0x1f",
    "1_000",
    "1:20",
    "1e3",
    ".5",
    ".inf",
    "2001-12-14",
    "it's",
    "'q'",
    '"q"',
    "a\\b",
    "tab\there",
    "ü",
    "trailing ",
    " leading",
    "a\nb",
    "a\nb\n",
    "a\n\nb\n\n",
    "  lead\nx",
    "x \ny",
    "@x",
    "%x",
    "&x",
    "*x",
    "!x",
    "|x",
    ">x",
    "[x]",
    "{x}",
    "a,b",
    "a[0]",
    "x" * 1500,
    ("word " * 300).strip(),
    "\x07bell",
    "/etc/a.conf",
    "${var}",
    "$1",
    "...",
    "...x",
    ".x",
    "a:b",
    "a:",
    "a::b",
    "10.0.0.1:9630",
    "a#b",
    "x,y",
    "q?",
    "[? pg_role == `primary`]",
    "a: ",
    "x\r",
    "line\u2028sep",
]
scalars = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=12),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
)
keys = st.one_of(st.sampled_from(TRICKY[:40]), st.text(min_size=1, max_size=8))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=25,
)


@pytest.mark.parametrize("inventory", [ROOT / "pigsty.yml", ROOT / "conf/testbed.yml"], ids=lambda p: p.name)
def test_shipped_inventories_are_byte_identical(inventory: Path, monkeypatch):
    seen: list = []
    real = yaml_emitter.dump
    monkeypatch.setattr(yaml_emitter, "dump", lambda data, fallback: seen.append(data) or real(data, fallback))
    compiled = compile_fleet(inventory)
    render_targets(compiled, resolve_target(compiled.fleet, None))
    assert len(seen) > 10  # manifests, Patroni, scrape targets ... went through the writer
    for data in seen:
        assert FAST_DUMP(data, render.pyyaml_dump) == render.pyyaml_dump(data)


# derandomized: CI runs the same 1000 documents each time (seeds were explored by hand: 30 seeds x 400 pass)
@settings(max_examples=1000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
@example([["line\u2028sep", "cr\rlf", "nel\x85"]])  # line breaks YAML has besides \n
@example([0.0, -0.0, {"a": -0.0, "b": 0.0}])  # equal and hashed alike, written differently: no shared memo
@example([1e16, 1.0, float("inf"), -float("inf")])
def test_random_documents_are_byte_identical(data):
    assert yaml_emitter.dump(data, render.pyyaml_dump) == render.pyyaml_dump(data)


@pytest.mark.parametrize("value", TRICKY)
def test_tricky_scalars_at_depth_round_trip(value):
    doc = {"a": [{"b": {"c": value, value or "e": [value, [value]]}}], "d": value}
    text = yaml_emitter.dump(doc, render.pyyaml_dump)
    assert text == render.pyyaml_dump(doc)
    assert yaml.safe_load(text) == doc


def test_plain_strings_skip_pyyaml():
    """The point of the writer: a document of plain strings never reaches PyYAML."""
    calls: list = []

    def fallback(data):
        calls.append(data)
        return render.pyyaml_dump(data)

    doc = {"scrape_configs": [{"job_name": f"pg-{i}", "targets": [f"10.0.0.{i}:9630"]} for i in range(50)]}
    assert yaml_emitter.dump(doc, fallback) == render.pyyaml_dump(doc)
    assert calls == []


def test_an_item_laid_out_once_is_copied_where_it_fits_and_laid_out_again_elsewhere():
    """A manifest's file entry is laid out once (render.list_item) and copied into every manifest that lists it; in
    any other position it is still the mapping it was made from."""
    entry = {"path": "/etc/x", "mode": "0644", "actions": [{"action": "none"}], "note": "a: b", "n": 1}
    item = render.list_item(entry)
    assert isinstance(item, yaml_emitter.Emitted) and item == entry
    for doc in (
        {"files": [item, {"path": "/etc/y"}], "z": 1},  # where it was laid out: copied
        {"a": {"files": [item]}},  # one level deeper: laid out again
        [[item]],  # the first item of a nested list
        {"files": [item], "weird": 1.5},
        {"entry": item},  # a mapping's value: laid out as the mapping it is
    ):
        plain = json.loads(json.dumps(doc))  # the same data without the laid-out item
        assert FAST_DUMP(doc, render.pyyaml_dump) == render.pyyaml_dump(doc) == render.pyyaml_dump(plain)
    assert render.to_yaml({"files": [item]}) == render.to_yaml({"files": [entry]})
    # a mapping only PyYAML lays out (a multi-line key) stays a plain mapping
    assert type(render.list_item({"a\nb": 1})) is dict
