"""Typos are errors, located by file:line:column: unknown parameters, unknown fields of list items and objects,
unknown package aliases; --allow-unknown, --strict-secrets and --strict; one summary line for the published
default passwords; a sentence, never a regex, for every pattern of the schemas."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SHIPPED
from shared import CORPUS, PIGSTY_SRC

from sty.compiler.errors import PUBLISHED_SECRET, UNKNOWN, InventoryError, Report
from sty.compiler.loader import load_inventory, read_marked
from sty.compiler.pipeline import compile_fleet, input_digest
from sty.compiler.schema import PATTERN_SENTENCES, humanize, known_names, pattern_sentence, registry
from sty.compiler.validate import validate_blocks

TV = "all.children.pg-test.vars"
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def shipped_with(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    """The shipped pigsty.yml as text with each (old line, new lines) replaced once, so that line numbers
    in messages can be checked against the file as written."""
    text = SHIPPED.read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "pigsty.yml"
    path.write_text(text, encoding="utf-8")
    return path


def where(path: Path, needle: str) -> str:
    """`file:line:column` of the first occurrence of `needle` in the file."""
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return f"{path.name}:{n}:{line.index(needle) + 1}"
    raise AssertionError(f"{needle!r} is not in {path}")


VERSION_TYPO = ("        pg_cluster: pg-test\n", "        pg_cluster: pg-test\n        pg_verison: 16\n")
BOUNCER_TYPO = ("- { name: test, pgbouncer: true,", "- { name: test, pgbounser: true,")


def error_lines(stderr: str, severity: str = "error") -> list[str]:
    return [line for line in stderr.splitlines() if f" {severity}: " in f" {line}"]


# -- unknown parameters ----------------------------------------------------------------------------------


def test_misspelt_parameter_is_an_error_at_its_line_and_column(sty, tmp_path):
    inv = shipped_with(tmp_path, VERSION_TYPO)
    proc = sty("check", "-i", inv.name, cwd=tmp_path, check_rc=2)
    line = f"{where(inv, 'pg_verison')}: error: {TV}.pg_verison: unknown parameter 'pg_verison'"
    hits = [x for x in proc.stderr.splitlines() if x.startswith(line)]
    assert len(hits) == 1, proc.stderr
    assert hits[0].endswith("did you mean 'pg_version'?")
    assert "Traceback" not in proc.stderr and "nothing was written" in proc.stderr


def test_allow_unknown_turns_the_error_back_into_a_warning(sty, tmp_path):
    inv = shipped_with(tmp_path, VERSION_TYPO)
    proc = sty("check", "--allow-unknown", "-i", inv.name, cwd=tmp_path, check_rc=0)
    assert f"{where(inv, 'pg_verison')}: warning: {TV}.pg_verison: unknown parameter" in proc.stderr
    assert not error_lines(proc.stderr)


def test_allow_unknown_is_offered_by_every_command_that_reads_an_inventory(sty, tmp_path):
    inv = shipped_with(tmp_path, VERSION_TYPO)
    sty("show", "-i", inv.name, "10.10.10.11", cwd=tmp_path, check_rc=2)
    proc = sty("show", "--allow-unknown", "-i", inv.name, "10.10.10.11", cwd=tmp_path, check_rc=0)
    assert yaml.safe_load(proc.stdout)["parameters"]["pg_cluster"] == "pg-test"


def test_a_parameter_declared_on_a_host_is_located_despite_the_dots_of_its_address(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"]["pg_seqq"] = 2
    with pytest.raises(InventoryError) as caught:
        compile_inv(inventory)
    (hit,) = [p for p in caught.value.report.errors if p.kind == UNKNOWN]
    assert hit.path == "all.children.pg-test.hosts.10.10.10.12.pg_seqq"
    text = Path(hit.file).read_text().splitlines()
    assert text[hit.line - 1][hit.column - 1 :].startswith("pg_seqq:")
    assert "did you mean 'pg_seq'" in hit.message


# -- unknown fields ----------------------------------------------------------------------------------------


def test_misspelt_field_of_a_user_is_an_error_with_a_suggestion(sty, tmp_path):
    inv = shipped_with(tmp_path, BOUNCER_TYPO)
    proc = sty("check", "-i", inv.name, cwd=tmp_path, check_rc=2)
    expected = (
        f"{where(inv, 'pgbounser')}: error: {TV}.pg_users[0].pgbounser: "
        "unknown field 'pgbounser'; did you mean 'pgbouncer'?"
    )
    assert expected in proc.stderr.splitlines(), proc.stderr


@pytest.mark.parametrize(
    ("param", "value", "sub", "hint"),
    [
        (
            "pg_databases",
            [{"name": "x", "extensions": [{"name": "postgis", "shema": "gis"}]}],
            "[0].extensions[0]",
            "schema",
        ),
        ("pg_databases", [{"name": "x", "schemas": [{"name": "s", "ownr": "x"}]}], "[0].schemas[0]", "owner"),
        ("pg_databases", [{"name": "x", "pool_sise": 10}], "[0]", "pool_size"),
        ("pg_users", [{"name": "x", "roles": [{"name": "r", "admn": True}]}], "[0].roles[0]", "admin"),
        ("pg_hba_rules", [{"user": "x", "db": "all", "adr": "world", "auth": "pwd", "addr": "intra"}], "[0]", "addr"),
        ("pgb_hba_rules", [{"user": "x", "db": "all", "addr": "world", "auht": "pwd"}], "[0]", "auth"),
        ("pg_services", [{"name": "s", "port": 5440, "selectr": "[]"}], "[0]", "selector"),
        ("pg_default_roles", [{"name": "r", "logn": False}], "[0]", "login"),
    ],
)
def test_fields_pigsty_does_not_know_are_errors(compile_inv, inventory, param, value, sub, hint):
    inventory["all"]["children"]["pg-test"]["vars"][param] = value
    with pytest.raises(InventoryError) as caught:
        compile_inv(inventory)
    unknown = [p for p in caught.value.report.errors if p.kind == UNKNOWN]
    assert len(unknown) == 1, "\n".join(map(str, caught.value.report.problems))
    bad = unknown[0].path.rsplit(".", 1)[-1]
    assert unknown[0].path == f"{TV}.{param}{sub}.{bad}"
    assert f"did you mean '{hint}'?" in unknown[0].message and unknown[0].line


def test_a_field_nothing_is_close_to_lists_the_fields(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_services"] = [{"name": "s", "port": 5440, "zzz": 1}]
    with pytest.raises(InventoryError) as caught:
        compile_inv(inventory)
    (hit,) = [p for p in caught.value.report.errors if p.kind == UNKNOWN]
    assert "did you mean" not in hit.message and "selector" in hit.message and "backup" in hit.message


def test_open_mappings_keep_any_key(compile_inv, inventory):
    """pg_parameters and a user's or database's `parameters` are PostgreSQL's settings, not Pigsty's fields."""
    tv = inventory["all"]["children"]["pg-test"]["vars"]
    tv["pg_users"][0]["parameters"] = {"search_path": "app"}
    tv["pg_databases"][0]["parameters"] = {"work_mem": "64MB"}
    report = compile_inv(inventory).report
    assert not [p for p in report.problems if p.kind == UNKNOWN]


# -- unknown package aliases -------------------------------------------------------------------------------


def test_misspelt_extension_alias_is_an_error_with_a_suggestion(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_extensions"] = ["postgis, pgvectr", "timescaledb"]
    with pytest.raises(InventoryError) as caught:
        compile_inv(inventory)
    (hit,) = [p for p in caught.value.report.errors if p.kind == UNKNOWN]
    assert hit.path == f"{TV}.pg_extensions[0]"
    assert hit.message == "unknown package alias 'pgvectr'; did you mean 'pgvector'?"


def test_packages_written_out_and_known_aliases_pass(compile_inv, inventory):
    tv = inventory["all"]["children"]["pg-test"]["vars"]
    tv["pg_extensions"] = ["pg18-time pgsql-gis", "postgresql-$v-pgvector", "pg_repack_17", "citus"]
    tv["pg_packages"] = ["pgsql-main pgsql-common", "patroni"]
    report = compile_inv(inventory).report
    assert not [p for p in report.problems if p.kind == UNKNOWN]


def test_package_aliases_are_pigstys(tmp_path):
    """The data file holds every key of Pigsty's package_map (facts of ../shared/pigsty-src)."""
    files = sorted((PIGSTY_SRC / "roles" / "node_id" / "vars").glob("*.yml"))
    if not files:
        pytest.skip("Pigsty's sources are not beside the checkout")
    names = known_names("pgsql/package_aliases.json")
    for path in files:
        for alias in yaml.safe_load(path.read_text()).get("package_map", {}):
            assert names.knows(alias), f"{alias} of {path.name}"
    assert not names.knows("pgvectr") and names.knows("pgvector")


# -- published default passwords, --strict-secrets, --strict -----------------------------------------------


def test_default_passwords_are_one_summary_line_and_exit_0(sty, tmp_path):
    shipped_with(tmp_path)
    proc = sty("check", cwd=tmp_path, check_rc=0)
    summary = [x for x in proc.stderr.splitlines() if "Pigsty publishes" in x]
    assert len(summary) == 1, proc.stderr
    assert summary[0].startswith("warning: 8 secrets still have a password Pigsty publishes")
    assert "all.vars.{etcd_root_password,grafana_admin_password," in summary[0]
    assert "--strict-secrets" in summary[0]
    assert not error_lines(proc.stderr)


def test_strict_secrets_makes_only_the_default_passwords_errors(sty, tmp_path):
    shipped_with(tmp_path)
    proc = sty("check", "--strict-secrets", cwd=tmp_path, check_rc=2)
    (summary,) = [x for x in proc.stderr.splitlines() if "Pigsty publishes" in x]
    assert summary.startswith("error: 8 secrets")
    # the other warnings (pooled users without a password) stay warnings
    assert error_lines(proc.stderr) == [summary]
    assert error_lines(proc.stderr, "warning")
    assert "8 error(s)" in proc.stderr


def test_strict_makes_every_warning_an_error(sty, tmp_path):
    shipped_with(tmp_path)
    proc = sty("check", "--strict", cwd=tmp_path, check_rc=2)
    assert not error_lines(proc.stderr, "warning") and "11 error(s)" in proc.stderr


def test_published_passwords_in_list_items_join_the_summary(write_inventory, inventory):
    users = inventory["all"]["children"]["pg-meta"]["vars"]["pg_users"]
    users[0]["password"], users[1]["password"] = "DBUser.Meta", "DBUser.Viewer"
    path = write_inventory(inventory)
    report = compile_fleet(path).report
    published = [p.path for p in report.warnings if p.kind == PUBLISHED_SECRET]
    assert "all.children.pg-meta.vars.pg_users[1].password" in published and len(published) == 10
    with pytest.raises(InventoryError) as caught:
        compile_fleet(path, strict_secrets=True)
    assert len(caught.value.report.errors) == 10
    assert all(p.kind == PUBLISHED_SECRET for p in caught.value.report.errors)


def test_compact_paths():
    from sty.cli.common import compact_paths

    paths = [
        "all.vars.b",
        "all.vars.a",
        "all.children.m.vars.pg_users[1].password",
        "all.children.m.vars.pg_users[0].password",
        "all.children.pg-test.hosts.10.10.10.11.x",
    ]
    assert compact_paths(paths) == (
        "all.vars.{a,b}, all.children.m.vars.pg_users[0,1].password, all.children.pg-test.hosts.10.10.10.11.x"
    )


# -- locations ---------------------------------------------------------------------------------------------


def test_problems_json_carries_the_location_when_known():
    from sty.cli.common import problems_json

    report = Report()
    report.error("all.vars.x", "unknown parameter 'x'")
    report.warning("pg-test", "derived")
    report.locate(lambda path: ("pigsty.yml", 3, 5) if path == "all.vars.x" else None)
    doc = problems_json(report)
    assert doc[0] == {
        "severity": "error",
        "path": "all.vars.x",
        "message": "unknown parameter 'x'",
        "file": "pigsty.yml",
        "line": 3,
        "column": 5,
    }
    assert doc[1] == {"severity": "warning", "path": "pg-test", "message": "derived"}
    json.dumps(doc)


def test_aliases_and_merge_keys_are_located_where_written(tmp_path):
    inv = tmp_path / "pigsty.yml"
    inv.write_text(
        "all:\n"
        "  vars:\n"
        "    base: &base\n"
        "      pg_users: [ { name: u, pgbounser: true } ]\n"
        "  children:\n"
        "    pg-test:\n"
        "      hosts: { 10.10.10.11: { pg_seq: 1, pg_role: primary } }\n"
        "      vars:\n"
        "        <<: *base\n"
        "        pg_cluster: pg-test\n"
    )
    _, positions = read_marked(inv)
    lines = inv.read_text().splitlines()

    def at(line: int, needle: str) -> tuple[str, int, int]:
        return str(inv), line, lines[line - 1].index(needle) + 1

    # a merged key is where its anchor wrote it; a key written beside the merge where it was written
    assert positions.find("all.children.pg-test.vars.pg_users[0].pgbounser") == at(4, "pgbounser")
    assert positions.find("all.children.pg-test.vars.pg_users[0]") == at(4, "{ name")
    assert positions.find("all.children.pg-test.vars.pg_cluster") == at(10, "pg_cluster")
    assert positions.find("all.children.pg-test.hosts.10.10.10.11.pg_role") == at(7, "pg_role")
    assert positions.find("all.children.pg-test.vars.nothing") is None
    assert positions.find("all.vars.base.pg_users[7]") is None


def test_positions_never_reach_the_input_digest(tmp_path):
    """Moving lines (a comment on top) changes every location and must not make a host look changed."""
    first = compile_fleet(shipped_with(tmp_path))
    (tmp_path / "pigsty.yml").write_text("# moved\n\n" + SHIPPED.read_text())
    second = compile_fleet(tmp_path / "pigsty.yml")
    for ip, host in first.fleet.hosts.items():
        assert input_digest(host, first, "code") == input_digest(second.fleet.hosts[ip], second, "code")


# -- every Pigsty example stays free of unknown names -------------------------------------------------------


@pytest.mark.parametrize("inventory_path", sorted(CORPUS.rglob("*.yml")), ids=lambda p: str(p.relative_to(CORPUS)))
def test_pigsty_examples_have_no_unknown_names(inventory_path: Path):
    report = Report()
    validate_blocks(load_inventory(inventory_path), registry(), report)
    assert not [str(p) for p in report.problems if p.kind == UNKNOWN or p.severity == "error"]


# -- a sentence for every schema rule -----------------------------------------------------------------------


def _patterns(node: Any, where: str):
    """(where, pattern, the schema holding it) for every `pattern` of a schema document."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _patterns(item, f"{where}[{i}]")
    elif isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield where, node["pattern"], node
        for key, value in node.items():
            if key not in ("default", "examples", "enum", "const"):
                yield from _patterns(value, f"{where}.{key}")


SCHEMA_PATTERNS = [
    (f"{path.name}{where}", pattern, node)
    for path in sorted(SCHEMAS.glob("*.json"))
    for where, pattern, node in _patterns(json.loads(path.read_text()), "")
]


@pytest.mark.parametrize(("where", "pattern", "node"), SCHEMA_PATTERNS, ids=[w for w, _, _ in SCHEMA_PATTERNS])
def test_every_schema_pattern_has_a_sentence(where, pattern, node):
    sentence = pattern_sentence(pattern, node)
    assert sentence, f"{where}: add {pattern!r} to PATTERN_SENTENCES or an x-pattern-sentence beside it"
    assert pattern not in sentence


def test_a_failed_pattern_never_prints_the_regex():
    from sty.compiler.schema import strict_validator

    assert len(SCHEMA_PATTERNS) >= 20
    for _, pattern, node in SCHEMA_PATTERNS:
        for error in strict_validator(node).iter_errors("!! not\nthis"):
            text = humanize(error)
            assert pattern not in text and "does not match" not in text, text
    assert not [s for s in PATTERN_SENTENCES.values() if re.search(r"\[.*\]|\{\d", s)]  # no regex in a sentence


def test_x_pattern_sentence_wins_over_the_table():
    assert pattern_sentence("^[0-9]+$", {"x-pattern-sentence": "is not a port list"}) == "is not a port list"
