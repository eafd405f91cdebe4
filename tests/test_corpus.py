"""Every Pigsty example inventory (../shared/pigsty-conf) validates and builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from shared import CORPUS

from sty.compiler.build import build
from sty.compiler.pipeline import compile_fleet

INVENTORIES = sorted(p for p in CORPUS.rglob("*.yml"))


def test_corpus_is_present():
    assert len(INVENTORIES) >= 19


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_inventory_checks_and_builds(inventory: Path, tmp_path: Path):
    compiled = compile_fleet(inventory)
    assert not compiled.report.errors
    # parameters of modules sty does not render are notes, never errors or typo warnings
    for w in compiled.report.warnings:
        assert "unknown parameter" not in w.message, w
    result = build(compiled, tmp_path / "out")
    assert result.rendered == len(compiled.fleet.hosts)
    out = tmp_path / "out"
    for ip, host in compiled.fleet.hosts.items():
        manifest = yaml.safe_load((out / f"{ip}.yml").read_text())
        paths = {f["path"] for f in manifest["files"]}
        assert (out / ip / "etc/haproxy/haproxy.cfg").exists() or not host.params["haproxy_enabled"]
        if "etcd" in host.modules:
            assert "/etc/etcd/etcd.conf" in paths
        if "pgsql" in host.modules:
            assert {"/etc/patroni/patroni.yml", host.params["pg_hba_file"]} <= paths
            cluster = host.params["pg_cluster"]
            assert (
                any(p.startswith(f"/etc/haproxy/conf.d/{cluster}-") for p in paths)
                or not host.params["haproxy_enabled"]
            )
