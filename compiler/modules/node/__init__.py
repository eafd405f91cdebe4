"""NODE: every host. Identity, /etc/hosts and resolver, time sync, kernel tuning, node_exporter,
HAProxy (its main config and admin listener; other modules add conf.d files), the vector log agent
(`/etc/vector/vector.yaml`, which other modules feed with their log sources) and the node cluster's
L2 VIP with keepalived.

One module per concern; this file holds the `NodeModule` that ties them together and re-exports the
names tests import (`node_identity`, the vector composer, and the core's log contract it consumes ...).
What NODE offers other modules (scrape targets, HAProxy pages, VIP DNS names, its ports) is published on
the board by `publish`; the log sources they hand to vector arrive through the core's `contribute_logs`."""

from __future__ import annotations

from ...bundle import CA_CERT_PATH, Directory, HostBundle, OsUser
from ...contrib import module_alert_rules
from ...errors import Report
from ...logs import VECTOR_CONFIG, LogSource, contribute_logs, log_sources
from ...model import Fleet, Host
from ...module import FleetModule
from ...shared import shared
from .chrony import render_chrony
from .exporters import check_node_ports, render_node_exporter
from .haproxy import check_haproxy_services, render_haproxy
from .hosts import HOSTS_FILE, compose_lines, render_etc_hosts, render_resolver
from .identity import MODULE, ip_key, node_identity
from .publish import publish
from .tuning import NODE_TUNE, render_sysctl
from .vector import (
    LOG_FIELD,
    VECTOR_UNIT,
    VectorSettings,
    check_log_endpoints,
    check_log_identity,
    compose_vector,
    log_endpoint_kind,
    log_receivers,
    render_vector,
    vrl_string,
)
from .vip import KEEPALIVED_CONF, VipGroup, derive_vip, render_vip, vip_auth_default, vip_interface

__all__ = [
    "HOSTS_FILE",
    "KEEPALIVED_CONF",
    "LOG_FIELD",
    "NODE_TUNE",
    "VECTOR_CONFIG",
    "VECTOR_UNIT",
    "LogSource",
    "NodeModule",
    "VectorSettings",
    "VipGroup",
    "compose_lines",
    "compose_vector",
    "contribute_logs",
    "ip_key",
    "log_endpoint_kind",
    "log_receivers",
    "log_sources",
    "node_identity",
    "vip_auth_default",
    "vip_interface",
    "vrl_string",
]


class NodeModule(FleetModule):
    name = MODULE
    phase = 10

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return True

    def derive(self, fleet: Fleet, report: Report) -> None:
        fleet.board.publish(self.name, *module_alert_rules(self.name))
        clusters: dict[str, list[Host]] = {}
        names: dict[str, Host] = {}
        for host in fleet.hosts.values():
            nodename, cluster = node_identity(host)
            host.derived_nodename = nodename
            clusters.setdefault(cluster, []).append(host)
            if nodename:
                if nodename in names:
                    report.error(
                        host.pp("nodename") if host.params.is_set("nodename") else host.path,
                        f"nodename '{nodename}' is also the name of {names[nodename].ip}",
                    )
                names[nodename] = host
            check_haproxy_services(host, report)
            check_node_ports(host, report)
            if host.params.get("vector_enabled"):
                check_log_identity(host, nodename, cluster, report)
        fleet.derived["node"] = clusters
        check_log_endpoints(fleet, report)
        fleet.derived["node_vip"] = derive_vip(fleet, clusters, report)
        publish(fleet)

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        p = host.params
        _, cluster = node_identity(host)
        deps: list[Host] = []
        if p.get("nodename_exchange"):
            deps += fleet.derived["node"].get(cluster, [])
        vip = fleet.derived.get("node_vip", {}).get(host.ip)
        if vip is not None:
            deps += vip.members
        if p.get("vector_enabled"):
            deps += log_receivers(host, fleet)[1]
        return list({h.ip: h for h in deps}.values())

    def render(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        p = host.params
        nodename, cluster = node_identity(host)
        b.info["node"] = {"nodename": nodename or host.ip, "cluster": cluster}
        b.trust.add(CA_CERT_PATH)  # as Pigsty: every node trusts the fleet CA (HAProxy's check-ssl, pgBackRest)
        b.check("references")  # every path the bundle names under a directory only sty fills is delivered
        render_etc_hosts(host, fleet, b)
        shared(render_resolver, host, b)  # alike on most nodes: rendered once (compiler/shared.py)
        shared(render_chrony, host, b)
        shared(render_sysctl, host, b)
        render_node_exporter(host, b)
        render_haproxy(host, b)
        render_vector(host, fleet, b)
        render_vip(host, fleet, b)
        if p.get("node_admin_enabled"):
            b.users.add(
                OsUser(p["node_admin_username"], p["node_admin_uid"], f"/home/{p['node_admin_username']}", False)
            )
        b.directories.add(Directory(p["node_data"], mode="0777"))
