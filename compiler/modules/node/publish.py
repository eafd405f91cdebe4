"""What NODE offers the other modules on the board (compiler/contrib.py): every host's node-level scrape targets
(node_exporter, HAProxy's admin listener, vector) and ping target, its HAProxy admin page, one DNS name and ping
target per node cluster VIP, and the ports NODE binds on each host.
"""

from __future__ import annotations

from ...contrib import (
    DnsName,
    DnsRecords,
    HaproxyPage,
    Listener,
    Once,
    ScrapeTarget,
    TargetGroup,
    addr,
    is_hostname,
    labels_of,
    listeners,
    vip_of,
)
from ...errors import Problem, join_path
from ...model import Fleet, Host
from .identity import MODULE, ip_key, node_identity


def publish(fleet: Fleet) -> None:
    hosts = sorted(fleet.hosts.values(), key=lambda h: ip_key(h.ip))
    for host in hosts:
        _targets(fleet, host)
        fleet.board.publish(MODULE, *node_listeners(host))
    _vips(fleet, hosts)


def _targets(fleet: Fleet, host: Host) -> None:
    """A host's node-level exporters (node_exporter, haproxy, vector), its ping target and HAProxy page."""
    p, ip = host.params, host.ip
    ins, cls = host.derived_nodename or ip, node_identity(host)[1]
    labels = labels_of(cls, ins, ip)
    targets = []
    if p.get("node_exporter_enabled"):
        targets.append(addr(ip, p["node_exporter_port"]))
    if p.get("haproxy_enabled"):
        targets.append(addr(ip, p["haproxy_exporter_port"]))
        fleet.board.publish(MODULE, HaproxyPage(ins, ip, int(p["haproxy_exporter_port"])))
    if p.get("vector_enabled"):
        targets.append(addr(ip, p["vector_port"]))
    groups = (TargetGroup(tuple(targets), labels),) if targets else ()
    fleet.board.publish(
        MODULE,
        ScrapeTarget("node", ip, groups, ip),
        ScrapeTarget("ping", ip, (TargetGroup((ip,), labels),), ip),
    )


def node_listeners(host: Host) -> list[Listener]:
    """The ports NODE binds on the host (its rule among them is `check_node_ports`)."""
    p, ip = host.params, host.ip
    ports = []
    if p.get("node_exporter_enabled"):
        ports.append(("node_exporter_port", "node_exporter"))
    if p.get("haproxy_enabled"):
        ports.append(("haproxy_exporter_port", "haproxy admin"))
    if p.get("vector_enabled"):
        ports.append(("vector_port", "vector"))
    if p.get("vip_enabled"):
        ports.append(("vip_exporter_port", "keepalived_exporter"))
    found = listeners(ip, MODULE, p, ports)
    for i, svc in enumerate(p.get("haproxy_services") or [] if p.get("haproxy_enabled") else []):
        if isinstance(svc, dict) and isinstance(svc.get("port"), int):
            where = join_path(p.source("haproxy_services"), i, "port")
            found.append(Listener(ip, svc["port"], f"haproxy service {svc.get('name')}", MODULE, where))
    return found


def _vips(fleet: Fleet, hosts: list[Host]) -> None:
    """Per node cluster with a VIP: `<vip> <cluster><vip_dns_suffix>` and a ping target (from the cluster's
    lowest address holding a valid VIP), the name as every holder registers it, and the problems of the
    values (reported by the DNS servers: only they use them)."""
    found: dict[str, tuple[str, Host]] = {}
    holders: dict[str, list[Host]] = {}
    for host in hosts:
        p, cls = host.params, node_identity(host)[1]
        if p.get("vip_enabled") and p.get("vip_address") and vip_of(p["vip_address"]) is not None:
            holders.setdefault(cls, []).append(host)
            found.setdefault(cls, (vip_of(p["vip_address"]), host))
    names: dict[str, list[DnsName]] = {}
    problems: dict[str, list[Problem]] = {}
    once = Once()
    for host in fleet.hosts.values():  # inventory order: the order names are registered in
        p, cls = host.params, node_identity(host)[1]
        if not (p.get("vip_enabled") and p.get("vip_address")):
            continue
        name = f"{cls}{p.get('vip_dns_suffix') or ''}"
        names.setdefault(cls, []).append(
            DnsName(name, f"the VIP of node cluster {cls}", p.source("vip_address"), host.ip)
        )
        if once(p, "vip_address", "vip_dns_suffix"):
            problems.setdefault(cls, []).extend(_vip_problems(p, name))
    for cls in sorted(names):
        lines: tuple[str, ...] = ()
        if cls in found:
            vip, host = found[cls]
            lines = (f"{vip} {cls}{host.params.get('vip_dns_suffix') or ''}",)
            # as Pigsty: pinged once per node that may hold it, with that node's labels, the VIP and `job: node-vip`
            targets = tuple(
                TargetGroup((vip,), labels_of(cls, h.derived_nodename or h.ip, h.ip, vip=vip, job="node-vip"))
                for h in holders[cls]
            )
            fleet.board.publish(MODULE, ScrapeTarget("ping", f"node-{cls}-vip", targets, cls))
        records = DnsRecords(f"node-{cls}", lines, tuple(names[cls]), tuple(problems.get(cls, [])))
        fleet.board.publish(MODULE, records)


def _vip_problems(p, name: str) -> list[Problem]:
    out = []
    if vip_of(p["vip_address"]) is None:
        out.append(Problem(p.source("vip_address"), f"vip_address '{p['vip_address']}' is not an IP address"))
    if not is_hostname(name):
        out.append(Problem(p.source("vip_dns_suffix"), f"the VIP DNS name '{name}' is not a valid host name"))
    return out
