"""The blackbox exporter on the infra nodes: the prober behind the `ping` scrape job (ICMP to every host and
VIP), with TCP and HTTP modules for ad-hoc probes. ICMP needs the raw-socket capability, which its unit gets.
"""

from __future__ import annotations

from typing import Any

from ...bundle import FileSpec, HostBundle, reload
from ...model import Host
from ...render import HEADER, to_yaml
from .daemon import add_daemon, daemon_of
from .model import MODULE

BLACKBOX_CONF = "/etc/blackbox.yml"


def render_blackbox(host: Host, b: HostBundle) -> None:
    p = host.params
    port = int(p["blackbox_port"])
    d = daemon_of(host, "blackbox")
    b.add(FileSpec(BLACKBOX_CONF, MODULE, to_yaml(blackbox_config(), HEADER), "yaml", actions=[reload(d.unit)]))
    flags = [f"--config.file={BLACKBOX_CONF}", f"--web.listen-address=:{port}"]
    options = p.get("blackbox_options") or ""
    health = f"http://{host.ip}:{port}/-/healthy"
    add_daemon(host, "blackbox", flags, options, b, port=port, health=health, caps=True)
    b.check("blackbox", BLACKBOX_CONF)


def blackbox_config() -> dict[str, Any]:
    return {
        "modules": {
            "icmp": {"prober": "icmp", "timeout": "5s", "icmp": {"preferred_ip_protocol": "ip4"}},
            "tcp_connect": {"prober": "tcp", "timeout": "5s", "tcp": {"preferred_ip_protocol": "ip4"}},
            "http_2xx": {
                "prober": "http",
                "timeout": "5s",
                "http": {"preferred_ip_protocol": "ip4", "valid_status_codes": [], "method": "GET"},
            },
        }
    }
