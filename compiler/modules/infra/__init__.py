"""INFRA: the observability and admin nodes (group `infra`, identity `infra_seq`).

Every INFRA node runs nginx (the portal), VictoriaMetrics / VictoriaLogs / VictoriaTraces, vmalert,
Alertmanager, the blackbox exporter, Grafana, dnsmasq and serves NTP, plus one pg_exporter per remote
PostgreSQL instance of its `pg_exporters` (pgrds.py). Its bundle is a fan-in: besides
its own services it holds what every module published on the board for it (scrape targets, DNS records,
HAProxy admin pages, Grafana datasources: compiler/contrib.py), so that removing a host removes exactly its
contributions. `depends_on` therefore returns every host. This file only orchestrates; each service has its
own file, and `fanin.py` is INFRA's boundary with the board.
"""

from __future__ import annotations

from ...bundle import Directory, HostBundle
from ...contrib import module_alert_rules
from ...errors import Report
from ...model import Fleet, Host
from ...module import FleetModule
from ...shared import shared
from .alertmanager import render_alertmanager
from .blackbox import render_blackbox
from .checks import check_nodes, infra_members
from .dns import render_dns
from .fanin import check_published, contribute_nginx_logs, publish
from .grafana import render_grafana
from .model import MODULE, InfraModel, infra_model, read_fanin
from .nginx import render_nginx
from .ntp import render_ntp
from .pgrds import derive_remote, render_remote, review_remote
from .rules import alert_rules
from .victoria import render_targets, render_victoria, scrape_config


class InfraModule(FleetModule):
    name = MODULE
    phase = 20

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return "infra" in host.groups

    def derive(self, fleet: Fleet, report: Report) -> None:
        fleet.board.publish(self.name, *module_alert_rules(self.name))
        members = infra_members(fleet, report)
        model = fleet.derived["infra"] = InfraModel(fleet, members)
        check_nodes(members, report)
        publish(fleet, members)
        model.remote = derive_remote(fleet, members, report)

    def review(self, fleet: Fleet, report: Report) -> None:
        model = infra_model(fleet)
        if model.members:  # the fan-in is only read by infra nodes
            check_published(fleet, report)
            review_remote(fleet, model.remote, report)

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        # the fan-in: any host may publish targets, DNS records, admin pages or datasources
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
        shared(render_targets, host, b, model)  # alike on every infra node: rendered once (compiler/shared.py)
        render_remote(host, model.remote.get(host.ip, []), b)
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


__all__ = ["InfraModule", "infra_model", "read_fanin", "alert_rules", "scrape_config"]
