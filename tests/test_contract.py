"""The contract between compiler and apply: one manifest reader and writer, the TARGET grammar, host order,
the closed set of formats and the action vocabulary with a handler for every module action."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from sty.apply.handlers import HANDLERS
from sty.compiler.bundle import FileSpec
from sty.contract.actions import ACTIONS, Action
from sty.contract.exits import UsageError
from sty.contract.manifest import MANIFEST_VERSION, Manifest, ManifestError, discover, read_manifest
from sty.contract.targets import parse_target, select, sort_hosts

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ROOT / "outputs"


def shipped(ip: str = "10.10.10.11") -> dict:
    return yaml.safe_load((OUTPUTS / f"{ip}.yml").read_text())


# -- the manifest --------------------------------------------------------------------------------------------


def test_reader_and_writer_agree_on_every_shipped_manifest():
    hosts = discover(OUTPUTS)
    assert hosts == ["10.10.10.10", "10.10.10.11", "10.10.10.12", "10.10.10.13"]
    for ip in hosts:
        manifest, text = read_manifest(OUTPUTS / f"{ip}.yml")
        assert manifest.to_dict() == yaml.safe_load(text), f"{ip}: reading and writing back changes the manifest"


def test_a_manifest_from_a_newer_sty_is_refused_with_a_sentence():
    data = shipped()
    data["sty_manifest"] = MANIFEST_VERSION + 1
    with pytest.raises(ManifestError, match="newer sty .*upgrade sty"):
        Manifest.from_dict(data, "outputs/10.10.10.11.yml")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("address"), r"manifest\.address is missing"),
        (lambda d: d["ports"][0].update(port="5432"), r"manifest\.ports\[0\]\.port must be a int"),
        (lambda d: d["files"][0].update(format="grafana-datasources"), r"unknown file format 'grafana-datasources'"),
        (lambda d: d["files"][0].update(actions=[{"action": "reboot"}]), r"unknown action 'reboot'"),
        (lambda d: d["files"][0].update(kind="symlink"), r"files\[0\]\.kind must be file or block"),
        (lambda d: d.update(identity=["pgsql"]), r"manifest\.identity must be a dict"),
        (lambda d: d["checks"][0].update(where="anywhere"), r"checks\[0\]\.where must be one of"),
    ],
)
def test_malformed_manifests_are_refused_naming_the_field(change, message):
    data = copy.deepcopy(shipped())
    change(data)
    with pytest.raises(ManifestError, match=message):
        Manifest.from_dict(data)


def test_unreadable_or_foreign_files_are_manifest_errors(tmp_path):
    (tmp_path / "10.0.0.1").mkdir()
    (tmp_path / "10.0.0.1.yml").write_text("a: [\n")
    with pytest.raises(ManifestError, match="not a manifest"):
        read_manifest(tmp_path / "10.0.0.1.yml")
    (tmp_path / "10.0.0.2.yml").symlink_to(OUTPUTS / "10.10.10.11.yml")
    with pytest.raises(ManifestError, match="no such bundle manifest"):
        read_manifest(tmp_path / "10.0.0.2.yml")  # a symlink sty did not make is not followed
    assert discover(tmp_path) == ["10.0.0.1"]


# -- targets and host order ----------------------------------------------------------------------------------


def test_hosts_sort_by_address_not_by_text():
    assert sort_hosts(["10.0.0.10", "10.0.0.9", "10.0.1.1", "host-b"]) == [
        "10.0.0.9",
        "10.0.0.10",
        "10.0.1.1",
        "host-b",
    ]


def test_target_grammar():
    index = {"10.0.0.2": {"pg-test"}, "10.0.0.10": {"infra", "pg-meta"}, "10.0.0.9": {"pg-test"}}
    assert parse_target(None) == [] and parse_target("all") == [] and parse_target("a, b,") == ["a", "b"]
    assert select(index, None) == ["10.0.0.2", "10.0.0.9", "10.0.0.10"]
    assert select(index, "pg-test") == ["10.0.0.2", "10.0.0.9"]
    assert select(index, "10.0.0.10,pg-test") == ["10.0.0.2", "10.0.0.9", "10.0.0.10"]
    with pytest.raises(UsageError, match="target 'pg-tes' is not a host address, cluster, group"):
        select(index, "pg-test,pg-tes")


def test_build_and_apply_sides_resolve_targets_alike(compile_inv, inventory):
    from sty.apply.bundle import select_hosts
    from sty.compiler.pipeline import resolve_target

    fleet = compile_inv(inventory).fleet
    for target in ("all", "pg-test", "infra", "10.10.10.12", "pg-meta,10.10.10.13", "etcd"):
        assert resolve_target(fleet, target) == select_hosts(OUTPUTS, target), target


# -- formats and actions -------------------------------------------------------------------------------------


def test_the_set_of_formats_is_closed():
    with pytest.raises(ValueError, match="unknown file format 'grafana-datasources'"):
        FileSpec("/etc/grafana/provisioning/datasources/sty.yml", "infra", "x: 1\n", "grafana-datasources")
    assert FileSpec("/etc/x.yml", "infra", "x: 1\n", "yaml").format == "yaml"


def test_every_module_action_has_exactly_one_handler_in_its_module():
    declared = {name: spec.module for name, spec in ACTIONS.items() if spec.module}
    handled = {name: h.module for h in HANDLERS.values() for name in h.actions}
    assert handled == declared


def test_unit_actions_name_a_unit_and_module_actions_do_not():
    assert str(Action("restart", "patroni.service")) == "restart patroni.service"
    with pytest.raises(ValueError, match="needs unit"):
        Action("reload")
    with pytest.raises(ValueError, match="takes no unit"):
        Action("patroni-reload", "patroni.service")
