"""Grafana on the infra nodes: grafana.ini (served under the portal's home domain when nginx fronts it) and the
provisioned datasources, named as Pigsty names them since its dashboards query by those names and uids:

- `Metrics` (uid `ds-prometheus`, the default), `Logs` (`ds-vlogs`) and `Traces` (`ds-vtraces`): this node's
  own Victoria databases on 127.0.0.1, and `Meta` (`ds-meta`: the CMDB database `meta` as `dbuser_view` with
  `grafana_view_password`), as Pigsty's datasource.yml provisions them;
- `vmetrics-<seq>` (type prometheus), `vlogs-<seq>` and `vtraces-<seq>` of every infra node, as Pigsty registers
  them, so any Grafana sees the whole fleet even when one infra node is down;
- a PostgreSQL datasource `<cls>-<seq>.<datname>` per instance and registered database (published on the board
  by PGSQL; those of remote instances from `pg_exporters`, pgrds.py), with Pigsty's connection settings.

Intentional differences from Pigsty:
- everything is provisioned from one file (Pigsty adds the per-node and per-database ones through Grafana's API):
  those get a fixed uid (their name; `pg-<name>` for PostgreSQL ones) where Pigsty's get random ones, which no
  dashboard can refer to;
- no `Static` datasource (`ds-static`): it needs the marcusolsson-static-datasource plugin, which sty does not
  install;
- `Meta` only where the infra node runs PostgreSQL, at its `pg_port` (Pigsty: always 127.0.0.1:5432);
- `Metrics`, `Logs` and `Traces` use the first infra node running that database when this one runs none;
- `timeInterval` is the scrape interval (Pigsty: 2s, shorter than any scrape interval, which leaves gaps in
  `$__rate_interval` windows), and the password of PostgreSQL datasources stays a secret placeholder.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ...bundle import Directory, FileSpec, HostBundle, Port, Unit, restart
from ...contrib import Datasource
from ...model import Host
from ...render import HEADER, render, to_yaml
from ...shared import shared
from .model import MODULE, InfraModel
from .pgrds import remote_datasources
from .portal import portal_entries

GRAFANA_INI = "/etc/grafana/grafana.ini"
VLOGS_TYPE = "victoriametrics-logs-datasource"
META_USER, META_DATABASE = "dbuser_view", "meta"  # Pigsty's CMDB reader and database
GRAFANA_DATASOURCES = "/etc/grafana/provisioning/datasources/sty.yml"
_UID = re.compile(r"[^A-Za-z0-9_-]+")


def render_grafana(host: Host, model: InfraModel, b: HostBundle) -> None:
    p = host.params
    port = int(p["grafana_port"])
    restart_grafana = [restart("grafana-server.service")]
    group = host.platform.grafana_user
    ini = _ini(host, b)
    b.add(FileSpec(GRAFANA_INI, MODULE, ini, "grafana-ini", group=group, mode="0640", actions=restart_grafana))
    shared(_datasources, host, b, model)  # alike on every infra node: rendered once (compiler/shared.py)
    b.check("grafana", GRAFANA_INI, GRAFANA_DATASOURCES)
    b.packages.update(host.platform.grafana_packages)
    b.units.add(Unit("grafana-server.service", MODULE, f"http://{host.ip}:{port}/api/health"))
    b.ports.add(Port(port, "grafana", MODULE))
    b.directories.update(
        {
            Directory("/etc/grafana", "root", group, "0755"),
            Directory("/etc/grafana/provisioning/datasources", "root", group, "0750"),
        }
    )


def _datasources(host: Host, b: HostBundle, model: InfraModel) -> None:
    sources = to_yaml(grafana_datasources(host, model, b), HEADER)
    restart_grafana = [restart("grafana-server.service")]
    group = host.platform.grafana_user
    b.add(FileSpec(GRAFANA_DATASOURCES, MODULE, sources, "yaml", group=group, mode="0640", actions=restart_grafana))


def _ini(host: Host, b: HostBundle) -> str:
    p = host.params
    password = b.secret(f"{host.ip}/grafana_admin_password", p.get("grafana_admin_password"))
    pgurl = p.get("grafana_pgurl") or ""
    home = next((x for x in portal_entries(p) if x.kind == "home"), None)
    return render(
        "infra/grafana.ini.j2",
        port=int(p["grafana_port"]),
        domain=home.domain if home else host.ip,
        scheme="https" if p.get("nginx_sslmode") == "enforce" else "http",
        subpath=bool(p.get("nginx_enabled") and home),
        admin_user=p["grafana_admin_username"],
        admin_password=password,
        pgurl=b.secret(f"{host.ip}/grafana_pgurl", pgurl) if pgurl else "",
        auth_proxy=bool(p.get("grafana_auth_proxy")),
    )


def grafana_datasources(host: Host, model: InfraModel, b: HostBundle) -> dict[str, Any]:
    """Pigsty's provisioned datasources (Metrics, Logs, Traces, Meta: the uids its dashboards query), the
    Victoria databases of every infra node under the names Pigsty registers them with, and the PostgreSQL
    datasources: the ones the modules published and those of this fleet's remote instances (pg_exporters)."""
    sources = _pigsty_sources(host, model, b)
    for m in model.members:
        sources += _victoria_sources(m)
    published = [*model.fanin.datasources, *remote_datasources(model.remote)]
    sources += [_source(ds, b) for ds in published]
    return {"apiVersion": 1, "datasources": sources}


def _victoria_of(host: Host, model: InfraModel, comp: str) -> str | None:
    """The address Grafana reaches a Victoria database at: this node's own on 127.0.0.1 (as Pigsty), else the
    first infra node running one; None when no infra node does."""
    if host.params.get(f"{comp}_enabled"):
        return f"127.0.0.1:{int(host.params[f'{comp}_port'])}"
    peer = next((m for m in model.members if m.params.get(f"{comp}_enabled")), None)
    return f"{peer.ip}:{int(peer.params[f'{comp}_port'])}" if peer else None


def _pigsty_sources(host: Host, model: InfraModel, b: HostBundle) -> list[dict[str, Any]]:
    """The datasources Pigsty's datasource.yml provisions, with its names and uids (its dashboards refer to
    `ds-prometheus`, `ds-vlogs`, `ds-vtraces`, `ds-meta`)."""
    p = host.params
    out: list[dict[str, Any]] = []
    metrics = _victoria_of(host, model, "vmetrics")
    if metrics:
        out.append(
            {
                "name": "Metrics",
                "uid": "ds-prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": f"http://{metrics}",
                "isDefault": True,
                "editable": True,
                "jsonData": _metrics_json(p),
            }
        )
    logs = _victoria_of(host, model, "vlogs")
    if logs:
        out.append(_http_source("Logs", "ds-vlogs", VLOGS_TYPE, f"http://{logs}"))
    traces = _victoria_of(host, model, "vtraces")
    if traces:
        out.append(_http_source("Traces", "ds-vtraces", "jaeger", f"http://{traces}/select/jaeger"))
    if "pgsql" in host.modules:  # the CMDB on the infra node's own PostgreSQL
        version = int(p["pg_version"]) if str(p.get("pg_version", "")).isdigit() else 15
        out.append(
            {
                "name": "Meta",
                "uid": "ds-meta",
                "type": "postgres",
                "access": "proxy",
                "url": f"127.0.0.1:{int(p['pg_port'])}",
                "user": META_USER,
                "editable": True,
                "jsonData": _pg_json(META_DATABASE, version),
                "secureJsonData": {
                    "password": b.secret(f"{host.ip}/grafana_view_password", p.get("grafana_view_password"))
                },
            }
        )
    return out


def _metrics_json(p: Any) -> dict[str, Any]:
    return {"timeInterval": str(p["vmetrics_scrape_interval"]), "httpMethod": "POST", "queryTimeout": "60s"}


def _http_source(name: str, uid: str, kind: str, url: str) -> dict[str, Any]:
    return {"name": name, "uid": uid, "type": kind, "access": "proxy", "url": url, "editable": True}


def _victoria_sources(m: Host) -> list[dict[str, Any]]:
    """The datasources Pigsty registers for one infra node's Victoria databases (`vmetrics-<seq>` ...)."""
    mp, seq = m.params, int(m.params["infra_seq"])
    out: list[dict[str, Any]] = []
    if mp.get("vmetrics_enabled"):
        source = _http_source(f"vmetrics-{seq}", f"vmetrics-{seq}", "prometheus", _url(m, "vmetrics"))
        out.append({**source, "isDefault": False, "jsonData": _metrics_json(mp)})
    if mp.get("vlogs_enabled"):
        out.append(_http_source(f"vlogs-{seq}", f"vlogs-{seq}", VLOGS_TYPE, _url(m, "vlogs")))
    if mp.get("vtraces_enabled"):
        out.append(_http_source(f"vtraces-{seq}", f"vtraces-{seq}", "jaeger", _url(m, "vtraces") + "/select/jaeger"))
    return out


def _url(m: Host, comp: str) -> str:
    return f"http://{m.ip}:{int(m.params[f'{comp}_port'])}"


def _pg_json(database: str, version: int) -> dict[str, Any]:
    """Pigsty's connection settings of a PostgreSQL datasource (TLS required, as the servers enable it)."""
    return {
        "database": database,
        "sslmode": "require",
        "postgresVersion": min(version, 15) * 100,
        "maxOpenConns": 8,
        "maxIdleConns": 1,
        "connMaxLifetime": 3600,
        "tlsAuth": False,
        "tlsAuthWithCACert": False,
    }


def _source(ds: Datasource, b: HostBundle) -> dict[str, Any]:
    """A published datasource (PostgreSQL: the only kind there is); its password stays a secret reference."""
    if ds.kind != "postgres":
        raise RuntimeError(f"datasource {ds.name}: Grafana provisioning knows no kind {ds.kind!r}")
    password = b.secret(ds.password_secret, ds.password)
    return {
        "name": ds.name,
        "uid": _uid(f"pg-{ds.name}"),
        "type": "postgres",
        "access": "proxy",
        "url": ds.url,
        "user": ds.user,
        "editable": True,
        "jsonData": _pg_json(ds.database, ds.version),
        "secureJsonData": {"password": password},
    }


def _uid(name: str) -> str:
    """A Grafana uid (at most 40 of [A-Za-z0-9_-]); long names keep a hash so they stay unique."""
    uid = _UID.sub("-", name)
    if len(uid) > 40:
        uid = uid[:31] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return uid
