"""The node's metrics listeners: node_exporter (its options file and unit), and the rule that the ports
NODE opens on one host (node_exporter, HAProxy's admin and services, vector, keepalived_exporter) do not
clash, since they are set in different parameters that nothing else compares."""

from __future__ import annotations

from ...bundle import DAEMON_RELOAD, FileSpec, HostBundle, Port, Unit, restart
from ...errors import Report
from ...model import Host
from ...render import HEADER, env_quote, one_line, render
from ...shared import shared
from .identity import MODULE

NODE_EXPORTER_UNIT = "/etc/systemd/system/node_exporter.service"


def check_node_ports(host: Host, report: Report) -> None:
    """The listeners NODE adds (vector, keepalived_exporter) must not clash with the other node ports."""
    p = host.params
    taken: dict[int, str] = {}
    if p.get("node_exporter_enabled"):
        taken[p["node_exporter_port"]] = "node_exporter_port"
    if p.get("haproxy_enabled"):
        taken.setdefault(p["haproxy_exporter_port"], "haproxy_exporter_port")
        for svc in p.get("haproxy_services") or []:
            if isinstance(svc, dict) and isinstance(svc.get("port"), int):
                taken.setdefault(svc["port"], f"haproxy service {svc.get('name')}")
    for key, enabled in (("vector_port", "vector_enabled"), ("vip_exporter_port", "vip_enabled")):
        if not p.get(enabled):
            continue
        port = p.get(key)
        if port in taken:
            report.error(p.source(key), f"{key} {port} clashes with {taken[port]} on {host.ip}")
        else:
            taken[port] = key


def render_node_exporter(host: Host, b: HostBundle) -> None:
    p = host.params
    if not p.get("node_exporter_enabled"):
        return
    shared(_node_exporter_files, host, b)  # alike on every node: rendered once (compiler/shared.py)
    b.units.add(Unit("node_exporter.service", MODULE, f"http://{host.ip}:{p['node_exporter_port']}/metrics"))


def _node_exporter_files(host: Host, b: HostBundle) -> None:
    """The exporter's environment file, unit file, port and package: what does not name the host."""
    p = host.params
    plat = host.platform
    port = p["node_exporter_port"]
    env = f"{plat.sysconfig_dir}/node_exporter"
    options = f"--web.listen-address=:{port} {one_line(p.get('node_exporter_options') or '')}".strip()
    b.add(
        FileSpec(
            env,
            MODULE,
            HEADER + f"NODE_EXPORTER_OPTS={env_quote(options)}\n",
            "env",
            actions=[restart("node_exporter.service")],
        )
    )
    unit = render("node/node_exporter.service.j2", bin=plat.node_exporter_bin, env=env)
    b.add(
        FileSpec(
            NODE_EXPORTER_UNIT,
            MODULE,
            unit,
            "systemd",
            actions=[DAEMON_RELOAD, restart("node_exporter.service")],
        )
    )
    b.ports.add(Port(port, "node_exporter", MODULE))
    b.packages.add(plat.node_exporter_package)
    b.check("systemd", NODE_EXPORTER_UNIT)
