"""Every Pigsty example inventory (../shared/pigsty-conf) validates and builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from shared import CORPUS

from sty.compiler import render, yaml_emitter
from sty.compiler.build import build
from sty.compiler.pipeline import compile_fleet

FAST_DUMP = yaml_emitter.dump  # taken before a test patches the module with a spy
INVENTORIES = sorted(p for p in CORPUS.rglob("*.yml"))


def test_corpus_is_present():
    assert len(INVENTORIES) >= 19


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_inventory_checks_and_builds(inventory: Path, tmp_path: Path, monkeypatch):
    documents = _capture_yaml(monkeypatch)
    compiled = compile_fleet(inventory)
    assert not compiled.report.errors
    # parameters of modules sty does not render are notes, never errors or typo warnings
    for w in compiled.report.warnings:
        assert "unknown parameter" not in w.message, w
    result = build(compiled, tmp_path / "out", jobs=1)  # in this process, where the spy sees every document
    assert result.rendered == len(compiled.fleet.hosts)
    # the fast YAML writer wrote every data document of this build exactly as PyYAML would
    assert len(documents) > len(compiled.fleet.hosts)
    for data in documents:
        assert FAST_DUMP(data, render.pyyaml_dump) == render.pyyaml_dump(data)
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


def _capture_yaml(monkeypatch) -> list:
    """Every document the build hands to the YAML writer."""
    seen: list = []
    real = yaml_emitter.dump

    def spy(data, fallback):
        seen.append(data)
        return real(data, fallback)

    monkeypatch.setattr(yaml_emitter, "dump", spy)
    return seen
