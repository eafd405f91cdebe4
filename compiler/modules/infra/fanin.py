"""INFRA's boundary with the other modules, all through the core: what INFRA publishes on the board (its own
components' scrape targets and its ports), the log sources it hands to NODE's vector (compiler/logs.py), and the
rules over what the others published that only matter because INFRA serves them (DNS names). The fan-in itself
is read from the board by `model.read_fanin`.

Labels are Pigsty's: components `cls` <component>, `ins` <component>-<infra_seq>, `ip`; nginx's logs `job` nginx,
`ins` nginx-<seq>, `cls` nginx (access) or nginx-error. Intentional difference: nginx's error log is the
distribution's /var/log/nginx/error.log (Pigsty moves it to /var/log/nginx-error.log), so the access-log source
leaves it out by name; Grafana's own log is not shipped (Pigsty has a collector for it but never installs it).
"""

from __future__ import annotations

from ...bundle import HostBundle
from ...contrib import DnsName, DnsRecords, Listener, ScrapeTarget, TargetGroup, addr, labels_of, listeners
from ...errors import Report
from ...logs import contribute_logs
from ...model import Fleet, Host
from ...render import template_text
from .model import COMPONENTS, MODULE, infra_components

NGINX_ERROR_LOG = "/var/log/nginx/error.log"  # templates/infra/nginx.conf.j2
NGINX_VRL, NGINX_ERROR_VRL = "infra/vrl/nginx.vrl", "infra/vrl/nginx_error.vrl"


def contribute_nginx_logs(host: Host, b: HostBundle) -> None:
    """nginx's access and error logs, shipped by the node's vector agent with Pigsty's labels: job nginx,
    ins nginx-<seq>, cls nginx (access logs, one per portal server) or nginx-error (Pigsty's error log is
    /var/log/nginx-error.log, sty's the distribution's /var/log/nginx/error.log)."""
    ins = f"nginx-{int(host.params['infra_seq'])}"
    watch = {"ignore_not_found": True, "glob_minimum_cooldown_ms": 10000}
    access = {"type": "file", "include": ["/var/log/nginx/*.log"], "exclude": [NGINX_ERROR_LOG], **watch}
    error = {"type": "file", "include": [NGINX_ERROR_LOG], **watch}
    logs = {
        "nginx": {"job": "nginx", "ins": ins, "cls": "nginx", "source": access, "remap": template_text(NGINX_VRL)},
        "nginx_error": {
            "job": "nginx",
            "ins": ins,
            "cls": "nginx-error",
            "source": error,
            "remap": template_text(NGINX_ERROR_VRL),
        },
    }
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
