"""INFRA: the observability and admin nodes (group `infra`, identity `infra_seq`).

Every INFRA node runs nginx (the portal), VictoriaMetrics / VictoriaLogs / VictoriaTraces, vmalert,
Alertmanager, the blackbox exporter, Grafana, dnsmasq and serves NTP. Its bundle is a fan-in: besides
its own services it holds one contribution from every host of the inventory, derived from the fleet
model (scrape targets, DNS records, HAProxy admin pages, Grafana datasources), so that removing a
host removes exactly its contributions. `depends_on` therefore returns every host. This file only
orchestrates; each service has its own file, and `fanin.py` is the one place that reads other modules.
"""

from __future__ import annotations

from ...bundle import Directory, HostBundle
from ...errors import Report
from ...model import Fleet, Host
from ...module import FleetModule
from .alertmanager import render_alertmanager
from .blackbox import render_blackbox
from .checks import check_fleet_values, check_nodes, infra_members
from .dns import render_dns
from .fanin import build_fanin, contribute_nginx_logs
from .grafana import render_grafana
from .model import MODULE, InfraModel, infra_model
from .nginx import render_nginx
from .ntp import render_ntp
from .rules import alert_rules
from .victoria import render_targets, render_victoria, scrape_config


class InfraModule(FleetModule):
    name = MODULE

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return "infra" in host.groups

    def derive(self, fleet: Fleet, report: Report) -> None:
        members = infra_members(fleet, report)
        fleet.derived["infra"] = InfraModel(fleet, members, build_fanin)
        if members:  # the fan-in is only read by infra nodes
            check_fleet_values(fleet, report)
        check_nodes(members, report)

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        # the fan-in: every host contributes targets, DNS records, admin pages or datasources
        return list(fleet.hosts.values())

    def render(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        model = infra_model(fleet)
        p = host.params
        seq = int(p["infra_seq"])
        b.info["infra"] = {
            "seq": seq,
            "name": f"infra-{seq}",
            "members": {f"infra-{m.params['infra_seq']}": m.ip for m in model.members},
        }
        data = str(p["infra_data"]).rstrip("/") or "/"
        b.directories.update({Directory("/infra"), Directory(data)})
        if p.get("nginx_enabled"):
            render_nginx(host, model, b)
            contribute_nginx_logs(host, b)
        render_targets(host, model, b)
        render_victoria(host, model, data, b)
        if p.get("alertmanager_enabled"):
            render_alertmanager(host, model, data, b)
        if p.get("blackbox_enabled"):
            render_blackbox(host, b)
        if p.get("grafana_enabled"):
            render_grafana(host, model, b)
        if p.get("dns_enabled"):
            render_dns(host, model, b)
        render_ntp(host, b)


__all__ = ["InfraModule", "infra_model", "build_fanin", "alert_rules", "scrape_config"]
