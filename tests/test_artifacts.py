"""What the bundles of the shipped inventory say: content, not existence."""

from __future__ import annotations

import re
from functools import cache

import pytest
import yaml
from conftest import ROOT, SHIPPED

from sty.compiler.build import render_targets
from sty.compiler.pipeline import compile_fleet, resolve_target


@cache
def shipped_trees() -> dict[str, dict[str, str]]:
    compiled = compile_fleet(SHIPPED)
    rendered = render_targets(compiled, resolve_target(compiled.fleet, "all"))
    return {ip: {rel: data.decode() for rel, data in tree.items()} for ip, tree in rendered.trees.items()}


def f(ip: str, path: str) -> str:
    return shipped_trees()[ip][f"{ip}{path}"]


def manifest(ip: str) -> dict:
    return yaml.safe_load(shipped_trees()[ip][f"{ip}.yml"])


def test_replica_service_lists_three_servers_checked_on_patroni():
    cfg = f("10.10.10.11", "/etc/haproxy/conf.d/pg-test-replica.cfg")
    servers = re.findall(r"^\s+server (\S+) (\S+) check port 8008 weight 100(.*)$", cfg, re.M)
    assert [(s[0], s[1], s[2]) for s in servers] == [  # Pigsty's order: the selector's members, by pg_seq
        ("pg-test-1", "10.10.10.11:6432", " backup"),  # the primary serves reads only when no replica can
        ("pg-test-2", "10.10.10.12:6432", ""),
        ("pg-test-3", "10.10.10.13:6432", ""),
    ]
    assert "bind *:5434" in cfg
    assert "http-check send meth OPTIONS uri /read-only" in cfg
    # pg_rto: norm -> inter 2s fastinter 1s downinter 2s rise 3 fall 3
    assert "default-server inter 2s fastinter 1s downinter 2s rise 3 fall 3" in cfg


def test_default_and_offline_services_route_as_pigsty_does():
    default = f("10.10.10.12", "/etc/haproxy/conf.d/pg-test-default.cfg")
    assert "bind *:5436" in default and "uri /primary" in default
    assert "server pg-test-1 10.10.10.11:5432 check port 8008" in default  # dest: postgres
    offline = f("10.10.10.12", "/etc/haproxy/conf.d/pg-test-offline.cfg")
    # selector picks the offline-query replica, the other replica is a backup, the primary is not in it
    assert re.search(r"server pg-test-3 10.10.10.13:5432 check port 8008 weight 100\n", offline)
    assert re.search(r"server pg-test-2 10.10.10.12:5432 check port 8008 weight 100 backup\n", offline)
    assert "pg-test-1" not in offline.split("listen", 1)[1]


def test_custom_service_from_pg_services():
    cfg = f("10.10.10.13", "/etc/haproxy/conf.d/pg-test-standby.cfg")
    assert "bind *:5435" in cfg and "uri /sync" in cfg
    assert re.search(r"server pg-test-1 \S+ check port 8008 weight 100 backup", cfg)  # backup: the primary
    assert re.search(r"server pg-test-2 \S+ check port 8008 weight 100\n", cfg)
    assert {"port": 5435, "component": "haproxy:pg-test-standby", "module": "pgsql", "address": "0.0.0.0"} in manifest(
        "10.10.10.13"
    )["ports"]


def test_primary_only_hba_rule_is_commented_out_on_replicas():
    rule = {"user": "dbuser_dba", "db": "all", "addr": "10.1.2.3/32", "auth": "pwd", "role": "primary"}
    import copy

    from conftest import shipped_inventory

    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["vars"]["pg_hba_rules"] = [rule]
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pigsty.yml"
        path.write_text(yaml.safe_dump(copy.deepcopy(data)))
        compiled = compile_fleet(path)
        trees = render_targets(compiled, ["10.10.10.11", "10.10.10.12"]).trees
    primary = trees["10.10.10.11"]["10.10.10.11/pg/conf/pg_hba.conf"].decode()
    replica = trees["10.10.10.12"]["10.10.10.12/pg/conf/pg_hba.conf"].decode()
    line = re.compile(r"^(#?)host\s+all\s+dbuser_dba\s+10\.1\.2\.3/32\s+scram-sha-256$", re.M)
    assert line.search(primary).group(1) == ""
    assert line.search(replica).group(1) == "#"


def test_patroni_config_is_derived_from_the_cluster():
    doc = yaml.safe_load(f("10.10.10.12", "/etc/patroni/patroni.yml"))
    assert doc["scope"] == "pg-test" and doc["name"] == "pg-test-2"
    assert doc["namespace"] == "/pg/"
    assert doc["etcd3"]["hosts"] == ["10.10.10.10:2379"]
    assert doc["restapi"]["connect_address"] == "10.10.10.12:8008"
    assert doc["postgresql"]["connect_address"] == "10.10.10.12:5432"
    assert doc["postgresql"]["bin_dir"] == "/usr/lib/postgresql/15/bin"  # debian12 platform, pg_version 15
    assert doc["postgresql"]["parameters"]["hba_file"] == "/pg/conf/pg_hba.conf"
    dcs = doc["bootstrap"]["dcs"]
    # pg_rto norm = [30, 5, 10, 25, 5, ...], pg_rpo 1 MiB
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"], dcs["primary_start_timeout"]) == (30, 5, 10, 25)
    assert dcs["maximum_lag_on_failover"] == 1048576
    assert dcs["postgresql"]["parameters"]["max_connections"] == "250"  # tiny profile for pg-test
    # secrets are placeholders
    assert doc["restapi"]["authentication"]["password"] == "<<secret:pg-test/patroni_password>>"
    assert doc["postgresql"]["authentication"]["replication"]["password"] == (
        "<<secret:pg-test/pg_replication_password>>"
    )


def test_dcs_parameters_identical_across_members_and_tuning_follows_facts():
    dcs = [
        yaml.safe_load(f(ip, "/etc/patroni/patroni.yml"))["bootstrap"]["dcs"]
        for ip in ("10.10.10.11", "10.10.10.12", "10.10.10.13")
    ]
    assert dcs[0] == dcs[1] == dcs[2]
    meta = yaml.safe_load(f("10.10.10.10", "/etc/patroni/patroni.yml"))["postgresql"]["parameters"]
    # assumed facts: 4096 MiB memory, shared_buffers = 25 %
    assert meta["shared_buffers"] == "1024MB"
    assert manifest("10.10.10.10")["facts"]["assumed"] == ["cpu", "disk_gb", "mem_mb"]


def test_etcd_config_lists_every_member():
    conf = yaml.safe_load(f("10.10.10.10", "/etc/etcd/etcd.conf"))
    assert conf["name"] == "etcd-1"
    assert conf["initial-cluster"] == "etcd-1=https://10.10.10.10:2380"
    assert conf["initial-cluster-state"] == "new"
    assert conf["advertise-client-urls"] == "https://10.10.10.10:2379"
    assert "/etc/etcd/etcd.conf" not in shipped_trees()["10.10.10.11"]


def test_etcd_speaks_tls_with_a_certificate_from_the_fleet_ca():
    """As Pigsty: TLS for peers and clients; etcd then asks clients for a certificate, so Patroni and vip-manager
    present their instance's and check the members' against the fleet CA."""
    conf = yaml.safe_load(f("10.10.10.10", "/etc/etcd/etcd.conf"))
    tls = {
        "cert-file": "/etc/etcd/server.crt",
        "key-file": "/etc/etcd/server.key",
        "trusted-ca-file": "/etc/etcd/ca.crt",
    }
    assert conf["client-transport-security"] == tls and conf["peer-transport-security"] == tls
    assert conf["listen-client-urls"] == "https://10.10.10.10:2379,https://127.0.0.1:2379"
    m = manifest("10.10.10.10")
    cert = next(c for c in m["certificates"] if c["name"] == "etcd-server")
    assert (cert["cert"], cert["key"], cert["owner"], cert["usage"]) == (
        "/etc/etcd/server.crt", "/etc/etcd/server.key", "etcd", "both",
    )  # fmt: skip
    assert {"etcd-1", "10.10.10.10", "127.0.0.1"} <= set(cert["sans"])
    assert "/etc/etcd/ca.crt" in m["trust"] and "/etc/pki/ca.crt" in m["trust"]
    dcs = yaml.safe_load(f("10.10.10.11", "/etc/patroni/patroni.yml"))["etcd3"]
    assert (dcs["protocol"], dcs["cacert"], dcs["cert"], dcs["key"]) == (
        "https", "/pg/cert/ca.crt", "/pg/cert/server.crt", "/pg/cert/server.key",
    )  # fmt: skip
    assert "/pg/cert/ca.crt" in manifest("10.10.10.11")["trust"]


def test_etc_hosts_block_gets_node_records_and_pg_peers():
    hosts = f("10.10.10.12", "/etc/hosts")
    assert hosts.startswith("# BEGIN sty") and hosts.rstrip().endswith("# END sty: static records")
    for line in ("10.10.10.10 i.pigsty", "10.10.10.11 pg-test-1", "10.10.10.12 pg-test-2", "10.10.10.13 pg-test-3"):
        assert line in hosts.splitlines()
    entry = next(x for x in manifest("10.10.10.12")["files"] if x["path"] == "/etc/hosts")
    assert entry["kind"] == "block" and entry["module"] == "node"


def test_pgbouncer_lists_databases_users_and_hba():
    assert "test = host=/var/run/postgresql port=5432 dbname=test" in f("10.10.10.11", "/etc/pgbouncer/database.txt")
    userlist = f("10.10.10.11", "/etc/pgbouncer/userlist.txt")
    assert '"test" "<<secret:pg-test/pg_users/test/scram>>"' in userlist
    assert '"dbuser_dba"' in userlist and '"dbuser_monitor"' in userlist
    assert "dbuser_dba = pool_mode=session max_user_connections=16" in f("10.10.10.11", "/etc/pgbouncer/useropts.txt")
    ini = f("10.10.10.11", "/etc/pgbouncer/pgbouncer.ini")
    assert "listen_port = 6432" in ini and "auth_type = hba" in ini
    hba = f("10.10.10.11", "/etc/pgbouncer/pgb_hba.conf")
    assert re.search(r"^local\s+pgbouncer\s+postgres\s+peer$", hba, re.M)


def test_haproxy_main_config_has_admin_listener_with_secret_auth():
    cfg = f("10.10.10.11", "/etc/haproxy/haproxy.cfg")
    assert "bind *:9101" in cfg
    assert "stats auth admin:<<secret:10.10.10.11/haproxy_admin_password>>" in cfg
    unit = f("10.10.10.11", "/etc/systemd/system/haproxy.service")
    assert "-f $CONFIG -f $CONFDIR" in unit


def test_manifest_is_enough_to_apply_without_the_inventory():
    m = manifest("10.10.10.11")
    assert m["address"] == "10.10.10.11" and m["ssh"] == {"host": "10.10.10.11", "port": 22, "user": "root"}
    assert m["modules"] == ["node", "pgsql"]
    assert m["identity"]["pgsql"]["instance"] == "pg-test-1" and m["identity"]["pgsql"]["role"] == "primary"
    ports = {p["port"]: p["component"] for p in m["ports"]}
    assert ports[5432] == "postgres" and ports[6432] == "pgbouncer" and ports[8008] == "patroni"
    assert ports[9100] == "node_exporter" and ports[9101] == "haproxy"
    assert {5433, 5434, 5435, 5436, 5438} <= set(ports)
    units = {u["name"] for u in m["units"]}
    assert {"patroni.service", "pgbouncer.service", "haproxy.service", "node_exporter.service"} <= units
    assert "postgresql-15" in m["packages"] and "patroni" in m["packages"]
    assert {"name": "postgres", "uid": 26, "home": "/var/lib/pgsql", "system": True} in m["users"]
    files = {x["path"]: x for x in m["files"]}
    patroni = files["/etc/patroni/patroni.yml"]
    assert (patroni["owner"], patroni["mode"], patroni["format"]) == ("postgres", "0600", "yaml")
    assert {"action": "patroni-reload"} in patroni["actions"]
    assert "pg-test/patroni_password" in patroni["secrets"]
    svc = files["/etc/haproxy/conf.d/pg-test-primary.cfg"]
    assert svc["actions"] == [{"action": "reload", "unit": "haproxy.service"}] and svc["module"] == "pgsql"
    unit = files["/etc/systemd/system/patroni.service"]
    assert {"action": "daemon-reload"} in unit["actions"]
    checks = {(c["checker"], c["where"]) for c in m["checks"]}
    assert ("haproxy", "both") in checks and ("patroni", "build") in checks and ("pgbouncer", "build") in checks
    # every file the manifest lists is in the bundle with the recorded checksum
    import hashlib

    for path, entry in files.items():
        data = shipped_trees()["10.10.10.11"][f"10.10.10.11{path}"].encode()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("ip", ["10.10.10.10", "10.10.10.11", "10.10.10.12", "10.10.10.13"])
def test_no_secret_value_and_no_build_path_in_bundles(ip):
    for rel, text in shipped_trees()[ip].items():
        for secret in ("DBUser.DBA", "DBUser.Monitor", "DBUser.Replicator", "Patroni.API", "Etcd.Root", "S3User"):
            assert secret not in text, f"{secret} leaked into {rel}"
        assert str(ROOT) not in text and not re.search(r"(?<![\w/])/tmp/", text), f"build machine path in {rel}"
