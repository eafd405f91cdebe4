"""The real programs judge the INFRA bundles: nginx -t, promtool (scrape config with its file_sd targets, and
the rules), vmagent's and vmalert's dry runs, amtool, the blackbox exporter's --config.check, dnsmasq (its
configuration and record files), and sty's Grafana provisioning rules.

The shipped inventory's infra node (outputs/) and every infra node of Pigsty's three-infra-node example are
checked; each checker also gets a deliberately broken copy and must reject it with the program's own words.
Every program runs inside namespaces the checkers make (`unshare -n`, plus a private mount namespace for
nginx's name resolution) and never contacts the addresses in the files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_sty
from shared import CORPUS

from sty.apply.checks import FAIL, PASS, SKIP, CheckContext, CheckResult
from sty.apply.checks.runner import run_check

pytestmark = pytest.mark.slow

OUTPUTS = ROOT / "outputs"
INFRA = "10.10.10.10"
CHECKERS = ("nginx", "promtool", "vmagent", "vmalert", "amtool", "blackbox", "dnsmasq", "grafana")


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network and mount namespaces)")


def manifest(outputs: Path, host: str) -> dict:
    return yaml.safe_load((outputs / f"{host}.yml").read_text())


def checks_of(outputs: Path, host: str, checker: str) -> list[tuple[str, ...]]:
    return [tuple(c["files"]) for c in manifest(outputs, host)["checks"] if c["checker"] == checker]


def run(root: Path, outputs: Path, host: str, checker: str, files: tuple[str, ...]) -> CheckResult:
    need_root()
    ctx = CheckContext(root=Path(root), host=host, manifest=manifest(outputs, host), files=files)
    return run_check(ctx, checker)


def assert_ok(r: CheckResult) -> None:
    if r.status == SKIP and "is not installed" in r.reason:
        pytest.skip(r.reason)
    assert r.status == PASS, f"{r.checker} {r.files}: {r.status}: {r.reason}\n{r.output}"


def assert_rejected(r: CheckResult, *messages: str) -> None:
    if r.status == SKIP and "is not installed" in r.reason:
        pytest.skip(r.reason)
    assert r.status == FAIL, f"{r.checker} accepted a broken file ({r.status}):\n{r.output}"
    for m in messages:
        assert m in r.output, f"expected {m!r} in:\n{r.output}"


@pytest.fixture(scope="session")
def trio(tmp_path_factory) -> Path:
    """Pigsty's ha/trio.yml (three infra nodes) built into a temporary directory; returns the outputs."""
    work = tmp_path_factory.mktemp("trio")
    shutil.copy(CORPUS / "ha/trio.yml", work / "pigsty.yml")
    run_sty("build", "-q", cwd=work, check_rc=0)
    return work / "outputs"


@pytest.fixture
def broken(tmp_path):
    """broken() -> a private copy of the shipped infra bundle to spoil."""

    def copy() -> Path:
        dst = tmp_path / INFRA
        shutil.copytree(OUTPUTS / INFRA, dst)
        return dst

    return copy


def edit(root: Path, path: str, fn) -> None:
    f = root / path.lstrip("/")
    f.write_text(fn(f.read_text()))


def first(checker: str) -> tuple[str, ...]:
    return checks_of(OUTPUTS, INFRA, checker)[0]


# --------------------------------------------------------------------------------------------------
# the generated files pass
# --------------------------------------------------------------------------------------------------


def test_the_infra_node_records_every_infra_checker():
    recorded = {c["checker"] for c in manifest(OUTPUTS, INFRA)["checks"]}
    assert set(CHECKERS) <= recorded


@pytest.mark.parametrize("checker", CHECKERS)
def test_shipped_infra_bundle_passes(checker):
    entries = checks_of(OUTPUTS, INFRA, checker)
    assert entries, f"no {checker} check in the manifest of {INFRA}"
    for files in entries:
        assert_ok(run(OUTPUTS / INFRA, OUTPUTS, INFRA, checker, files))


@pytest.mark.parametrize("host", ["10.10.10.10", "10.10.10.11", "10.10.10.12"])
def test_every_trio_infra_node_passes(trio, host):
    for checker in CHECKERS:
        entries = checks_of(trio, host, checker)
        assert entries, f"{host}: no {checker} check"
        for files in entries:
            assert_ok(run(trio / host, trio, host, checker, files))


def test_nginx_resolves_upstream_names_inside_its_namespace(tmp_path):
    """An endpoint given by name: nginx -t resolves it; the check maps it to 127.0.0.1 in its own namespace."""
    data = yaml.safe_load((ROOT / "pigsty.yml").read_text())
    data["all"]["vars"]["infra_portal"] = {
        "home": {"domain": "i.pigsty"},
        "app": {"domain": "app.pigsty", "endpoint": "app.internal.example:8080", "websocket": True},
    }
    (tmp_path / "pigsty.yml").write_text(yaml.safe_dump(data))
    run_sty("build", "-q", "--limit", INFRA, cwd=tmp_path, check_rc=0)
    out = tmp_path / "outputs"
    r = run(out / INFRA, out, INFRA, "nginx", checks_of(out, INFRA, "nginx")[0])
    assert_ok(r)
    assert "app.internal.example" in r.reason


# --------------------------------------------------------------------------------------------------
# broken copies are rejected with the program's own message
# --------------------------------------------------------------------------------------------------


def test_nginx_rejects_broken_copy(broken):
    b = broken()
    edit(
        b, "/etc/nginx/conf.d/home.conf", lambda t: t.replace("proxy_read_timeout 300s;", "proxy_read_timout 300s;", 1)
    )
    assert_rejected(
        run(b, OUTPUTS, INFRA, "nginx", first("nginx")), 'unknown directive "proxy_read_timout"', "home.conf"
    )


def test_promtool_rejects_broken_target_file(broken):
    b = broken()
    edit(b, "/infra/targets/node/10.10.10.11.yml", lambda t: t + "- targets: [10.10.10.11:9100]\n  extra: 1\n")
    assert_rejected(run(b, OUTPUTS, INFRA, "promtool", first("promtool")), "field extra not found")


def test_promtool_rejects_broken_rule(broken):
    b = broken()
    edit(b, "/infra/rules/pgsql.yml", lambda t: t.replace("expr: pg_up == 0", "expr: pg_up === 0", 1))
    assert_rejected(run(b, OUTPUTS, INFRA, "promtool", ("/infra/rules",)), '"PostgresDown": could not parse expression')


def test_vmagent_rejects_prometheus_only_keys(broken):
    b = broken()
    edit(
        b,
        "/infra/prometheus.yml",
        lambda t: t.replace("  scrape_timeout: 8s\n", "  scrape_timeout: 8s\n  evaluation_interval: 10s\n"),
    )
    assert_rejected(run(b, OUTPUTS, INFRA, "vmagent", first("vmagent")), "field evaluation_interval not found")


def test_vmalert_rejects_broken_rule(broken):
    b = broken()
    edit(
        b, "/infra/rules/etcd.yml", lambda t: t.replace("etcd_server_has_leader == 0", "etcd_server_has_leader == ", 1)
    )
    assert_rejected(run(b, OUTPUTS, INFRA, "vmalert", first("vmalert")), "bad prometheus expr", "EtcdNoLeader")


def test_amtool_rejects_undefined_receiver(broken):
    b = broken()
    edit(b, "/etc/alertmanager/alertmanager.yml", lambda t: t.replace("receiver: default", "receiver: pagerr", 1))
    assert_rejected(run(b, OUTPUTS, INFRA, "amtool", first("amtool")), 'undefined receiver "pagerr" used in route')


def test_blackbox_rejects_unknown_field(broken):
    b = broken()
    edit(b, "/etc/blackbox.yml", lambda t: t.replace("    http:\n", "    htpp:\n", 1))
    assert_rejected(run(b, OUTPUTS, INFRA, "blackbox", first("blackbox")), "field htpp not found")


def test_dnsmasq_rejects_bad_option_and_bad_record(broken):
    b = broken()
    edit(b, "/etc/dnsmasq.conf", lambda t: t.replace("bogus-priv\n", "bogus-privv\n"))
    assert_rejected(run(b, OUTPUTS, INFRA, "dnsmasq", first("dnsmasq")), "bad option at line", "/etc/dnsmasq.conf")
    edit(b, "/etc/dnsmasq.conf", lambda t: t.replace("bogus-privv\n", "bogus-priv\n"))
    edit(b, "/etc/hosts.d/pgsql-pg-test", lambda t: t + "10.10.10.300 pg-test-9\n")
    assert_rejected(run(b, OUTPUTS, INFRA, "dnsmasq", first("dnsmasq")), "bad address at /etc/hosts.d/pgsql-pg-test")


def test_grafana_rules_reject_two_defaults_and_a_broken_ini(broken):
    b = broken()
    path = "/etc/grafana/provisioning/datasources/sty.yml"

    def two_defaults(text: str) -> str:
        doc = yaml.safe_load(text)
        for ds in doc["datasources"][:2]:
            ds["isDefault"] = True
        return yaml.safe_dump(doc)

    edit(b, path, two_defaults)
    assert_rejected(
        run(b, OUTPUTS, INFRA, "grafana", first("grafana")),
        "Only one datasource per organization can be marked as default",
    )
    shutil.copy(OUTPUTS / INFRA / path.lstrip("/"), b / path.lstrip("/"))
    edit(b, "/etc/grafana/grafana.ini", lambda t: t.replace("http_port = 3000", "http_port = three"))
    assert_rejected(run(b, OUTPUTS, INFRA, "grafana", first("grafana")), "http_port 'three' is not a port number")
