"""Monitoring as Pigsty v4.5's Grafana dashboards read it: sty's bundles held to Pigsty's own roles, read in place
from the shared sources (PIGSTY_SRC/roles) and rendered here with plain Jinja2 from sty's resolved parameters.

- scrape targets: every file_sd group Pigsty registers (node with its keepalived_exporter, ping, pgsql with the
  VIP's `pgsql-vip` pings, etcd, infra, remote `pgrds`) is one of sty's, with the same targets and labels;
- Grafana: the datasources Pigsty provisions (Metrics, Logs, Traces, Meta) keep their names, uids and types, the
  per-infra-node ones their names and types, and the PostgreSQL ones Pigsty registers per instance and database
  (managed and remote) are sty's, at the same address, user, database and sslmode;
- logs: the same journal line, PostgreSQL csvlog record, Patroni, pgBackRest and nginx line run through Pigsty's
  VRL and through sty's composed vector transform give the same labels (job, ins, cls, ip) and fields;
- `pg_exporters` (remote instances monitored from infra nodes): units, EnvironmentFiles, ports, targets,
  datasources, secrets as placeholders, and the entries that cannot be rendered refused with their path;
- etcd: the scrape job's scheme is what ETCD publishes (`__scheme__: https`), with nothing to change in INFRA.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from conftest import RenderedFleet, dump_inventory, render_fleet, shipped_inventory
from shared import PIGSTY_SRC

from sty.compiler.contrib import Board, ScrapeTarget, TargetGroup
from sty.compiler.errors import InventoryError
from sty.compiler.logs import VECTOR_CONFIG
from sty.compiler.pipeline import compile_fleet

ROLES = PIGSTY_SRC / "roles"
INFRA = "10.10.10.10"
PG_TEST = ("10.10.10.11", "10.10.10.12", "10.10.10.13")
DATASOURCES = "/etc/grafana/provisioning/datasources/sty.yml"
REMOTE = {
    20001: {"pg_cluster": "pg-foo", "pg_seq": 1, "pg_host": "10.10.10.101", "pg_databases": [{"name": "foo"}]},
    20002: {
        "pg_cluster": "pg-foo",
        "pg_seq": 2,
        "pg_host": "rds.example.com",
        "pg_port": 6543,
        "pg_monitor_username": "mon@rds",
        "pg_monitor_password": "Remote:Secret/1",
        "pg_exporter_include_database": "foo",
        "pg_databases": [{"name": "foo"}, {"name": "hidden", "register_datasource": False}],
    },
    20003: {
        "pg_cluster": "pg-bar",
        "pg_seq": 1,
        "pg_host": "10.10.10.102",
        "pg_exporter_url": "postgres://u:Url.Secret.3@10.10.10.102:5432/postgres?sslmode=require",
    },
}
SECRET_VALUES = ("Remote:Secret/1", "Remote%3ASecret%2F1", "Url.Secret.3", "DBUser.Monitor", "DBUser.Viewer")

pytestmark = pytest.mark.skipif(not ROLES.is_dir(), reason=f"Pigsty's sources are not at {ROLES}")


def fleet_inventory() -> dict[str, Any]:
    """The shipped inventory with a node VIP and a PostgreSQL VIP on pg-test and remote instances on infra."""
    data = shipped_inventory()
    children = data["all"]["children"]
    children["pg-test"]["vars"].update(
        vip_enabled=True,
        vip_vrid=128,
        vip_address="10.10.10.4",
        pg_vip_enabled=True,
        pg_vip_address="10.10.10.3/24",
        pg_vip_interface="eth1",
    )
    children["pg-test"]["hosts"]["10.10.10.11"]["vip_role"] = "master"
    children["infra"]["vars"] = {"pg_exporters": copy.deepcopy(REMOTE)}
    return data


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> RenderedFleet:
    return render_fleet(fleet_inventory(), tmp_path_factory.mktemp("monitoring"))


def errors_of(data: dict[str, Any], tmp: Path) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        compile_fleet(dump_inventory(data, tmp / "pigsty.yml"))
    return [f"{p.path}: {p.message}" for p in caught.value.report.errors]


# -- Pigsty's templates, rendered with plain Jinja2 as Ansible would ------------------------------------------------


def _bool(value: Any) -> bool:
    return value.strip().lower() in ("true", "yes", "on", "1") if isinstance(value, str) else bool(value)


@cache
def jinja() -> jinja2.Environment:
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined)  # Ansible's template defaults
    env.filters["bool"] = _bool
    return env


def render(text: str, ctx: dict[str, Any]) -> str:
    return jinja().from_string(text).render(**ctx)


def holds(condition: str | list[str], ctx: dict[str, Any]) -> bool:
    """An Ansible `when`: every condition true."""
    conditions = [condition] if isinstance(condition, str) else condition
    return all(jinja().compile_expression(c, undefined_to_none=False)(**ctx) for c in conditions)


def task(path: str, name: str) -> dict[str, Any]:
    """A named task of a role's tasks file (blocks searched)."""

    def find(items: list[dict[str, Any]]) -> dict[str, Any] | None:
        for t in items:
            if t.get("name") == name:
                return t
            found = find(t.get("block") or [])
            if found:
                return found
        return None

    found = find(yaml.safe_load((ROLES / path).read_text(encoding="utf-8")))
    assert found, f"no task {name!r} in {path}"
    return found


def with_vars(t: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    """The context with the task's `vars` rendered (they refer to one another and to the context)."""
    out = dict(ctx)
    for key, value in (t.get("vars") or {}).items():
        out[key] = render(value, out) if isinstance(value, str) else value
    return out


def copied(t: dict[str, Any], ctx: dict[str, Any]) -> tuple[str, str]:
    """(dest, content) of a `copy:` task."""
    ctx = with_vars(t, ctx)
    return render(t["copy"]["dest"], ctx), render(t["copy"]["content"], ctx)


def pigsty_identity(p: Any, ip: str) -> tuple[str, str]:
    """node_id's nodename and node_cluster (node_id_from_pg: a PostgreSQL member is named after its instance)."""
    if p.get("node_id_from_pg") and p.get("pg_cluster") and p.get("pg_seq") is not None:
        cluster = p.get("node_cluster")
        cls = p["pg_cluster"] if cluster in (None, "", "nodes") else cluster
        return f"{p['pg_cluster']}-{p['pg_seq']}", cls
    return str(p.get("nodename") or ip), str(p.get("node_cluster") or "nodes")


def context(built: RenderedFleet, ip: str) -> dict[str, Any]:
    """A host's variables as Pigsty's tasks see them: sty's resolved parameters, its identity, hostvars."""
    p = built.params[ip]
    ctx = {key: p.get(key) for key in p}
    ctx = {k: v for k, v in ctx.items() if v is not None}
    nodename, cluster = pigsty_identity(p, ip)
    ctx.update(inventory_hostname=ip, nodename=nodename, node_cluster=cluster)
    ctx["hostvars"] = {ip: ctx}
    return ctx


def groups(text: str) -> set[tuple[tuple[tuple[str, str], ...], tuple[str, ...]]]:
    """A file_sd file as comparable groups: (visible labels, targets); `__` labels are scrape parameters."""
    out = set()
    for g in yaml.safe_load(text) or []:
        labels = tuple(sorted((str(k), str(v)) for k, v in (g.get("labels") or {}).items() if not k.startswith("__")))
        out.add((labels, tuple(sorted(str(t) for t in g.get("targets") or []))))  # their order is no matter
    return out


# ===================================================================================================================
# scrape targets
# ===================================================================================================================


def sty_targets(built: RenderedFleet, job: str) -> dict[str, str]:
    prefix = f"/infra/targets/{job}/"
    return {p: t for p, t in built.files[INFRA].items() if p.startswith(prefix)}


def union(texts) -> set:
    return set().union(*(groups(text) for text in texts))


def test_node_targets_and_keepalived_exporters_carry_pigsty_labels(fleet):
    """Pigsty's node file: node_exporter, haproxy, vector; and for a VIP holder the keepalived_exporter on
    vip_exporter_port with the `vip` label (sty: the same group in `<ip>-keepalived.yml` of the node job)."""
    t = task("node_monitor/tasks/main.yml", "register node as victoria target")
    ours = sty_targets(fleet, "node")
    for ip in (INFRA, *PG_TEST):
        dest, content = copied(t, context(fleet, ip))
        mine = [text for path, text in ours.items() if path in (dest, dest.replace(".yml", "-keepalived.yml"))]
        assert union(mine) == groups(content), ip
        assert (f"/infra/targets/node/{ip}-keepalived.yml" in ours) is (ip in PG_TEST)
    keepalived = yaml.safe_load(ours["/infra/targets/node/10.10.10.12-keepalived.yml"])
    labels = {"__metrics_path__": "/metrics", "cls": "pg-test", "ins": "pg-test-2", "ip": "10.10.10.12"}
    assert keepalived == [{"labels": {**labels, "vip": "10.10.10.4"}, "targets": ["10.10.10.12:9650"]}]


def test_keepalived_exporter_serves_what_the_target_scrapes(fleet):
    ip = "10.10.10.12"
    env = fleet.files[ip]["/etc/default/keepalived_exporter"]
    assert 'KEEPALIVED_EXPORTER_OPTS="--web.listen-address=:9650 --web.telemetry-path=/metrics"' in env
    units = {u["name"]: u for u in fleet.yaml(ip, "manifest")["units"]}
    assert units["keepalived_exporter.service"]["health"] == f"http://{ip}:9650/metrics"
    assert "/etc/default/keepalived_exporter" not in fleet.files[INFRA]  # only VIP holders run it


def test_node_ping_targets_carry_pigsty_labels(fleet):
    t = task("node_monitor/tasks/main.yml", "register node as ping target")
    for ip in (INFRA, *PG_TEST):
        dest, content = copied(t, context(fleet, ip))
        assert groups(sty_targets(fleet, "ping")[dest]) == groups(content), ip


def test_node_vip_ping_targets_carry_pigsty_labels(fleet):
    t = task("node_monitor/tasks/main.yml", "register node vip as ping target")
    theirs = union(copied(t, context(fleet, ip))[1] for ip in PG_TEST)
    assert theirs <= union(sty_targets(fleet, "ping").values())


def test_postgres_targets_and_vip_pings_carry_pigsty_labels(fleet):
    """pgsql: cls, ins, ip on the exporters and Patroni; the VIP pinged once per member with `job: pgsql-vip`."""
    t = task("pg_monitor/tasks/register_victoria.yml", "register postgres to victoria")
    for ip in (INFRA, *PG_TEST):
        dest, content = copied(t, context(fleet, ip))
        assert groups(sty_targets(fleet, "pgsql")[dest]) == groups(content), ip
    t = task("pg_monitor/tasks/register_victoria.yml", "register pg vip ping target to victoria")
    ctx = {ip: context(fleet, ip) for ip in PG_TEST}
    theirs = union(copied(t, c)[1] for c in ctx.values() if holds(t["when"], c))
    assert len(theirs) == 3
    assert groups(sty_targets(fleet, "ping")["/infra/targets/ping/pgsql-pg-test-vip.yml"]) == theirs
    assert ("job", "pgsql-vip") in next(iter(theirs))[0]


def test_etcd_and_infra_targets_carry_pigsty_labels(fleet):
    t = task("etcd/tasks/main.yml", "register etcd as victoria target")
    dest, content = copied(t, context(fleet, INFRA))
    assert groups(sty_targets(fleet, "etcd")[dest]) == groups(content)
    infra = render((ROLES / "infra/templates/prometheus/infra.yml.j2").read_text(), context(fleet, INFRA))
    assert groups(sty_targets(fleet, "infra")["/infra/targets/infra/infra-1.yml"]) == groups(infra)


def test_remote_targets_carry_pigsty_labels(fleet):
    """pgrds: one file per remote cluster on the infra node running the exporters, targets on that node."""
    t = task("pg_exporters/tasks/main.yml", "register pgsql exporter as victoria target")
    ctx = context(fleet, INFRA)
    ours = sty_targets(fleet, "pgrds")
    assert sorted(ours) == ["/infra/targets/pgrds/pg-bar.yml", "/infra/targets/pgrds/pg-foo.yml"]
    for cls in ("pg-foo", "pg-bar"):
        dest, content = copied(t, {**ctx, "item": cls})
        assert groups(ours[dest]) == groups(content), cls
    foo = groups(ours["/infra/targets/pgrds/pg-foo.yml"])
    assert ((("cls", "pg-foo"), ("ins", "pg-foo-2"), ("ip", "rds.example.com")), (f"{INFRA}:20002",)) in foo
    jobs = {j["job_name"]: j for j in fleet.yaml(INFRA, "/infra/prometheus.yml")["scrape_configs"]}
    sd = [{"files": ["/infra/targets/pgrds/*.yml"]}]
    assert jobs["pgrds"] == {"job_name": "pgrds", "metrics_path": "/metrics", "file_sd_configs": sd}


# ===================================================================================================================
# Grafana datasources
# ===================================================================================================================


def sty_sources(built: RenderedFleet) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in built.yaml(INFRA, DATASOURCES)["datasources"]}


def test_provisioned_datasources_keep_pigsty_names_uids_and_types(fleet):
    """Pigsty's dashboards query `ds-prometheus`, `ds-vlogs`, `ds-vtraces`, `ds-meta`; `Static` needs a plugin
    sty does not install (documented)."""
    theirs = yaml.safe_load(
        render((ROLES / "infra/templates/grafana/datasource.yml.j2").read_text(), context(fleet, INFRA))
    )
    ours = sty_sources(fleet)
    for ds in theirs["datasources"]:
        if ds["name"] == "Static":
            assert "Static" not in ours
            continue
        mine = ours[ds["name"]]
        assert (mine["uid"], mine["type"], mine["url"]) == (ds["uid"], ds["type"], ds["url"]), ds["name"]
        assert bool(mine.get("isDefault")) is bool(ds.get("isDefault")), ds["name"]
    meta = ours["Meta"]
    assert (meta["user"], meta["jsonData"]["database"], meta["jsonData"]["sslmode"]) == (
        "dbuser_view",
        "meta",
        "require",
    )
    assert meta["secureJsonData"] == {"password": f"<<secret:{INFRA}/grafana_view_password>>"}


def test_per_node_victoria_datasources_keep_pigsty_names_and_types(fleet):
    ours = sty_sources(fleet)
    for name in ("render vmetrics datasource to grafana", "render vlogs datasource to grafana",
                 "render vtraces datasource to grafana"):  # fmt: skip
        t = task("infra/tasks/register.yml", name)
        _, content = copied(t, context(fleet, INFRA))
        ds = json.loads(content)
        assert (ours[ds["name"]]["type"], ours[ds["name"]]["url"]) == (ds["type"], ds["url"])
        assert ours[ds["name"]].get("isDefault", False) is False


REGISTER = "render grafana datasource for {{ database.name | default(database) }}"


def pigsty_pg_datasources(built: RenderedFleet) -> dict[str, dict[str, Any]]:
    """The datasources Pigsty's pg_monitor registers for every instance (`postgres` plus pg_databases) and its
    pg_exporters role for every remote instance's pg_databases."""
    local = task("pg_monitor/tasks/register_grafana.yml", REGISTER)
    cases = [
        (local, context(built, ip), [{"name": "postgres"}, *built.params[ip]["pg_databases"]])
        for ip in (INFRA, *PG_TEST)
    ]
    remote = task("pg_exporters/tasks/register_grafana_db.yml", REGISTER)
    main = yaml.safe_load((ROLES / "pg_exporters/tasks/main.yml").read_text())
    include = next(x for x in main if x.get("include_tasks") == "register_grafana.yml")
    for port, conf in built.params[INFRA]["pg_exporters"].items():
        ctx = with_vars(include, {**context(built, INFRA), "item": {"key": port, "value": conf}})
        cases.append((remote, ctx, conf.get("pg_databases") or []))
    out = {}
    for t, ctx, databases in cases:
        for database in databases:
            c = {**ctx, "database": database, "infra_host": INFRA}
            if holds(t["when"], c):
                ds = json.loads(copied(t, c)[1])
                out[ds["name"]] = ds
    return out


def test_postgres_datasources_are_pigsty_ones_per_instance_and_database(fleet):
    theirs = pigsty_pg_datasources(fleet)
    ours = {n: d for n, d in sty_sources(fleet).items() if d["type"] == "postgres" and n != "Meta"}
    assert set(ours) == set(theirs)
    assert {"pg-test-2.postgres", "pg-test-2.test", "pg-foo-2.foo"} <= set(ours) and "pg-foo-2.hidden" not in ours
    for name, ds in theirs.items():
        mine = ours[name]
        assert (mine["url"], mine["user"]) == (ds["url"], ds["user"]), name
        for key in ("database", "sslmode", "postgresVersion", "maxOpenConns", "maxIdleConns", "connMaxLifetime"):
            assert mine["jsonData"][key] == ds["jsonData"][key], (name, key)
    assert ours["pg-foo-2.foo"]["secureJsonData"] == {"password": "<<secret:pg-foo-2/pg_monitor_password>>"}
    assert ours["pg-test-1.test"]["secureJsonData"] == {"password": "<<secret:pg-test/pg_monitor_password>>"}


# ===================================================================================================================
# logs
# ===================================================================================================================

TS = "2024-05-01T10:00:01.5Z"
CSV = (
    '2024-05-01 10:00:00.123 UTC,"dbuser_meta","meta",1234,"10.10.10.10:40000",663a,1,"SELECT",'
    '2024-05-01 09:00:00 UTC,3/0,0,ERROR,42P01,"relation ""x"" does not exist",,,,,,"select * from x",15,,'
    '"psql","client backend",,0'
)
SYSLOG = {"message": "hi", "_SYSTEMD_UNIT": "cron.service", "SYSLOG_IDENTIFIER": "CRON", "PRIORITY": "3", "_PID": "42"}
PGLOG = {"message": CSV, "file": "/pg/log/postgres/a.csv"}
PATRONI = {"message": "2024-05-01 10:00:00 +0800 WARNING: Request failed", "file": "/pg/log/patroni/patroni.log"}
BACKREST = {
    "message": "2024-05-01 10:00:00.123 P00   INFO: backup end",
    "file": "/pg/log/pgbackrest/pg-meta-backup.log",
}
ACCESS = {"message": '10.0.0.1 - - [01/May/2024:10:00:00 +0000] "GET /ui/ HTTP/1.1" 200 612 "-" "curl/8" "-"'}
ERROR = {
    "message": '2024/05/01 10:00:00 [error] 12#12: *3 open() "/www/x" failed (2: No such file or directory), '
    'client: 10.0.0.1, server: i.pigsty, request: "GET /x HTTP/1.1", host: "i.pigsty"'
}
PG, NGINX = "pg_monitor/templates", "infra/templates/vector/nginx.yaml"
# (Pigsty's file, its transform, sty's log id, event, Pigsty's fields sty sets differently: vector.py's docstring)
LOGS = [
    ("node_monitor/templates/node.yaml", "syslog_logs", "syslog", SYSLOG, set()),
    (f"{PG}/postgres.yaml", "pglog_logs", "postgres", PGLOG, {"message", "_time"}),
    (f"{PG}/patroni.yaml", "patroni_logs", "patroni", PATRONI, set()),
    (f"{PG}/pgbackrest.yaml", "pgbackrest_logs", "pgbackrest", BACKREST, set()),
    (NGINX, "nginx_access_logs", "nginx", {**ACCESS, "file": "/var/log/nginx/home.log"}, set()),
    (NGINX, "nginx_error_logs", "nginx_error", {**ERROR, "file": "/var/log/nginx/error.log"}, set()),
]


def run_vrl(program: str, event: dict[str, Any]) -> dict[str, Any]:
    pyvrl = pytest.importorskip("pyvrl", reason="PyPI pyvrl is not installed: VRL cannot be run here")
    # the event's time as vector hands it over (a timestamp), for both programs alike
    prologue = '.timestamp = parse_timestamp!(.timestamp, "%+")\n'
    out = pyvrl.Transform(prologue + program + "\n.").remap({**event, "timestamp": TS})
    return {k: (v.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if hasattr(v, "strftime") else v) for k, v in out.items()}


def same_time(value: Any) -> str:
    text = str(value).rstrip("Z")
    return text.rstrip("0").rstrip(".") if "." in text else text


# what sty's events carry beyond Pigsty's: the log id, and fields VictoriaLogs ignores (VL-Ignore-Fields)
EXTRA_FIELDS = {"src", "file", "timestamp"}


@pytest.mark.parametrize("template, transform, log_id, event, differs", LOGS, ids=[x[2] for x in LOGS])
def test_log_events_carry_pigsty_labels_and_fields(fleet, template, transform, log_id, event, differs):
    ip = INFRA  # runs the journal, PostgreSQL, Patroni, pgBackRest and nginx
    ctx = {**context(fleet, ip), "vector_read_from": "beginning"}
    theirs = run_vrl(
        yaml.safe_load(render((ROLES / template).read_text(), ctx))["transforms"][transform]["source"], event
    )
    vector = yaml.safe_load(fleet.files[ip][VECTOR_CONFIG])
    ours = run_vrl(vector["transforms"][f"{log_id}_logs"]["source"], event)
    for field, value in theirs.items():
        if field in differs:
            continue
        if field == "_time":
            assert same_time(ours[field]) == same_time(value), field
        else:
            assert field in ours and ours[field] == value, field
    assert set(ours) - set(theirs) <= EXTRA_FIELDS and ours["src"] == log_id
    assert {"job", "ins", "cls", "ip", "level"} <= set(theirs) - differs  # the labels are always compared


def test_every_vector_sink_uses_pigsty_stream_fields(fleet):
    for ip in (INFRA, *PG_TEST):
        vector = yaml.safe_load(fleet.files[ip][VECTOR_CONFIG])
        sinks = [s for s in vector["sinks"].values() if s["type"] == "http"]
        assert sinks and all(s["request"]["headers"]["VL-Stream-Fields"] == "job,ins,ip" for s in sinks)
        assert "exclude_units" not in vector["sources"]["syslog_raw"]  # the whole journal is job syslog


# ===================================================================================================================
# pg_exporters: remote instances monitored from the infra node
# ===================================================================================================================


def test_remote_exporters_run_on_the_infra_node_with_units_env_and_ports(fleet):
    files, man = fleet.files[INFRA], fleet.yaml(INFRA, "manifest")
    units = {u["name"]: u["health"] for u in man["units"]}
    ports = {p["port"]: p["component"] for p in man["ports"]}
    for port, ins in ((20001, "pg-foo-1"), (20002, "pg-foo-2"), (20003, "pg-bar-1")):
        unit = f"pg_exporter_{ins}"
        service = files[f"/etc/systemd/system/{unit}.service"]
        assert f"EnvironmentFile=-/etc/default/{unit}\n" in service and "User=postgres\n" in service
        assert "ExecStart=/usr/bin/pg_exporter $PG_EXPORTER_OPTS\n" in service
        assert units[f"{unit}.service"] == f"http://{INFRA}:{port}/metrics" and ports[port] == f"pg_exporter_{ins}"
        env = files[f"/etc/default/{unit}"]
        assert f'PG_EXPORTER_OPTS="--web.listen-address=:{port} --log.level=info"' in env
        assert 'PG_EXPORTER_CONFIG="/etc/pg_exporter.yml"' in env
        entry = {f["path"]: f for f in man["files"]}[f"/etc/default/{unit}"]
        assert (entry["owner"], entry["mode"]) == ("postgres", "0600")
        assert {"checker": "systemd", "files": [f"/etc/systemd/system/{unit}.service"], "where": "both"} in man[
            "checks"
        ]
    env = files["/etc/default/pg_exporter_pg-foo-2"]
    url = "postgres://mon%40rds:<<secret:pg-foo-2/pg_monitor_password/urlencoded>>@rds.example.com:6543/postgres"
    assert f'PG_EXPORTER_URL="{url}?sslmode=disable"' in env and 'PG_EXPORTER_INCLUDE_DATABASE="foo"' in env
    assert 'PG_EXPORTER_URL="<<secret:pg-bar-1/pg_exporter_url>>"' in files["/etc/default/pg_exporter_pg-bar-1"]
    assert "pg-exporter" in man["packages"]
    for ip in PG_TEST:  # the other hosts run none
        assert not [p for p in fleet.files[ip] if "pg_exporter_pg-" in p]


def test_remote_secrets_are_placeholders_and_the_store_has_their_values(fleet):
    secrets = fleet.secrets[INFRA]
    assert secrets["pg-foo-2/pg_monitor_password"] == "Remote:Secret/1"
    assert secrets["pg-foo-2/pg_monitor_password/urlencoded"] == "Remote%3ASecret%2F1"
    assert secrets["pg-bar-1/pg_exporter_url"] == REMOTE[20003]["pg_exporter_url"]
    assert secrets["pg-foo-1/pg_monitor_password"] == "DBUser.Monitor"  # the infra node's, as Pigsty falls back
    for ip, files in fleet.files.items():
        for path, text in files.items():
            for value in SECRET_VALUES:
                assert value not in text, (ip, path, value)


def test_remote_exporters_follow_the_infra_nodes_own_parameters(tmp_path):
    """Pigsty's fallback: an entry's value, else the infra node's parameter (its exclude list, options ...)."""
    data = fleet_inventory()
    infra = data["all"]["children"]["infra"]
    infra["vars"].update(pg_exporter_exclude_database="template0", pg_exporter_options="--log.level=warn")
    infra["vars"]["pg_exporters"] = {20001: {**REMOTE[20001], "pg_exporter_options": "--log.level=debug"}}
    infra["vars"]["pg_exporters"][20002] = {**REMOTE[20002]}
    files = render_fleet(data, tmp_path).files[INFRA]
    one, two = files["/etc/default/pg_exporter_pg-foo-1"], files["/etc/default/pg_exporter_pg-foo-2"]
    assert 'PG_EXPORTER_EXCLUDE_DATABASE="template0"' in one and 'PG_EXPORTER_EXCLUDE_DATABASE="template0"' in two
    assert "--log.level=debug" in one and "--log.level=warn" in two


@pytest.mark.parametrize(
    "entry, error",
    [
        ({70000: {**REMOTE[20001]}}, "pg_exporters.70000: pg_exporters key '70000' must be a local port number"),
        ({3000: {**REMOTE[20001]}}, "pg_exporters.3000: pg_exporters port 3000 clashes with grafana_port"),
        ({20001: {**REMOTE[20001], "pg_host": "bad host"}}, "pg_host 'bad host' is neither an IP address"),
        ({20001: {**REMOTE[20001], "pg_exporter_config": "my.yml"}}, "names a collector file sty cannot ship"),
        ({20001: {**REMOTE[20001], "pg_exporter_params": "a'b"}}, "pg_exporter_params must be URL query parameters"),
        ({20001: REMOTE[20001], 20005: REMOTE[20001]}, "pg_exporters entries 20001 and 20005 both monitor pg-foo-1"),
        ({20001: {**REMOTE[20001], "pg_cluster": "pg-test"}}, "pg_exporters instance pg-test-1 is also a PostgreSQL"),
        ({9100: {**REMOTE[20001]}}, "port 9100 (pg_exporter for pg-foo-1) clashes with node_exporter"),
    ],
    ids=["port-range", "infra-port", "pg_host", "config", "params", "duplicate", "managed", "node-port"],
)
def test_entries_that_cannot_be_rendered_are_errors_at_their_path(tmp_path, entry, error):
    data = fleet_inventory()
    data["all"]["children"]["infra"]["vars"]["pg_exporters"] = copy.deepcopy(entry)
    errors = errors_of(data, tmp_path)
    assert any(e.startswith("all.children.infra.vars.pg_exporters") and error in e for e in errors), errors


def test_pg_exporters_outside_infra_nodes_is_a_warning(tmp_path):
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"]["pg_exporters"] = copy.deepcopy(REMOTE)
    built = render_fleet(data, tmp_path)
    warnings = [p for p in built.report.problems if p.severity == "warning" and "pg_exporters" in p.path]
    assert [p.path for p in warnings] == ["all.children.pg-test.hosts.10.10.10.12.pg_exporters"]
    assert "10.10.10.12 is not one" in warnings[0].message
    assert not any("pg_exporter_pg-" in p for files in built.files.values() for p in files)


def test_two_infra_nodes_disagreeing_on_an_instance_is_an_error(tmp_path):
    data = fleet_inventory()
    infra = data["all"]["children"]["infra"]
    infra["hosts"]["10.10.10.11"] = {"infra_seq": 2, "pg_exporters": {20001: {**REMOTE[20001], "pg_host": "10.9.9.9"}}}
    errors = errors_of(data, tmp_path)
    where = "all.children.infra.hosts.10.10.10.11.pg_exporters.20001.pg_host: pg_exporters instance pg-foo-1 is "
    assert f"{where}10.9.9.9:5432 as dbuser_monitor with databases [foo] here but 10.10.10.101" in "\n".join(errors)


def test_each_infra_node_scrapes_its_own_remote_exporters(tmp_path):
    """As Pigsty: every infra node with the entries runs and scrapes them; Grafana gets each datasource once."""
    data = fleet_inventory()
    data["all"]["children"]["infra"]["hosts"]["10.10.10.11"] = {"infra_seq": 2}
    built = render_fleet(data, tmp_path)
    for ip in (INFRA, "10.10.10.11"):
        foo = groups(built.files[ip]["/infra/targets/pgrds/pg-foo.yml"])
        assert {targets for _, targets in foo} == {(f"{ip}:20001",), (f"{ip}:20002",)}
        names = [d["name"] for d in built.yaml(ip, DATASOURCES)["datasources"]]
        assert names.count("pg-foo-1.foo") == 1


# ===================================================================================================================
# etcd: the scheme comes from what ETCD publishes
# ===================================================================================================================


def test_etcd_scrape_scheme_follows_what_etcd_publishes(monkeypatch, tmp_path):
    """The etcd job follows what ETCD publishes (`__scheme__: https` since etcd speaks TLS, as Pigsty's): it trusts
    the fleet CA and presents the scraper's certificate, with nothing in INFRA naming etcd."""
    built = render_fleet(shipped_inventory(), tmp_path / "http")
    jobs = {j["job_name"]: j for j in built.yaml(INFRA, "/infra/prometheus.yml")["scrape_configs"]}
    plain = all(
        g["labels"].get("__scheme__", "http") == "http" for g in built.yaml(INFRA, "/infra/targets/etcd/etcd-1.yml")
    )
    assert ("tls_config" in jobs["etcd"]) is not plain  # whatever ETCD publishes today, the job follows it

    publish = Board.publish

    def https(r):
        if not (isinstance(r, ScrapeTarget) and r.job == "etcd"):
            return r
        return ScrapeTarget(
            r.job, r.name, tuple(TargetGroup(g.targets, {**g.labels, "__scheme__": "https"}) for g in r.groups), r.owner
        )

    def tls_etcd(self, module, *records):
        publish(self, module, *(https(r) for r in records))

    monkeypatch.setattr(Board, "publish", tls_etcd)
    built = render_fleet(shipped_inventory(), tmp_path / "https")
    jobs = {j["job_name"]: j for j in built.yaml(INFRA, "/infra/prometheus.yml")["scrape_configs"]}
    assert jobs["etcd"]["tls_config"] == {  # etcd asks every client for a certificate: the scraper presents its own
        "ca_file": "/etc/pki/ca.crt",
        "cert_file": "/etc/pki/infra.crt",
        "key_file": "/etc/pki/infra.key",
    }
    scraper = next(c for c in built.yaml(INFRA, "manifest")["certificates"] if c["name"] == "infra-scrape")
    assert (scraper["cert"], scraper["usage"]) == ("/etc/pki/infra.crt", "client")
    assert [g["labels"]["__scheme__"] for g in built.yaml(INFRA, "/infra/targets/etcd/etcd-1.yml")] == ["https"]
    assert "tls_config" not in jobs["pgsql"]
