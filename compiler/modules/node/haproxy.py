"""HAProxy on a node: its main config with the admin/stats listener, one conf.d file per entry of
haproxy_services, and the unit. Other modules (PGSQL services) add their own conf.d files, which is
why NODE owns the folder and the check that validates the whole of it."""

from __future__ import annotations

from ...bundle import DAEMON_RELOAD, Directory, FileSpec, HostBundle, Port, Unit, reload, restart
from ...errors import Report
from ...model import Host
from ...render import render
from .identity import MODULE

HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
HAPROXY_CONF_D = "/etc/haproxy/conf.d"
HAPROXY_UNIT = "/etc/systemd/system/haproxy.service"


def check_haproxy_services(host: Host, report: Report) -> None:
    """Service names become file names and ports become listeners: both must be unique on the host."""
    seen: dict[str, str] = {}
    for i, svc in enumerate(host.params.get("haproxy_services") or []):
        if not isinstance(svc, dict):
            continue
        name, port = svc.get("name"), svc.get("port")
        where = f"{host.params.source('haproxy_services')}[{i}]"
        if f"name:{name}" in seen:
            report.error(f"{where}.name", f"haproxy service '{name}' is defined twice")
        if f"port:{port}" in seen:
            report.error(f"{where}.port", f"port {port} is already used by haproxy service {seen[f'port:{port}']}")
        seen[f"name:{name}"] = seen[f"port:{port}"] = str(name)


def render_haproxy(host: Host, b: HostBundle) -> None:
    p = host.params
    if not p.get("haproxy_enabled"):
        return
    plat = host.platform
    password = None
    if p.get("haproxy_auth_enabled"):
        password = b.secret(f"{host.ip}/haproxy_admin_password", p.get("haproxy_admin_password"))
    cfg = render(
        "node/haproxy.cfg.j2",
        p=p,
        ip=host.ip,
        nodename=b.info["node"]["nodename"],
        admin_port=p["haproxy_exporter_port"],
        password=password,
    )
    b.add(FileSpec(HAPROXY_CFG, MODULE, cfg, "haproxy", actions=[reload("haproxy.service")]))
    for svc in p.get("haproxy_services") or []:
        path = f"{HAPROXY_CONF_D}/{svc['name']}.cfg"
        text = render("node/haproxy-service.cfg.j2", svc=svc)
        b.add(FileSpec(path, MODULE, text, "haproxy", actions=[reload("haproxy.service")]))
        b.ports.add(Port(int(svc["port"]), f"haproxy:{svc['name']}", MODULE))
    unit = render("node/haproxy.service.j2", bin=plat.haproxy_bin)
    b.add(FileSpec(HAPROXY_UNIT, MODULE, unit, "systemd", actions=[DAEMON_RELOAD, restart("haproxy.service")]))
    b.units.add(Unit("haproxy.service", MODULE, f"port:{p['haproxy_exporter_port']}"))
    b.ports.add(Port(p["haproxy_exporter_port"], "haproxy", MODULE))
    b.packages.add("haproxy")
    b.directories.add(Directory(HAPROXY_CONF_D))
    b.check("haproxy", HAPROXY_CFG, HAPROXY_CONF_D)
    b.check("systemd", HAPROXY_UNIT)
