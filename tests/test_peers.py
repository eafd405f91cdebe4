"""Fleet modules are peers: they meet only through the core's board (compiler/contrib.py), never by importing
one another. A module made up here, registered for one test with its parameter, gets scraped, named in DNS and
port-checked by the existing modules without any of them knowing it; and no module's source imports another's
(the fast complement of import-linter's contract in pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from conftest import dump_inventory, shipped_inventory

import sty.compiler.modules as registry_module
from sty.compiler import schema
from sty.compiler.bundle import HostBundle
from sty.compiler.contrib import DnsName, DnsRecords, Listener, ScrapeTarget, TargetGroup, addr, labels_of
from sty.compiler.errors import InventoryError, Report
from sty.compiler.model import Fleet, Host
from sty.compiler.module import FleetModule
from sty.compiler.modules import module_order
from sty.compiler.pipeline import Compiled, compile_fleet, input_digest, render_host

INFRA = "10.10.10.10"
TOY_HOST = "10.10.10.11"  # a pg-test member, which also runs node_exporter on 9100
MODULES = Path(registry_module.__file__).parent


class ToyModule(FleetModule):
    """A module nothing else knows: members of group `toy` serve on `toy_port`, want to be scraped there and
    answer to `<ip-with-dashes>.toy` in DNS."""

    name = "toy"
    phase = 70

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return "toy" in host.groups

    def derive(self, fleet: Fleet, report: Report) -> None:
        members = [h for h in fleet.hosts.values() if self.name in h.modules]
        for h in members:
            p, ip = h.params, h.ip
            group = TargetGroup((addr(ip, p["toy_port"]),), labels_of("toy", f"toy-{ip}", ip))
            fleet.board.publish(
                self.name,
                ScrapeTarget("toy", f"toy-{ip}", (group,), ip),
                Listener(ip, int(p["toy_port"]), "toy server", self.name, p.source("toy_port"), "toy_port"),
            )
        names = tuple(DnsName(self._dns(h), "toy server", h.path, h.ip) for h in members)
        lines = tuple(f"{h.ip} {self._dns(h)}" for h in members)
        fleet.board.publish(self.name, DnsRecords("toy", lines, names))

    @staticmethod
    def _dns(host: Host) -> str:
        return host.ip.replace(".", "-") + ".toy"

    def render(self, host: Host, fleet: Fleet, bundle: HostBundle) -> None:
        bundle.info[self.name] = {"port": int(host.params["toy_port"])}


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register ToyModule (one registry line) and its parameter (a made-up schema) for one test."""
    real = schema.registry()
    spec = schema.ParamSpec(
        "toy_port", "toy", {"type": "integer", "default": 7070, "description": "the toy server's port"}, {}
    )
    reg = schema.Registry({**real.params, "toy_port": spec}, real.unrendered, real.unrendered_prefixes, real.documents)
    monkeypatch.setattr(schema, "_REGISTRY", reg)
    monkeypatch.setattr(registry_module, "REGISTRY", (*registry_module.REGISTRY, f"{__name__}:ToyModule"))


def toy_inventory(tmp_path: Path, **toy_vars: object) -> Path:
    data = shipped_inventory()
    data["all"]["children"]["toy"] = {"hosts": {TOY_HOST: {}}, "vars": dict(toy_vars)}
    return dump_inventory(data, tmp_path / "pigsty.yml")


def infra_files(compiled: Compiled) -> dict[str, str]:
    bundle = render_host(compiled.fleet.hosts[INFRA], compiled)
    return {path: spec.content or "" for path, spec in bundle.files.items()}


def test_the_toy_is_scraped_and_named_by_infra(toy, tmp_path):
    compiled = compile_fleet(toy_inventory(tmp_path))
    assert module_order()[-1] == "toy" and compiled.fleet.hosts[TOY_HOST].modules[-1] == "toy"
    files = infra_files(compiled)
    target = yaml.safe_load(files[f"/infra/targets/toy/toy-{TOY_HOST}.yml"])
    assert target == [
        {"labels": {"cls": "toy", "ins": f"toy-{TOY_HOST}", "ip": TOY_HOST}, "targets": [f"{TOY_HOST}:7070"]}
    ]
    jobs = {j["job_name"]: j for j in yaml.safe_load(files["/infra/prometheus.yml"])["scrape_configs"]}
    assert jobs["toy"] == {
        "job_name": "toy",
        "metrics_path": "/metrics",
        "file_sd_configs": [{"files": ["/infra/targets/toy/*.yml"]}],
    }
    assert f"{TOY_HOST} 10-10-10-11.toy\n" in files["/etc/hosts.d/toy"]
    listeners = [x for x in compiled.fleet.board.read(Listener) if x.module == "toy"]
    assert [(x.host, x.port, x.path) for x in listeners] == [(TOY_HOST, 7070, "all.vars.toy_port")]  # a default


def test_the_infra_node_depends_on_the_toy_host(toy, tmp_path):
    """Incremental builds: a change of the toy's parameter changes the INFRA node's inputs."""
    one = compile_fleet(toy_inventory(tmp_path / "a"))
    other = compile_fleet(toy_inventory(tmp_path / "b", toy_port=7071))
    digest = lambda c: input_digest(c.fleet.hosts[INFRA], c, "code")  # noqa: E731
    assert digest(one) != digest(other)
    assert f"{TOY_HOST}:7071" in infra_files(other)[f"/infra/targets/toy/toy-{TOY_HOST}.yml"]


def test_a_toy_port_clashing_with_node_exporter_names_both(toy, tmp_path):
    with pytest.raises(InventoryError) as caught:
        compile_fleet(toy_inventory(tmp_path, toy_port=9100))
    errors = [(p.path, p.message) for p in caught.value.report.errors]
    assert errors == [
        (
            "all.children.toy.vars.toy_port",
            f"toy_port 9100 clashes with node_exporter (node_exporter_port) on {TOY_HOST}",
        )
    ]


def test_a_toy_dns_name_taken_by_postgres_is_a_warning(toy, tmp_path, monkeypatch):
    """The rule on published DNS names sees a new publisher's names like any other's."""
    monkeypatch.setattr(ToyModule, "_dns", staticmethod(lambda host: "pg-test"))
    compiled = compile_fleet(toy_inventory(tmp_path))
    warnings = [(p.path, p.message) for p in compiled.report.warnings if "DNS name" in p.message]
    assert warnings == [
        (
            f"all.children.pg-test.hosts.{TOY_HOST}",  # where the toy host is declared first
            "DNS name pg-test is registered for toy server and for PostgreSQL cluster pg-test: "
            "dnsmasq would answer with both addresses",
        )
    ]


# -- no module imports another -----------------------------------------------------------------------------------


def fleet_modules() -> dict[str, list[Path]]:
    """Module name -> its source files (a folder's files, or the one file)."""
    out: dict[str, list[Path]] = {}
    for entry in sorted(MODULES.iterdir()):
        if entry.is_dir() and (entry / "__init__.py").exists():
            out[entry.name] = sorted(entry.rglob("*.py"))
        elif entry.suffix == ".py" and entry.name != "__init__.py":
            out[entry.stem] = [entry]
    return out


def imported(path: Path) -> set[str]:
    """The absolute names a file imports (`sty.compiler.modules.etcd` ...), its relative imports resolved."""
    # the folder compiler/ is the package sty.compiler; a file's package is its folder's (__init__.py: itself)
    package = ["sty", *path.relative_to(MODULES.parents[1]).parts[:-1]]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            found.add(name)
            found.update(f"{name}.{a.name}" for a in node.names)  # `from .. import pgsql`
    return found


def test_the_module_registry_lists_every_module_in_phase_order():
    assert module_order() == ("node", "infra", "etcd", "minio", "pgsql", "redis")
    assert set(module_order()) == set(fleet_modules())


@pytest.mark.parametrize("module", sorted(fleet_modules()))
def test_no_module_imports_another(module):
    others = [m for m in fleet_modules() if m != module]
    for path in fleet_modules()[module]:
        names = imported(path)
        hits = sorted(n for n in names for o in others if f"{n}.".startswith(f"sty.compiler.modules.{o}."))
        where = path.relative_to(MODULES.parents[1])
        assert not hits, f"{where} imports {', '.join(hits)}: modules meet only through compiler/contrib.py"


def test_the_import_check_resolves_relative_imports():
    """The AST check itself: `from ...contrib import` and `from . import tuning` resolve to absolute names."""
    probe = MODULES / "pgsql" / "patroni.py"
    names = imported(probe)
    assert "sty.compiler.contrib" in names and "sty.compiler.modules.pgsql.tuning" in names
