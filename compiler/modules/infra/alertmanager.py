"""Alertmanager on the infra nodes: one route tree for sty's alerts, and when several infra nodes run it, a
gossip cluster of all of them so that an alert is notified once however many vmalerts fire it.
"""

from __future__ import annotations

from typing import Any

from ...bundle import Directory, FileSpec, HostBundle, Port, reload
from ...model import Host
from ...render import HEADER, to_yaml
from .daemon import add_daemon, daemon_of
from .model import MODULE, InfraModel

ALERTMANAGER_CONF = "/etc/alertmanager/alertmanager.yml"
ALERTMANAGER_CLUSTER_PORT = 9094  # Alertmanager's gossip port, used when several infra nodes run it


def render_alertmanager(host: Host, model: InfraModel, data: str, b: HostBundle) -> None:
    p = host.params
    port = int(p["alertmanager_port"])
    d = daemon_of(host, "alertmanager")
    text = to_yaml(alertmanager_config(), HEADER)
    b.add(FileSpec(ALERTMANAGER_CONF, MODULE, text, "yaml", actions=[reload(d.unit)]))
    store = f"{data}/alertmanager"
    flags = [
        f"--config.file={ALERTMANAGER_CONF}",
        f"--storage.path={store}",
        f"--web.listen-address=:{port}",
        *_cluster_flags(host, model, b),
    ]
    options = p.get("alertmanager_options") or ""
    add_daemon(host, "alertmanager", flags, options, b, port=port, health=f"http://{host.ip}:{port}/-/healthy")
    b.directories.update({Directory("/etc/alertmanager"), Directory(store, d.user, d.user, "0750")})
    b.check("amtool", ALERTMANAGER_CONF)


def _cluster_flags(host: Host, model: InfraModel, b: HostBundle) -> list[str]:
    """Gossip with the other infra nodes' Alertmanagers; alone, no cluster listener at all."""
    peers = [m for m in model.members if m.params.get("alertmanager_enabled") and m is not host]
    if not peers:
        return ["--cluster.listen-address="]
    b.ports.add(Port(ALERTMANAGER_CLUSTER_PORT, "alertmanager-cluster", MODULE))
    return [
        f"--cluster.listen-address={host.ip}:{ALERTMANAGER_CLUSTER_PORT}",
        *(f"--cluster.peer={m.ip}:{ALERTMANAGER_CLUSTER_PORT}" for m in peers),
    ]


def alertmanager_config() -> dict[str, Any]:
    """One route tree: critical alerts repeat faster; a critical alert silences the warnings of the same
    subject. The receiver has no integration until a notifier is configured."""
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "default",
            "group_by": ["alertname", "cls"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"receiver": "default", "matchers": ['severity="critical"'], "repeat_interval": "1h"},
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["cls", "ins"],
            }
        ],
        "receivers": [{"name": "default"}],
    }
