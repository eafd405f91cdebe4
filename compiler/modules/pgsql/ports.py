"""The listening ports of PostgreSQL nodes and HAProxy service providers, and the rules that keep them apart.

Two listeners on one port fail only at start, on one node, long after the build; these checks find the clash
in the inventory instead. `instance_ports` and `node_ports` are also what the redis and minio modules compare
their own ports against, so every module sees one list of what a pgsql node already listens on.
"""

from __future__ import annotations

from ...errors import Report, join_path
from ...model import Fleet
from .exporters import exporter_ports
from .model import PgsqlModel


def instance_ports(p) -> dict[int, str]:
    """Listeners of a PostgreSQL node besides the HAProxy services (for clash checks)."""
    ports = {p["pg_port"]: "postgres", p["patroni_port"]: "patroni"}
    if p.get("pgbouncer_enabled"):
        ports.setdefault(p["pgbouncer_port"], "pgbouncer")
    for key, port in exporter_ports(p).items():
        ports.setdefault(port, key)
    return ports


def node_ports(p) -> dict[int, str]:
    ports: dict[int, str] = {}
    if p.get("node_exporter_enabled"):
        ports[p["node_exporter_port"]] = "node_exporter"
    if p.get("haproxy_enabled"):
        ports.setdefault(p["haproxy_exporter_port"], "haproxy admin")
    if p.get("vector_enabled"):
        ports.setdefault(p["vector_port"], "vector")
    if p.get("vip_enabled"):
        ports.setdefault(p["vip_exporter_port"], "keepalived_exporter")
    for svc in p.get("haproxy_services") or []:
        if isinstance(svc, dict) and isinstance(svc.get("port"), int):
            ports.setdefault(svc["port"], f"haproxy service {svc.get('name')}")
    return ports


def check_exporter_ports(p, report: Report) -> None:
    """An exporter's port against the node's and the instance's other listeners (and the other exporters)."""
    taken = {port: label for port, label in node_ports(p).items()}
    taken.setdefault(p["pg_port"], "postgres")
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
        taken: dict[int, str] = node_ports(host.params)
        inst = model.instance_of.get(ip)
        if inst:
            for port, label in instance_ports(host.params).items():
                taken.setdefault(port, label)
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
