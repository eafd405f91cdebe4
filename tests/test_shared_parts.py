"""Parts rendered once for the hosts that read the same values (compiler/shared.py) change no byte of any bundle.

The proof is differential: every host of every Pigsty example, and of a fleet whose members differ exactly where
the shared parts read (host-level overrides, facts, platforms), is rendered with sharing and without, and the
files, the manifest and the record must be equal. The same tests check that sharing did happen, so that they
cannot pass by sharing nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from shared import CORPUS

from sty.compiler import shared
from sty.compiler.bundle import FileSpec, HostBundle
from sty.compiler.pipeline import compile_fleet
from sty.compiler.stage import render_one

INVENTORIES = sorted(CORPUS.rglob("*.yml"))


def _rendered(compiled: Any, sharing: bool) -> dict[str, tuple]:
    shared.enabled = sharing
    shared.begin(None)  # drop what an earlier test kept
    try:
        out = {}
        for ip in compiled.fleet.hosts:
            tree, record = render_one(compiled, ip)
            out[ip] = (tree, record.error, record.secrets, record.identity, record.actions, record.pins)
        return out
    finally:
        shared.enabled = True


def _hits() -> dict[str, int]:
    return {fn.__name__: sum(p.hits for p in parts) for fn, parts in shared._KEPT.items()}


def _assert_same_bundles(compiled: Any) -> dict[str, int]:
    with_sharing = _rendered(compiled, True)
    hits = _hits()
    without = _rendered(compiled, False)
    assert with_sharing.keys() == without.keys()
    for ip in without:
        tree, *record = with_sharing[ip]
        plain_tree, *plain_record = without[ip]
        assert sorted(tree) == sorted(plain_tree), ip
        for rel in plain_tree:
            assert tree[rel] == plain_tree[rel], f"{rel} differs when parts are shared"
        assert record == plain_record, ip
    return hits


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_sharing_changes_no_byte_of_any_example(inventory: Path):
    compiled = compile_fleet(inventory)
    hits = _assert_same_bundles(compiled)
    if len(compiled.fleet.hosts) > 1:
        assert hits.get("render_resolver", 0) > 0  # every node after the first reads the same resolver values


def test_members_that_differ_where_a_part_reads_get_their_own_files(compile_inv, inventory):
    """Host-level overrides of exactly what the shared parts read: each must reach its host."""
    hosts = inventory["all"]["children"]["pg-test"]["hosts"]
    first, second, third = list(hosts)
    hosts[second] |= {
        "pgbouncer_port": 6444,
        "pgbouncer_log_dir": "/var/log/pgbouncer2",
        "pg_exporter_port": 9640,
        "node_exporter_options": "--collector.systemd",
        "node_dns_servers": ["10.10.10.99"],
        "node_tune": "oltp",
        "node_mem_mb": 65536,
        "pg_parameters": {"wal_buffers": "32MB"},
    }
    hosts[third] |= {"node_cpu": 16, "pgbouncer_exporter_enabled": False}
    compiled = compile_inv(inventory)
    hits = _assert_same_bundles(compiled)
    assert hits["_pooler"] >= 1  # the third member reads what the first did

    bundles = _rendered(compiled, True)
    second_tree = bundles[second][0]
    assert b"listen_port = 6444" in second_tree[f"{second}/etc/pgbouncer/pgbouncer.ini"]
    assert b"listen_port = 6444" not in bundles[first][0][f"{first}/etc/pgbouncer/pgbouncer.ini"]
    assert b"wal_buffers: 32MB" in second_tree[f"{second}/etc/patroni/restart.yml"]
    assert b"shared_buffers: 16384MB" in second_tree[f"{second}/etc/patroni/restart.yml"]  # its memory's share
    assert f"{third}/etc/default/pgbouncer_exporter" not in bundles[third][0]


def test_a_part_that_reads_the_bundle_address_is_rendered_without_sharing():
    calls: list[str] = []

    def names_the_host(host, b: HostBundle) -> None:
        calls.append(host.params["pg_cluster"])
        b.add(FileSpec("/etc/x", "node", f"{b.ip}\n", "env"))

    compiled = object()
    shared.begin(compiled)
    out = []
    for ip in ("10.0.0.1", "10.0.0.2"):
        b = HostBundle(ip)
        shared.shared(names_the_host, _FakeHost(ip, {"pg_cluster": "c"}), b)
        out.append(b.files["/etc/x"].content)
    assert out == ["10.0.0.1\n", "10.0.0.2\n"]
    assert names_the_host in shared._REFUSED


def test_a_part_that_iterates_the_parameters_is_refused():
    def lists_everything(host, b: HostBundle) -> None:
        b.add(FileSpec("/etc/y", "node", ",".join(sorted(host.params)) + "\n", "env"))

    shared.begin(object())
    contents = []
    for values in ({"a": 1}, {"a": 1, "b": 2}):
        b = HostBundle("10.0.0.1")
        shared.shared(lists_everything, _FakeHost("10.0.0.1", values), b)
        contents.append(b.files["/etc/y"].content)
    assert contents == ["a\n", "a,b\n"]
    assert lists_everything in shared._REFUSED


def test_a_part_is_reused_only_for_the_same_values_and_types():
    runs: list[Any] = []

    def prints(host, b: HostBundle) -> None:
        runs.append(host.params.get("v"))
        b.add(FileSpec("/etc/z", "node", f"{host.params.get('v')}\n", "env"))

    shared.begin(object())
    seen = []
    for value in (1, 1, True, 1.0, None, [1], [True], [1]):
        b = HostBundle("10.0.0.1")
        shared.shared(prints, _FakeHost("10.0.0.1", {"v": value}), b)
        seen.append(b.files["/etc/z"].content)
    assert seen == ["1\n", "1\n", "True\n", "1.0\n", "None\n", "[1]\n", "[True]\n", "[1]\n"]
    assert runs == [1, True, 1.0, None, [1], [True]]  # the second 1 and the last [1] were reused


def test_same_is_exact_about_types_order_and_signed_zeros():
    assert shared.same({"a": [1, "x"], "b": None}, {"a": [1, "x"], "b": None})
    assert not shared.same(1, True) and not shared.same([1], [1.0]) and not shared.same((1,), [1])
    assert not shared.same(0.0, -0.0)
    assert not shared.same({"a": 1, "b": 2}, {"b": 2, "a": 1})  # a template iterates a mapping in its order
    assert not shared.same(object(), object())


class _FakeParams(dict):
    """Just enough of Params for the view: the values by name, no layers."""

    ip = "10.0.0.1"

    def raw(self, key, default=None):
        return super().get(key, default)

    def is_set(self, key):
        return key in self

    def source(self, key):
        return f"all.vars.{key}"

    def origin(self, key):
        return None

    def combined(self, key):
        return list(self.get(key) or [])


class _FakeHost:
    def __init__(self, ip: str, values: dict[str, Any]):
        self.ip = ip
        self.params = _FakeParams(values)


def test_workers_get_whole_clusters():
    """A chunk of hosts is cut where the group changes, so a worker renders a cluster's shared parts once."""
    from sty.compiler.stage import _chunks

    ips = [f"h{i}" for i in range(20)]
    cluster = {ip: i // 3 for i, ip in enumerate(ips)}  # clusters of three
    chunks = _chunks(ips, 4, cluster.__getitem__)
    assert [ip for chunk in chunks for ip in chunk] == ips
    for chunk in chunks[:-1]:
        assert len(chunk) >= 4 and cluster[chunk[-1]] != cluster[ips[ips.index(chunk[-1]) + 1]]
    assert _chunks(ips, 4, None) == [ips[i : i + 4] for i in range(0, 20, 4)]
    assert max(len(c) for c in _chunks(ips, 2, lambda ip: "one group")) == 8  # never more than four times the size
