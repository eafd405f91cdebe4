"""The listening ports of PostgreSQL nodes and HAProxy service providers, and the rules that keep them apart.

Two listeners on one port fail only at start, on one node, long after the build; these checks find the clash
in the inventory instead. The rules here compare PGSQL's own ports; `pgsql_listeners` declares them all on the
board, where the core's rule (compiler/contrib.py) compares them with the ports of the other modules.
"""

from __future__ import annotations

from ...contrib import Listener
from ...errors import Report, join_path
from ...model import Fleet
from .exporters import exporter_ports
from .model import MODULE, PgsqlModel


def instance_ports(p) -> dict[int, str]:
    """Listeners of a PostgreSQL node besides the HAProxy services (for clash checks)."""
    ports = {p["pg_port"]: "postgres", p["patroni_port"]: "patroni"}
    if p.get("pgbouncer_enabled"):
        ports.setdefault(p["pgbouncer_port"], "pgbouncer")
    for key, port in exporter_ports(p).items():
        ports.setdefault(port, key)
    return ports


def check_exporter_ports(p, report: Report) -> None:
    """An exporter's port against the instance's other listeners (and the other exporters)."""
    taken = {p["pg_port"]: "postgres"}
    taken.setdefault(p["patroni_port"], "patroni")
    if p.get("pgbouncer_enabled"):
        taken.setdefault(p["pgbouncer_port"], "pgbouncer")
    for name, port in exporter_ports(p).items():
        if port in taken:
            report.error(p.source(f"{name}_port"), f"{name}_port {port} clashes with {taken[port]}")
        taken[port] = name


def check_listeners(fleet: Fleet, model: PgsqlModel, report: Report) -> None:
    """Service ports on each provider against its other listeners; an instance's own three among themselves."""
    for ip, clusters in model.provided_by.items():
        host = fleet.hosts[ip]
        if not host.params.get("haproxy_enabled"):
            names = ", ".join(c.name for c in clusters)
            report.warning(
                host.pp("haproxy_enabled"),
                f"haproxy is disabled on {ip}, so it will not serve the services of {names}",
            )
            continue
        inst = model.instance_of.get(ip)
        taken = instance_ports(host.params) if inst else {}
        for cluster in clusters:
            for svc in cluster.services:
                if svc.port in taken:
                    report.error(
                        join_path(svc.source, "port"),
                        f"port {svc.port} of service {svc.full_name} clashes with {taken[svc.port]} on {ip}",
                    )
                else:
                    taken[svc.port] = f"service {svc.full_name}"
        if inst:
            _check_instance_listeners(host.params, report)


def _check_instance_listeners(p, report: Report) -> None:
    seen: dict[int, str] = {}
    for key, label in (("pg_port", "postgres"), ("pgbouncer_port", "pgbouncer"), ("patroni_port", "patroni")):
        port = p.get(key)
        if port in seen:
            report.error(p.source(key), f"{key} {port} clashes with {seen[port]}")
        seen[port] = label


def pgsql_listeners(fleet: Fleet, model: PgsqlModel) -> list[Listener]:
    """Every instance's ports (PostgreSQL, Patroni, pgbouncer, exporters) and the HAProxy services each provider
    with haproxy enabled runs, where the inventory sets them."""
    found: list[Listener] = []
    for ip in model.instance_of:
        p = fleet.hosts[ip].params
        ports = {"pg_port": "postgres", "patroni_port": "patroni"}
        if p.get("pgbouncer_enabled"):
            ports["pgbouncer_port"] = "pgbouncer"
        ports.update({f"{name}_port": name for name in exporter_ports(p)})
        found += [Listener(ip, int(p[key]), label, MODULE, p.source(key), key) for key, label in ports.items()]
    for ip, clusters in model.provided_by.items():
        if fleet.hosts[ip].params.get("haproxy_enabled"):
            for svc in (svc for cluster in clusters for svc in cluster.services):
                where = join_path(svc.source, "port")
                found.append(Listener(ip, svc.port, f"haproxy service {svc.full_name}", MODULE, where))
    return found
