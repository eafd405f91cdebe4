"""Issue 10: Patroni as Pigsty v4.5 configures it. Rewind as the replicator (the superuser may only log in
locally, so rewinding as it never worked), failsafe mode and the DCS timers, crit's strict synchronous mode,
replica creation order, member tags, standby clusters and cascades, `pg_max_conn: auto`, PostgreSQL 19."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import shipped_inventory
from test_pgsql_extras import assert_error, build, pg_test

PRIMARY, REPLICA = "10.10.10.11", "10.10.10.13"
PATRONI = "/etc/patroni/patroni.yml"


def patroni(trees: dict, ip: str = PRIMARY) -> dict:
    return yaml.safe_load(trees[ip][PATRONI])


def test_the_replicator_rewinds_and_a_failed_rewind_reclones(tmp_path: Path) -> None:
    trees, secrets, _ = build(shipped_inventory(), tmp_path)
    pg = patroni(trees)["postgresql"]
    assert pg["authentication"]["rewind"] == pg["authentication"]["replication"]
    assert pg["authentication"]["rewind"]["username"] == "replicator"
    assert pg["use_pg_rewind"] is True and pg["remove_data_directory_on_rewind_failure"] is True
    assert pg["remove_data_directory_on_diverged_timelines"] is False
    # pg_hba lets the replicator reach `postgres` from the intranet: pg_rewind's connection
    hba = trees[PRIMARY]["/pg/conf/pg_hba.conf"]
    assert any(line.split()[:3] == ["host", "postgres", "replicator"] for line in hba.splitlines())
    # and 10-roles.sql grants it the functions pg_rewind calls on the source
    roles = trees[PRIMARY]["/pg/conf/sql/10-roles.sql"]
    for fn in ("pg_ls_dir(text, boolean, boolean)", "pg_stat_file(text, boolean)", "pg_read_binary_file(text)"):
        assert f'GRANT EXECUTE ON FUNCTION pg_catalog.{fn} TO "replicator";' in roles


def test_dcs_has_failsafe_mode_and_pigstys_timers(tmp_path: Path) -> None:
    trees, _, _ = build(shipped_inventory(), tmp_path)
    dcs = patroni(trees)["bootstrap"]["dcs"]
    assert dcs["failsafe_mode"] is True
    assert dcs["maximum_lag_on_syncnode"] == -1 and dcs["primary_stop_timeout"] == 30
    assert dcs["synchronous_mode_strict"] is False
    assert dcs["postgresql"]["remove_data_directory_on_rewind_failure"] is True


def test_crit_is_strictly_synchronous(tmp_path: Path) -> None:
    data = shipped_inventory()
    pg_test(data)["pg_conf"] = "crit.yml"
    trees, _, _ = build(data, tmp_path)
    dcs = patroni(trees)["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True and dcs["synchronous_mode_strict"] is True


def test_member_tags_as_pigsty_offline_members_included(tmp_path: Path) -> None:
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["hosts"][REPLICA]["pg_role"] = "offline"
    pg_test(data)["pg_version"] = 16
    trees, _, _ = build(data, tmp_path)
    tags = patroni(trees, REPLICA)["tags"]
    assert {k: tags[k] for k in ("nofailover", "clonefrom", "noloadbalance", "nosync")} == {
        "nofailover": False,
        "clonefrom": True,
        "noloadbalance": False,
        "nosync": False,
    }
    assert tags["version"] == "16" and tags["conf"] == "tiny.yml"
    assert tags["spec"].endswith("G") and tags["spec"].count(".") == 2  # <cpu>C.<mem>G.<disk>G


def test_a_cascade_replica_names_its_upstream_member(tmp_path: Path) -> None:
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["hosts"][REPLICA]["pg_upstream"] = "10.10.10.12"
    trees, _, _ = build(data, tmp_path)
    assert patroni(trees, REPLICA)["tags"]["replicatefrom"] == "pg-test-2"
    assert "replicatefrom" not in patroni(trees)["tags"]
    data["all"]["children"]["pg-test"]["hosts"][REPLICA]["pg_upstream"] = "10.10.10.99"
    assert_error(data, tmp_path / "bad", "all.children.pg-test.hosts.10.10.10.13.pg_upstream: 10.10.10.99 is not a")


def test_a_standby_cluster_leader_follows_its_upstream_with_the_delay(tmp_path: Path) -> None:
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["hosts"][PRIMARY].update(pg_upstream="10.10.10.10", pg_delay="1h")
    trees, _, _ = build(data, tmp_path)
    standby = patroni(trees)["bootstrap"]["dcs"]["standby_cluster"]
    assert standby == {"host": "10.10.10.10", "port": 5432, "recovery_min_apply_delay": "1h"}
    assert "standby_cluster" not in patroni(trees, REPLICA)["bootstrap"]["dcs"]


def test_max_conn_auto_follows_the_default_service_destination(tmp_path: Path) -> None:
    data = shipped_inventory()
    pg_test(data).update(pg_conf="oltp.yml", pg_default_service_dest="postgres")
    trees, _, _ = build(data, tmp_path / "direct")
    assert patroni(trees)["bootstrap"]["dcs"]["postgresql"]["parameters"]["max_connections"] == "1000"
    pg_test(data)["pg_default_service_dest"] = "pgbouncer"
    trees, _, _ = build(data, tmp_path / "pooled")
    assert patroni(trees)["bootstrap"]["dcs"]["postgresql"]["parameters"]["max_connections"] == "500"


def test_postgresql_19_builds_with_a_beta_warning_and_no_io_workers(tmp_path: Path) -> None:
    data = shipped_inventory()
    pg_test(data)["pg_version"] = 19
    trees, _, report = build(data, tmp_path)
    params = {
        **patroni(trees)["bootstrap"]["dcs"]["postgresql"]["parameters"],
        **patroni(trees)["postgresql"]["parameters"],
    }
    assert params["io_method"] and "io_workers" not in params
    assert "/usr/lib/postgresql/19/bin" in trees[PRIMARY][PATRONI]
    assert any("PostgreSQL 19 is a beta" in w.message for w in report.warnings)
    pg_test(data)["pg_version"] = 18
    trees, _, _ = build(data, tmp_path / "18")
    params = {
        **patroni(trees)["bootstrap"]["dcs"]["postgresql"]["parameters"],
        **patroni(trees)["postgresql"]["parameters"],
    }
    assert "io_workers" in params


def citus_inventory(mode: str = "citus") -> dict:
    """pg-test split into two one-member shards of the Citus cluster pg-citus (group 0 the coordinator)."""
    data = shipped_inventory()
    children = data["all"]["children"]
    children.pop("pg-test")
    for group, ip in ((0, "10.10.10.11"), (1, "10.10.10.12")):
        children[f"pg-citus{group}"] = {
            "hosts": {ip: {"pg_seq": 1, "pg_role": "primary"}},
            "vars": {
                "pg_cluster": f"pg-citus{group}",
                "pg_mode": mode,
                "pg_shard": "pg-citus",
                "pg_group": group,
                "pg_libs": "citus, pg_stat_statements, auto_explain",
                "pg_vip_enabled": True,
                "pg_vip_address": f"10.10.10.{3 + group}/24",
                "pg_vip_interface": "eth1",
            },
        }
    return data


def test_a_citus_shard_shares_the_scope_and_keeps_its_group(tmp_path: Path) -> None:
    trees, _, _ = build(citus_inventory(), tmp_path)
    doc = patroni(trees, "10.10.10.12")
    assert doc["scope"] == "pg-citus" and doc["citus"] == {"group": 1, "database": "postgres"}
    assert doc["etcd3"]["username"] == "pg-citus"
    vip = yaml.safe_load(trees["10.10.10.12"]["/etc/default/vip-manager.yml"])
    assert vip["trigger-key"] == "/pg/pg-citus/1/leader" and vip["etcd-user"] == "pg-citus"
    assert patroni(trees, "10.10.10.11")["citus"]["group"] == 0


def test_a_kernel_sty_does_not_render_is_refused(tmp_path: Path) -> None:
    assert_error(citus_inventory("polar"), tmp_path, "all.children.pg-citus0.vars.pg_mode: pg_mode polar")
    data = citus_inventory()
    data["all"]["children"]["pg-citus1"]["vars"]["pg_libs"] = "pg_stat_statements"
    assert_error(data, tmp_path / "libs", "all.children.pg-citus1.vars.pg_libs: a Citus cluster must preload")
