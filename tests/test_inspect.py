"""`sty show` (PARAM filters, --set, --source, masking), `sty explain` (item fields, nested fields, --search,
PostgreSQL settings), the schemas' `examples`, and shell completion."""

from __future__ import annotations

import fnmatch
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import dump_inventory, run_sty, shipped_inventory, sty_command

from sty.cli import main
from sty.compiler.schema import registry

HOST = "10.10.10.11"
HOST_BLOCK = "all.children.pg-test.hosts.10.10.10.11"
GROUP_BLOCK = "all.children.pg-test.vars"


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def show(inv: Path, *args: str, rc: int = 0) -> dict[str, Any]:
    result = invoke("show", "-i", str(inv), HOST, *args)
    assert result.exit_code == rc, result.output
    return yaml.safe_load(result.stdout) if rc == 0 else {"stderr": result.stderr}


def explain(*args: str, rc: int = 0) -> Any:
    result = invoke("explain", *args)
    assert result.exit_code == rc, result.output
    return yaml.safe_load(result.stdout) if rc == 0 and result.stdout else result.stderr


@pytest.fixture
def inv(tmp_path: Path) -> Path:
    return dump_inventory(shipped_inventory(), tmp_path / "pigsty.yml")


# -- sty show ---------------------------------------------------------------------------------------------


def test_show_params_filter_by_name_and_pattern(inv):
    every = show(inv)["parameters"]
    doc = show(inv, "pg_seq", "pg_c*")
    expected = {k for k in every if k == "pg_seq" or fnmatch.fnmatch(k, "pg_c*")}
    assert set(doc["parameters"]) == expected and "pg_cluster" in expected
    assert doc["parameters"]["pg_cluster"] == "pg-test" and doc["host"] == HOST
    assert "sources" not in doc


def test_show_unknown_param_is_a_usage_error_with_a_hint(inv):
    err = show(inv, "pg_verison", rc=2)["stderr"].splitlines()[-1]  # after the inventory's warnings
    assert err == "error: no parameter of 10.10.10.11 matches 'pg_verison'; did you mean 'pg_version'?"


def test_show_set_leaves_out_schema_defaults(inv):
    data = shipped_inventory()
    pg_test = data["all"]["children"]["pg-test"]
    declared = set(data["all"]["vars"]) | set(pg_test["vars"]) | set(pg_test["hosts"][HOST])
    params = show(inv, "--set")["parameters"]
    assert set(params) == declared
    assert "pg_port" not in params and params["pg_seq"] == 1


def test_show_source_names_the_vars_block_or_default(tmp_path):
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["hosts"][HOST]["node_tune"] = "oltp"  # host wins over its group
    inv = dump_inventory(data, tmp_path / "pigsty.yml")
    doc = show(inv, "--source")
    sources, params = doc["sources"], doc["parameters"]
    assert set(sources) == set(params)
    assert sources["pg_seq"] == HOST_BLOCK and sources["node_tune"] == HOST_BLOCK and params["node_tune"] == "oltp"
    assert sources["pg_cluster"] == GROUP_BLOCK and sources["admin_ip"] == "all.vars"
    assert sources["pg_port"] == "default" and params["pg_port"] == 5432
    narrowed = show(inv, "--source", "--set", "pg_*")
    assert "default" not in narrowed["sources"].values() and set(narrowed["sources"]) == set(narrowed["parameters"])


def test_show_masks_secrets_with_every_option(tmp_path):
    data = shipped_inventory()
    data["all"]["vars"]["pg_admin_password"] = "Own.Admin.Pass1"
    host = data["all"]["children"]["pg-test"]["hosts"][HOST]
    host["ansible_become_password"] = "Own.Become.Pass2"  # no schema says it is secret: its name does
    data["all"]["children"]["pg-test"]["vars"]["pg_users"][0]["password"] = "Own.User.Pass3"
    inv = dump_inventory(data, tmp_path / "pigsty.yml")
    for args in ((), ("--set",), ("--source",), ("pg_admin_password", "ansible_*", "pg_users", "--source")):
        result = invoke("show", "-i", str(inv), HOST, *args)
        assert result.exit_code == 0, result.output
        for secret in ("Own.Admin.Pass1", "Own.Become.Pass2", "Own.User.Pass3"):
            assert secret not in result.output, (args, secret)
    doc = show(inv, "--source", "pg_admin_password", "ansible_become_password", "pg_users")
    assert doc["parameters"]["pg_admin_password"] == doc["parameters"]["ansible_become_password"] == "<secret>"
    assert doc["parameters"]["pg_users"][0]["password"] == "<secret>"
    assert doc["sources"]["pg_admin_password"] == "all.vars"


def test_show_unknown_host_exits_2(inv):
    result = invoke("show", "-i", str(inv), "10.9.9.9")
    assert result.exit_code == 2 and "10.9.9.9" in result.stderr


# -- sty explain ------------------------------------------------------------------------------------------


def test_explain_list_parameter_lists_item_fields_and_an_example():
    doc = explain("pg_users")
    assert doc["parameter"] == "pg_users" and doc["type"] == "array" and doc["module"] == "pgsql"
    fields = doc["fields"]
    assert fields["pgbouncer"].startswith("boolean: ") and "pgbouncer user list" in fields["pgbouncer"]
    assert fields["name"].startswith("string, required")
    assert "secret" in fields["password"] and "one of transaction | session | statement" in fields["pool_mode"]
    assert "role" in doc["item"]
    example = doc["example"]
    assert isinstance(example, dict) and example["name"]
    assert registry().params["pg_users"].validator.is_valid([example])


def test_explain_a_list_without_examples_takes_an_item_of_its_default():
    doc = explain("pg_default_services")
    assert doc["example"] == registry().params["pg_default_services"].default[0]


def test_explain_masks_secret_fields_of_examples_and_defaults():
    doc = explain("minio_users")
    assert doc["example"]["secret_key"] == "<secret>"
    assert all(u["secret_key"] == "<secret>" for u in doc["default"])
    assert explain("pg_admin_password")["default"] == "<secret>"


def test_explain_one_field_and_a_nested_one():
    doc = explain("pg_users.pgbouncer")
    assert doc["field"] == "pg_users.pgbouncer" and doc["parameter"] == "pg_users"
    assert doc["type"] == "boolean" and "pgbouncer user list" in doc["description"]
    assert doc["example"] is True
    nested = explain("pg_databases.extensions.name")
    assert nested["type"] == "string" and nested["required"] is True
    assert explain("pg_users.pool_mode")["enum"] == ["transaction", "session", "statement"]
    assert explain("pg_users.password")["secret"] is True
    keyed = explain("redis_instances.6379.replica_of")
    assert keyed["type"] == "string" and "replication" in keyed["description"]


def test_explain_unknown_field_suggests_one():
    err = explain("pg_users.pgbouncr", rc=2)
    assert err.startswith("error: pg_users has no field 'pgbouncr'") and "did you mean 'pgbouncer'" in err


def test_explain_search_lists_parameters_by_name_or_description():
    hits = explain("--search", "pgbouncer")
    reg = registry()
    expected = {n for n, s in reg.params.items() if "pgbouncer" in n or "pgbouncer" in s.description.lower()}
    assert set(hits) == expected
    assert "pgbouncer_port" in hits and "pgb_hba_rules" in hits  # by name, and by description only
    assert hits["pgbouncer_port"].startswith("(pgsql, integer) ")
    missing = explain("--search", "no-such-word-anywhere")
    assert missing == "no parameter's name or description contains 'no-such-word-anywhere'\n"


def test_explain_usage_errors():
    assert "not both" in explain("pg_users", "--search", "x", rc=2)
    assert explain(rc=2).startswith("error: ")
    assert "did you mean 'pg_cluster'" in explain("pg_clustr", rc=2)
    assert "did you mean 'pg_users'" in explain("pg_user.name", rc=2)


def test_explain_postgresql_setting_says_how_to_set_it_and_when_it_applies():
    major = registry().params["pg_version"].default
    doc = explain("max_connections")
    assert doc["setting"] == "max_connections" and "pg_parameters" in doc["set_with"]
    assert doc["context"].startswith("postmaster") and str(major) in doc["context"]
    assert "restart" in doc["takes_effect"] and "pg_max_conn" in doc["parameters"]
    assert "oltp.yml" in doc["pg_conf"]
    reload = explain("work_mem")
    assert reload["context"].startswith("user") and "reload" in reload["takes_effect"]
    assert "pg_hba_file" in explain("hba_file")["set_with"]
    assert "Patroni" in explain("listen_addresses")["set_with"]
    assert "pg_libs" in explain("auto_explain.log_min_duration")["set_with"]


def test_explain_typo_of_a_setting_suggests_the_setting():
    assert "did you mean 'shared_buffers'" in explain("shared_bufers", rc=2)


# -- examples in the schemas ------------------------------------------------------------------------------

MAIN_LISTS = (
    "pg_users",
    "pg_databases",
    "pg_services",
    "pg_hba_rules",
    "pgb_hba_rules",
    "pg_parameters",
    "haproxy_services",
    "redis_instances",
    "minio_buckets",
)


def test_main_list_parameters_have_examples_sty_accepts():
    reg = registry()
    for name in MAIN_LISTS:
        assert reg.params[name].schema.get("examples"), name
    for name, spec in reg.params.items():
        for example in spec.schema.get("examples", []):
            errors = [e.message for e in spec.validator.iter_errors(example)]
            assert not errors, (name, errors)


def test_pgsql_examples_compile_together(compile_inv):
    reg = registry()
    data = shipped_inventory()
    group = data["all"]["children"]["pg-test"]["vars"]
    for name in ("pg_users", "pg_databases", "pg_services", "pg_hba_rules", "pgb_hba_rules", "pg_parameters"):
        group[name] = reg.params[name].schema["examples"][0]
    compiled = compile_inv(data)
    assert not compiled.report.errors


# -- shell completion -------------------------------------------------------------------------------------


def _completion(env: dict[str, str], cwd: Path) -> str:
    """What the shell's completion function gets back from sty (click's protocol: `_STY_COMPLETE`)."""
    proc = subprocess.run(
        sty_command(), env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=60, check=True
    )
    assert "Traceback" not in proc.stderr
    return proc.stdout


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o"), ("zsh", "#compdef sty"), ("fish", "complete")])
def test_completion_script_is_printed(tmp_path, shell, marker):
    script = _completion({"_STY_COMPLETE": f"{shell}_source"}, tmp_path)
    assert "_sty_completion" in script and marker in script


def test_completion_offers_parameters_and_hosts(inv):
    def complete(line: str) -> list[str]:
        env = {"_STY_COMPLETE": "bash_complete", "COMP_WORDS": line, "COMP_CWORD": str(len(line.split()) - 1)}
        return _completion(env, inv.parent).splitlines()

    assert "plain,pg_users" in complete("sty explain pg_use")
    hosts = complete("sty show 10.10.10.1")
    assert {f"plain,{h}" for h in ("10.10.10.10", HOST)} <= set(hosts)


def test_sty_help_lists_the_commands(tmp_path):
    out = run_sty("--help", cwd=tmp_path, check_rc=0).stdout
    assert all(cmd in out for cmd in ("show", "explain", "schema"))
