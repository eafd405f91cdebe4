"""YAML anchor holders: a key sty does not know whose value defines an anchor that an alias (or a merge key `<<`)
uses elsewhere is accepted silently and never becomes a parameter; an anchor nothing uses leaves the key an
unknown parameter, located by file:line:column; an alias under an unknown name is still a typo."""

from __future__ import annotations

import pytest
from test_typos import shipped_with, where

from sty.compiler.errors import UNKNOWN, InventoryError
from sty.compiler.loader import read_marked
from sty.compiler.pipeline import compile_fleet

MV = "all.children.pg-meta.vars"
TV = "all.children.pg-test.vars"

META_VARS = "      vars:\n        pg_cluster: pg-meta\n"
TEST_USERS = "        pg_users:\n          - { name: test, pgbouncer: true, roles: [ dbrole_admin ] }\n"


def lines_of(stderr: str, severity: str) -> list[str]:
    return [line for line in stderr.splitlines() if f" {severity}: " in f" {line}"]


# pg-meta's vars hold the users of pg-test under an anchor; pg-test reuses them by alias
HOLDER = (
    META_VARS,
    META_VARS + TEST_USERS.replace("pg_users:", "x-test-users: &test_users"),
)
ALIAS = (TEST_USERS, "        pg_users: *test_users\n")


def test_an_aliased_anchor_holder_is_accepted_and_is_no_parameter(sty, tmp_path):
    inv = shipped_with(tmp_path, HOLDER, ALIAS)
    proc = sty("check", "-i", inv.name, cwd=tmp_path, check_rc=0)
    assert "x-test-users" not in proc.stderr and not lines_of(proc.stderr, "error"), proc.stderr
    fleet = compile_fleet(inv).fleet
    meta, test = fleet.hosts["10.10.10.10"], fleet.hosts["10.10.10.11"]
    assert not meta.params.is_set("x-test-users") and "x-test-users" not in set(meta.params)
    assert test.params["pg_users"][0]["name"] == "test"
    assert test.params.source("pg_users") == f"{TV}.pg_users"


def test_the_same_inventory_without_the_alias_is_an_unknown_parameter_at_its_line(sty, tmp_path):
    inv = shipped_with(tmp_path, HOLDER)  # pg-test keeps its own users: nothing aliases &test_users
    proc = sty("check", "-i", inv.name, cwd=tmp_path, check_rc=2)
    expected = (
        f"{where(inv, 'x-test-users')}: error: {MV}.x-test-users: unknown parameter 'x-test-users'; sty knows no "
        "such Pigsty parameter (--allow-unknown accepts another tool's variables); it defines the anchor "
        "&test_users but no alias uses it, so it is no anchor holder"
    )
    assert lines_of(proc.stderr, "error")[0] == expected, proc.stderr
    relaxed = sty("check", "--allow-unknown", "-i", inv.name, cwd=tmp_path, check_rc=0)
    assert expected.replace(" error: ", " warning: ") in relaxed.stderr.splitlines(), relaxed.stderr


def test_an_unaliased_anchor_with_a_typo_keeps_its_did_you_mean(tmp_path):
    inv = shipped_with(tmp_path, (TEST_USERS, TEST_USERS.replace("pg_users:", "pg_usres: &users")))
    with pytest.raises(InventoryError) as caught:
        compile_fleet(inv)
    (hit,) = [p for p in caught.value.report.errors if p.kind == UNKNOWN]
    assert hit.path == f"{TV}.pg_usres" and f"{hit.file}:{hit.line}:{hit.column}".endswith(where(inv, "pg_usres"))
    assert "did you mean 'pg_users'?" in hit.message and "anchor &users" in hit.message


def test_an_alias_under_a_misspelt_name_is_still_a_typo(tmp_path):
    inv = shipped_with(tmp_path, HOLDER, (TEST_USERS, "        pg_userz: *test_users\n"))
    with pytest.raises(InventoryError) as caught:
        compile_fleet(inv)
    (hit,) = [p for p in caught.value.report.errors if p.kind == UNKNOWN]
    assert hit.path == f"{TV}.pg_userz" and "did you mean 'pg_users'?" in hit.message
    assert "anchor" not in hit.message  # the holder itself is used, hence accepted


def test_a_merge_key_uses_the_anchor(tmp_path):
    defaults = "        x-test-defaults: &test_defaults\n          pg_users: [ { name: test, pgbouncer: true } ]\n"
    holder = (META_VARS, META_VARS + defaults)
    merge = (TEST_USERS, "        <<: *test_defaults\n")
    fleet = compile_fleet(shipped_with(tmp_path, holder, merge)).fleet
    assert fleet.hosts["10.10.10.11"].params["pg_users"][0]["name"] == "test"
    assert not fleet.hosts["10.10.10.10"].params.is_set("x-test-defaults")


def test_a_parameter_with_an_aliased_anchor_stays_a_parameter(tmp_path):
    meta_users = "        pg_users:\n          - { name: dbuser_meta,"
    anchored = (meta_users, meta_users.replace("pg_users:", "pg_users: &meta_users"))
    inv = shipped_with(tmp_path, anchored, (TEST_USERS, "        pg_users: *meta_users\n"))
    fleet = compile_fleet(inv).fleet
    meta, test = fleet.hosts["10.10.10.10"], fleet.hosts["10.10.10.11"]
    assert meta.params.is_set("pg_users") and meta.params["pg_users"] == test.params["pg_users"]


def test_holders_beside_all_and_a_groups_hosts_vars_and_children(sty, tmp_path):
    users = "  x-users: &users\n    - { name: test, pgbouncer: true }\n"
    top = ("all:\n  children:\n", f"x-tune: &tune tiny\nall:\n{users}  children:\n")
    tune = ("        node_tune: tiny\n", "        node_tune: *tune\n")
    group = ("    pg-test:\n      hosts:\n", "    pg-test:\n      x-cluster: &name pg-test\n      hosts:\n")
    uses = (TEST_USERS, "        pg_users: *users\n")
    name = ("        pg_cluster: pg-test\n", "        pg_cluster: *name\n")
    inv = shipped_with(tmp_path, top, group, uses, name, tune)
    proc = sty("check", "-i", inv.name, cwd=tmp_path, check_rc=0)
    assert not lines_of(proc.stderr, "error"), proc.stderr
    assert compile_fleet(inv).fleet.hosts["10.10.10.12"].params["node_tune"] == "tiny"
    # the same key beside `hosts` whose anchor nothing uses is the shape error it always was
    unused = shipped_with(tmp_path, top, group, uses)
    proc = sty("check", "-i", unused.name, cwd=tmp_path, check_rc=2)
    assert f"{where(unused, 'x-cluster')}: error: all.children.pg-test.x-cluster: unknown key" in proc.stderr


# -- the loader's record of anchors -------------------------------------------------------------------------


def test_positions_know_where_anchors_are_defined_and_whether_they_are_used(tmp_path):
    inv = tmp_path / "pigsty.yml"
    inv.write_text(
        "\ufeffall:\n"  # a byte order mark shifts nothing
        "  vars:\n"
        "    x-used: &used [ 1 ]\n"
        "    x-tagged: !!seq &tagged [ 2 ]\n"
        "    x-spare: &spare { a: 'b&c' }\n"
        "    x-other: *used\n"
        "    x-more: [ *tagged ]\n"
        "    x-plain: 'a & b'\n",
        encoding="utf-8",
    )
    _, positions = read_marked(inv)
    assert positions.anchor("all.vars.x-used") == ("used", True)
    assert positions.anchor("all.vars.x-tagged") == ("tagged", True)
    assert positions.anchor("all.vars.x-spare") == ("spare", False)
    assert positions.anchor("all.vars.x-other") is None  # an alias defines nothing
    assert positions.anchor("all.vars.x-plain") is None and positions.anchor("all.vars.nothing") is None
    assert positions.holds_anchor("all.vars.x-used") and not positions.holds_anchor("all.vars.x-spare")
    assert positions.find("all.vars.x-spare") == (str(inv), 5, 5)
