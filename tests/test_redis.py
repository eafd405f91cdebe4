"""REDIS: what the bundles of Pigsty's demo/redis.yml say (standalone primary + replica, a sentinel trio, a
3 x 2 native cluster), how parameters change them and the cross-host rules. Real programs judge the bundles in
test_redis_programs.py; test_redis_pigsty.py holds them to Pigsty's own templates.

The demo's `infra` group is left out of these inventories (except where the scrape targets are read): this
file is about REDIS, and INFRA's files are judged elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, dump_inventory
from shared import CORPUS

from sty.compiler.build import render_targets
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
        'pidfile "/var/run/redis/redis-ms-1-6379.pid"',
        'logfile "/var/log/redis/redis-ms-1-6379.log"',
        'dir "/data/redis/redis-ms-1-6379"',
        'dbfilename "redis-ms-1-6379.rdb"',
        'appendfilename "redis-ms-1-6379.aof"',
        "save 1200 1",
        "stop-writes-on-bgsave-error no",
        "repl-diskless-sync no",
        "maxclients 6000",
        "tcp-backlog 1024",
        "tcp-keepalive 300",
        "latency-monitor-threshold 0",
        "cluster-enabled no",
        "cluster-require-full-coverage no",
        "maxmemory 64MB",
        "maxmemory-policy allkeys-lru",
        "appendonly no",
        'requirepass "<<secret:redis-ms/redis_password>>"',
        'masterauth "<<secret:redis-ms/redis_password>>"',
    ):
        assert expected in lines, expected
    assert not any(
        line.startswith(("replicaof", "cluster-config-file", "sentinel", "rename-command", "unixsocket"))
        for line in lines
    )
    assert "redis-ms-1-6379 @ 10.10.10.10:6379" in conf.splitlines()[1]


def test_replica_follows_replica_of(demo):
    lines = directives(demo.file("10.10.10.10", "/etc/redis/redis-ms-1-6380.conf"))
    assert "replicaof 10.10.10.10 6379" in lines
    assert "port 6380" in lines and 'dir "/data/redis/redis-ms-1-6380"' in lines
    assert 'dbfilename "redis-ms-1-6380.rdb"' in lines
    assert 'masterauth "<<secret:redis-ms/redis_password>>"' in lines


def test_instance_unit_and_restart_actions(demo):
    unit = demo.file("10.10.10.10", "/etc/systemd/system/redis-ms-1-6379.service")
    assert "ExecStart=/usr/bin/redis-server /etc/redis/redis-ms-1-6379.conf\n" in unit
    for line in (
        "Type=notify",
        "User=redis",
        "Group=redis",
        "WorkingDirectory=/data/redis/redis-ms-1-6379",
        "AssertPathExists=/etc/redis/redis-ms-1-6379.conf",
        "RuntimeDirectory=redis",
        "RuntimeDirectoryMode=0755",
        "RuntimeDirectoryPreserve=yes",
        "UMask=0077",
        "LimitNOFILE=10032",
        "Restart=on-failure",
        "TimeoutStartSec=1800s",
        "TimeoutStopSec=60",
    ):
        assert line in unit.splitlines(), line
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
        assert f"port {port}" in lines and f'dir "/data/redis/redis-meta-1-{port}"' in lines
        assert f'pidfile "/var/run/redis/redis-meta-1-{port}.pid"' in lines
        assert f'logfile "/var/log/redis/redis-meta-1-{port}.log"' in lines
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
            assert f'dir "/data/redis/redis-test-{node}-{port}"' in lines
            assert "cluster-require-full-coverage no" in lines and "cluster-migration-barrier 10" in lines
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
        "ExecStart=/usr/bin/prometheus-redis-exporter -web.listen-address=:9121 -web.telemetry-path=/metrics "
        "-connection-timeout=10s -include-system-metrics -redis.addr= "
        "-redis.password-file=/etc/redis/redis_exporter.json"
    )
    assert "CPUQuota=10%" in unit.splitlines()
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
    assert dirs["/data/redis"] == ("redis", "0700")
    assert dirs["/data/redis/redis-ms-1-6379"] == ("redis", "0700")
    assert dirs["/data/redis/redis-ms-1-6380"] == ("redis", "0700")
    assert dirs["/etc/redis"] == ("redis", "0700") and dirs["/var/log/redis"] == ("redis", "0700")
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
        'dir "/srv/redis/redis-ms-1-6379"',
    ):
        assert expected in lines, expected
    unit = b.file("10.10.10.10", "/etc/systemd/system/redis_exporter.service")
    assert "-web.listen-address=:9122" in unit and " -include-system-metrics -redis-only-metrics\n" in unit
    unit_text = b.file("10.10.10.10", "/etc/systemd/system/redis-ms-1-6379.service")
    assert "WorkingDirectory=/srv/redis/redis-ms-1-6379" in unit_text
    dirs = {d["path"] for d in b.manifest("10.10.10.10")["directories"]}
    assert {"/srv/redis", "/srv/redis/redis-ms-1-6379", "/srv/redis/redis-ms-1-6380"} <= dirs


def test_no_password_means_no_auth_and_no_password_file(variant):
    b = variant(lambda d: d["all"]["children"]["redis-ms"]["vars"].pop("redis_password"))
    text = b.file("10.10.10.10", "/etc/redis/redis-ms-1-6379.conf")
    assert "requirepass" not in text and "masterauth" not in text
    assert "/etc/redis/redis_exporter.json" not in b.trees["10.10.10.10"]
    assert "-redis.password-file" not in b.file("10.10.10.10", "/etc/systemd/system/redis_exporter.service")
    assert "secrets" not in b.entry("10.10.10.10", "/etc/redis/redis-ms-1-6379.conf")


def test_exporter_serves_its_metrics_on_exporter_metrics_path(variant, tmp_path):
    b = variant(lambda d: d["all"]["children"]["redis-ms"]["vars"].update(exporter_metrics_path="/x/metrics"))
    assert "-web.telemetry-path=/x/metrics" in b.file("10.10.10.10", "/etc/systemd/system/redis_exporter.service")
    units = {u["name"]: u["health"] for u in b.manifest("10.10.10.10")["units"]}
    assert units["redis_exporter.service"] == "http://10.10.10.10:9121/x/metrics"
    d = demo_inventory()
    cvars(d, "redis-ms")["exporter_metrics_path"] = "/metrics; rm"
    expect(failing(d, tmp_path), f"{MS}.vars.exporter_metrics_path", "URL path")


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
