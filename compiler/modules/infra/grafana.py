"""Grafana on the infra nodes: grafana.ini (served under the portal's home domain when nginx fronts it) and
provisioned datasources: the Victoria databases of every infra node, so any Grafana sees the whole fleet even
when one infra node is down, and the datasources the modules published (one per registered PostgreSQL database).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ...bundle import Directory, FileSpec, HostBundle, Port, Unit, restart
from ...contrib import Datasource
from ...model import Host
from ...render import HEADER, render, to_yaml
from .model import MODULE, InfraModel
from .portal import portal_entries

GRAFANA_INI = "/etc/grafana/grafana.ini"
GRAFANA_DATASOURCES = "/etc/grafana/provisioning/datasources/sty.yml"
_UID = re.compile(r"[^A-Za-z0-9_-]+")


def render_grafana(host: Host, model: InfraModel, b: HostBundle) -> None:
    p = host.params
    port = int(p["grafana_port"])
    restart_grafana = [restart("grafana-server.service")]
    group = host.platform.grafana_user
    ini = _ini(host, b)
    b.add(FileSpec(GRAFANA_INI, MODULE, ini, "grafana-ini", group=group, mode="0640", actions=restart_grafana))
    sources = to_yaml(grafana_datasources(host, model, b), HEADER)
    b.add(
        FileSpec(
            GRAFANA_DATASOURCES,
            MODULE,
            sources,
            "yaml",
            group=group,
            mode="0640",
            actions=restart_grafana,
        )
    )
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
    """vmetrics/vlogs/vtraces of every infra node (this node's vmetrics is the default) and the published
    datasources."""
    me = int(host.params["infra_seq"])
    mine = bool(host.params.get("vmetrics_enabled"))
    sources: list[dict[str, Any]] = []
    for m in model.members:
        sources += _victoria_sources(m, is_default=mine and int(m.params["infra_seq"]) == me)
    sources += [_source(ds, b) for ds in model.fanin.datasources]
    return {"apiVersion": 1, "datasources": sources}


def _victoria_sources(m: Host, is_default: bool) -> list[dict[str, Any]]:
    """The datasources of one infra node's Victoria databases."""
    mp, seq = m.params, int(m.params["infra_seq"])
    out: list[dict[str, Any]] = []
    if mp.get("vmetrics_enabled"):
        out.append(
            {
                "name": f"vmetrics-{seq}",
                "uid": f"vmetrics-{seq}",
                "type": "victoriametrics-metrics-datasource",
                "access": "proxy",
                "url": f"http://{m.ip}:{int(mp['vmetrics_port'])}",
                "isDefault": is_default,
                "editable": True,
                "jsonData": {"timeInterval": str(mp["vmetrics_scrape_interval"]), "httpMethod": "POST"},
            }
        )
    if mp.get("vlogs_enabled"):
        out.append(
            {
                "name": f"vlogs-{seq}",
                "uid": f"vlogs-{seq}",
                "type": "victoriametrics-logs-datasource",
                "access": "proxy",
                "url": f"http://{m.ip}:{int(mp['vlogs_port'])}",
                "editable": True,
            }
        )
    if mp.get("vtraces_enabled"):
        out.append(
            {
                "name": f"vtraces-{seq}",
                "uid": f"vtraces-{seq}",
                "type": "jaeger",
                "access": "proxy",
                "url": f"http://{m.ip}:{int(mp['vtraces_port'])}/select/jaeger",
                "editable": True,
            }
        )
    return out


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
        "jsonData": {
            "database": ds.database,
            "sslmode": "disable",
            "postgresVersion": min(ds.version, 15) * 100,
            "maxOpenConns": 8,
            "maxIdleConns": 2,
            "connMaxLifetime": 14400,
        },
        "secureJsonData": {"password": password},
    }


def _uid(name: str) -> str:
    """A Grafana uid (at most 40 of [A-Za-z0-9_-]); long names keep a hash so they stay unique."""
    uid = _UID.sub("-", name)
    if len(uid) > 40:
        uid = uid[:31] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return uid
