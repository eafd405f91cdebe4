"""`sty graph`: the topology read from what a build ships (identities, ports, board records), its text tree and
its SVG, on the shipped inventory, variants of it and Pigsty's larger examples."""

from __future__ import annotations

import inspect
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT, SHIPPED
from shared import CORPUS

from sty.cli import main
from sty.compiler.graph import fleet_graph, render_svg, render_text
from sty.compiler.pipeline import compile_fleet

SVG = "{http://www.w3.org/2000/svg}"
# a host line of the text tree: the tree's drawing, then the address the line is about
HOST_LINE = re.compile(r"^[│├└─ ]*(\d+\.\d+\.\d+\.\d+)(?: |$)")


def compile_any(path: Path):
    """Pigsty's examples carry other tools' variables: accept them where the compiler can be told to."""
    extra = {"allow_unknown": True} if "allow_unknown" in inspect.signature(compile_fleet).parameters else {}
    return compile_fleet(path, **extra)


def graph_of(path: Path):
    return fleet_graph(compile_any(path), path.name)


def branch(text: str, title: str) -> list[str]:
    """The lines of one top-level branch of the tree (its title line and everything under it)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^[├└]── {re.escape(title)}( ·|$)", line))
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^[├└]── ", lines[i])), len(lines))
    return lines[start:end]


def svg_hosts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return [g.get("id", "") for g in root.iter(f"{SVG}g") if g.get("class") == "host"]


@pytest.fixture(scope="module")
def shipped():
    return graph_of(SHIPPED)


def test_text_lists_pg_test_members_with_roles_dcs_and_scraper(shipped):
    text = render_text(shipped)
    pg_test = branch(text, "pgsql pg-test")
    assert pg_test[0].endswith("pgsql pg-test · dcs etcd")  # no VIP in the shipped inventory
    members = [line.split("── ", 1)[1] for line in pg_test if HOST_LINE.match(line)]
    assert members == [
        "10.10.10.11 pg-test-1 · primary",
        "10.10.10.12 pg-test-2 · replica",
        "10.10.10.13 pg-test-3 · replica, offline queries",
    ]
    services = next(line for line in pg_test if "services:" in line)
    for svc in ("primary:5433", "replica:5434", "standby:5435", "default:5436", "offline:5438"):
        assert svc in services
    ports = " ".join(line for line in pg_test if "ports:" in line or "exporter" in line)
    assert "pgbouncer:6432" in ports and "patroni:8008" in ports
    assert branch(text, "etcd")[-1].endswith("etcd-1 on pg-meta-1")
    assert "dcs: pg-meta → etcd, pg-test → etcd" in text
    assert "scrape: infra-1 scrapes all 4 hosts (jobs etcd, infra, node, pgsql, ping)" in text
    # the admin node is drawn once, in pg-meta, and names its other clusters
    assert "10.10.10.10 pg-meta-1 · primary, offline queries · also etcd-1 in etcd, infra-1 in infra" in text


def test_model_reads_roles_links_and_scraping(shipped):
    clusters = {c.key: c for c in shipped.clusters}
    assert list(clusters) == ["pgsql:pg-meta", "pgsql:pg-test", "etcd:etcd", "infra:infra"]
    assert [(m.name, m.role) for m in clusters["pgsql:pg-test"].members] == [
        ("pg-test-1", "primary"),
        ("pg-test-2", "replica"),
        ("pg-test-3", "replica, offline queries"),
    ]
    assert clusters["pgsql:pg-test"].dcs == clusters["pgsql:pg-meta"].dcs == "etcd"
    assert clusters["etcd:etcd"].dcs is None
    assert shipped.home == {
        "10.10.10.10": "pgsql:pg-meta",
        "10.10.10.11": "pgsql:pg-test",
        "10.10.10.12": "pgsql:pg-test",
        "10.10.10.13": "pgsql:pg-test",
    }
    [scrape] = shipped.scrapes
    assert (scrape.ip, scrape.name) == ("10.10.10.10", "infra-1")
    assert scrape.hosts == ("10.10.10.10", "10.10.10.11", "10.10.10.12", "10.10.10.13")


def test_vips_partial_ports_and_service_owner(inventory, write_inventory):
    """A pg VIP and a node VIP show on the cluster; a port not on every member names where it is; a service
    `pg-test-primary` belongs to pg-test even when another cluster is called `pg`."""
    pg_test = inventory["all"]["children"]["pg-test"]
    pg_test["vars"].update(pg_vip_enabled=True, pg_vip_address="10.10.10.3/24")
    pg_test["vars"].update(vip_enabled=True, vip_address="10.10.10.4", vip_vrid=129)
    pg_test["hosts"]["10.10.10.13"]["pgbouncer_enabled"] = False
    inventory["all"]["children"]["pg-meta"]["vars"]["pg_cluster"] = "pg"
    t = graph_of(write_inventory(inventory))
    text = render_text(t)
    assert branch(text, "pgsql pg-test")[0].endswith("pgsql pg-test · vip 10.10.10.3, 10.10.10.4 (node) · dcs etcd")
    cluster = {c.key: c for c in t.clusters}
    assert "pgbouncer:6432 (on pg-test-1, pg-test-2)" in [str(p) for p in cluster["pgsql:pg-test"].ports]
    pg_services = [str(s) for s in cluster["pgsql:pg"].services]
    assert pg_services == ["primary:5433", "replica:5434", "default:5436", "offline:5438"]
    assert "standby:5435" in [str(s) for s in cluster["pgsql:pg-test"].services]
    svg = render_svg(t)
    assert "vip 10.10.10.3, 10.10.10.4 (node)" in svg


def test_svg_parses_draws_every_host_once_and_links(shipped):
    svg = render_svg(shipped)
    root = ET.fromstring(svg)  # well-formed
    assert root.tag == f"{SVG}svg" and root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    assert sorted(svg_hosts(svg)) == [f"host-10.10.10.{n}" for n in (10, 11, 12, 13)]
    lines = {(line.get("class"), line.findtext(f"{SVG}title")) for line in root.iter(f"{SVG}line") if line.get("class")}
    assert lines == {
        ("dcs", "dcs: pgsql pg-meta → etcd"),
        ("dcs", "dcs: pgsql pg-test → etcd"),
        ("scrape", "scrape: infra → pgsql pg-meta"),
        ("scrape", "scrape: infra → pgsql pg-test"),
    }
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
    labels = [t.text for t in legend.iter(f"{SVG}text")]
    assert "primary" in labels and "replica" in labels and any("DCS" in (x or "") for x in labels)


def test_output_is_deterministic():
    first = graph_of(SHIPPED)
    again = graph_of(SHIPPED)
    assert render_text(first) == render_text(again)
    assert render_svg(first) == render_svg(again)


def test_docs_fleet_svg_is_the_shipped_inventorys(shipped):
    shipped_svg = (ROOT / "docs" / "fleet.svg").read_text(encoding="utf-8")
    assert shipped_svg == render_svg(shipped), "docs/fleet.svg is stale: run sty graph --format svg -o docs/fleet.svg"


@pytest.mark.parametrize("name", ["ha/full.yml", "ha/octo.yml", "demo/redis.yml", "demo/minio.yml"])
def test_larger_examples_draw_every_host_exactly_once(name):
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{path} is not there")
    t = graph_of(path)
    hosts = sorted(t.nodenames)
    text = render_text(t)
    assert sorted(m.group(1) for line in text.splitlines() if (m := HOST_LINE.match(line))) == hosts
    assert sorted(svg_hosts(render_svg(t))) == sorted(f"host-{ip}" for ip in hosts)
    assert sorted(t.home) == hosts


def test_full_example_shows_redis_roles_and_vips():
    path = CORPUS / "ha" / "full.yml"
    if not path.exists():
        pytest.skip(f"{path} is not there")
    text = render_text(graph_of(path))
    assert branch(text, "redis redis-ms")[0].endswith("redis redis-ms · standalone mode")
    assert "redis-ms-1 on pg-meta-1 · 6379 primary, 6380 replica of 10.10.10.10:6379" in text
    assert "redis-meta-1 on pg-test-1 · sentinel 26379 26380 26381" in text
    assert branch(text, "pgsql pg-test")[0].endswith("vip 10.10.10.3 · dcs etcd")
    assert "scrape: infra-1 scrapes all 4 hosts (jobs etcd, infra, minio, node, pgsql, ping, redis)" in text


def test_command_writes_svg_and_fails_as_documented(tmp_path):
    runner = CliRunner()
    out = tmp_path / "fleet.svg"
    r = runner.invoke(main, ["graph", "-i", str(SHIPPED), "--format", "svg", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert ET.fromstring(out.read_text(encoding="utf-8")).tag == f"{SVG}svg"
    r = runner.invoke(main, ["graph", "-i", str(SHIPPED)])
    assert r.exit_code == 0 and r.stdout.startswith("fleet of pigsty.yml: 4 hosts")
    assert runner.invoke(main, ["graph", "-i", str(tmp_path / "missing.yml")]).exit_code == 2
    assert runner.invoke(main, ["graph", "-i", str(SHIPPED), "--format", "png"]).exit_code == 2
    bad = runner.invoke(main, ["graph", "-i", str(SHIPPED), "-o", str(tmp_path / "no" / "such" / "f.svg")])
    assert bad.exit_code == 3 and "Traceback" not in bad.output


def test_hosts_in_no_cluster_are_drawn_in_their_node_cluster(inventory, write_inventory):
    children = inventory["all"]["children"]
    children["www"] = {
        "hosts": {"10.10.10.20": {}, "10.10.10.21": {"nodename": "web-2"}},
        "vars": {"node_cluster": "www"},
    }
    children["misc"] = {"hosts": {"10.10.10.30": {}}}
    t = graph_of(write_inventory(inventory))
    assert [c.key for c in t.clusters][-2:] == ["node:nodes", "node:www"]
    text = render_text(t)
    assert [line.split("── ", 1)[1] for line in branch(text, "node www") if HOST_LINE.match(line)] == [
        "10.10.10.20",
        "10.10.10.21 web-2",
    ]
    assert "scrape: infra-1 scrapes all 7 hosts" in text
    assert sorted(svg_hosts(render_svg(t))) == sorted(f"host-{ip}" for ip in t.nodenames)
