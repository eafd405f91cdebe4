"""The node VIP: keepalived.conf for the hosts that share a vip_address (unicast peers, VRRP id, role,
preemption, interface, auth secret), keepalived_exporter, the rules, and `keepalived -t` judging generated
bundles and broken copies inside a private network namespace."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import dump_inventory
from shared import CORPUS

from sty.apply.checks import CheckContext
from sty.apply.checks.keepalived import check as keepalived_check
from sty.compiler.build import build, render_targets
from sty.compiler.errors import InventoryError
from sty.compiler.pipeline import compile_fleet, resolve_target

CONF = "/etc/keepalived/keepalived.conf"
EXPORTER = "/etc/systemd/system/keepalived_exporter.service"
TEST = "all.children.pg-test"


def with_vip(inventory: dict, **extra) -> dict:
    v = inventory["all"]["children"]["pg-test"]["vars"]
    v.update(vip_enabled=True, vip_vrid=128, vip_address="10.10.10.3", **extra)
    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.11"]["vip_role"] = "master"
    return inventory


def trees(compiled) -> dict[str, dict[str, str]]:
    rendered = render_targets(compiled, resolve_target(compiled.fleet, "all"))
    return {ip: {rel: data.decode() for rel, data in tree.items()} for ip, tree in rendered.trees.items()}


def conf(tree: dict[str, str], ip: str) -> str:
    return tree[f"{ip}{CONF}"]


def errors_of(compile_inv, data) -> list:
    with pytest.raises(InventoryError) as caught:
        compile_inv(data)
    return caught.value.report.errors


# -- content ---------------------------------------------------------------------------------------


def test_members_get_unicast_peers_role_and_secret_placeholder(compile_inv, inventory):
    t = trees(compile_inv(with_vip(inventory)))
    master, backup = conf(t["10.10.10.11"], "10.10.10.11"), conf(t["10.10.10.12"], "10.10.10.12")
    for text, ip in ((master, "10.10.10.11"), (backup, "10.10.10.12")):
        assert "vrrp_instance pg-test {" in text and "virtual_router_id 128" in text
        assert f"unicast_src_ip {ip}" in text
        peers = re.search(r"unicast_peer \{\n(.*?)\n    \}", text, re.S).group(1).split()
        assert peers == sorted({"10.10.10.11", "10.10.10.12", "10.10.10.13"} - {ip})
        assert "auth_pass <<secret:pg-test/vip_auth_pass>>" in text
        assert "10.10.10.3 dev eth0" in text and "interface eth0" in text
        assert "nopreempt" in text and "state BACKUP" in text  # vip_preempt false: the master starts as BACKUP
    assert "priority 128" in master and "priority 100" in backup
    assert "10.10.10.10" not in t["10.10.10.10"].get(f"10.10.10.10{CONF}", "")  # pg-meta has no VIP
    man = yaml.safe_load(t["10.10.10.12"]["10.10.10.12.yml"])
    assert man["identity"]["node"]["vip"] == {
        "address": "10.10.10.3",
        "vrid": 128,
        "role": "backup",
        "state": "BACKUP",
        "interface": "eth0",
        "interface_from": "assumed",
        "peers": ["10.10.10.11", "10.10.10.13"],
    }
    assert man["secrets"].count("pg-test/vip_auth_pass") == 1
    assert {"port": 9650, "component": "keepalived_exporter", "module": "node", "address": "0.0.0.0"} in man["ports"]
    assert {"keepalived", "keepalived-exporter"} <= set(man["packages"])
    assert {"checker": "keepalived", "files": [CONF], "where": "both"} in man["checks"]
    entry = next(f for f in man["files"] if f["path"] == CONF)
    assert entry["mode"] == "0600" and entry["actions"] == [{"action": "reload", "unit": "keepalived.service"}]
    exporter = t["10.10.10.12"][f"10.10.10.12{EXPORTER}"]
    assert "ExecStart=/usr/bin/keepalived_exporter $KEEPALIVED_EXPORTER_OPTS" in exporter
    env = t["10.10.10.12"]["10.10.10.12/etc/default/keepalived_exporter"]
    assert '"--web.listen-address=:9650 --web.telemetry-path=/metrics"' in env


def test_auth_pass_default_is_cluster_vrid_cut_to_eight(write_inventory, inventory, tmp_path):
    compiled = compile_fleet(write_inventory(with_vip(inventory)))
    build(compiled, tmp_path / "out")
    store = yaml.safe_load((tmp_path / ".sty" / "out" / "secrets.yml").read_text())
    assert store["pg-test/vip_auth_pass"] == "pg-test-"  # keepalived reads 8 characters of `pg-test-128`
    text = (tmp_path / "out" / "10.10.10.11" / CONF.lstrip("/")).read_text()
    assert re.search(r"^\s+auth_pass <<secret:pg-test/vip_auth_pass>>$", text, re.M)


def test_preempting_master_starts_as_master(compile_inv, inventory):
    t = trees(compile_inv(with_vip(inventory, vip_preempt=True, vip_interface="ens3")))
    text = conf(t["10.10.10.11"], "10.10.10.11")
    assert "state MASTER" in text and "nopreempt" not in text and "interface ens3" in text
    assert "10.10.10.3 dev ens3" in text
    man = yaml.safe_load(t["10.10.10.11"]["10.10.10.11.yml"])
    assert man["identity"]["node"]["vip"]["interface_from"] == "parameter"


def test_single_holder_has_no_unicast_block(compile_inv, inventory):
    inventory["all"]["children"]["pg-meta"]["vars"].update(vip_enabled=True, vip_vrid=10, vip_address="10.10.10.2")
    text = conf(trees(compile_inv(inventory))["10.10.10.10"], "10.10.10.10")
    assert "unicast" not in text and "vrrp_instance pg-meta {" in text


def test_el9_paths_and_package(compile_inv, inventory):
    inventory["all"]["vars"]["sty_platform"] = "el9"
    t = trees(compile_inv(with_vip(inventory)))
    man = yaml.safe_load(t["10.10.10.12"]["10.10.10.12.yml"])
    assert "keepalived_exporter" in man["packages"]
    assert "10.10.10.12/etc/sysconfig/keepalived_exporter" in t["10.10.10.12"]


def test_vip_disabled_renders_nothing(compile_inv, inventory):
    tree = trees(compile_inv(inventory))["10.10.10.11"]
    assert not [p for p in tree if "keepalived" in p]


def test_octo_vip_spans_two_node_clusters_as_one_group():
    """Pigsty's ha/octo.yml binds 10.10.10.9 to its minio group, whose hosts sit in node clusters pg-meta and
    pg-test: all eight hold one VRRP group and share one auth password (Pigsty would derive two)."""
    compiled = compile_fleet(CORPUS / "ha" / "octo.yml")
    assert any("node clusters pg-meta, pg-test" in w.message for w in compiled.report.warnings)
    t = trees(compiled)
    holders = [ip for ip, tree in t.items() if f"{ip}{CONF}" in tree]
    assert len(holders) == 8
    for ip in holders:
        text = conf(t[ip], ip)
        assert "vrrp_instance pg-meta {" in text and "<<secret:pg-meta/vip_auth_pass>>" in text
        assert len(re.search(r"unicast_peer \{\n(.*?)\n    \}", text, re.S).group(1).split()) == 7
    assert "state BACKUP" in conf(t["10.10.10.10"], "10.10.10.10")
    assert "priority 128" in conf(t["10.10.10.10"], "10.10.10.10")


# -- rules -----------------------------------------------------------------------------------------


def test_vip_address_and_vrid_are_required(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["vip_enabled"] = True
    errors = errors_of(compile_inv, inventory)
    paths = {p.path for p in errors if "is required when vip_enabled" in p.message}
    assert paths == {f"{TEST}.vars.vip_address", f"{TEST}.vars.vip_vrid"}


def test_members_of_a_node_cluster_share_the_vip(compile_inv, inventory):
    with_vip(inventory)["all"]["children"]["pg-test"]["hosts"]["10.10.10.13"]["vip_vrid"] = 129
    errors = errors_of(compile_inv, inventory)
    assert any(
        p.path == f"{TEST}.hosts.10.10.10.13.vip_vrid" and "differs from 128 on 10.10.10.11" in p.message
        for p in errors
    )


def test_vip_address_may_not_be_a_host(compile_inv, inventory):
    with_vip(inventory)["all"]["children"]["pg-test"]["vars"]["vip_address"] = "10.10.10.10"
    errors = errors_of(compile_inv, inventory)
    assert any(p.path == f"{TEST}.vars.vip_address" and "address of host 10.10.10.10" in p.message for p in errors)


@pytest.mark.parametrize("value", ["10.10.10.3/24", "vip.local", "10.10.10.300"])
def test_vip_address_is_ipv4(compile_inv, inventory, value):
    with_vip(inventory)["all"]["children"]["pg-test"]["vars"]["vip_address"] = value
    assert any(p.path == f"{TEST}.vars.vip_address" for p in errors_of(compile_inv, inventory))


@pytest.mark.parametrize("value", [0, 255])
def test_vrid_range(compile_inv, inventory, value):
    with_vip(inventory)["all"]["children"]["pg-test"]["vars"]["vip_vrid"] = value
    assert any(p.path == f"{TEST}.vars.vip_vrid" for p in errors_of(compile_inv, inventory))


def test_shared_vrid_across_vips_is_a_warning(compile_inv, inventory):
    with_vip(inventory)
    inventory["all"]["children"]["pg-meta"]["vars"].update(vip_enabled=True, vip_vrid=128, vip_address="10.10.10.2")
    compiled = compile_inv(inventory)
    assert any("vip_vrid 128 is also used for VIP" in w.message for w in compiled.report.warnings)


@pytest.mark.parametrize("value", ["much-too-long", "has space", 'q"uote'])
def test_auth_pass_must_fit_keepalived(compile_inv, inventory, value):
    with_vip(inventory, vip_auth_pass=value)
    errors = errors_of(compile_inv, inventory)
    assert any(p.path == f"{TEST}.vars.vip_auth_pass" and "1 to 8 printable" in p.message for p in errors)


def test_auth_pass_from_secrets_file_is_checked(write_inventory, inventory):
    path = write_inventory(with_vip(inventory))
    (path.parent / "secrets.yml").write_text("pg-test/vip_auth_pass: far-too-long-for-vrrp\n")
    compiled = compile_fleet(path)
    with pytest.raises(InventoryError) as caught:
        render_targets(compiled, ["10.10.10.11"])
    assert "pg-test/vip_auth_pass must be 1 to 8" in str(caught.value.report.errors[0].message)


def test_bad_interface_name_is_an_error(compile_inv, inventory):
    with_vip(inventory, vip_interface="eth0 dev lo")
    errors = errors_of(compile_inv, inventory)
    assert any(p.path == f"{TEST}.vars.vip_interface" for p in errors)


def test_exporter_port_clash_is_an_error(compile_inv, inventory):
    with_vip(inventory, vip_exporter_port=9101)
    errors = errors_of(compile_inv, inventory)
    assert any(p.path == f"{TEST}.vars.vip_exporter_port" and "haproxy_exporter_port" in p.message for p in errors)


# -- keepalived -t (real program, private network namespace) ---------------------------------------


def need_keepalived() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if not shutil.which("keepalived"):
        if os.environ.get("CI"):
            pytest.fail("keepalived is not installed (Debian package keepalived)")
        pytest.skip("keepalived is not installed (Debian package keepalived)")


@pytest.fixture(scope="module")
def vip_bundles(tmp_path_factory) -> Path:
    from conftest import shipped_inventory

    work = tmp_path_factory.mktemp("vip")
    inv = with_vip(shipped_inventory())
    inv["all"]["children"]["pg-meta"]["vars"].update(vip_enabled=True, vip_vrid=10, vip_address="10.10.10.2")
    build(compile_fleet(dump_inventory(inv, work / "pigsty.yml")), work / "out")
    return work / "out"


def manifest(out: Path, ip: str) -> dict:
    return yaml.safe_load((out / f"{ip}.yml").read_text())


def run_check(root: Path, ip: str, man: dict, **kw):
    return keepalived_check(CheckContext(root, ip, man, (CONF,), **kw))


def netns_names() -> set[str]:
    return set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())


@pytest.mark.slow
@pytest.mark.parametrize("ip", ["10.10.10.10", "10.10.10.11", "10.10.10.12", "10.10.10.13"])
def test_keepalived_accepts_generated_bundles(vip_bundles, ip):
    need_keepalived()
    man = manifest(vip_bundles, ip)
    assert {"checker": "keepalived", "files": [CONF], "where": "both"} in man["checks"]
    before = netns_names()
    result = run_check(vip_bundles / ip, ip, man)
    assert result.status == "pass", result.output
    assert not {n for n in netns_names() - before if n.startswith("sty-test-")}  # the namespace is gone


def spoiled(vip_bundles: Path, tmp_path: Path, ip: str, fn) -> Path:
    root = tmp_path / ip
    shutil.copytree(vip_bundles / ip, root)
    f = root / CONF.lstrip("/")
    f.write_text(fn(f.read_text()))
    return root


@pytest.mark.slow
def test_keepalived_rejects_broken_copies(vip_bundles, tmp_path):
    need_keepalived()
    ip = "10.10.10.12"
    man = manifest(vip_bundles, ip)
    root = spoiled(vip_bundles, tmp_path, ip, lambda t: t.replace("virtual_router_id 128", "virtual_router_id 300"))
    result = run_check(root, ip, man)
    assert result.status == "fail" and "number '300' outside range [1, 255]" in result.output, result.output
    assert CONF in result.output  # the message names the bundle's path, not the temporary copy


@pytest.mark.slow
def test_keepalived_rejects_what_sty_avoids(vip_bundles, tmp_path):
    """The two shapes Pigsty's template can produce and keepalived -t refuses: a MASTER with nopreempt, and an
    auth_pass longer than 8 characters (the real secret; the runner's dummy is shortened to fit)."""
    need_keepalived()
    ip = "10.10.10.11"
    man = manifest(vip_bundles, ip)
    root = spoiled(vip_bundles, tmp_path / "a", ip, lambda t: t.replace("state BACKUP", "state MASTER"))
    result = run_check(root, ip, man)
    assert result.status == "fail" and "nopreempt will not work with initial state MASTER" in result.output
    result = run_check(vip_bundles / ip, ip, man, secret=lambda name: "pg-test-128")
    assert result.status == "fail" and "Truncating auth_pass to 8 characters" in result.output
    assert run_check(vip_bundles / ip, ip, man, secret=lambda name: "pg-test-").status == "pass"


@pytest.mark.slow
def test_keepalived_needs_the_interface(vip_bundles, tmp_path):
    """The namespace carries the interfaces the file names; one that cannot exist is keepalived's own error."""
    need_keepalived()
    ip = "10.10.10.13"
    man = manifest(vip_bundles, ip)
    root = spoiled(vip_bundles, tmp_path, ip, lambda t: t.replace("    interface eth0", "    interface eth0/x"))
    result = run_check(root, ip, man)
    assert result.status == "fail" and "interface eth0/x for vrrp_instance pg-test doesn't exist" in result.output
