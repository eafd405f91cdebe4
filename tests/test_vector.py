"""vector on every node: /etc/vector/vector.yaml (NODE owns it, other modules contribute log sources), its unit,
and the hand-written `vector` checker (no vector binary installs here) judging the generated bundles and
deliberately broken copies."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import realprog as rp
import yaml

from sty.apply.checks import CheckContext
from sty.apply.checks.vector import check as vector_check
from sty.apply.checks.vector import check_config, vrl_compiler, vrl_syntax_problems
from sty.compiler.build import render_targets
from sty.compiler.bundle import Contribution, HostBundle
from sty.compiler.errors import InventoryError
from sty.compiler.modules.node import VECTOR_CONFIG, VectorSettings, compose_vector, contribute_logs
from sty.compiler.pipeline import resolve_target

UNIT = "/etc/systemd/system/vector.service"
SINK = "vlogs_10_10_10_10_9428"


def trees(compiled) -> dict[str, dict[str, str]]:
    rendered = render_targets(compiled, resolve_target(compiled.fleet, "all"))
    return {ip: {rel: data.decode() for rel, data in tree.items()} for ip, tree in rendered.trees.items()}


def vector_doc(tree: dict[str, str], ip: str) -> dict:
    return yaml.safe_load(tree[f"{ip}{VECTOR_CONFIG}"])


@pytest.fixture(scope="module")
def shipped():
    from conftest import SHIPPED

    from sty.compiler.pipeline import compile_fleet

    return trees(compile_fleet(SHIPPED))


def run_vrl(program: str, event: dict) -> dict:
    compiler, _ = vrl_compiler()
    if compiler is None:
        pytest.skip("PyPI pyvrl is not installed: VRL cannot be run here")
    return compiler(program + "\n.").remap(event)


# -- content ---------------------------------------------------------------------------------------


def test_every_node_ships_its_journal_and_module_logs_to_the_infra_victorialogs(shipped):
    for ip, tree in shipped.items():
        doc = vector_doc(tree, ip)
        assert doc["data_dir"] == "/data/vector"
        sink = doc["sinks"][SINK]
        assert sink["type"] == "http" and sink["uri"] == "http://10.10.10.10:9428/insert/jsonline"
        assert sink["encoding"] == {"codec": "json"} and sink["framing"] == {"method": "newline_delimited"}
        assert sink["request"]["headers"]["VL-Stream-Fields"] == "job,ins,ip"
        # NODE's own log (the whole journal, HAProxy's lines included) plus what each module on the host contributes
        want = {"syslog_logs", "postgres_logs", "patroni_logs", "pgbouncer_logs", "pgbackrest_logs"}
        if ip == "10.10.10.10":
            want |= {"etcd_logs", "nginx_logs", "nginx_error_logs"}
        assert sink["inputs"] == sorted(want)
        want_journal = {"type": "journald", "current_boot_only": True, "since_now": False}
        assert doc["sources"]["syslog_raw"] == want_journal
        assert doc["sources"]["postgres_raw"]["include"] == ["/pg/log/postgres/*.csv"]
        assert "parse_csv(" in doc["transforms"]["postgres_logs"]["source"]
        metrics = doc["sinks"]["prometheus"]
        assert metrics["type"] == "prometheus_exporter" and metrics["address"] == "0.0.0.0:9598"
        assert metrics["inputs"] == ["internal_metrics"]


def test_remap_adds_job_ins_ip_and_trims_journal_fields(shipped):
    doc = vector_doc(shipped["10.10.10.12"], "10.10.10.12")
    program = doc["transforms"]["syslog_logs"]["source"]
    event = {
        "message": "hello",
        "timestamp": "2024-01-01T00:00:00Z",
        "_SYSTEMD_UNIT": "cron.service",
        "SYSLOG_IDENTIFIER": "CRON",
        "PRIORITY": "6",
        "_PID": "42",
        "host": "x",
        "source_type": "journald",
    }
    out = run_vrl(program, event)
    # Pigsty's syslog stream: job syslog, the node's identity, app / unit / pid / level name / priority
    assert {k: out[k] for k in ("job", "ins", "ip", "cls", "src", "app", "unit", "pid", "level", "p")} == {
        "job": "syslog",
        "ins": "pg-test-2",
        "ip": "10.10.10.12",
        "cls": "pg-test",
        "src": "syslog",
        "app": "CRON",
        "unit": "cron",
        "pid": "42",
        "level": "info",
        "p": "6",
    }
    assert out["_time"] == "2024-01-01T00:00:00Z" and "_PID" not in out and "host" not in out


def test_manifest_lists_unit_port_package_and_checks(shipped):
    man = yaml.safe_load(shipped["10.10.10.11"]["10.10.10.11.yml"])
    assert {"name": "vector.service", "module": "node", "health": "http://10.10.10.11:9598/metrics"} in man["units"]
    assert {"port": 9598, "component": "vector", "module": "node", "address": "0.0.0.0"} in man["ports"]
    assert "vector" in man["packages"]
    assert {"checker": "vector", "files": [VECTOR_CONFIG], "where": "both"} in man["checks"]
    assert {"checker": "systemd", "files": [UNIT], "where": "both"} in man["checks"]
    entry = next(f for f in man["files"] if f["path"] == VECTOR_CONFIG)
    assert entry["module"] == "node" and entry["mode"] == "0600"
    assert entry["actions"] == [{"action": "reload", "unit": "vector.service"}]
    unit = shipped["10.10.10.11"][f"10.10.10.11{UNIT}"]
    assert "ExecStart=/usr/bin/vector --config /etc/vector/vector.yaml" in unit


def test_vector_disabled_renders_nothing(compile_inv, inventory):
    inventory["all"]["vars"]["vector_enabled"] = False
    tree = trees(compile_inv(inventory))["10.10.10.11"]
    assert not [p for p in tree if "vector" in p]


def test_read_from_end_starts_journals_now(compile_inv, inventory):
    inventory["all"]["vars"]["vector_read_from"] = "end"
    doc = vector_doc(trees(compile_inv(inventory))["10.10.10.11"], "10.10.10.11")
    assert doc["sources"]["syslog_raw"]["since_now"] is True


# -- vector_log_endpoint ---------------------------------------------------------------------------


def test_log_endpoint_urls_addresses_and_vlogs_port(compile_inv, inventory):
    inventory["all"]["vars"]["vector_log_endpoint"] = ["infra", "https://logs.example.com/insert/jsonline", "10.9.9.9"]
    inventory["all"]["children"]["infra"]["vars"] = {"vlogs_port": 9500}
    doc = vector_doc(trees(compile_inv(inventory))["10.10.10.11"], "10.10.10.11")
    uris = sorted(s["uri"] for s in doc["sinks"].values() if s["type"] == "http")
    assert uris == [
        "http://10.10.10.10:9500/insert/jsonline",
        "http://10.9.9.9:9428/insert/jsonline",
        "https://logs.example.com/insert/jsonline",
    ]


def test_infra_without_victorialogs_gets_no_sink(compile_inv, inventory):
    inventory["all"]["children"]["infra"]["vars"] = {"vlogs_enabled": False}
    compiled = compile_inv(inventory)
    assert any("no host of group 'infra' runs VictoriaLogs" in p.message for p in compiled.report.problems)
    doc = vector_doc(trees(compiled)["10.10.10.11"], "10.10.10.11")
    assert set(doc["sinks"]) == {"prometheus"} and "transforms" not in doc
    assert set(doc["sources"]) == {"internal_metrics"}  # no log source without a consumer
    assert check_config(doc, None) == []


def test_log_endpoint_that_names_nothing_is_an_error_with_its_path(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["vector_log_endpoint"] = ["infra", "logz"]
    with pytest.raises(InventoryError) as caught:
        compile_inv(inventory)
    errors = [p for p in caught.value.report.errors if p.path == "all.children.pg-test.vars.vector_log_endpoint[1]"]
    assert errors and "'logz' is neither a group" in errors[0].message


def test_vector_port_clash_is_an_error(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["vars"]["vector_port"] = 9100
    with pytest.raises(InventoryError) as caught:
        compile_inv(inventory)
    assert any(
        p.path == "all.children.pg-test.vars.vector_port" and "clashes with node_exporter_port" in p.message
        for p in caught.value.report.errors
    )


def test_log_identity_must_be_writable_into_vrl(compile_inv, inventory):
    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"]["nodename"] = 'db "two"'
    with pytest.raises(InventoryError) as caught:
        compile_inv(inventory)
    assert any(
        p.path == "all.children.pg-test.hosts.10.10.10.12.nodename" and "is a log field of vector" in p.message
        for p in caught.value.report.errors
    )


# -- the contribution contract ---------------------------------------------------------------------

SETTINGS = VectorSettings(
    "10.10.10.11",
    "pg-test-1",
    "pg-test",
    "/data/vector",
    9598,
    "beginning",
    [(SINK, "http://10.10.10.10:9428/insert/jsonline")],
)
NODE = Contribution(VECTOR_CONFIG, "node", "node", {"syslog": {"job": "syslog", "source": {"type": "journald"}}})
PGSQL = Contribution(
    VECTOR_CONFIG,
    "pgsql",
    "pgsql",
    {
        "postgres": {
            "job": "pgsql",
            "ins": "pg-test-1",
            "source": {"type": "file", "include": ["/pg/log/postgres/*.csv"]},
            "remap": "row = parse_csv!(.message)\n._time = row[0]\n.message = row[13]",
        },
        "patroni": {
            "job": "pgsql",
            "ins": "pg-test-1",
            "source": {"type": "file", "include": ["/pg/log/patroni/patroni.log"]},
        },
    },
)
ETCD = Contribution(
    VECTOR_CONFIG,
    "etcd",
    "etcd",
    {"etcd": {"job": "etcd", "source": {"type": "journald", "include_units": ["etcd.service"]}}},
)


def compose(*fragments: Contribution) -> dict:
    ordered = sorted(fragments, key=lambda c: (c.key, c.module))  # as HostBundle.finish orders them
    return yaml.safe_load(compose_vector(SETTINGS)(None, list(ordered)))


def test_contributed_sources_are_merged_deterministically():
    doc = compose(NODE, PGSQL, ETCD)
    assert compose(ETCD, PGSQL, NODE) == doc
    assert doc["sources"]["postgres_raw"] == {
        "type": "file",
        "include": ["/pg/log/postgres/*.csv"],
        "read_from": "beginning",
    }
    assert "exclude_units" not in doc["sources"]["syslog_raw"]  # the whole journal, as Pigsty ships it
    assert doc["sinks"][SINK]["inputs"] == ["etcd_logs", "patroni_logs", "postgres_logs", "syslog_logs"]
    assert check_config(doc, vrl_compiler()[0]) == []
    program = doc["transforms"]["postgres_logs"]["source"]
    assert program.startswith("row = parse_csv!(.message)")
    row = ",".join(["2024-01-01 00:00:00.000 UTC"] + [""] * 12 + ["checkpoint complete"] + [""] * 9)
    out = run_vrl(program, {"message": row, "timestamp": "t", "file": "/pg/log/postgres/x.csv"})
    assert (out["job"], out["ins"], out["ip"], out["src"]) == ("pgsql", "pg-test-1", "10.10.10.11", "postgres")
    assert out["_time"] == "2024-01-01 00:00:00.000 UTC" and out["message"] == "checkpoint complete"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"Bad-Id": {"job": "x", "source": {"type": "journald"}}}, "a log id matches"),
        ({"syslog": {"job": "x", "source": {"type": "journald"}}}, "also contributed by node"),
        ({"x": {"job": "x", "source": {"type": "socket"}}}, "source type must be one of file, journald"),
        ({"x": {"source": {"type": "journald"}}}, "`job` and `source` are required"),
        ({"x": {"job": "x", "source": {"type": "file"}}}, "a file source needs `include`"),
        ({"x": {"job": "x", "source": {"type": "journald"}, "sink": "y"}}, "only the keys"),
    ],
)
def test_contract_violations_are_refused(data, message):
    with pytest.raises(RuntimeError, match=message):
        compose(NODE, Contribution(VECTOR_CONFIG, "other", "other", data))


def test_contribute_logs_respects_vector_enabled():
    from types import SimpleNamespace

    logs = {"etcd": {"job": "etcd", "source": {"type": "journald", "include_units": ["etcd.service"]}}}
    off, on = HostBundle("10.10.10.10"), HostBundle("10.10.10.10")
    contribute_logs(off, SimpleNamespace(params={"vector_enabled": False}), "etcd", logs)
    contribute_logs(on, SimpleNamespace(params={"vector_enabled": True}), "etcd", logs)
    assert off.contributions == {}
    assert [(c.module, c.key, c.data) for c in on.contributions[VECTOR_CONFIG]] == [("etcd", "etcd", logs)]


def test_values_written_into_vrl_are_checked():
    bad = Contribution(VECTOR_CONFIG, "x", "x", {"x": {"job": 'a" + "b', "source": {"type": "journald"}}})
    with pytest.raises(Exception, match="may only contain"):
        compose(NODE, bad)


# -- the checker on generated bundles and on broken copies -----------------------------------------


def ctx_for(root: Path, host: str) -> CheckContext:
    return CheckContext(root, host, rp.manifest(host), (VECTOR_CONFIG,))


@pytest.mark.parametrize("host", rp.hosts_with("vector"))
def test_vector_checker_passes_generated_bundles(host):
    result = vector_check(ctx_for(rp.OUTPUTS / host, host))
    assert result.status == "pass", result.output
    assert "valid" in result.output and "hand-written" in result.reason


def broken_copy(tmp_path: Path, edit) -> tuple[Path, str]:
    host = rp.hosts_with("vector")[0]
    root = tmp_path / host
    shutil.copytree(rp.OUTPUTS / host, root)
    f = rp.bundle_file(root, VECTOR_CONFIG)
    doc = yaml.safe_load(f.read_text())
    edit(doc)
    f.write_text(yaml.safe_dump(doc))
    return root, host


def rejected(tmp_path, edit, *messages: str) -> str:
    root, host = broken_copy(tmp_path, edit)
    result = vector_check(ctx_for(root, host))
    assert result.status == "fail", f"the checker accepted a broken file:\n{result.output}"
    for m in messages:
        assert m in result.output, f"expected {m!r} in:\n{result.output}"
    return result.output


def test_unknown_input_is_rejected(tmp_path):
    def edit(doc):
        doc["sinks"][SINK]["inputs"].append("pglog_logs")

    rejected(tmp_path, edit, f'Input "pglog_logs" for sink "{SINK}" doesn\'t match any components.')


def test_orphan_source_is_rejected(tmp_path):
    def edit(doc):
        doc["sources"]["orphan_raw"] = {"type": "file", "include": ["/var/log/orphan.log"]}

    rejected(tmp_path, edit, 'Source "orphan_raw" has no consumers')


def test_vrl_that_does_not_compile_is_rejected(tmp_path):
    def edit(doc):
        doc["transforms"]["syslog_logs"]["source"] += "parse_pglog!(.message)\n"

    compiler, _ = vrl_compiler()
    message = "error[E105]: call to undefined function" if compiler else "unexpected"
    if compiler is None:

        def edit(doc):  # noqa: F811 - without pyvrl only syntax can be judged
            doc["transforms"]["syslog_logs"]["source"] += "x = (1))\n"

    rejected(tmp_path, edit, 'transform "syslog_logs"', message)


def test_metrics_sink_fed_with_logs_is_rejected(tmp_path):
    def edit(doc):
        doc["sinks"]["prometheus"]["inputs"].append("syslog_logs")

    rejected(tmp_path, edit, "Data type mismatch between syslog_logs ([Log]) and prometheus ([Metric])")


def test_missing_and_unknown_options_are_rejected(tmp_path):
    def edit(doc):
        del doc["sinks"][SINK]["uri"]
        doc["sources"]["syslog_raw"]["include_unit"] = ["x.service"]
        doc["sources"]["etcd_raw"]["since_now"] = "no"

    rejected(
        tmp_path,
        edit,
        f'sink "{SINK}": missing field `uri`',
        'source "syslog_raw": unknown field `include_unit` for type `journald`',
        'source "etcd_raw": `since_now` must be true or false',
    )


def test_cycle_and_duplicate_ids_are_rejected(tmp_path):
    def edit(doc):
        doc["transforms"]["syslog_logs"]["inputs"] = ["syslog_raw", "patroni_logs"]
        doc["transforms"]["patroni_logs"]["inputs"] = ["patroni_raw", "syslog_logs"]
        doc["sinks"]["syslog_raw"] = {"type": "blackhole", "inputs": ["syslog_logs"]}

    out = rejected(
        tmp_path, edit, "Cyclic dependency detected in the chain", 'More than one component with name "syslog_raw"'
    )
    assert "patroni_logs" in out


def test_unparsable_yaml_is_rejected(tmp_path):
    host = rp.hosts_with("vector")[0]
    root = tmp_path / host
    shutil.copytree(rp.OUTPUTS / host, root)
    f = rp.bundle_file(root, VECTOR_CONFIG)
    f.write_text(f.read_text() + "sinks: [\n")
    result = vector_check(ctx_for(root, host))
    assert result.status == "fail" and "cannot parse YAML" in result.output


def test_syntactic_vrl_check_without_pyvrl():
    assert vrl_syntax_problems('.a = "x"\nif true { .b = r\'\\d+\' }\n# comment with "quote\n') == []
    assert vrl_syntax_problems('.a = "unterminated\n') == ["line 1: unterminated string literal"]
    assert vrl_syntax_problems("if true { .a = 1\n") == ["line 1: '{' is never closed"]
    assert vrl_syntax_problems(".a = f(1))") == ["line 1: unexpected ')'"]
    doc = copy.deepcopy(compose(NODE))
    doc["transforms"]["syslog_logs"]["source"] += "x = (\n"
    assert any("is never closed" in p for p in check_config(doc, None))
