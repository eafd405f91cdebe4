"""Effective parameters: precedence of the vars layers, Pigsty's list rules, `${...}` placeholders,
module membership, host facts and the TARGET grammar."""

from __future__ import annotations

import pytest
import yaml
from shared import CORPUS

from sty.compiler.errors import InventoryError
from sty.compiler.loader import VarsBlock
from sty.compiler.manifest import manifest
from sty.compiler.pipeline import render_host, resolve_target
from sty.compiler.resolve import Params
from sty.compiler.schema import registry
from sty.contract.exits import UsageError

TV = "all.children.pg-test.vars"
TH = "all.children.pg-test.hosts"


def params(*blocks: dict, ip: str = "10.10.10.11") -> Params:
    """Params over literal blocks (weakest first) and the schema defaults."""
    levels = ["all"] + ["group"] * (len(blocks) - 2) + ["host"] if len(blocks) > 1 else ["all"]
    layers = [VarsBlock(f"layer{i}", dict(b), levels[i]) for i, b in enumerate(blocks)]
    return Params(ip, layers, registry().defaults)


# -- precedence ------------------------------------------------------------------------------------


def test_schema_default_when_nothing_sets_it(compile_inv, inventory):
    p = compile_inv(inventory).fleet.hosts["10.10.10.12"].params
    assert p["pg_rto"] == registry().get("pg_rto").default == "norm"
    assert p.source("pg_rto") == "all.vars.pg_rto"  # where one would override the default
    assert not p.is_set("pg_rto")


def test_precedence_default_all_group_host(compile_inv, inventory):
    inventory["all"]["vars"]["pg_rto"] = "safe"
    inventory["all"]["children"]["pg-test"]["vars"]["pg_rto"] = "fast"
    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"]["pg_rto"] = "wide"
    hosts = compile_inv(inventory).fleet.hosts

    meta = hosts["10.10.10.10"].params  # only all.vars applies
    assert (meta["pg_rto"], meta.source("pg_rto")) == ("safe", "all.vars.pg_rto")
    group = hosts["10.10.10.11"].params  # group beats all.vars
    assert (group["pg_rto"], group.source("pg_rto")) == ("fast", f"{TV}.pg_rto")
    host = hosts["10.10.10.12"].params  # host beats group
    assert (host["pg_rto"], host.source("pg_rto")) == ("wide", f"{TH}.10.10.10.12.pg_rto")
    assert host.is_set("pg_rto") and host.raw("pg_rto") == "wide"


def test_shipped_group_vars_override_all_vars(compile_inv, inventory):
    """pigsty.yml itself: all.vars node_tune oltp, pg-test vars node_tune tiny."""
    hosts = compile_inv(inventory).fleet.hosts
    assert hosts["10.10.10.10"].params["node_tune"] == "oltp"
    assert hosts["10.10.10.10"].params.source("node_tune") == "all.vars.node_tune"
    assert hosts["10.10.10.13"].params["node_tune"] == "tiny"
    assert hosts["10.10.10.13"].params.source("node_tune") == f"{TV}.node_tune"


def test_host_in_two_groups_later_name_wins_whatever_the_file_order(compile_inv, inventory):
    children = inventory["all"]["children"]
    # declared before pg-test in the file, but sorts after it by name
    reordered = {"zz-extra": {"hosts": {"10.10.10.12": None}, "vars": {"node_tune": "olap"}}}
    reordered.update(children)
    reordered["aa-extra"] = {"hosts": {"10.10.10.13": None}, "vars": {"node_tune": "crit"}}
    inventory["all"]["children"] = reordered
    hosts = compile_inv(inventory).fleet.hosts

    assert hosts["10.10.10.12"].params["node_tune"] == "olap"  # zz-extra > pg-test
    assert hosts["10.10.10.12"].params.source("node_tune") == "all.children.zz-extra.vars.node_tune"
    assert hosts["10.10.10.13"].params["node_tune"] == "tiny"  # pg-test > aa-extra, though declared later
    assert hosts["10.10.10.13"].params.source("node_tune") == f"{TV}.node_tune"
    assert hosts["10.10.10.12"].groups == ["pg-test", "zz-extra"]


def test_host_vars_beat_every_group_and_later_declaration_wins(compile_inv, inventory):
    children = inventory["all"]["children"]
    children["infra"]["hosts"]["10.10.10.10"]["node_tune"] = "olap"
    children["pg-meta"]["hosts"]["10.10.10.10"]["node_tune"] = "crit"
    children["pg-meta"]["vars"]["node_tune"] = "tiny"
    p = compile_inv(inventory).fleet.hosts["10.10.10.10"].params
    assert p["node_tune"] == "crit"
    assert p.source("node_tune") == "all.children.pg-meta.hosts.10.10.10.10.node_tune"
    # identity from several declarations is merged
    assert (p["infra_seq"], p["etcd_seq"], p["pg_seq"]) == (1, 1, 1)


def test_nested_children_child_beats_parent_and_inherits(compile_inv, inventory):
    inventory["all"]["children"]["zz-dc"] = {
        "vars": {"node_tune": "olap", "node_cluster": "dc"},
        "children": {
            "aa-rack": {"hosts": {"10.10.10.14": None}, "vars": {"node_tune": "crit"}},
        },
    }
    fleet = compile_inv(inventory).fleet
    p = fleet.hosts["10.10.10.14"].params
    assert p["node_tune"] == "crit"  # the child group is deeper, whatever the names
    assert p.source("node_tune") == "all.children.zz-dc.children.aa-rack.vars.node_tune"
    assert p["node_cluster"] == "dc"  # inherited from the parent
    assert p.source("node_cluster") == "all.children.zz-dc.vars.node_cluster"
    assert fleet.hosts["10.10.10.14"].groups == ["aa-rack", "zz-dc"]
    assert fleet.inventory.groups["zz-dc"].hosts == ["10.10.10.14"]
    assert resolve_target(fleet, "zz-dc") == ["10.10.10.14"]


def test_params_mapping_iterates_every_key_once():
    p = params({"pg_rto": "fast", "x_custom": 1}, {"pg_rto": "safe"})
    keys = list(p)
    assert len(keys) == len(set(keys)) == len(p)
    assert "x_custom" in keys and "pg_port" in keys  # set and defaulted keys
    assert p.effective()["pg_rto"] == "safe"
    with pytest.raises(KeyError):
        p["no_such_param"]
    assert p.get("no_such_param", 42) == 42


# -- Pigsty's list rules ---------------------------------------------------------------------------


def names(items) -> list:
    return [i.get("name") if isinstance(i, dict) else i for i in items]


def test_services_are_defaults_then_cluster_services(compile_inv, inventory):
    p = compile_inv(inventory).fleet.hosts["10.10.10.11"].params
    defaults = registry().get("pg_default_services").default
    combined = p.combined("pg_services")
    assert names(combined) == names(defaults) + ["standby"]
    assert combined[-1]["port"] == 5435


def test_hba_rules_are_defaults_then_cluster_rules(compile_inv, inventory):
    inventory["all"]["children"]["pg-meta"]["vars"]["pgb_hba_rules"] = [
        {"user": "dbuser_view", "db": "meta", "addr": "infra", "auth": "pwd", "title": "pgb extra"}
    ]
    p = compile_inv(inventory).fleet.hosts["10.10.10.10"].params
    pg_default = registry().get("pg_default_hba_rules").default
    pg = p.combined("pg_hba_rules")
    assert len(pg) == len(pg_default) + 1
    assert [r.get("title") for r in pg[:-1]] == [r.get("title") for r in pg_default]
    assert pg[-1]["title"] == "grafana reads cmdb from infra nodes"
    assert pg[0]["user"] == "postgres"  # ${dbsu} substituted in the default rules

    pgb_default = registry().get("pgb_default_hba_rules").default
    pgb = p.combined("pgb_hba_rules")
    assert len(pgb) == len(pgb_default) + 1 and pgb[-1]["title"] == "pgb extra"


def test_etc_hosts_are_defaults_then_extra_records(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["node_etc_hosts"] = ["10.10.10.99 extra.pigsty"]
    hosts = compile_inv(inventory).fleet.hosts
    assert hosts["10.10.10.11"].params.combined("node_etc_hosts") == [
        "10.10.10.10 i.pigsty",
        "10.10.10.99 extra.pigsty",
    ]
    assert hosts["10.10.10.10"].params.combined("node_etc_hosts") == ["10.10.10.10 i.pigsty"]


def test_users_are_default_roles_then_cluster_users(compile_inv, inventory):
    p = compile_inv(inventory).fleet.hosts["10.10.10.11"].params
    defaults = registry().get("pg_default_roles").default
    assert names(p.combined("pg_users")) == names(defaults) + ["test"]


def test_overriding_the_default_list_replaces_it(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["pg_default_services"] = [
        {"name": "only", "port": 5440, "selector": "[]"}
    ]
    p = compile_inv(inventory).fleet.hosts["10.10.10.11"].params
    assert names(p.combined("pg_services")) == ["only", "standby"]


def test_combined_on_a_plain_list_is_the_list_itself():
    p = params({"pg_databases": [{"name": "a"}]})
    assert p.combined("pg_databases") == [{"name": "a"}]
    assert p.combined("no_such_list") == []


# -- placeholders ----------------------------------------------------------------------------------


def test_placeholders_are_substituted_deep_inside_values():
    p = params(
        {"admin_ip": "10.10.10.10", "pg_vip_address": "10.10.10.3/24", "pg_dbsu": "pgdbsu"},
        {"pg_cluster": "pg-x"},
        {
            "x_value": [
                "${ip}",
                {"nested": ["${lo}", {"deeper": "vip=${vip}"}]},
                "${dbsu}/${repl}/${monitor}/${admin}",
                "${pg_cluster}-svc on ${admin_ip}",
            ]
        },
    )
    assert p["x_value"] == [
        "10.10.10.11",
        {"nested": ["127.0.0.1", {"deeper": "vip=10.10.10.3"}]},
        "pgdbsu/replicator/dbuser_monitor/dbuser_dba",
        "pg-x-svc on 10.10.10.10",
    ]
    assert p.raw("x_value")[0] == "${ip}"  # raw is untouched


def test_placeholders_in_a_compiled_fleet(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"].update(
        pg_vip_enabled=True,
        pg_vip_address="10.10.10.3/24",
        node_etc_hosts=["${vip} ${pg_cluster}", "${ip} self-${pg_cluster}"],
    )
    p = compile_inv(inventory).fleet.hosts["10.10.10.12"].params
    assert p["node_etc_hosts"] == ["10.10.10.3 pg-test", "10.10.10.12 self-pg-test"]
    assert p["node_default_etc_hosts"] == ["10.10.10.10 i.pigsty"]


def test_placeholder_values_are_themselves_resolved():
    p = params({"x_a": "${x_b}-1", "x_b": "${ip}", "x_c": "[${x_a}]"})
    assert p["x_c"] == "[10.10.10.11-1]"


@pytest.mark.parametrize(
    "block, key, expected",
    [
        ({"x_self": "${x_self}"}, "x_self", "${x_self}"),
        ({"x_self": "a-${x_self}"}, "x_self", None),
        ({"x_a": "${x_b}", "x_b": "${x_a}"}, "x_a", None),
    ],
    ids=["self", "self-with-text", "mutual"],
)
def test_self_referencing_placeholder_does_not_loop(block, key, expected):
    value = params(block)[key]  # must return, not recurse forever
    assert isinstance(value, str) and "${" in value
    if expected is not None:
        assert value == expected


def test_unknown_and_non_scalar_placeholders_stay_literal():
    p = params({"x_v": "${nope} ${pg_users} ${pg_port}"})
    assert p["x_v"] == "${nope} ${pg_users} 5432"


# -- module membership -----------------------------------------------------------------------------


def test_module_membership(compile_inv, inventory):
    children = inventory["all"]["children"]
    children["redis-test"] = {
        "hosts": {"10.10.10.20": {"redis_node": 1}},
        "vars": {"redis_cluster": "redis-test"},
    }
    children["minio"] = {"hosts": {"10.10.10.21": {"minio_seq": 1}}, "vars": {"minio_cluster": "minio"}}
    children["plain"] = {"hosts": {"10.10.10.22": None}}
    children["odd-name"] = {
        "hosts": {"10.10.10.23": {"pg_seq": 1, "pg_role": "primary"}},
        "vars": {"pg_cluster": "pg-odd"},
    }
    hosts = compile_inv(inventory).fleet.hosts
    assert hosts["10.10.10.10"].modules == ["node", "infra", "etcd", "pgsql"]
    assert hosts["10.10.10.11"].modules == ["node", "pgsql"]
    assert hosts["10.10.10.20"].modules == ["node", "redis"]
    assert hosts["10.10.10.21"].modules == ["node", "minio"]
    assert hosts["10.10.10.22"].modules == ["node"]
    assert hosts["10.10.10.23"].modules == ["node", "pgsql"]  # pg_cluster decides, not the group name
    assert all(h.modules[0] == "node" for h in hosts.values())


# -- facts -----------------------------------------------------------------------------------------


def facts_setup(inventory, tmp_path):
    facts = tmp_path / "facts"
    facts.mkdir()
    (facts / "10.10.10.11.yml").write_text(yaml.safe_dump({"cpu": 16, "mem_mb": 65536, "disk_gb": 500}))
    (facts / "10.10.10.13.yml").write_text(yaml.safe_dump({"cpu": 4}))
    hosts = inventory["all"]["children"]["pg-test"]["hosts"]
    hosts["10.10.10.11"].update(node_cpu=8, node_mem_mb=8192)  # the facts file wins
    hosts["10.10.10.12"].update(node_cpu=8, node_mem_mb=8192)
    return facts


def test_facts_file_beats_inventory_beats_defaults(compile_inv, inventory, tmp_path):
    facts_setup(inventory, tmp_path)
    hosts = compile_inv(inventory).fleet.hosts
    f11, f12, f13, f10 = (hosts[ip].facts for ip in ("10.10.10.11", "10.10.10.12", "10.10.10.13", "10.10.10.10"))
    assert (f11.cpu, f11.mem_mb, f11.disk_gb) == (16, 65536, 500)
    assert set(f11.source.values()) == {"facts-file"}
    assert (f12.cpu, f12.mem_mb, f12.disk_gb) == (8, 8192, 100)
    assert f12.source == {"cpu": "inventory", "mem_mb": "inventory", "disk_gb": "assumed"}
    assert (f13.cpu, f13.mem_mb, f13.disk_gb) == (4, 4096, 100)
    assert f13.source["cpu"] == "facts-file"
    assert (f10.cpu, f10.mem_mb, f10.disk_gb) == (2, 4096, 100)


def test_manifest_lists_assumed_facts(compile_inv, inventory, tmp_path):
    facts_setup(inventory, tmp_path)
    compiled = compile_inv(inventory)
    docs = {ip: manifest(h, render_host(h, compiled)).to_dict()["facts"] for ip, h in compiled.fleet.hosts.items()}
    assert docs["10.10.10.11"]["assumed"] == []
    assert docs["10.10.10.11"]["cpu"] == 16
    assert docs["10.10.10.12"]["assumed"] == ["disk_gb"]
    assert docs["10.10.10.13"]["assumed"] == ["disk_gb", "mem_mb"]
    assert docs["10.10.10.10"]["assumed"] == ["cpu", "disk_gb", "mem_mb"]
    assert docs["10.10.10.12"]["source"]["cpu"] == "inventory"


def test_explicit_facts_directory(compile_inv, inventory, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "10.10.10.12.yml").write_text(yaml.safe_dump({"cpu": 32}))
    compiled = compile_inv(inventory, facts_dir=other)
    assert compiled.fleet.hosts["10.10.10.12"].facts.cpu == 32


def test_facts_change_the_tuning(compile_inv, inventory, tmp_path):
    """A facts file is not just recorded: a bigger host gets a bigger shared_buffers."""
    small = compile_inv(inventory)
    before = render_host(small.fleet.hosts["10.10.10.12"], small).files["/etc/patroni/patroni.yml"].content
    facts = tmp_path / "facts"
    facts.mkdir()
    (facts / "10.10.10.12.yml").write_text(yaml.safe_dump({"cpu": 16, "mem_mb": 65536, "disk_gb": 500}))
    big = compile_inv(inventory)
    after = render_host(big.fleet.hosts["10.10.10.12"], big).files["/etc/patroni/patroni.yml"].content
    assert before != after


def test_invalid_facts_file_is_an_error(compile_inv, inventory, tmp_path):
    facts = tmp_path / "facts"
    facts.mkdir()
    (facts / "10.10.10.12.yml").write_text(yaml.safe_dump({"cpu": "many"}))
    with pytest.raises(InventoryError) as caught:
        compile_inv(inventory)
    assert any(p.path == f"{facts / '10.10.10.12.yml'}.cpu" for p in caught.value.report.errors)


# -- TARGET grammar --------------------------------------------------------------------------------


ALL_HOSTS = ["10.10.10.10", "10.10.10.11", "10.10.10.12", "10.10.10.13"]


def test_target_all(compile_inv, inventory):
    fleet = compile_inv(inventory).fleet
    for target in (None, "", "all"):
        assert resolve_target(fleet, target) == ALL_HOSTS


def test_target_order_is_numeric(compile_inv, inventory):
    inventory["all"]["children"]["plain"] = {"hosts": {"10.10.10.9": None, "10.10.10.100": None}}
    fleet = compile_inv(inventory).fleet
    assert resolve_target(fleet, "all") == ["10.10.10.9", *ALL_HOSTS, "10.10.10.100"]
    assert resolve_target(fleet, "plain") == ["10.10.10.9", "10.10.10.100"]


def test_target_host_address(compile_inv, inventory):
    fleet = compile_inv(inventory).fleet
    assert resolve_target(fleet, "10.10.10.12") == ["10.10.10.12"]


def test_target_group_name(compile_inv, inventory):
    fleet = compile_inv(inventory).fleet
    assert resolve_target(fleet, "infra") == ["10.10.10.10"]
    assert resolve_target(fleet, "pg-test") == ["10.10.10.11", "10.10.10.12", "10.10.10.13"]


def test_target_cluster_name_that_is_not_a_group(compile_inv, inventory):
    children = inventory["all"]["children"]
    children["test-group"] = children.pop("pg-test")  # cluster pg-test now lives in group test-group
    children["etcd"]["vars"]["etcd_cluster"] = "dcs"
    fleet = compile_inv(inventory).fleet
    assert "pg-test" not in fleet.inventory.groups
    assert resolve_target(fleet, "pg-test") == ["10.10.10.11", "10.10.10.12", "10.10.10.13"]
    assert resolve_target(fleet, "test-group") == ["10.10.10.11", "10.10.10.12", "10.10.10.13"]
    assert resolve_target(fleet, "dcs") == ["10.10.10.10"]  # etcd_cluster, only etcd members


@pytest.mark.parametrize("target", ["nope", "10.10.10.99", "pg-tes"])
def test_unknown_target(compile_inv, inventory, target):
    fleet = compile_inv(inventory).fleet
    with pytest.raises(UsageError, match=target):
        resolve_target(fleet, target)


def test_target_node_cluster_uses_the_effective_node_cluster(compile_inv, inventory):
    fleet = compile_inv(inventory).fleet
    # every shipped host borrows its pg_cluster as node cluster (node_id_from_pg); none is in 'nodes'
    assert sorted(fleet.derived["node"]) == ["pg-meta", "pg-test"]
    with pytest.raises(UsageError):
        resolve_target(fleet, "nodes")


# -- shared values -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["meta.yml", "ha/full.yml", "rich.yml", "supabase.yml", "app/odoo.yml"])
def test_rendering_a_fleet_never_modifies_the_values_its_hosts_share(example, tmp_path):
    """Values without placeholders are handed to every host as the same object (copies cost most of a large
    fleet's modelling): a renderer that modified one would change what the next host reads. Rendering a whole
    example must leave the schema defaults and every vars block exactly as loaded."""
    import copy

    from sty.compiler.build import render_targets
    from sty.compiler.pipeline import compile_fleet

    src = CORPUS / example
    (tmp_path / "pigsty.yml").write_bytes(src.read_bytes())
    defaults_before = copy.deepcopy(dict(registry().defaults))
    compiled = compile_fleet(tmp_path / "pigsty.yml")
    blocks = {id(b): b for h in compiled.fleet.hosts.values() for b in h.params.layers}
    before = {key: copy.deepcopy(b.data) for key, b in blocks.items()}
    shared_reads = sum(
        1
        for h in compiled.fleet.hosts.values()
        for k in ("pg_default_services", "pg_default_roles")
        if h.params[k] is registry().defaults[k]
    )
    # substituted values equal from host to host are shared too (Params._shared): what every host read so far
    read = {(ip, k): copy.deepcopy(v) for ip, h in compiled.fleet.hosts.items() for k, v in h.params._cache.items()}
    render_targets(compiled, resolve_target(compiled.fleet, "all"))
    assert shared_reads > 0  # the sharing this guards is in effect
    assert dict(registry().defaults) == defaults_before
    assert all(blocks[key].data == data for key, data in before.items())
    assert all(compiled.fleet.hosts[ip].params._cache[k] == v for (ip, k), v in read.items())


def _sharing(*blocks: dict) -> list[Params]:
    """One Params per block list, sharing one build's memos as the hosts of a fleet do (compiler/model.py)."""
    literal: dict = {}
    results: dict = {}
    return [
        Params(f"10.0.0.{i}", [VarsBlock(f"b{i}.{j}", b, "all") for j, b in enumerate(layers)], registry().defaults,
               None, literal, results)
        for i, layers in enumerate(blocks)
    ]  # fmt: skip


def test_what_no_placeholder_changes_is_handed_out_as_the_same_object():
    rules = [{"user": "${dbsu}", "db": "all", "addr": "local", "auth": "ident"}, {"user": "${nobody}", "addr": "world"}]
    unresolved = {"pg_default_hba_rules": [rules[1]], "pg_dbsu": "dba"}
    p = params(unresolved)
    assert p["pg_default_hba_rules"] is unresolved["pg_default_hba_rules"]  # `${nobody}` is the renderer's
    shared = {"pg_default_hba_rules": rules}
    a, b, c = _sharing([shared], [shared], [shared, {"pg_dbsu": "dba"}])
    assert a["pg_default_hba_rules"] is b["pg_default_hba_rules"]  # equal results of one value: one object
    assert a["pg_default_hba_rules"][0]["user"] == "postgres" and a["pg_default_hba_rules"][1] is rules[1]
    assert c["pg_default_hba_rules"][0]["user"] == "dba"  # another dbsu: its own rules
    assert c["pg_default_hba_rules"] is not a["pg_default_hba_rules"] and rules[0]["user"] == "${dbsu}"


def test_an_hba_rule_object_is_judged_once(monkeypatch: pytest.MonkeyPatch):
    """The default rules shared by a fleet are judged once, not per cluster and per host; a rule a placeholder
    changed (another object) is judged afresh, and a bad rule's problems are reported every time it is asked."""
    from sty.compiler.modules.pgsql import hba

    judged: list[object] = []
    real = hba._problems
    monkeypatch.setattr(hba, "_problems", lambda rule, flavor: judged.append(rule) or real(rule, flavor))
    good = {"user": "all", "db": "all", "addr": "intra", "auth": "pwd", "title": "sty-test-good"}
    bad = {"user": "all", "db": "all", "addr": "intrnet", "auth": "pwd", "title": "sty-test-bad"}
    for _ in range(3):
        assert hba.rule_problems(good) == []
        assert [sub for sub, _ in hba.rule_problems(bad)] == ["addr"]
    assert judged == [good, bad]
    assert hba.rule_problems(dict(good)) == [] and len(judged) == 3  # an equal copy is another object


def test_a_value_is_substituted_once_for_hosts_whose_placeholders_expand_alike(monkeypatch: pytest.MonkeyPatch):
    """Substitution is a function of the value, the parameter and what its placeholders expand to: hosts that
    agree on those get the first result without substituting again; a host whose `${dbsu}` differs, or a value
    naming the host itself (`${ip}`), is substituted for that host."""
    calls: list[str] = []
    real = Params.substitute

    rules = [{"user": "${dbsu}", "db": "all", "addr": "local", "auth": "ident"}]

    def counted(self, value, *args, **kwargs):
        if value is rules:  # the whole list; its items are substituted by recursion
            calls.append(self.ip)
        return real(self, value, *args, **kwargs)

    monkeypatch.setattr(Params, "substitute", counted)
    shared = {"pg_default_hba_rules": rules, "pg_cluster": "pg-${dbsu}-x"}
    a, b, c, d = _sharing([shared], [shared], [shared, {"pg_dbsu": "dba"}], [shared])
    first = a["pg_default_hba_rules"]
    assert b["pg_default_hba_rules"] is first and d["pg_default_hba_rules"] is first
    assert c["pg_default_hba_rules"][0]["user"] == "dba"
    assert calls == ["10.0.0.0", "10.0.0.2"]  # b and d took a's result
    assert [p["pg_cluster"] for p in (a, b, c)] == ["pg-postgres-x", "pg-postgres-x", "pg-dba-x"]
    named = {"pg_cluster": "pg-${ip}"}
    e, f = _sharing([named], [named])
    assert (e["pg_cluster"], f["pg_cluster"]) == ("pg-10.0.0.0", "pg-10.0.0.1")


def test_a_secret_placeholder_is_refused_for_every_host_that_reads_it():
    """The refusal is not memoised away: the second host reading the value is refused as the first was."""
    from sty.compiler.errors import InventoryError
    from sty.compiler.schema import registry as reg

    leaky = {"pg_cluster": "pg-${pg_admin_password}"}
    shared: dict = {}
    literal: dict = {}
    hosts = [
        Params(f"10.0.0.{i}", [VarsBlock(f"b{i}", leaky, "all")], reg().defaults, reg().secret_shapes, literal, shared)
        for i in range(2)
    ]
    for p in hosts:
        with pytest.raises(InventoryError, match="names a secret parameter"):
            p["pg_cluster"]
