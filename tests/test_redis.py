"""REDIS: what the bundles of Pigsty's demo/redis.yml say (standalone primary + replica, a sentinel trio, a
3 x 2 native cluster), how parameters change them, the cross-host rules, and (slow) real programs judging
them: redis-server starts on every config, redis_exporter scrapes an instance with the password file,
`redis-cli --cluster create` forms the native cluster from the recorded member list, systemd-analyze
verifies the units.

The demo's `infra` group is left out of these inventories: this file is about REDIS, and INFRA's files are
judged elsewhere. Everything that starts a server runs inside a private network namespace (the configs
name 10.10.10.x addresses) via apply.checks.util.netns.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, dump_inventory
from shared import CORPUS

from sty.compiler.build import build, render_targets
from sty.compiler.errors import InventoryError, Problem
from sty.compiler.pipeline import compile_fleet, resolve_target

DEMO = CORPUS / "demo" / "redis.yml"
MS, META, TEST = "all.children.redis-ms", "all.children.redis-meta", "all.children.redis-test"
SECRET_VALUES = ("redis.ms", "redis.meta", "redis.test")


def demo_inventory() -> dict[str, Any]:
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["all"]["children"].pop("infra", None)
    return data


@dataclass
class Built:
    trees: dict[str, dict[str, str]]  # ip -> host path -> text
    secrets: dict[str, dict[str, str]]

    def file(self, ip: str, path: str) -> str:
        return self.trees[ip][path]

    def manifest(self, ip: str) -> dict[str, Any]:
        return yaml.safe_load(self.trees[ip]["manifest"])

    def entry(self, ip: str, path: str) -> dict[str, Any]:
        return next(f for f in self.manifest(ip)["files"] if f["path"] == path)

    def actions(self, ip: str, path: str) -> list[str]:
        return [" ".join(a.values()) for a in self.entry(ip, path)["actions"]]


def render(data: dict[str, Any], tmp: Path) -> Built:
    compiled = compile_fleet(dump_inventory(data, tmp / "pigsty.yml"))
    rendered = render_targets(compiled, resolve_target(compiled.fleet, "all"))
    trees = {}
    for ip, tree in rendered.trees.items():
        files = {rel[len(ip) :]: data.decode() for rel, data in tree.items() if rel.startswith(f"{ip}/")}
        files["manifest"] = tree[f"{ip}.yml"].decode()
        trees[ip] = files
    return Built(trees, rendered.secrets)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Built:
    return render(demo_inventory(), tmp_path_factory.mktemp("redis-demo"))


@pytest.fixture
def variant(tmp_path):
    """variant(fn) -> the demo inventory changed by fn(data), rendered."""

    def make(fn) -> Built:
        data = demo_inventory()
        fn(data)
        return render(data, tmp_path)

    return make


def directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


# -- standalone primary and replica -------------------------------------------------------------------


def test_standalone_primary_config(demo):
    conf = demo.file("10.10.10.10", "/etc/redis/redis-ms-1-6379.conf")
    lines = directives(conf)
    for expected in (
        "bind 0.0.0.0",
        "port 6379",
        "protected-mode no",
        "daemonize no",
        "supervised systemd",
        'pidfile "/run/redis/redis-ms-1-6379.pid"',
        'logfile "/var/log/redis/redis-ms-1-6379.log"',
        'dir "/data/redis/6379"',
        "save 1200 1",
        "maxmemory 64MB",
        "maxmemory-policy allkeys-lru",
        "appendonly no",
        'requirepass "<<secret:redis-ms/redis_password>>"',
        'masterauth "<<secret:redis-ms/redis_password>>"',
    ):
        assert expected in lines, expected
    assert not any(line.startswith(("replicaof", "cluster-enabled", "sentinel", "rename-command")) for line in lines)
    assert "redis-ms-1-6379 @ 10.10.10.10:6379" in conf.splitlines()[1]


def test_replica_follows_replica_of(demo):
    lines = directives(demo.file("10.10.10.10", "/etc/redis/redis-ms-1-6380.conf"))
    assert "replicaof 10.10.10.10 6379" in lines
    assert "port 6380" in lines and 'dir "/data/redis/6380"' in lines
    assert 'masterauth "<<secret:redis-ms/redis_password>>"' in lines


def test_instance_unit_and_restart_actions(demo):
    unit = demo.file("10.10.10.10", "/etc/systemd/system/redis-ms-1-6379.service")
    assert "ExecStart=/usr/bin/redis-server /etc/redis/redis-ms-1-6379.conf\n" in unit
    assert "Type=notify" in unit and "User=redis" in unit and "WorkingDirectory=/data/redis/6379" in unit
    assert "RuntimeDirectory=redis" in unit and "RuntimeDirectoryPreserve=yes" in unit
    assert demo.actions("10.10.10.10", "/etc/redis/redis-ms-1-6379.conf") == ["restart redis-ms-1-6379.service"]
    assert demo.actions("10.10.10.10", "/etc/systemd/system/redis-ms-1-6379.service") == [
        "daemon-reload",
        "restart redis-ms-1-6379.service",
    ]
    entry = demo.entry("10.10.10.10", "/etc/redis/redis-ms-1-6379.conf")
    assert (entry["owner"], entry["group"], entry["mode"], entry["format"]) == ("redis", "redis", "0600", "redis")
    assert entry["secrets"] == ["redis-ms/redis_password"]


# -- sentinel ------------------------------------------------------------------------------------------


def test_sentinel_configs_monitor_the_primary(demo):
    for port in (26379, 26380, 26381):
        conf = demo.file("10.10.10.11", f"/etc/redis/redis-meta-1-{port}.conf")
        lines = directives(conf)
        assert f"port {port}" in lines and f'dir "/data/redis/{port}"' in lines
        assert "sentinel monitor redis-ms 10.10.10.10 6379 2" in lines
        assert 'sentinel auth-pass redis-ms "<<secret:redis-meta/redis_sentinel_monitor/redis-ms/password>>"' in lines
        assert 'requirepass "<<secret:redis-meta/redis_password>>"' in lines
        assert "sentinel resolve-hostnames no" in lines
        assert not any(line.startswith(("maxmemory", "save", "replicaof", "cluster-")) for line in lines)
        unit = demo.file("10.10.10.11", f"/etc/systemd/system/redis-meta-1-{port}.service")
        assert f"ExecStart=/usr/bin/redis-server /etc/redis/redis-meta-1-{port}.conf --sentinel\n" in unit
    ports = {(p["port"], p["component"]) for p in demo.manifest("10.10.10.11")["ports"]}
    assert {(26379, "redis-sentinel"), (26380, "redis-sentinel"), (26381, "redis-sentinel")} <= ports
    assert demo.secrets["10.10.10.11"]["redis-meta/redis_sentinel_monitor/redis-ms/password"] == "redis.ms"


# -- native cluster --------------------------------------------------------------------------------------


def test_native_cluster_configs_and_create_command(demo):
    for ip, node in (("10.10.10.12", 1), ("10.10.10.13", 2)):
        for port in (6379, 6380, 6381):
            path = f"/etc/redis/redis-test-{node}-{port}.conf"
            lines = directives(demo.file(ip, path))
            assert "cluster-enabled yes" in lines
            assert f'cluster-config-file "nodes-{port}.conf"' in lines
            assert "maxmemory 32MB" in lines
            expected = [f"restart redis-test-{node}-{port}.service"]
            if node == 1:  # the cluster's first node creates it
                expected = ["redis-cluster-create", *expected]
            assert demo.actions(ip, path) == expected
        ports = {(p["port"], p["component"]) for p in demo.manifest(ip)["ports"]}
        assert {(16379, "redis-cluster-bus"), (16380, "redis-cluster-bus"), (16381, "redis-cluster-bus")} <= ports
        create = demo.manifest(ip)["identity"]["redis"]["cluster_create"]
        assert create["replicas"] == 1 and create["run_on"] == "10.10.10.12"
        assert create["members"] == [f"10.10.10.{h}:{p}" for h in (12, 13) for p in (6379, 6380, 6381)]
        assert create["password_secret"] == "redis-test/redis_password"
    identity = demo.manifest("10.10.10.13")["identity"]["redis"]
    assert identity["mode"] == "cluster" and identity["node"] == 2
    assert identity["instances"] == {"redis-test-2-6379": 6379, "redis-test-2-6380": 6380, "redis-test-2-6381": 6381}
    assert "cluster_create" not in demo.manifest("10.10.10.10")["identity"]["redis"]


# -- exporter ------------------------------------------------------------------------------------------


def test_one_exporter_per_node_scrapes_every_instance(demo):
    unit = demo.file("10.10.10.11", "/etc/systemd/system/redis_exporter.service")
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start == (
        "ExecStart=/usr/bin/prometheus-redis-exporter -web.listen-address=:9121 -redis.addr= "
        "-redis.password-file=/etc/redis/redis_exporter.json"
    )
    passwords = json.loads(demo.file("10.10.10.11", "/etc/redis/redis_exporter.json"))
    assert passwords == {
        f"redis://10.10.10.11:{p}": "<<secret:redis-meta/redis_password>>" for p in (26379, 26380, 26381)
    }
    assert demo.entry("10.10.10.11", "/etc/redis/redis_exporter.json")["mode"] == "0600"
    exporter = demo.manifest("10.10.10.11")["identity"]["redis"]["exporter"]
    assert exporter["targets"] == [f"redis://10.10.10.11:{p}" for p in (26379, 26380, 26381)]
    units = {u["name"]: u["health"] for u in demo.manifest("10.10.10.11")["units"]}
    assert units["redis_exporter.service"] == "http://10.10.10.11:9121/metrics"
    assert units["redis-meta-1-26379.service"] == "port:26379"


# -- manifest --------------------------------------------------------------------------------------------


def test_manifest_packages_users_directories_checks(demo):
    m = demo.manifest("10.10.10.10")
    assert {"redis-server", "redis-tools", "prometheus-redis-exporter"} <= set(m["packages"])
    assert {"name": "redis", "system": True} in m["users"]
    dirs = {d["path"]: (d["owner"], d["mode"]) for d in m["directories"]}
    assert dirs["/data/redis"] == ("redis", "0755")
    assert dirs["/data/redis/6379"] == ("redis", "0700") and dirs["/data/redis/6380"] == ("redis", "0700")
    assert dirs["/etc/redis"] == ("redis", "0750") and dirs["/var/log/redis"] == ("redis", "0750")
    checks = {(c["checker"], tuple(c["files"]), c["where"]) for c in m["checks"]}
    assert ("redis", ("/etc/redis/redis-ms-1-6379.conf",), "both") in checks
    assert ("redis", ("/etc/redis/redis-ms-1-6380.conf",), "both") in checks
    for unit in ("redis-ms-1-6379.service", "redis-ms-1-6380.service", "redis_exporter.service"):
        assert ("systemd", (f"/etc/systemd/system/{unit}",), "both") in checks
    assert m["identity"]["redis"]["disable_units"] == ["redis-server.service", "prometheus-redis-exporter.service"]
    assert m["identity"]["redis"]["members"] == {
        "redis-ms-1-6379": "10.10.10.10:6379",
        "redis-ms-1-6380": "10.10.10.10:6380",
    }


def test_secrets_never_reach_the_bundle(demo):
    for ip, tree in demo.trees.items():
        for path, text in tree.items():
            for value in SECRET_VALUES:
                assert value not in text, f"{ip}{path} carries the secret {value}"
    assert demo.secrets["10.10.10.12"]["redis-test/redis_password"] == "redis.test"


def test_output_is_deterministic(demo, tmp_path):
    again = render(demo_inventory(), tmp_path)
    assert again.trees == demo.trees


# -- parameters --------------------------------------------------------------------------------------------


def test_parameters_shape_the_config(variant):
    def change(d):
        v = d["all"]["children"]["redis-ms"]["vars"]
        v.update(
            redis_bind_address="",
            redis_rdb_save=[],
            redis_aof_enabled=True,
            redis_mem_policy="volatile-lru",
            redis_max_memory="2gb",
            redis_rename_commands={"FLUSHALL": "", "KEYS": "sty-keys"},
            redis_fs_main="/srv/redis",
            redis_exporter_options="-include-system-metrics -redis-only-metrics",
            redis_exporter_port=9122,
        )

    b = variant(change)
    lines = directives(b.file("10.10.10.10", "/etc/redis/redis-ms-1-6379.conf"))
    for expected in (
        "bind 10.10.10.10",
        'save ""',
        "appendonly yes",
        "maxmemory-policy volatile-lru",
        "maxmemory 2gb",
        'rename-command FLUSHALL ""',
        'rename-command KEYS "sty-keys"',
        'dir "/srv/redis/6379"',
    ):
        assert expected in lines, expected
    unit = b.file("10.10.10.10", "/etc/systemd/system/redis_exporter.service")
    assert "-web.listen-address=:9122" in unit and " -include-system-metrics -redis-only-metrics\n" in unit
    assert "WorkingDirectory=/srv/redis/6379" in b.file("10.10.10.10", "/etc/systemd/system/redis-ms-1-6379.service")
    dirs = {d["path"] for d in b.manifest("10.10.10.10")["directories"]}
    assert {"/srv/redis", "/srv/redis/6379", "/srv/redis/6380"} <= dirs


def test_no_password_means_no_auth_and_no_password_file(variant):
    b = variant(lambda d: d["all"]["children"]["redis-ms"]["vars"].pop("redis_password"))
    text = b.file("10.10.10.10", "/etc/redis/redis-ms-1-6379.conf")
    assert "requirepass" not in text and "masterauth" not in text
    assert "/etc/redis/redis_exporter.json" not in b.trees["10.10.10.10"]
    assert "-redis.password-file" not in b.file("10.10.10.10", "/etc/systemd/system/redis_exporter.service")
    assert "secrets" not in b.entry("10.10.10.10", "/etc/redis/redis-ms-1-6379.conf")


def test_exporter_disabled(variant):
    b = variant(lambda d: d["all"]["children"]["redis-ms"]["vars"].update(redis_exporter_enabled=False))
    assert "/etc/systemd/system/redis_exporter.service" not in b.trees["10.10.10.10"]
    assert 9121 not in {p["port"] for p in b.manifest("10.10.10.10")["ports"]}
    assert "exporter" not in b.manifest("10.10.10.10")["identity"]["redis"]


def test_valkey_type_runs_valkey_server(variant):
    b = variant(lambda d: d["all"]["children"]["redis-ms"]["vars"].update(redis_type="valkey"))
    unit = b.file("10.10.10.10", "/etc/systemd/system/redis-ms-1-6379.service")
    assert "ExecStart=/usr/bin/valkey-server /etc/redis/redis-ms-1-6379.conf" in unit
    assert {"valkey-server", "valkey-tools"} <= set(b.manifest("10.10.10.10")["packages"])


def test_secrets_file_overrides_the_password(tmp_path):
    (tmp_path / "secrets.yml").write_text("redis-ms/redis_password: From.Secrets.File\n")
    b = render(demo_inventory(), tmp_path)
    assert b.secrets["10.10.10.10"]["redis-ms/redis_password"] == "From.Secrets.File"
    assert "From.Secrets.File" not in b.file("10.10.10.10", "/etc/redis/redis-ms-1-6379.conf")


# -- cross-host rules ------------------------------------------------------------------------------------------


def failing(data: dict[str, Any], tmp: Path) -> list[Problem]:
    with pytest.raises(InventoryError) as caught:
        compile_fleet(dump_inventory(data, tmp / "pigsty.yml"))
    assert caught.value.report.errors
    return caught.value.report.errors


def expect(problems: list[Problem], path: str, *words: str) -> None:
    at = [p for p in problems if p.path == path]
    shown = "\n".join(str(p) for p in problems)
    assert at, f"no error at {path!r}; errors:\n{shown}"
    assert any(all(w.lower() in p.message.lower() for w in words) for p in at), f"{words} not in:\n{shown}"


def hosts(data, cluster: str) -> dict:
    return data["all"]["children"][cluster]["hosts"]


def cvars(data, cluster: str) -> dict:
    return data["all"]["children"][cluster]["vars"]


def test_demo_inventory_is_valid(tmp_path):
    compiled = compile_fleet(dump_inventory(demo_inventory(), tmp_path / "pigsty.yml"))
    assert not compiled.report.errors


def test_redis_node_unique_per_cluster(tmp_path):
    d = demo_inventory()
    hosts(d, "redis-test")["10.10.10.13"]["redis_node"] = 1
    expect(failing(d, tmp_path), f"{TEST}.hosts.10.10.10.13.redis_node", "redis_node 1", "10.10.10.12")


def test_redis_node_required(tmp_path):
    d = demo_inventory()
    del hosts(d, "redis-test")["10.10.10.13"]["redis_node"]
    expect(failing(d, tmp_path), f"{TEST}.hosts.10.10.10.13.redis_node", "no redis_node")


def test_node_without_instances_is_a_warning(tmp_path):
    d = demo_inventory()
    hosts(d, "redis-ms")["10.10.10.10"]["redis_instances"] = {}
    compiled = compile_fleet(dump_inventory(d, tmp_path / "pigsty.yml"))
    path = f"{MS}.hosts.10.10.10.10.redis_instances"
    assert any(w.path == path and "nothing runs" in w.message for w in compiled.report.warnings)
    b = render(d, tmp_path)
    assert not any(p.startswith("/etc/redis/") for p in b.trees["10.10.10.10"])
    assert "/etc/systemd/system/redis_exporter.service" not in b.trees["10.10.10.10"]


def test_instance_port_clashes_with_node_exporter(tmp_path):
    d = demo_inventory()
    hosts(d, "redis-ms")["10.10.10.10"]["redis_instances"][9100] = {}
    expect(failing(d, tmp_path), f"{MS}.hosts.10.10.10.10.redis_instances.9100", "9100", "node_exporter")


def test_exporter_port_clashes_with_an_instance(tmp_path):
    d = demo_inventory()
    cvars(d, "redis-ms")["redis_exporter_port"] = 6380
    expect(failing(d, tmp_path), f"{MS}.vars.redis_exporter_port", "6380", "redis-ms-1-6380")


def test_cluster_bus_port_clashes(tmp_path):
    d = demo_inventory()
    hosts(d, "redis-test")["10.10.10.12"]["redis_instances"][16379] = {}
    expect(failing(d, tmp_path), f"{TEST}.hosts.10.10.10.12.redis_instances.16379", "16379", "cluster bus")


def test_instance_port_clashes_with_etcd(tmp_path):
    d = demo_inventory()
    d["all"]["children"]["etcd"] = {"hosts": {"10.10.10.10": {"etcd_seq": 1}}, "vars": {"etcd_cluster": "etcd"}}
    hosts(d, "redis-ms")["10.10.10.10"]["redis_instances"][2379] = {}
    expect(failing(d, tmp_path), f"{MS}.hosts.10.10.10.10.redis_instances.2379", "2379", "etcd")


def test_replica_of_must_be_an_inventory_instance(tmp_path):
    d = demo_inventory()
    hosts(d, "redis-ms")["10.10.10.10"]["redis_instances"][6380]["replica_of"] = "10.10.10.10 6390"
    expect(failing(d, tmp_path), f"{MS}.hosts.10.10.10.10.redis_instances.6380.replica_of", "not a redis instance")


def test_replica_of_format(tmp_path):
    d = demo_inventory()
    hosts(d, "redis-ms")["10.10.10.10"]["redis_instances"][6380]["replica_of"] = "10.10.10.10:6379"
    expect(failing(d, tmp_path), f"{MS}.hosts.10.10.10.10.redis_instances.6380.replica_of", "'<ip> <port>'")


def test_replica_of_a_sentinel_is_refused(tmp_path):
    d = demo_inventory()
    hosts(d, "redis-ms")["10.10.10.10"]["redis_instances"][6380]["replica_of"] = "10.10.10.11 26379"
    expect(failing(d, tmp_path), f"{MS}.hosts.10.10.10.10.redis_instances.6380.replica_of", "sentinel instance")


def test_replica_of_not_itself(tmp_path):
    d = demo_inventory()
    hosts(d, "redis-ms")["10.10.10.10"]["redis_instances"][6380]["replica_of"] = "10.10.10.10 6380"
    expect(failing(d, tmp_path), f"{MS}.hosts.10.10.10.10.redis_instances.6380.replica_of", "itself")


def test_replica_of_only_in_standalone_mode(tmp_path):
    d = demo_inventory()
    hosts(d, "redis-test")["10.10.10.13"]["redis_instances"][6381] = {"replica_of": "10.10.10.12 6379"}
    expect(failing(d, tmp_path), f"{TEST}.hosts.10.10.10.13.redis_instances.6381.replica_of", "standalone")


def test_redis_fs_main_is_not_data(tmp_path):
    d = demo_inventory()
    cvars(d, "redis-ms")["redis_fs_main"] = "/data/"
    expect(failing(d, tmp_path), f"{MS}.vars.redis_fs_main", "must not be /data")


def test_redis_fs_main_is_absolute(tmp_path):
    d = demo_inventory()
    cvars(d, "redis-ms")["redis_fs_main"] = "data/redis"
    expect(failing(d, tmp_path), f"{MS}.vars.redis_fs_main", "absolute path")


def test_sentinel_entries_well_formed(tmp_path):
    d = demo_inventory()
    cvars(d, "redis-meta")["redis_sentinel_monitor"] = [
        {"name": "redis ms", "host": "10.10.10.10", "port": 6379, "quorum": 2},
        {"name": "other", "host": "redis-ms.local", "port": 6379, "quorum": 1},
        {"name": "third", "host": "10.10.10.10", "quorum": 4},
    ]
    problems = failing(d, tmp_path)
    base = f"{META}.vars.redis_sentinel_monitor"
    expect(problems, f"{base}[0].name", "redis ms")
    expect(problems, f"{base}[1].host", "IPv4")
    expect(problems, f"{base}[2].port", "port")
    expect(problems, f"{base}[2].quorum", "exceeds the 3 sentinel")


def test_sentinel_names_unique(tmp_path):
    d = demo_inventory()
    entry = {"name": "redis-ms", "host": "10.10.10.10", "port": 6379, "quorum": 2}
    cvars(d, "redis-meta")["redis_sentinel_monitor"] = [entry, dict(entry)]
    expect(failing(d, tmp_path), f"{META}.vars.redis_sentinel_monitor[1].name", "twice")


def test_native_cluster_needs_enough_instances(tmp_path):
    d = demo_inventory()
    cvars(d, "redis-test")["redis_cluster_replicas"] = 2
    expect(failing(d, tmp_path), f"{TEST}.vars.redis_cluster_replicas", "at least 9 instances", "has 6")


def test_mode_must_agree_within_a_cluster(tmp_path):
    d = demo_inventory()
    hosts(d, "redis-test")["10.10.10.13"]["redis_mode"] = "standalone"
    expect(failing(d, tmp_path), f"{TEST}.hosts.10.10.10.13.redis_mode", "differs")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("redis_max_memory", "64 MB", ("64 MB",)),
        ("redis_rdb_save", ["1200"], ("'<seconds> <changes>'",)),
        ("redis_rename_commands", {"FLUSHALL": "no way"}, ("FLUSHALL",)),
        ("redis_bind_address", "10.10.10.10 localhost", ("localhost",)),
        ("redis_exporter_options", "-check-keys=$(id)", ("$(id)",)),
    ],
)
def test_values_written_into_the_config_are_validated(tmp_path, key, value, words):
    d = demo_inventory()
    cvars(d, "redis-ms")[key] = value
    path = f"{MS}.vars.{key}" + ("[0]" if key == "redis_rdb_save" else ".FLUSHALL" if key.endswith("commands") else "")
    expect(failing(d, tmp_path), path, *words)


def test_custom_redis_conf_template_is_a_warning(tmp_path):
    d = demo_inventory()
    cvars(d, "redis-ms")["redis_conf"] = "redis-cache.conf"
    compiled = compile_fleet(dump_inventory(d, tmp_path / "pigsty.yml"))
    assert any(w.path == f"{MS}.vars.redis_conf" and "not used" in w.message for w in compiled.report.warnings)


# -- schema ------------------------------------------------------------------------------------------------------


def test_schema_covers_every_redis_parameter_with_pigsty_defaults():
    schema = json.loads((ROOT / "schemas" / "redis.json").read_text())["properties"]
    el = yaml.safe_load((CORPUS / "demo" / "el.yml").read_text())["all"]["vars"]
    listed = {k: v for k, v in el.items() if k.startswith("redis_")}
    assert set(listed) <= set(schema)
    for name, value in listed.items():
        assert schema[name]["default"] == value, name
    for name, spec in schema.items():
        assert spec.get("type") and spec.get("description"), name
        if name not in ("redis_cluster", "redis_node", "redis_instances"):  # identity: no default in Pigsty
            assert "default" in spec, name
    assert schema["redis_password"]["x-secret"] is True


# ===================================================================================================================
# slow: real programs
# ===================================================================================================================


def need_root(*programs: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (private network namespaces)")
    for prog in programs:
        if shutil.which(prog) is None:
            if os.environ.get("CI"):
                pytest.fail(f"{prog} is not installed (see .ci/run PACKAGES)")
            pytest.skip(f"{prog} is not installed")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    """The demo inventory built to disk: <dir>/<ip>/ and <dir>/<ip>.yml."""
    tmp = tmp_path_factory.mktemp("redis-bundles")
    compiled = compile_fleet(dump_inventory(demo_inventory(), tmp / "pigsty.yml"))
    build(compiled, tmp / "out")
    return tmp / "out"


def run_checker(root: Path, ip: str, name: str, files: tuple[str, ...]):
    """One registered checker through the check runner (as `sty lint` runs it) on the bundle `root/ip`."""
    import realprog as rp

    return rp.run(root / ip, ip, name, files, outputs=root)


def manifest_checks(root: Path, checker: str) -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for m in sorted(root.glob("*.yml")):
        for c in yaml.safe_load(m.read_text())["checks"]:
            if c["checker"] == checker:
                out.append((m.stem, tuple(c["files"])))
    return out


@pytest.mark.slow
def test_redis_server_accepts_every_config(bundles):
    need_root("redis-server", "redis-cli", "ip")
    checks = manifest_checks(bundles, "redis")
    assert len(checks) == 11  # 2 standalone + 3 sentinel + 6 cluster instances
    for ip, files in checks:
        result = run_checker(bundles, ip, "redis", files)
        assert result.status == "pass", result.output
        assert "answered PONG" in result.output


@pytest.mark.slow
def test_redis_server_rejects_broken_configs(bundles, tmp_path):
    need_root("redis-server", "redis-cli", "ip")
    root = tmp_path / "broken"
    shutil.copytree(bundles, root)
    conf = root / "10.10.10.10/etc/redis/redis-ms-1-6379.conf"
    conf.write_text(conf.read_text().replace("maxmemory-policy allkeys-lru", "maxmemory-policy all-keys-lru"))
    result = run_checker(root, "10.10.10.10", "redis", ("/etc/redis/redis-ms-1-6379.conf",))
    assert result.status == "fail"
    assert "FATAL CONFIG FILE ERROR" in result.output
    assert "'maxmemory-policy all-keys-lru'" in result.output and "must be one of the following" in result.output

    sentinel = root / "10.10.10.11/etc/redis/redis-meta-1-26379.conf"
    sentinel.write_text(sentinel.read_text().replace("10.10.10.10 6379 2", "10.10.10.10 6379 two"))
    result = run_checker(root, "10.10.10.11", "redis", ("/etc/redis/redis-meta-1-26379.conf",))
    assert result.status == "fail" and "Quorum must be 1 or greater" in result.output


@pytest.mark.slow
def test_redis_server_rejects_a_bad_replicaof(bundles, tmp_path):
    need_root("redis-server", "redis-cli", "ip")
    root = tmp_path / "broken"
    shutil.copytree(bundles, root)
    conf = root / "10.10.10.10/etc/redis/redis-ms-1-6380.conf"
    conf.write_text(conf.read_text().replace("replicaof 10.10.10.10 6379", "replicaof 10.10.10.10 sixty"))
    result = run_checker(root, "10.10.10.10", "redis", ("/etc/redis/redis-ms-1-6380.conf",))
    assert result.status == "fail" and "replicaof" in result.output


def _start(ns, conf: Path, data: Path, log: Path, *extra: str) -> subprocess.Popen:
    text = re.sub(r'^dir ".*"$', f'dir "{data}"', conf.read_text(), flags=re.M)
    copy_ = data.parent / conf.name
    copy_.write_text(text)
    with open(log, "wb") as fh:
        return ns.popen(
            [
                shutil.which("redis-server"),
                str(copy_),
                *extra,
                "--daemonize",
                "no",
                "--supervised",
                "no",
                "--logfile",
                "",
            ],
            stdout=fh,
            stderr=fh,
        )


@pytest.mark.slow
def test_exporter_scrapes_an_instance_with_the_password_file(bundles, tmp_path):
    """redis_exporter with the unit's flags and the bundle's password file (secrets substituted) scrapes the
    bundle's redis instance: redis_up 1; a wrong password in the file gives redis_up 0."""
    need_root("redis-server", "redis-cli", "ip", "prometheus-redis-exporter")
    from sty.apply.checks.util import netns, substitute, wait_for

    node = bundles / "10.10.10.10"
    secret = "Sty.Redis.Secret-1"
    unit = (node / "etc/systemd/system/redis_exporter.service").read_text()
    args = next(line for line in unit.splitlines() if line.startswith("ExecStart=")).split()[1:]
    data = tmp_path / "data"
    data.mkdir()
    conf = tmp_path / "redis.conf"
    conf.write_text(substitute((node / "etc/redis/redis-ms-1-6379.conf").read_text(), secret))
    passwords = tmp_path / "passwords.json"
    with netns(["10.10.10.10"]) as ns:
        server = _start(ns, conf, data, tmp_path / "redis.log")
        ping = ["redis-cli", "-h", "10.10.10.10", "-p", "6379", "--no-auth-warning", "-a", secret, "ping"]
        assert wait_for(lambda: ns.run(ping).stdout.strip() == "PONG", 10, alive=server), (
            tmp_path / "redis.log"
        ).read_text()
        for value, up in ((secret, "1"), ("wrong-password", "0")):
            passwords.write_text(substitute((node / "etc/redis/redis_exporter.json").read_text(), value))
            flags = [a.replace("/etc/redis/redis_exporter.json", str(passwords)) for a in args]
            flags = [a.replace("-web.listen-address=:9121", "-web.listen-address=127.0.0.1:9121") for a in flags]
            exporter = ns.popen(
                [shutil.which("prometheus-redis-exporter"), *flags], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
            url = "http://127.0.0.1:9121/scrape?target=redis://10.10.10.10:6379"
            fetch = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
            assert wait_for(lambda: ns.tcp_open("127.0.0.1", 9121), 10, alive=exporter)
            body = ns.run([sys.executable, "-c", fetch]).stdout
            assert re.search(rf"^redis_up {up}$", body, re.M), body[:2000]
            from sty.apply.checks.util import stop

            stop(exporter)
            ns.procs.remove(exporter)


@pytest.mark.slow
def test_native_cluster_forms_from_the_recorded_members(bundles, tmp_path):
    """The six cluster configs started in one namespace holding both hosts' addresses (each instance bound to
    and announcing its host's address, as `bind 0.0.0.0` on two hosts cannot share one namespace), then the
    create command
    built from the manifest's cluster_create: the cluster reaches cluster_state:ok with 3 primaries."""
    need_root("redis-server", "redis-cli", "ip")
    from sty.apply.checks.util import netns, substitute, wait_for

    secret = "Sty.Redis.Secret-1"
    create = yaml.safe_load((bundles / "10.10.10.12.yml").read_text())["identity"]["redis"]["cluster_create"]
    with netns(["10.10.10.12", "10.10.10.13"]) as ns:
        servers = []
        for ip, node in (("10.10.10.12", 1), ("10.10.10.13", 2)):
            for port in (6379, 6380, 6381):
                src = bundles / ip / f"etc/redis/redis-test-{node}-{port}.conf"
                work = tmp_path / f"{ip}-{port}"
                (work / "data").mkdir(parents=True)
                conf = work / "redis.conf"
                conf.write_text(substitute(src.read_text(), secret).replace("bind 0.0.0.0", f"bind {ip}"))
                # in one namespace the kernel picks the peer's own address as source: announce ours
                servers.append(_start(ns, conf, work / "data", work / "redis.log", "--cluster-announce-ip", ip))
        auth = ["--no-auth-warning", "-a", secret]
        for member in create["members"]:
            host, port = member.split(":")
            ping = ["redis-cli", "-h", host, "-p", port, *auth, "ping"]
            assert wait_for(lambda ping=ping: ns.run(ping).stdout.strip() == "PONG", 10), member
        cmd = ["redis-cli", *auth, "--cluster", "create", *create["members"]]
        cmd += ["--cluster-replicas", str(create["replicas"]), "--cluster-yes"]
        out = ns.run(cmd, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        info = ["redis-cli", "-h", "10.10.10.13", "-p", "6381", *auth, "cluster", "info"]
        assert wait_for(lambda: "cluster_state:ok" in ns.run(info).stdout, 15), ns.run(info).stdout
        assert "cluster_size:3" in ns.run(info).stdout


@pytest.mark.slow
def test_systemd_accepts_the_units(bundles):
    need_root("systemd-analyze")
    units = [(ip, u) for ip, files in manifest_checks(bundles, "systemd") for u in files if "redis" in u]
    assert len(units) == 15  # 11 instances + 4 exporters
    # one unit of each shape (the others differ only in names and paths): standalone, sentinel, cluster, exporter
    shapes = {"redis-ms-1-6379.service", "redis-meta-1-26379.service", "redis-test-2-6381.service"}
    chosen = [(ip, u) for ip, u in units if Path(u).name in shapes or (ip == "10.10.10.12" and "exporter" in u)]
    assert len(chosen) == 4
    for ip, unit in chosen:
        result = run_checker(bundles, ip, "systemd", (unit,))
        assert result.status == "pass", f"{unit}: {result.output} {result.reason}"


@pytest.mark.slow
def test_systemd_rejects_a_broken_unit(bundles, tmp_path):
    need_root("systemd-analyze")
    root = tmp_path / "out"
    shutil.copytree(bundles, root)
    unit = root / "10.10.10.10/etc/systemd/system/redis-ms-1-6379.service"
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notifyy"))
    result = run_checker(root, "10.10.10.10", "systemd", ("/etc/systemd/system/redis-ms-1-6379.service",))
    assert result.status == "fail" and "Failed to parse service type" in result.output
