"""INFRA's boundary with the other modules, all through the core: what INFRA publishes on the board (its own
components' scrape targets and its ports), the log source it hands to NODE's vector (compiler/logs.py), and the
rules over what the others published that only matter because INFRA serves them (DNS names). The fan-in itself
is read from the board by `model.read_fanin`.
"""

from __future__ import annotations

from ...bundle import HostBundle
from ...contrib import DnsName, DnsRecords, Listener, ScrapeTarget, TargetGroup, addr, labels_of, listeners
from ...errors import Report
from ...logs import contribute_logs
from ...model import Fleet, Host
from .model import COMPONENTS, MODULE, infra_components


def contribute_nginx_logs(host: Host, b: HostBundle) -> None:
    """nginx's access and error logs, shipped by the node's vector agent."""
    seq = int(host.params["infra_seq"])
    source = {"type": "file", "include": ["/var/log/nginx/*.log"]}
    logs = {"nginx": {"job": "infra", "ins": f"infra-{seq}", "cls": "infra", "source": source}}
    contribute_logs(b, host, MODULE, logs)


def publish(fleet: Fleet, members: list[Host]) -> None:
    """Every infra node's components as the `infra` scrape job (each one its own `cls`), and its ports."""
    for h in members:
        seq = h.params["infra_seq"]
        groups = tuple(
            TargetGroup((addr(h.ip, port),), labels_of(comp, f"{comp}-{seq}", h.ip))
            for comp, port in infra_components(h)
        )
        fleet.board.publish(MODULE, ScrapeTarget("infra", f"infra-{seq}", groups, h.ip), *infra_listeners(h))


def infra_listeners(host: Host) -> list[Listener]:
    p = host.params
    ports = []
    if p.get("nginx_enabled"):
        ports.append(("nginx_port", "nginx"))
        if str(p["nginx_sslmode"]) != "disable":
            ports.append(("nginx_ssl_port", "nginx ssl"))
        if p.get("nginx_exporter_enabled"):
            ports.append(("nginx_exporter_port", "nginx_exporter"))
    ports += [(f"{comp}_port", comp) for comp in COMPONENTS if p.get(f"{comp}_enabled")]
    if p.get("dns_enabled"):
        ports.append(("dns_port", "dnsmasq"))
    return listeners(host.ip, MODULE, p, ports)


def check_published(fleet: Fleet, report: Report) -> None:
    """The problems the publishers of DNS records found in their values (they matter because INFRA serves them),
    and one DNS name registered for two things: dnsmasq would answer with both addresses. The first registration
    is that of the host listed first in the inventory."""
    records = fleet.board.read(DnsRecords)
    report.problems.extend(dict.fromkeys(p for r in records for p in r.problems))
    order = {ip: i for i, ip in enumerate(fleet.hosts)}
    names: list[DnsName] = sorted((n for r in records for n in r.names), key=lambda n: order.get(n.host, len(order)))
    registered: dict[str, dict[str, str]] = {}  # DNS name -> {what registers it: inventory path}
    for n in names:
        registered.setdefault(n.name, {}).setdefault(n.owner, n.path)
    for name, sources in sorted(registered.items()):
        if len(sources) > 1:
            (first, _), (what, path) = list(sources.items())[:2]
            report.warning(
                path,
                f"DNS name {name} is registered for {what} and for {first}: dnsmasq would answer with both addresses",
            )
