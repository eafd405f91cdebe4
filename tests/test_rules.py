"""Every validation and cross-host rule: the shipped inventory with one mutation must fail, and the
report must locate the problem by its exact inventory path with a message that names it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sty.compiler.errors import InventoryError, Problem

ALL = "all.vars"
GROUPS = "all.children"
TEST = "all.children.pg-test"
TV = f"{TEST}.vars"
TH = f"{TEST}.hosts"
META_V = "all.children.pg-meta.vars"

# every secret the shipped inventory leaves at Pigsty's published default (so --strict can pass)
OWN_SECRETS = {
    "pg_admin_password": "Own.Admin.1",
    "pg_monitor_password": "Own.Monitor.1",
    "pg_replication_password": "Own.Repl.1",
    "patroni_password": "Own.Patroni.1",
    "haproxy_admin_password": "Own.Haproxy.1",
    "etcd_root_password": "Own.Etcd.1",
    "grafana_admin_password": "Own.Grafana.1",
    "grafana_view_password": "Own.GrafanaView.1",
    # the shipped inventory's pooled users (pgbouncer logs them in with these)
    "pg-meta/pg_users/dbuser_meta/password": "Own.Meta.1",
    "pg-meta/pg_users/dbuser_view/password": "Own.View.1",
    "pg-test/pg_users/test/password": "Own.Test.1",
}


# -- helpers ---------------------------------------------------------------------------------------


def failing(compile_inv, data: Any, strict: bool = False) -> list[Problem]:
    """Compile and require an InventoryError; return its errors."""
    with pytest.raises(InventoryError) as caught:
        compile_inv(data, strict=strict)
    errors = caught.value.report.errors
    assert errors, "InventoryError raised without any error in its report"
    return errors


def shown(problems: list[Problem]) -> str:
    return "\n".join(str(p) for p in problems)


def expect(problems: list[Problem], path: str, *words: str) -> Problem:
    """An error at exactly `path` whose message contains every word (case-insensitive)."""
    at = [p for p in problems if p.path == path]
    assert at, f"no error at {path!r}; errors:\n{shown(problems)}"
    for p in at:
        if all(w.lower() in p.message.lower() for w in words):
            return p
    raise AssertionError(f"error at {path!r} does not mention {words}:\n{shown(at)}")


def test_shipped_inventory_is_valid(compile_inv, inventory):
    """The baseline every mutation starts from compiles; otherwise the failures below prove nothing."""
    compiled = compile_inv(inventory)
    assert not compiled.report.errors
    assert set(compiled.fleet.hosts) == {"10.10.10.10", "10.10.10.11", "10.10.10.12", "10.10.10.13"}


# -- identity: pg_cluster, pg_seq, pg_role -------------------------------------------------------


def test_pg_cluster_must_match_pattern(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_cluster"] = "pg_test"
    expect(failing(compile_inv, inventory), f"{TV}.pg_cluster", "pg_test")


def test_pg_cluster_must_not_be_root(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_cluster"] = "root"
    expect(failing(compile_inv, inventory), f"{TV}.pg_cluster", "root")


def test_pg_seq_missing(compile_inv, inventory):
    del inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"]["pg_seq"]
    expect(failing(compile_inv, inventory), f"{TH}.10.10.10.12.pg_seq", "pg_seq")


def test_pg_seq_duplicate_in_cluster(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"]["pg_seq"] = 1
    expect(failing(compile_inv, inventory), f"{TH}.10.10.10.12.pg_seq", "pg_seq 1", "10.10.10.11")


def test_same_pg_seq_in_different_clusters_is_fine(compile_inv, inventory):
    """pg-meta-1 and pg-test-1 both use pg_seq 1: uniqueness is per cluster only."""
    compiled = compile_inv(inventory)
    assert compiled.fleet.hosts["10.10.10.10"].params["pg_seq"] == compiled.fleet.hosts["10.10.10.11"].params["pg_seq"]


@pytest.mark.parametrize(
    "value, word",
    [(-1, "minimum"), ("two", "integer"), (1.5, "integer"), (True, "integer")],
    ids=["negative", "string", "float", "boolean"],
)
def test_pg_seq_must_be_a_non_negative_integer(compile_inv, inventory, value, word):
    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"]["pg_seq"] = value
    expect(failing(compile_inv, inventory), f"{TH}.10.10.10.12.pg_seq", word)


def test_pg_role_invalid(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"]["pg_role"] = "master"
    expect(failing(compile_inv, inventory), f"{TH}.10.10.10.12.pg_role", "master")


def test_pg_role_missing(compile_inv, inventory):
    del inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"]["pg_role"]
    expect(failing(compile_inv, inventory), f"{TH}.10.10.10.12.pg_role", "pg_role")


ROLE_PATHS = {f"{TH}.{ip}.pg_role" for ip in ("10.10.10.11", "10.10.10.12", "10.10.10.13")}


def test_cluster_without_primary(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.11"]["pg_role"] = "replica"
    errors = failing(compile_inv, inventory)
    hits = [p for p in errors if p.path in ROLE_PATHS and "primary" in p.message and "pg-test" in p.message]
    assert hits, shown(errors)
    assert "no member" in hits[0].message


def test_cluster_with_two_primaries(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"]["pg_role"] = "primary"
    errors = failing(compile_inv, inventory)
    paths = {f"{TH}.10.10.10.11.pg_role", f"{TH}.10.10.10.12.pg_role"}
    hits = [p for p in errors if p.path in paths and "primary" in p.message]
    assert hits, shown(errors)
    assert "10.10.10.11" in hits[0].message and "10.10.10.12" in hits[0].message


def test_two_primaries_error_points_at_a_primary(compile_inv, inventory):
    hosts = inventory["all"]["children"]["pg-test"]["hosts"]
    hosts["10.10.10.11"]["pg_role"] = "replica"
    hosts["10.10.10.12"]["pg_role"] = "primary"
    hosts["10.10.10.13"]["pg_role"] = "primary"
    errors = failing(compile_inv, inventory)
    hits = [p for p in errors if "primary" in p.message and "pg-test" in p.message]
    assert hits, shown(errors)
    assert {p.path for p in hits} <= {f"{TH}.10.10.10.12.pg_role", f"{TH}.10.10.10.13.pg_role"}, shown(hits)


# -- hosts and groups ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["pg-test-4", "10.10.10.256", "10.10.10.014", "fe80::1"])
def test_host_key_must_be_ipv4(compile_inv, inventory, key):
    inventory["all"]["children"]["pg-test"]["hosts"][key] = {"pg_seq": 4, "pg_role": "replica"}
    expect(failing(compile_inv, inventory), f"{TH}.{key}", key)


def test_host_in_two_pg_clusters(compile_inv, inventory):
    inventory["all"]["children"]["pg-other"] = {"hosts": {"10.10.10.12": {}}, "vars": {"pg_cluster": "pg-other"}}
    errors = failing(compile_inv, inventory)
    declarations = {f"{TH}.10.10.10.12", f"{GROUPS}.pg-other.hosts.10.10.10.12"}
    hits = [p for p in errors if p.path in declarations and "pg-test" in p.message and "pg-other" in p.message]
    assert hits, shown(errors)
    assert "10.10.10.12" in hits[0].message


def test_host_in_two_groups_with_the_same_pg_cluster_is_fine(compile_inv, inventory):
    inventory["all"]["children"]["pg-test-extra"] = {"hosts": {"10.10.10.12": {}}, "vars": {"pg_cluster": "pg-test"}}
    compiled = compile_inv(inventory)
    assert compiled.fleet.hosts["10.10.10.12"].params["pg_cluster"] == "pg-test"


def test_unknown_group_key_is_an_error(compile_inv, inventory):
    group = inventory["all"]["children"]["pg-test"]
    group["host"] = group.pop("hosts")
    errors = failing(compile_inv, inventory)
    hits = [p for p in errors if p.path.startswith(TEST) and "host" in p.message]
    assert hits, shown(errors)


@pytest.mark.parametrize("where", ["group", "all"])
def test_unknown_group_key_path_is_the_key(compile_inv, inventory, where):
    if where == "group":
        group = inventory["all"]["children"]["pg-test"]
        group["host"] = group.pop("hosts")
        path = f"{TEST}.host"
    else:
        inventory["all"]["host"] = {}
        path = "all.host"
    expect(failing(compile_inv, inventory), path, "host")


def test_group_that_is_not_a_mapping(compile_inv, inventory):
    inventory["all"]["children"]["weird"] = [1, 2]
    errors = failing(compile_inv, inventory)
    assert any(p.path == f"{GROUPS}.weird" for p in errors), shown(errors)


# -- infra and etcd --------------------------------------------------------------------------------


def test_duplicate_infra_seq(compile_inv, inventory):
    inventory["all"]["children"]["infra"]["hosts"]["10.10.10.11"] = {"infra_seq": 1}
    expect(failing(compile_inv, inventory), f"{GROUPS}.infra.hosts.10.10.10.11.infra_seq", "infra_seq 1", "10.10.10.10")


def test_duplicate_etcd_seq(compile_inv, inventory):
    inventory["all"]["children"]["etcd"]["hosts"]["10.10.10.11"] = {"etcd_seq": 1}
    expect(failing(compile_inv, inventory), f"{GROUPS}.etcd.hosts.10.10.10.11.etcd_seq", "etcd_seq 1", "10.10.10.10")


def test_etcd_member_without_etcd_seq(compile_inv, inventory):
    inventory["all"]["children"]["etcd"]["hosts"]["10.10.10.11"] = {}
    expect(failing(compile_inv, inventory), f"{GROUPS}.etcd.hosts.10.10.10.11.etcd_seq", "etcd_seq")


def test_pg_cluster_without_etcd_group(compile_inv, inventory):
    del inventory["all"]["children"]["etcd"]
    expect(failing(compile_inv, inventory), f"{GROUPS}.etcd", "etcd")


# -- services and ports ----------------------------------------------------------------------------


def add_service(inventory, **spec) -> None:
    inventory["all"]["children"]["pg-test"]["vars"]["pg_services"].append({"selector": "[]", **spec})


@pytest.mark.parametrize("name", ["standby", "primary"], ids=["own-service", "default-service"])
def test_duplicate_service_name(compile_inv, inventory, name):
    add_service(inventory, name=name, port=5440)
    expect(failing(compile_inv, inventory), f"{TV}.pg_services[1].name", name, "twice")


@pytest.mark.parametrize("port", [5435, 5433], ids=["own-service", "default-service"])
def test_duplicate_service_port(compile_inv, inventory, port):
    add_service(inventory, name="other", port=port)
    expect(failing(compile_inv, inventory), f"{TV}.pg_services[1].port", str(port))


@pytest.mark.parametrize(
    "port, component",
    [(6432, "pgbouncer"), (5432, "postgres"), (8008, "patroni"), (9100, "node_exporter"), (9101, "haproxy")],
)
def test_service_port_clashes_with_a_listener(compile_inv, inventory, port, component):
    add_service(inventory, name="clash", port=port)
    errors = failing(compile_inv, inventory)
    hit = expect(errors, f"{TV}.pg_services[1].port", str(port), component)
    assert "10.10.10.1" in hit.message  # names the host where the clash happens


def test_free_service_port_is_fine(compile_inv, inventory):
    add_service(inventory, name="extra", port=5440)
    compiled = compile_inv(inventory)
    services = compiled.fleet.derived["pgsql"].clusters["pg-test"].services
    assert "extra" in [s.name for s in services]


@pytest.mark.parametrize(
    "vars_",
    [{"pgbouncer_port": 5433}, {"pg_port": 8008}, {"pg_service_provider": "infra"}],
    ids=["pgbouncer-vs-default-service", "pg_port-vs-default-patroni", "provider-default-services"],
)
def test_listener_clash_paths_are_inventory_paths(compile_inv, inventory, vars_):
    inventory["all"]["children"]["pg-test"]["vars"].update(vars_)
    errors = failing(compile_inv, inventory)
    assert all(p.path.startswith("all.") for p in errors), shown(errors)


def test_service_provider_must_be_a_group(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_service_provider"] = "proxy"
    expect(failing(compile_inv, inventory), f"{TV}.pg_service_provider", "proxy")


def test_service_dest_must_be_a_port_or_known_name(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_services"][0]["dest"] = "foo"
    expect(failing(compile_inv, inventory), f"{TV}.pg_services[0].dest", "foo")


def test_invalid_service_selector(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_services"][0]["selector"] = "[? pg_role == "
    expect(failing(compile_inv, inventory), f"{TV}.pg_services[0].selector", "jmespath")


# -- other pgsql parameters ------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["10.10.10.3", "10.10.10.3/33", "vip.local/24"])
def test_vip_address_must_be_a_cidr(compile_inv, inventory, address):
    inventory["all"]["children"]["pg-test"]["vars"].update(pg_vip_enabled=True, pg_vip_address=address)
    expect(failing(compile_inv, inventory), f"{TV}.pg_vip_address", address)


def test_vip_with_cidr_is_fine(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"].update(pg_vip_enabled=True, pg_vip_address="10.10.10.3/24")
    assert compile_inv(inventory).fleet.hosts["10.10.10.11"].params["pg_vip_address"] == "10.10.10.3/24"


def test_bad_user_name(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_users"].append({"name": "Bad User"})
    expect(failing(compile_inv, inventory), f"{TV}.pg_users[1].name", "Bad User")


def test_bad_database_name(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_databases"].append({"name": "bad db"})
    expect(failing(compile_inv, inventory), f"{TV}.pg_databases[1].name", "bad db")


@pytest.mark.parametrize(
    "key, field, value, word",
    [
        ("pg_hba_rules", "addr", "intrnet", "alias"),
        ("pg_hba_rules", "addr", "10.0.0.0/33", "10.0.0.0/33"),
        ("pg_hba_rules", "addr", "10.0.0.1/8", "host bits"),
        ("pg_hba_rules", "auth", "password123", "auth"),
        ("pgb_hba_rules", "addr", "intrnet", "alias"),
        ("pgb_hba_rules", "auth", "bogus", "auth"),
    ],
    ids=["pg-alias", "pg-cidr", "pg-host-bits", "pg-auth", "pgb-alias", "pgb-auth"],
)
def test_hba_rule_problems(compile_inv, inventory, key, field, value, word):
    rule = {"user": "all", "db": "all", "addr": "intra", "auth": "pwd", field: value}
    meta = inventory["all"]["children"]["pg-meta"]["vars"]
    meta.setdefault(key, []).append(rule)
    index = len(meta[key]) - 1
    hit = expect(failing(compile_inv, inventory), f"{META_V}.{key}[{index}].{field}", word)
    assert value in hit.message


@pytest.mark.parametrize("field", ["owner", "pool_auth_user"])
def test_database_user_references_must_exist(compile_inv, inventory, field):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_databases"][0][field] = "nobody"
    expect(failing(compile_inv, inventory), f"{TV}.pg_databases[0].{field}", "nobody")


@pytest.mark.parametrize("owner", ["test", "dbuser_dba", "postgres"], ids=["pg_users", "default-role", "dbsu"])
def test_database_owner_may_be_any_known_user(compile_inv, inventory, owner):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_databases"][0]["owner"] = owner
    assert compile_inv(inventory).fleet.hosts["10.10.10.11"].params["pg_databases"][0]["owner"] == owner


@pytest.mark.parametrize("where", ["group", "all"])
def test_pg_rto_must_be_a_plan_key(compile_inv, inventory, where):
    if where == "group":
        inventory["all"]["children"]["pg-test"]["vars"]["pg_rto"] = "turbo"
        path = f"{TV}.pg_rto"
    else:
        inventory["all"]["vars"]["pg_rto"] = "turbo"
        path = f"{ALL}.pg_rto"
    expect(failing(compile_inv, inventory), path, "turbo", "pg_rto_plan")


def test_pg_rto_may_name_a_custom_plan(compile_inv, inventory):
    plan = [30, 5, 10, 25, 5, "2s", "1s", "2s", 3, 3]
    inventory["all"]["vars"].update(pg_rto="turbo", pg_rto_plan={"turbo": plan})
    assert compile_inv(inventory).fleet.hosts["10.10.10.11"].params["pg_rto"] == "turbo"


def test_pg_conf_must_be_a_known_template(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_conf"] = "fast.yml"
    expect(failing(compile_inv, inventory), f"{TV}.pg_conf", "fast.yml")


# -- types against the schemas ---------------------------------------------------------------------


def test_wrong_type_in_all_vars(compile_inv, inventory):
    inventory["all"]["vars"]["pg_port"] = "abc"
    expect(failing(compile_inv, inventory), f"{ALL}.pg_port", "abc", "integer")


def test_wrong_type_inside_a_list_item(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_users"][0]["pgbouncer"] = "yes"
    expect(failing(compile_inv, inventory), f"{TV}.pg_users[0].pgbouncer", "yes", "boolean")


def test_wrong_type_inside_a_mapping_value(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_rto_plan"] = {"norm": [1, 2, 3]}
    expect(failing(compile_inv, inventory), f"{TV}.pg_rto_plan.norm", "10")


def test_wrong_type_in_host_vars(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.13"]["pg_offline_query"] = "sure"
    expect(failing(compile_inv, inventory), f"{TH}.10.10.10.13.pg_offline_query", "sure", "boolean")


# -- files that are not inventories ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, line, column",
    [
        ("all:\n  vars:\n    a: 1\n   b: 2\n", 4, 4),
        ("all:\n  vars:\n    pg_port: 5432\n    admin_ip: [10.10.10.10\n  children: {}\n", 5, 11),
        ("all:\n  vars:\n    pg_port: 5432\n\tadmin_ip: 1\n", 4, 1),
    ],
    ids=["indentation", "unclosed-list", "tab"],
)
def test_yaml_syntax_error_names_file_line_and_column(tmp_path, text, line, column):
    from sty.compiler.pipeline import compile_fleet

    path = tmp_path / "pigsty.yml"
    path.write_text(text)
    with pytest.raises(InventoryError) as caught:
        compile_fleet(path)
    errors = caught.value.report.errors
    assert len(errors) == 1
    assert errors[0].path == f"{path}:{line}:{column}"
    assert "YAML" in errors[0].message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"], ids=["list", "str", "empty", "int"])
def test_inventory_that_is_not_a_mapping(tmp_path, text):
    from sty.compiler.pipeline import compile_fleet

    path = tmp_path / "pigsty.yml"
    path.write_text(text)
    with pytest.raises(InventoryError) as caught:
        compile_fleet(path)
    expect(caught.value.report.errors, str(path), "mapping")


@pytest.mark.parametrize("body", [{"children": {}}, {"all": [1, 2]}, {"all": None}], ids=["no-all", "list", "null"])
def test_inventory_without_an_all_mapping(compile_inv, body):
    errors = failing(compile_inv, body)
    assert any(p.path in ("all", "inventory") and "all" in p.message for p in errors), shown(errors)


def test_missing_inventory_file(tmp_path):
    from sty.compiler.pipeline import compile_fleet

    with pytest.raises(InventoryError) as caught:
        compile_fleet(tmp_path / "nope.yml")
    expect(caught.value.report.errors, str(tmp_path / "nope.yml"), "does not exist")


# -- all problems in one run -----------------------------------------------------------------------


def test_several_schema_problems_are_reported_together(compile_inv, inventory):
    hosts = inventory["all"]["children"]["pg-test"]["hosts"]
    hosts["10.10.10.12"]["pg_seq"] = "two"
    hosts["10.10.10.13"]["pg_role"] = "boss"
    inventory["all"]["vars"]["pg_port"] = "abc"
    inventory["all"]["children"]["pg-meta"]["vars"]["pg_users"][0]["pgbouncer"] = "yes"
    errors = failing(compile_inv, inventory)
    expect(errors, f"{TH}.10.10.10.12.pg_seq", "two")
    expect(errors, f"{TH}.10.10.10.13.pg_role", "boss")
    expect(errors, f"{ALL}.pg_port", "abc")
    expect(errors, f"{META_V}.pg_users[0].pgbouncer", "yes")


def test_several_cross_host_problems_are_reported_together(compile_inv, inventory):
    children = inventory["all"]["children"]
    del children["pg-test"]["hosts"]["10.10.10.12"]["pg_seq"]
    children["pg-test"]["vars"]["pg_rto"] = "turbo"
    children["pg-meta"]["vars"]["pg_databases"][0]["owner"] = "nobody"
    del children["etcd"]
    errors = failing(compile_inv, inventory)
    expect(errors, f"{TH}.10.10.10.12.pg_seq", "pg_seq")
    expect(errors, f"{TV}.pg_rto", "turbo")
    expect(errors, f"{META_V}.pg_databases[0].owner", "nobody")
    expect(errors, f"{GROUPS}.etcd", "etcd")


def test_several_problems_in_a_list_are_all_reported(compile_inv, inventory):
    users = inventory["all"]["children"]["pg-test"]["vars"]["pg_users"]
    users += [{"name": "Bad User"}, {"name": "Another Bad"}]
    errors = failing(compile_inv, inventory)
    expect(errors, f"{TV}.pg_users[1].name", "Bad User")
    expect(errors, f"{TV}.pg_users[2].name", "Another Bad")


# -- warnings and notes ----------------------------------------------------------------------------


def test_unknown_parameter_is_an_error_with_a_suggestion(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_clustr"] = "x"
    errors = failing(compile_inv, inventory)
    hit = expect(errors, f"{TV}.pg_clustr", "unknown parameter 'pg_clustr'", "did you mean 'pg_cluster'")
    assert hit.line and hit.file.endswith("pigsty.yml")  # located in the file, not only by path


def test_unknown_parameter_without_a_close_name(compile_inv, inventory):
    inventory["all"]["vars"]["zzz_not_a_param"] = 1
    errors = failing(compile_inv, inventory)
    hit = expect(errors, f"{ALL}.zzz_not_a_param", "unknown parameter", "--allow-unknown")
    assert "did you mean" not in hit.message


def test_allow_unknown_makes_the_unknown_parameter_a_warning_even_under_strict(
    compile_inv, write_inventory, inventory, tmp_path
):
    from sty.compiler.pipeline import compile_fleet

    (tmp_path / "secrets.yml").write_text(yaml.safe_dump(OWN_SECRETS))
    (tmp_path / "secrets.yml").chmod(0o600)  # a secrets file others can read is warned about
    strict_clean = compile_inv(inventory, strict=True)  # no warnings left once secrets are set
    assert not strict_clean.report.warnings and not strict_clean.report.errors

    inventory["all"]["children"]["pg-test"]["vars"]["pg_clustr"] = "x"
    report = compile_fleet(write_inventory(inventory), strict=True, allow_unknown=True).report
    assert [p.path for p in report.warnings] == [f"{TV}.pg_clustr"] and not report.errors
    assert "did you mean 'pg_cluster'" in report.warnings[0].message


def test_ansible_variables_are_not_unknown(compile_inv, inventory):
    inventory["all"]["vars"]["ansible_python_interpreter"] = "/usr/bin/python3"
    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.11"]["ansible_host"] = "192.168.0.11"
    report = compile_inv(inventory).report
    assert not [p for p in report.problems if "ansible_" in p.path and p.severity != "note"]


def test_docker_parameters_are_one_note(compile_inv, inventory):
    inventory["all"]["vars"]["docker_enabled"] = True
    inventory["all"]["children"]["pg-test"]["vars"]["docker_registry_mirrors"] = ["https://mirror.invalid"]
    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.11"]["docker_image"] = ["redis"]
    report = compile_inv(inventory).report
    docker = [p for p in report.problems if "docker" in p.path or "docker" in p.message]
    assert len(docker) == 1, "\n".join(map(str, docker))
    assert docker[0].severity == "note"
    assert docker[0].path == f"{ALL}.docker_enabled"
    assert "docker" in docker[0].message
    assert not report.errors
