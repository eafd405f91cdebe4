"""INFRA: what the infra nodes' bundles say. The fan-in (scrape targets, DNS records, HAProxy admin pages,
Grafana datasources) is derived from the whole fleet, so these tests read content and compare builds of
modified copies of the shipped inventory and of Pigsty's three-infra-node example."""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SHIPPED, dump_inventory, shipped_inventory
from shared import CORPUS

from sty.compiler.build import render_targets
from sty.compiler.errors import InventoryError
from sty.compiler.modules.infra import InfraModule, alert_rules
from sty.compiler.pipeline import compile_fleet, input_digest, render_host, resolve_target
from sty.compiler.schema import registry

INFRA = "10.10.10.10"
PG_TEST = ("10.10.10.11", "10.10.10.12", "10.10.10.13")
COMPONENTS = {
    "nginx": 9113,
    "vmetrics": 8428,
    "vlogs": 9428,
    "vtraces": 10428,
    "vmalert": 8880,
    "alertmanager": 9059,
    "blackbox": 9115,
    "grafana": 3000,
}


def build(inventory: Path) -> dict[str, dict[str, str]]:
    """ip -> host path (or 'manifest') -> text, for every host."""
    compiled = compile_fleet(inventory)
    rendered = render_targets(compiled, resolve_target(compiled.fleet, "all"))
    out: dict[str, dict[str, str]] = {}
    for ip, tree in rendered.trees.items():
        files = {rel[len(ip) :]: data.decode() for rel, data in tree.items() if rel != f"{ip}.yml"}
        files["manifest"] = tree[f"{ip}.yml"].decode()
        out[ip] = files
    return out


@cache
def shipped() -> dict[str, dict[str, str]]:
    return build(SHIPPED)


def build_data(data: dict, tmp_path: Path, name: str = "pigsty.yml") -> dict[str, dict[str, str]]:
    return build(dump_inventory(data, tmp_path / name))


def compile_data(data: dict, tmp_path: Path):
    return compile_fleet(dump_inventory(data, tmp_path / "pigsty.yml"))


def targets(files: dict[str, str]) -> dict[str, list]:
    return {p: yaml.safe_load(t) for p, t in files.items() if p.startswith("/infra/targets/")}


def manifest(files: dict[str, str]) -> dict:
    return yaml.safe_load(files["manifest"])


def errors_of(data: dict, tmp_path: Path) -> list[str]:
    with pytest.raises(InventoryError) as exc:
        compile_data(data, tmp_path)
    return [f"{p.path}: {p.message}" for p in exc.value.report.errors]


# --------------------------------------------------------------------------------------------------
# the fan-in of the shipped inventory
# --------------------------------------------------------------------------------------------------

NODES = {  # ip -> (cls, ins): PGSQL nodes borrow the instance's identity (node_id_from_pg)
    "10.10.10.10": ("pg-meta", "pg-meta-1"),
    "10.10.10.11": ("pg-test", "pg-test-1"),
    "10.10.10.12": ("pg-test", "pg-test-2"),
    "10.10.10.13": ("pg-test", "pg-test-3"),
}


def test_infra_node_scrapes_every_node_with_identity_labels():
    t = targets(shipped()[INFRA])
    for ip, (cls, ins) in NODES.items():
        labels = {"cls": cls, "ins": ins, "ip": ip}
        assert t[f"/infra/targets/node/{ip}.yml"] == [
            {"labels": labels, "targets": [f"{ip}:9100", f"{ip}:9101", f"{ip}:9598"]}
        ]
        assert t[f"/infra/targets/ping/{ip}.yml"] == [{"labels": labels, "targets": [ip]}]
    assert sorted(p for p in t if p.startswith("/infra/targets/node/")) == [
        f"/infra/targets/node/{ip}.yml" for ip in NODES
    ]


def test_infra_node_scrapes_every_postgres_instance():
    t = targets(shipped()[INFRA])
    pg = {p: v for p, v in t.items() if p.startswith("/infra/targets/pgsql/")}
    assert sorted(pg) == [f"/infra/targets/pgsql/{ins}.yml" for _, ins in NODES.values()]
    for ip, (cls, ins) in NODES.items():
        # pg_exporter, pgbouncer_exporter, pgbackrest_exporter and Patroni's REST API (plain HTTP)
        want = [f"{ip}:9630", f"{ip}:9631", f"{ip}:9854", f"{ip}:8008"]
        assert pg[f"/infra/targets/pgsql/{ins}.yml"] == [
            {"labels": {"cls": cls, "ins": ins, "ip": ip}, "targets": want}
        ]


def test_infra_node_scrapes_etcd_and_its_own_components():
    t = targets(shipped()[INFRA])
    assert t["/infra/targets/etcd/etcd-1.yml"] == [  # over TLS, as etcd speaks it
        {"labels": {"__scheme__": "https", "cls": "etcd", "ins": "etcd-1", "ip": INFRA}, "targets": [f"{INFRA}:2379"]}
    ]
    infra = {g["labels"]["cls"]: g for g in t["/infra/targets/infra/infra-1.yml"]}
    assert set(infra) == set(COMPONENTS)
    for comp, port in COMPONENTS.items():
        assert infra[comp] == {"labels": {"cls": comp, "ins": f"{comp}-1", "ip": INFRA}, "targets": [f"{INFRA}:{port}"]}
    jobs = {p.split("/")[3] for p in t}
    assert jobs == {"node", "ping", "pgsql", "etcd", "infra"}  # no redis or minio host: no such targets


def test_scrape_config_is_prometheus_compatible_and_vmagent_strict():
    conf = yaml.safe_load(shipped()[INFRA]["/infra/prometheus.yml"])
    assert conf["global"] == {"scrape_interval": "10s", "scrape_timeout": "8s"}
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert set(jobs) == {"ping", "infra", "node", "etcd", "pgsql"}
    for name, job in jobs.items():
        assert job["file_sd_configs"] == [{"files": [f"/infra/targets/{name}/*.yml"]}]
    # ping goes through the local blackbox exporter with the icmp module
    assert jobs["ping"]["metrics_path"] == "/probe" and jobs["ping"]["params"] == {"module": ["icmp"]}
    assert {"target_label": "__address__", "replacement": "127.0.0.1:9115"} in jobs["ping"]["relabel_configs"]
    # keys vmagent 1.79 rejects
    text = shipped()[INFRA]["/infra/prometheus.yml"]
    for key in ("rule_files", "alerting", "evaluation_interval", "refresh_interval"):
        assert key not in text


def test_only_infra_nodes_get_infra_files():
    for ip in PG_TEST:
        files = shipped()[ip]
        assert not [p for p in files if p.startswith(("/infra/", "/etc/nginx", "/etc/grafana", "/etc/hosts.d"))]
        assert "infra" not in manifest(files)["modules"]


def test_dns_records_for_every_postgres_instance_and_cluster():
    files = shipped()[INFRA]
    lines = lambda p: [x for x in files[p].splitlines() if x and not x.startswith("#")]  # noqa: E731
    # dns_records with ${admin_ip} resolved
    assert lines("/etc/hosts.d/default") == [
        "10.10.10.10 i.pigsty",
        "10.10.10.10 m.pigsty supa.pigsty api.pigsty adm.pigsty cli.pigsty ddl.pigsty",
    ]
    # pg_dns_target auto without a VIP: the cluster name resolves to the primary
    assert lines("/etc/hosts.d/pgsql-pg-test") == [
        "10.10.10.11 pg-test-1",
        "10.10.10.12 pg-test-2",
        "10.10.10.13 pg-test-3",
        "10.10.10.11 pg-test",
    ]
    assert lines("/etc/hosts.d/pgsql-pg-meta") == ["10.10.10.10 pg-meta-1", "10.10.10.10 pg-meta"]
    conf = files["/etc/dnsmasq.conf"]
    assert "hostsdir=/etc/hosts.d\n" in conf and "port=53\n" in conf
    assert "listen-address=127.0.0.1,10.10.10.10\n" in conf


def test_home_server_proxies_the_uis_and_every_haproxy_admin_page():
    home = shipped()[INFRA]["/etc/nginx/conf.d/home.conf"]
    for path, port in (
        ("/vmetrics/", 8428),
        ("/vlogs/", 9428),
        ("/vtraces/", 10428),
        ("/vmalert/", 8880),
        ("/alertmgr/", 9059),
        ("/blackbox/", 9115),
    ):
        assert re.search(rf"location {path} {{\n\s+proxy_pass http://127.0.0.1:{port}/;", home), path
    assert re.search(r"location /ui/ \{\n\s+auth_basic off;\n\s+proxy_pass http://127.0.0.1:3000;", home)
    pages = re.findall(r"location /haproxy/(\S+)/ \{\n\s+proxy_pass http://(\S+)/;", home)
    assert pages == [(ins, f"{ip}:9101") for ip, (_, ins) in NODES.items()]
    assert "server_name i.pigsty;" in home and "listen 80 default_server;" in home
    assert "listen 443 ssl default_server;" in home  # nginx_sslmode: enable
    assert "ssl_certificate /etc/nginx/conf.d/cert/i.pigsty.crt;" in home
    assert re.search(r"location = /nginx \{[^}]*stub_status;[^}]*allow 127.0.0.1;", home)


def test_grafana_datasources_and_secrets():
    files = shipped()[INFRA]
    doc = yaml.safe_load(files["/etc/grafana/provisioning/datasources/sty.yml"])
    ds = {d["name"]: d for d in doc["datasources"]}
    assert doc["apiVersion"] == 1
    # Pigsty's provisioned ones (the default is its `Metrics`, uid ds-prometheus) and its per-node ones
    assert ds["Metrics"]["url"] == "http://127.0.0.1:8428" and ds["Metrics"]["isDefault"] is True
    assert ds["vmetrics-1"]["url"] == "http://10.10.10.10:8428" and ds["vmetrics-1"]["isDefault"] is False
    assert ds["vlogs-1"]["url"] == "http://10.10.10.10:9428"
    assert ds["vtraces-1"]["url"] == "http://10.10.10.10:10428/select/jaeger"
    assert [d["name"] for d in doc["datasources"] if d.get("isDefault")] == ["Metrics"]
    # one PostgreSQL datasource per instance and database (postgres too), with the monitor user's password hidden
    assert ds["pg-meta-1.meta"]["url"] == "10.10.10.10:5432"
    assert ds["pg-meta-1.meta"]["jsonData"]["database"] == "meta"
    assert ds["pg-test-2.test"]["url"] == "10.10.10.12:5432" and ds["pg-test-2.test"]["user"] == "dbuser_monitor"
    assert ds["pg-test-2.test"]["secureJsonData"] == {"password": "<<secret:pg-test/pg_monitor_password>>"}
    assert len([d for d in doc["datasources"] if d["type"] == "postgres"]) == 9  # 4 x (postgres + 1) + Meta
    ini = files["/etc/grafana/grafana.ini"]
    assert "admin_password = <<secret:10.10.10.10/grafana_admin_password>>\n" in ini
    assert "root_url = http://i.pigsty/ui/\nserve_from_sub_path = true\n" in ini
    for secret in ("DBUser.Monitor", "DBUser.Viewer", "admin:pigsty", "= pigsty\n"):
        assert all(secret not in text for text in files.values() if text), secret


def test_register_datasource_false_and_absent_databases_are_skipped(inventory, tmp_path):
    pg_test = inventory["all"]["children"]["pg-test"]["vars"]
    pg_test["pg_databases"] = [
        {"name": "test"},
        {"name": "hidden", "register_datasource": False},
        {"name": "gone", "state": "absent"},
    ]
    doc = yaml.safe_load(build_data(inventory, tmp_path)[INFRA]["/etc/grafana/provisioning/datasources/sty.yml"])
    names = [d["name"] for d in doc["datasources"] if d["type"] == "postgres" and d["name"].startswith("pg-test-1.")]
    assert names == ["pg-test-1.postgres", "pg-test-1.test"]


def test_htpasswd_carries_placeholders_and_the_store_a_salted_hash():
    compiled = compile_fleet(SHIPPED)
    bundle = render_host(compiled.fleet.hosts[INFRA], compiled)
    text = bundle.files["/etc/nginx/.htpasswd"].content
    assert "admin:<<secret:10.10.10.10/nginx_users/admin/htpasswd>>\n" in text
    value = bundle.secrets["10.10.10.10/nginx_users/admin/htpasswd"]
    assert value.startswith("{SSHA}") and "pigsty" not in value
    assert bundle.files["/etc/nginx/.htpasswd"].mode == "0640"


def test_chrony_serves_the_intranet_from_infra_nodes_only():
    infra = shipped()[INFRA]["/etc/chrony/chrony.conf"].splitlines()
    assert "local stratum 10" in infra
    assert [x for x in infra if x.startswith("allow ")] == [
        "allow 10.0.0.0/8",
        "allow 192.168.0.0/16",
        "allow 172.16.0.0/12",
    ]
    plain = shipped()["10.10.10.11"]["/etc/chrony/chrony.conf"]
    assert "allow " not in plain and "local stratum" not in plain


def test_manifest_lists_ports_units_packages_checks_and_certificates():
    m = manifest(shipped()[INFRA])
    ports = {(p["port"], p["component"]) for p in m["ports"] if p["module"] == "infra"}
    assert ports == {
        (80, "nginx"),
        (443, "nginx-ssl"),
        (9113, "nginx_exporter"),
        (8428, "vmetrics"),
        (9428, "vlogs"),
        (10428, "vtraces"),
        (8880, "vmalert"),
        (9059, "alertmanager"),
        (9115, "blackbox"),
        (3000, "grafana"),
        (53, "dnsmasq"),
        (123, "ntp"),
    }
    units = {u["name"]: u["health"] for u in m["units"] if u["module"] == "infra"}
    assert units["victoria-metrics.service"] == "http://10.10.10.10:8428/health"
    assert units["grafana-server.service"] == "http://10.10.10.10:3000/api/health"
    assert units["prometheus-alertmanager.service"] == "http://10.10.10.10:9059/-/healthy"
    assert {"nginx.service", "vmalert.service", "vlogs.service", "vtraces.service", "dnsmasq.service"} <= set(units)
    assert {"nginx", "victoria-metrics", "prometheus-alertmanager", "grafana", "dnsmasq-base"} <= set(m["packages"])
    checks = {(c["checker"], tuple(c["files"])) for c in m["checks"]}
    assert ("vmagent", ("/infra/prometheus.yml",)) in checks
    assert ("promtool", ("/infra/prometheus.yml", "/infra/targets")) in checks
    assert ("promtool", ("/infra/rules",)) in checks and ("vmalert", ("/infra/rules",)) in checks
    assert ("amtool", ("/etc/alertmanager/alertmanager.yml",)) in checks
    assert ("blackbox", ("/etc/blackbox.yml",)) in checks
    assert ("dnsmasq", ("/etc/dnsmasq.conf", "/etc/hosts.d")) in checks
    assert ("nginx", ("/etc/nginx/nginx.conf", "/etc/nginx/conf.d", "/etc/nginx/.htpasswd")) in checks
    assert ("grafana", ("/etc/grafana/grafana.ini", "/etc/grafana/provisioning/datasources/sty.yml")) in checks
    certs = {c["name"]: c for c in m["certificates"]}
    assert certs["nginx-home"]["cert"] == "/etc/nginx/conf.d/cert/i.pigsty.crt"
    assert certs["nginx-home"]["key"] == "/etc/nginx/conf.d/cert/i.pigsty.key"
    assert certs["nginx-home"]["sans"] == ["i.pigsty", INFRA]
    files = {f["path"]: f for f in m["files"]}
    assert {"action": "reload", "unit": "nginx.service"} in files["/etc/nginx/conf.d/home.conf"]["actions"]
    assert files["/infra/rules/pgsql.yml"]["actions"] == [{"action": "reload", "unit": "vmalert.service"}]
    assert files["/infra/targets/node/10.10.10.11.yml"]["actions"] == [{"action": "none"}]  # file_sd: re-read
    assert files["/etc/hosts.d/pgsql-pg-test"]["actions"] == [{"action": "reload", "unit": "dnsmasq.service"}]


def test_options_of_the_victoria_stack():
    files = shipped()[INFRA]
    args = files["/etc/default/victoria-metrics"]
    assert (
        "-httpListenAddr=:8428 -storageDataPath=/data/infra/vmetrics -promscrape.config=/infra/prometheus.yml" in args
    )
    assert "-retentionPeriod=15d -promscrape.fileSDCheckInterval=5s" in args  # vmetrics_options
    vmalert = files["/etc/default/vmalert"]
    for flag in (
        "-rule=/infra/rules/*.yml",
        "-datasource.url=http://127.0.0.1:8428",
        "-notifier.url=http://10.10.10.10:9059",
    ):
        assert flag in vmalert
    am = files["/etc/default/prometheus-alertmanager"]
    assert "--web.listen-address=:9059" in am and '--cluster.listen-address="\n' in am  # one node: no gossip
    unit = files["/etc/systemd/system/vlogs.service"]
    assert "ExecStart=/usr/bin/victoria-logs $VLOGS_OPTS" in unit and "EnvironmentFile=-/etc/default/vlogs" in unit


# --------------------------------------------------------------------------------------------------
# removing a cluster removes exactly its contributions
# --------------------------------------------------------------------------------------------------


def test_removing_pg_test_removes_exactly_its_contributions(tmp_path):
    data = shipped_inventory()
    del data["all"]["children"]["pg-test"]
    before, after = shipped()[INFRA], build_data(data, tmp_path)[INFRA]
    gone = set(before) - set(after)
    assert gone == {
        *(f"/infra/targets/node/{ip}.yml" for ip in PG_TEST),
        *(f"/infra/targets/ping/{ip}.yml" for ip in PG_TEST),
        *(f"/infra/targets/pgsql/pg-test-{i}.yml" for i in (1, 2, 3)),
        "/etc/hosts.d/pgsql-pg-test",
    }
    assert set(after) <= set(before)
    changed = {p for p in after if after[p] != before[p]}
    assert changed == {  # and ETCD's authentication script: pg-test's etcd user is no longer kept
        "/etc/nginx/conf.d/home.conf",
        "/etc/grafana/provisioning/datasources/sty.yml",
        "/etc/etcd/auth.sh",
        "manifest",
    }
    # the home server lost exactly the three HAProxy admin locations
    removed = [line for line in before["/etc/nginx/conf.d/home.conf"].splitlines(True)]
    for line in after["/etc/nginx/conf.d/home.conf"].splitlines(True):
        removed.remove(line)
    text = "".join(removed)
    assert re.findall(r"location /haproxy/(\S+)/", text) == ["pg-test-1", "pg-test-2", "pg-test-3"]
    assert "10.10.10.1" in text and "pg-meta" not in text and "location /ui/" not in text
    # and the datasources exactly those of the pg-test instances
    names = lambda f: {d["name"] for d in yaml.safe_load(f)["datasources"]}  # noqa: E731
    ds = "/etc/grafana/provisioning/datasources/sty.yml"
    pg_test = {f"pg-test-{i}.{db}" for i in (1, 2, 3) for db in ("postgres", "test")}
    assert names(before[ds]) - names(after[ds]) == pg_test and names(after[ds]) < names(before[ds])


def test_infra_depends_on_every_host_so_incremental_builds_follow_the_fanin(tmp_path):
    compiled = compile_fleet(SHIPPED)
    fleet = compiled.fleet
    assert InfraModule().depends_on(fleet.hosts[INFRA], fleet) == list(fleet.hosts.values())
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["hosts"]["10.10.10.13"]["pg_exporter_port"] = 9640
    other = compile_data(data, tmp_path)
    assert input_digest(fleet.hosts[INFRA], compiled, "code") != input_digest(other.fleet.hosts[INFRA], other, "code")
    t = targets(build_data(data, tmp_path / "b")[INFRA])
    assert "10.10.10.13:9640" in t["/infra/targets/pgsql/pg-test-3.yml"][0]["targets"]


# --------------------------------------------------------------------------------------------------
# three infra nodes: every one holds the full fan-in
# --------------------------------------------------------------------------------------------------

TRIO_INFRA = ("10.10.10.10", "10.10.10.11", "10.10.10.12")


@cache
def trio() -> dict[str, dict[str, str]]:
    return build(CORPUS / "ha" / "trio.yml")


def test_every_trio_infra_node_gets_the_full_fanin():
    nodes = [trio()[ip] for ip in TRIO_INFRA]
    shared = [
        {p: t for p, t in n.items() if p.startswith(("/infra/targets/", "/infra/rules/", "/etc/hosts.d/"))}
        for n in nodes
    ]
    assert shared[0] == shared[1] == shared[2]
    t = targets(nodes[0])
    assert {p for p in t if p.startswith("/infra/targets/infra/")} == {
        f"/infra/targets/infra/infra-{i}.yml" for i in (1, 2, 3)
    }
    for i, ip in enumerate(TRIO_INFRA, 1):
        assert t[f"/infra/targets/infra/infra-{i}.yml"][1] == {
            "labels": {"cls": "vmetrics", "ins": f"vmetrics-{i}", "ip": ip},
            "targets": [f"{ip}:8428"],
        }
        assert t[f"/infra/targets/etcd/etcd-{i}.yml"][0]["targets"] == [f"{ip}:2379"]
        assert t[f"/infra/targets/pgsql/pg-meta-{i}.yml"][0]["labels"] == {
            "cls": "pg-meta",
            "ins": f"pg-meta-{i}",
            "ip": ip,
        }
        # MinIO (HTTPS by default): the scheme travels with the target
        assert t[f"/infra/targets/minio/minio-{i}.yml"] == [
            {
                "labels": {
                    "__scheme__": "https",
                    "cls": "minio",
                    "flavor": "silo",
                    "ins": f"minio-{i}",
                    "instance": f"{ip}:9000",
                    "ip": ip,
                },
                "targets": [f"{ip}:9000"],
            }
        ]
    # VIPs are pinged: the PostgreSQL VIP and the node cluster VIP
    assert t["/infra/targets/ping/pgsql-pg-meta-vip.yml"][0]["targets"] == ["10.10.10.2"]
    assert t["/infra/targets/ping/node-pg-meta-vip.yml"][0]["targets"] == ["10.10.10.9"]
    jobs = {j["job_name"]: j for j in yaml.safe_load(nodes[0]["/infra/prometheus.yml"])["scrape_configs"]}
    scraper = {"cert_file": "/etc/pki/infra.crt", "key_file": "/etc/pki/infra.key"}
    assert jobs["minio"]["tls_config"] == {"ca_file": "/etc/pki/ca.crt", **scraper}
    records = nodes[0]["/etc/hosts.d/pgsql-pg-meta"]
    assert "10.10.10.2 pg-meta\n" in records  # pg_dns_target auto with a VIP: the VIP
    assert nodes[0]["/etc/hosts.d/minio-minio"].endswith(
        "10.10.10.10 minio-1.pigsty\n10.10.10.11 minio-2.pigsty\n10.10.10.12 minio-3.pigsty\n"
    )
    assert "10.10.10.9 pg-meta\n" in nodes[0]["/etc/hosts.d/node-pg-meta"]


def test_trio_infra_nodes_share_alerting_and_each_prefers_its_own_metrics():
    for ip in TRIO_INFRA:
        files = trio()[ip]
        sources = yaml.safe_load(files["/etc/grafana/provisioning/datasources/sty.yml"])["datasources"]
        names = [d["name"] for d in sources]
        for kind in ("vmetrics", "vlogs", "vtraces"):
            assert [n for n in names if n.startswith(f"{kind}-")] == [f"{kind}-1", f"{kind}-2", f"{kind}-3"]
        assert [d["name"] for d in sources if d.get("isDefault")] == ["Metrics"]  # Pigsty's, this node's own
        assert {d["name"]: d["url"] for d in sources}["Metrics"] == "http://127.0.0.1:8428"
        vmalert = files["/etc/default/vmalert"]
        assert [f"http://{x}:9059" for x in TRIO_INFRA] == re.findall(r"-notifier.url=(\S+)", vmalert)
        am = files["/etc/default/prometheus-alertmanager"]
        assert f"--cluster.listen-address={ip}:9094" in am
        assert re.findall(r"--cluster.peer=(\S+?):9094", am) == [x for x in TRIO_INFRA if x != ip]
        m = manifest(files)
        assert m["identity"]["infra"]["members"] == {
            "infra-1": "10.10.10.10",
            "infra-2": "10.10.10.11",
            "infra-3": "10.10.10.12",
        }
        certs = {c["name"]: c for c in m["certificates"]}
        assert certs["nginx-minio"]["cert"] == "/etc/nginx/conf.d/cert/m.pigsty.crt"
        minio = files["/etc/nginx/conf.d/minio.conf"]
        assert "server 10.10.10.10:9001 max_fails=0;" in minio  # endpoint ${admin_ip}:9001 resolved
        assert "proxy_pass https://portal_minio/;" in minio  # scheme: https
        assert "proxy_set_header Upgrade $http_upgrade;" in minio  # websocket: true


# --------------------------------------------------------------------------------------------------
# DNS: pg_dns_target, suffixes, node VIPs, MinIO, records
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target,vip,expected",
    [
        ("auto", True, "10.10.10.3 pg-test"),
        ("auto", False, "10.10.10.11 pg-test"),
        ("primary", True, "10.10.10.11 pg-test"),
        ("vip", True, "10.10.10.3 pg-test"),
        ("10.10.10.99", False, "10.10.10.99 pg-test"),
        ("none", True, None),
    ],
)
def test_pg_dns_target(tmp_path, target, vip, expected):
    data = shipped_inventory()
    pg_test = data["all"]["children"]["pg-test"]["vars"]
    pg_test.update(pg_dns_target=target, pg_vip_enabled=vip, pg_vip_address="10.10.10.3/24")
    text = build_data(data, tmp_path)[INFRA]["/etc/hosts.d/pgsql-pg-test"]
    records = [x for x in text.splitlines() if x and not x.startswith("#")]
    assert records[:3] == ["10.10.10.11 pg-test-1", "10.10.10.12 pg-test-2", "10.10.10.13 pg-test-3"]
    assert records[3:] == ([expected] if expected else [])


def test_pg_dns_suffix_is_appended(tmp_path):
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["vars"]["pg_dns_suffix"] = ".db.pigsty"
    text = build_data(data, tmp_path)[INFRA]["/etc/hosts.d/pgsql-pg-test"]
    assert "10.10.10.11 pg-test-1.db.pigsty\n" in text and "10.10.10.11 pg-test.db.pigsty\n" in text


def test_pg_dns_target_errors(tmp_path):
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["vars"]["pg_dns_target"] = "elsewhere"
    assert errors_of(data, tmp_path) == [
        "all.children.pg-test.vars.pg_dns_target: "
        "pg_dns_target 'elsewhere' must be auto, primary, vip, none or an IP address"
    ]
    data["all"]["children"]["pg-test"]["vars"]["pg_dns_target"] = "vip"
    assert errors_of(data, tmp_path) == [
        "all.children.pg-test.vars.pg_dns_target: pg_dns_target is vip but cluster pg-test has no VIP "
        "(pg_vip_enabled is false)"
    ]


def test_node_vip_and_minio_members_get_records_and_pings(tmp_path):
    data = shipped_inventory()
    data["all"]["children"]["minio"] = {
        "hosts": {"10.10.10.21": {"minio_seq": 1}, "10.10.10.22": {"minio_seq": 2}},
        "vars": {
            "minio_cluster": "minio",
            "node_cluster": "minio",
            "vip_enabled": True,
            "vip_vrid": 129,
            "vip_address": "10.10.10.8",
            "vip_dns_suffix": ".vip",
            "minio_https": False,
        },
    }
    files = build_data(data, tmp_path)[INFRA]
    assert files["/etc/hosts.d/node-minio"].endswith("10.10.10.8 minio.vip\n")
    assert files["/etc/hosts.d/minio-minio"].endswith("10.10.10.21 minio-1.pigsty\n10.10.10.22 minio-2.pigsty\n")
    t = targets(files)
    assert t["/infra/targets/ping/node-minio-vip.yml"] == [  # as Pigsty: once per node that may hold it
        {
            "labels": {"cls": "minio", "ins": ip, "ip": ip, "job": "node-vip", "vip": "10.10.10.8"},
            "targets": ["10.10.10.8"],
        }
        for ip in ("10.10.10.21", "10.10.10.22")
    ]
    assert t["/infra/targets/minio/minio-2.yml"] == [
        {
            "labels": {
                "cls": "minio",
                "flavor": "silo",
                "ins": "minio-2",
                "instance": "10.10.10.22:9000",
                "ip": "10.10.10.22",
            },
            "targets": ["10.10.10.22:9000"],
        }
    ]
    jobs = {j["job_name"]: j for j in yaml.safe_load(files["/infra/prometheus.yml"])["scrape_configs"]}
    assert jobs["minio"]["metrics_path"] == "/minio/metrics/v3" and "tls_config" not in jobs["minio"]
    drop = {"source_labels": ["bucket"], "regex": ".+", "action": "drop"}  # as Pigsty: no per-bucket series
    assert jobs["minio"]["metric_relabel_configs"] == [drop]
    assert t["/infra/targets/node/10.10.10.21.yml"][0]["labels"] == {
        "cls": "minio",
        "ins": "10.10.10.21",
        "ip": "10.10.10.21",
    }


def test_redis_instances_are_scraped_through_their_exporter():
    files = build(CORPUS / "demo" / "redis.yml")["10.10.10.10"]
    t = targets(files)
    assert sorted(p for p in t if "/redis/" in p) == [
        f"/infra/targets/redis/{n}.yml" for n in ("redis-meta-1", "redis-ms-1", "redis-test-1", "redis-test-2")
    ]
    assert t["/infra/targets/redis/redis-ms-1.yml"] == [
        {
            "labels": {
                "__param_target": f"redis://10.10.10.10:{port}",
                "cls": "redis-ms",
                "ins": f"redis-ms-1-{port}",
                "instance": f"10.10.10.10:{port}",  # as Pigsty's scrape job: the instance, not the exporter
                "ip": "10.10.10.10",
            },
            "targets": ["10.10.10.10:9121"],
        }
        for port in (6379, 6380)
    ]
    assert len(t["/infra/targets/redis/redis-test-2.yml"]) == 3
    jobs = {j["job_name"]: j for j in yaml.safe_load(files["/infra/prometheus.yml"])["scrape_configs"]}
    assert jobs["redis"]["metrics_path"] == "/scrape"


def test_dns_records_are_validated(tmp_path):
    data = shipped_inventory()
    data["all"]["vars"]["dns_records"] = ["${admin_ip} ok.pigsty", "no-address.pigsty", "10.1.1.1 bad_name!"]
    assert errors_of(data, tmp_path) == [
        "all.vars.dns_records[1]: DNS record 'no-address.pigsty' needs an IP address and at least one name",
        "all.vars.dns_records[2]: 'bad_name!' in DNS record '10.1.1.1 bad_name!' is not a valid host name",
    ]


def test_dns_records_directory_follows_dns_hosts_dir(tmp_path):
    data = shipped_inventory()
    data["all"]["vars"]["dns_hosts_dir"] = "/etc/dnsmasq.d/sty/"
    files = build_data(data, tmp_path)[INFRA]
    assert "/etc/dnsmasq.d/sty/pgsql-pg-test" in files and "/etc/hosts.d/default" not in files
    assert "hostsdir=/etc/dnsmasq.d/sty\n" in files["/etc/dnsmasq.conf"]


# --------------------------------------------------------------------------------------------------
# nginx portal
# --------------------------------------------------------------------------------------------------


def portal_build(tmp_path, portal: dict, **extra) -> dict[str, str]:
    data = shipped_inventory()
    data["all"]["vars"]["infra_portal"] = portal
    data["all"]["vars"].update(extra)
    return build_data(data, tmp_path)[INFRA]


def test_portal_endpoint_path_domains_and_auth(tmp_path):
    files = portal_build(
        tmp_path,
        {
            "home": {"domain": "i.pigsty", "domains": ["h.pigsty"], "auth": True},
            "app": {"domain": "app.pigsty", "endpoint": "${admin_ip}:8080", "websocket": True, "log": "myapp.log"},
            "repo": {"domain": "repo.pigsty", "path": "/www/pigsty", "index": False, "certbot": "repo.pigsty"},
            "hidden": {"endpoint": "${admin_ip}:9999"},  # no domain: no server (Pigsty)
        },
    )
    assert sorted(p for p in files if p.startswith("/etc/nginx/conf.d/")) == [
        "/etc/nginx/conf.d/app.conf",
        "/etc/nginx/conf.d/home.conf",
        "/etc/nginx/conf.d/repo.conf",
    ]
    app = files["/etc/nginx/conf.d/app.conf"]
    assert "upstream portal_app {\n    server 10.10.10.10:8080 max_fails=0;\n}" in app
    assert "proxy_pass http://portal_app/;" in app and "proxy_set_header Connection $connection_upgrade;" in app
    assert "access_log /var/log/nginx/myapp.log main;" in app
    repo = files["/etc/nginx/conf.d/repo.conf"]
    assert "root /www/pigsty;" in repo and "autoindex off;" in repo
    assert "location ^~ /.well-known/acme-challenge/ {" in repo
    home = files["/etc/nginx/conf.d/home.conf"]
    assert "server_name i.pigsty h.pigsty;" in home
    assert 'auth_basic "Pigsty";\n    auth_basic_user_file /etc/nginx/.htpasswd;' in home
    certs = {c["name"]: c for c in nginx_certificates(files)}
    assert set(certs) == {"nginx-home", "nginx-app", "nginx-repo"}
    assert certs["nginx-home"]["sans"] == ["i.pigsty", "h.pigsty", INFRA]
    assert certs["nginx-app"]["cert"] == "/etc/nginx/conf.d/cert/app.pigsty.crt"


def nginx_certificates(files) -> list[dict]:
    """The portal's certificates (the infra node's PostgreSQL instance has its own, pgsql-server)."""
    return [c for c in manifest(files)["certificates"] if c["name"].startswith("nginx-")]


def test_sslmode_disable_and_enforce(tmp_path):
    off = portal_build(tmp_path / "off", {"home": {"domain": "i.pigsty"}}, nginx_sslmode="disable")
    home = off["/etc/nginx/conf.d/home.conf"]
    assert "listen 443" not in home and "ssl_certificate" not in home
    assert nginx_certificates(off) == [] and 443 not in {p["port"] for p in manifest(off)["ports"]}
    on = portal_build(tmp_path / "on", {"home": {"domain": "i.pigsty"}}, nginx_sslmode="enforce")
    home = on["/etc/nginx/conf.d/home.conf"]
    main, redirect = home.split("\nserver {", 2)[1:]
    assert "listen 443 ssl default_server;" in main and "listen 80" not in main
    assert "listen 80 default_server;" in redirect and "return 301 https://$host$request_uri;" in redirect
    assert "stub_status;" in redirect  # the exporter still scrapes plain http on loopback
    assert "root_url = https://i.pigsty/ui/" in on["/etc/grafana/grafana.ini"]


def test_custom_certificate_is_used_as_given(tmp_path):
    files = portal_build(
        tmp_path,
        {"home": {"domain": "i.pigsty", "cert": "/etc/pki/site.crt", "key": "/etc/pki/site.key"}},
    )
    assert "ssl_certificate /etc/pki/site.crt;" in files["/etc/nginx/conf.d/home.conf"]
    assert nginx_certificates(files) == []  # the operator provides it


@pytest.mark.parametrize(
    "entry,error",
    [
        (
            {"domain": "x.pigsty", "endpoint": "10.1.1.1"},
            "infra_portal.web.endpoint: endpoint '10.1.1.1' must be host:port",
        ),
        (
            {"domain": "bad domain", "endpoint": "10.1.1.1:80"},
            "infra_portal.web.domain: 'bad domain' is not a valid domain name",
        ),
        ({"domain": "x.pigsty"}, "infra_portal.web: portal entry 'web' has a domain but neither endpoint nor path"),
        ({"domain": "x.pigsty", "path": "/www/a b"}, "infra_portal.web.path: path '/www/a b' must be an absolute path"),
        (
            {"domain": "i.pigsty", "path": "/www"},
            "infra_portal.web.domain: domain i.pigsty is already served by portal entry home",
        ),
        ({"domain": "x.pigsty", "path": "/www", "config": "location / {"}, "infra_portal.web.config: config must be"),
    ],
)
def test_portal_errors(tmp_path, entry, error):
    data = shipped_inventory()
    data["all"]["vars"]["infra_portal"] = {"home": {"domain": "i.pigsty"}, "web": entry}
    errors = errors_of(data, tmp_path)
    assert len(errors) == 1 and errors[0].startswith(f"all.vars.{error}"), errors


def test_scrape_timeout_longer_than_interval_is_an_error(tmp_path):
    data = shipped_inventory()
    data["all"]["vars"]["vmetrics_scrape_timeout"] = "1m"
    assert errors_of(data, tmp_path) == [
        "all.vars.vmetrics_scrape_timeout: vmetrics_scrape_timeout 1m is longer than vmetrics_scrape_interval 10s"
    ]


# --------------------------------------------------------------------------------------------------
# components switched off
# --------------------------------------------------------------------------------------------------


def test_disabled_components_leave_no_trace(tmp_path):
    data = shipped_inventory()
    data["all"]["children"]["infra"]["vars"] = {"vlogs_enabled": False, "grafana_enabled": False}
    files = build_data(data, tmp_path)[INFRA]
    assert not [p for p in files if "vlogs" in p or "grafana" in p]
    home = files["/etc/nginx/conf.d/home.conf"]
    assert "location /vlogs/" not in home and "location /ui/" not in home and "location /vtraces/" in home
    infra = {g["labels"]["cls"] for g in targets(files)["/infra/targets/infra/infra-1.yml"]}
    assert infra == set(COMPONENTS) - {"vlogs", "grafana"}
    m = manifest(files)
    assert not {"vlogs.service", "grafana-server.service"} & {u["name"] for u in m["units"]}
    assert not {9428, 3000} & {p["port"] for p in m["ports"]}


def test_vmalert_needs_an_alertmanager(tmp_path):
    data = shipped_inventory()
    data["all"]["vars"]["alertmanager_enabled"] = False
    assert errors_of(data, tmp_path) == ["all.vars.alertmanager_enabled: vmalert needs Alertmanager on an infra node"]


# --------------------------------------------------------------------------------------------------
# rules and schemas
# --------------------------------------------------------------------------------------------------


def test_alert_rules_cover_the_failures_that_matter(compile_inv, inventory):
    """Each module publishes the rules of its own components; vmalert gets them all."""
    rules = alert_rules(compile_inv(inventory).fleet.board)
    assert set(rules) == {"node", "haproxy", "etcd", "pgsql", "patroni", "infra"}
    alerts = {
        r["alert"]: (subject, r)
        for subject, groups in rules.items()
        for g in groups
        for r in g["rules"]
        if "alert" in r
    }
    records = {r["record"] for groups in rules.values() for g in groups for r in g["rules"] if "record" in r}
    expected = {
        "NodeUnreachable": ("node", 'probe_success{job="ping"} == 0'),
        "NodeDiskAlmostFull": ("node", "node:fs:space_usage > 0.90"),
        "PostgresDown": ("pgsql", "pg_up == 0"),
        "PostgresReplicationLagHigh": ("pgsql", "pg:ins:lag_seconds > 30"),
        "PatroniNoLeader": ("patroni", "max by (cls) (patroni_primary) == 0"),
        "EtcdNoLeader": ("etcd", "etcd_server_has_leader == 0"),
        "HaproxyBackendDown": ("haproxy", "haproxy_backend_backup_servers == 0"),
        "InfraComponentDown": ("infra", 'up{job="infra"} == 0'),
    }
    for name, (subject, expr) in expected.items():
        assert alerts[name][0] == subject and expr in alerts[name][1]["expr"], name
    for _, rule in alerts.values():
        assert rule["labels"]["severity"] in ("critical", "warning") and rule["annotations"]["summary"]
    # every recording rule an alert uses is defined
    for _, rule in alerts.values():
        for used in re.findall(r"\b[a-z]+:[a-z]+:[a-z_0-9]+", rule["expr"]):
            assert used in records, used
    assert set(rules) == {"node", "pgsql", "patroni", "etcd", "haproxy", "infra"}


READ = re.compile(r"""\b(?:p|mp|hp|host\.params|m\.params|h\.params)(?:\.get\(|\[)\s*f?["']([a-z_]+)["']""")


def test_schema_covers_every_parameter_the_module_reads():
    source = "\n".join(f.read_text() for f in sorted((ROOT / "compiler" / "modules" / "infra").glob("*.py")))
    names = (
        set(READ.findall(source))
        | {
            f"{comp}_{suffix}"
            for comp in ("vmetrics", "vlogs", "vtraces", "vmalert", "alertmanager", "blackbox", "grafana")
            for suffix in ("enabled", "port")
        }
        | {f"{c}_options" for c in ("vmetrics", "vlogs", "vtraces", "vmalert", "alertmanager", "blackbox")}
    )
    reg = registry()
    assert len(names) > 40
    for name in sorted(names):
        spec = reg.get(name)
        assert spec is not None, f"{name} is read but not in any schema"
        assert spec.schema.get("type") and spec.description, name
        identity = name in {
            "infra_seq",
            "minio_seq",
            "minio_cluster",
            "redis_cluster",
            "redis_node",
            "redis_instances",
            "pg_seq",
            "pg_cluster",
            "nodename",
            "vip_address",
        }
        assert spec.has_default or identity, f"{name} has no default"
        if spec.module == "infra":
            assert " " in spec.description, name
    for name in ("auth", "realm", "websocket", "endpoint", "path", "domains", "scheme", "cert", "key", "certbot"):
        assert name in reg.documents["infra"]["$defs"]["portal"]["properties"], name


def test_every_corpus_infra_node_renders_the_stack():
    for inv in (CORPUS / "ha" / "octo.yml", CORPUS / "demo" / "minio.yml", CORPUS / "supabase.yml"):
        trees = build(inv)
        infra = [ip for ip, files in trees.items() if "infra" in manifest(files)["modules"]]
        assert infra, inv
        for ip in infra:
            files = trees[ip]
            assert {"/infra/prometheus.yml", "/etc/nginx/nginx.conf", "/etc/dnsmasq.conf"} <= set(files), inv
            assert {f"/infra/targets/node/{x}.yml" for x in trees} <= set(files), inv


def test_no_build_machine_paths_or_secret_values(tmp_path):
    data = copy.deepcopy(shipped_inventory())
    data["all"]["vars"]["grafana_pgurl"] = "postgres://dbuser_grafana:Secret.Grafana@10.10.10.10:5432/grafana"
    files = build_data(data, tmp_path)[INFRA]
    assert "url = <<secret:10.10.10.10/grafana_pgurl>>\n" in files["/etc/grafana/grafana.ini"]
    for path, text in files.items():
        assert "Secret.Grafana" not in text, path
        assert str(ROOT) not in text and str(tmp_path) not in text, path


def test_rebuild_without_a_cluster_deletes_its_files_from_the_infra_bundle(sty, workdir):
    sty("build", "-q", cwd=workdir, check_rc=0)
    infra = workdir / "outputs" / INFRA
    assert (infra / "infra/targets/pgsql/pg-test-2.yml").exists() and (infra / "etc/hosts.d/pgsql-pg-test").exists()
    data = yaml.safe_load((workdir / "pigsty.yml").read_text())
    del data["all"]["children"]["pg-test"]
    dump_inventory(data, workdir / "pigsty.yml")
    sty("build", "-q", cwd=workdir, check_rc=0)
    left = sorted(str(p.relative_to(infra)) for p in infra.rglob("*") if p.is_file() and "pg-test" in p.read_text())
    assert left == []
    assert not (infra / "infra/targets/pgsql/pg-test-2.yml").exists()
    assert not (infra / "infra/targets/node/10.10.10.12.yml").exists()
    assert (infra / "infra/targets/pgsql/pg-meta-1.yml").exists()
