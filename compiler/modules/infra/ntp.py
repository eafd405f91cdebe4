"""NTP on the infra nodes: they serve time to the intranet. NODE owns chrony's config; INFRA only contributes
the lines that turn an infra node's chrony into a server for `node_firewall_intranet`.
"""

from __future__ import annotations

import ipaddress

from ...bundle import HostBundle, Port
from ...model import Host
from ...render import RenderError
from .model import MODULE


def render_ntp(host: Host, b: HostBundle) -> None:
    """Infra nodes serve time to the intranet: lines for NODE's chrony config."""
    p = host.params
    if not p.get("node_ntp_enabled"):
        return
    path = host.platform.chrony_conf
    b.contribute(path, MODULE, "infra:0", "local stratum 10")
    for i, cidr in enumerate(p.get("node_firewall_intranet") or []):
        try:
            net = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            raise RenderError(f"node_firewall_intranet entry {cidr!r} is not a CIDR") from None
        b.contribute(path, MODULE, f"infra:1:{i:04d}", f"allow {net}")
    b.ports.add(Port(123, "ntp", MODULE))
