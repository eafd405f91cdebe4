"""What PGSQL offers the other modules on the board (compiler/contrib.py), published at the end of `derive`:
per cluster, each instance's scrape targets (exporters and Patroni), the VIP's ping target, the DNS records
(`pg_dns_suffix`, `pg_dns_target`) with the problems of those values, the Grafana datasources; and every listener
(`ports.pgsql_listeners`).

Labels and names are Pigsty's, which its dashboards query: targets `cls`, `ins` (`<cls>-<seq>`), `ip`; the VIP
ping `job: pgsql-vip` with the member's labels and `vip`, once per member; datasources `<ins>.<datname>` for
`postgres` and every registered database of every member (pg_monitor's register_grafana). Intentional
differences from Pigsty: with `patroni_ssl_enabled`, Patroni is scraped in the `pgsql` job itself (a group with
`__scheme__: https`) instead of a separate `pgsql-patroni` job relabelled to `pgsql`, which yields the same
series; the VIP's ping targets are one file per cluster (Pigsty: one per member), with the same groups.
"""

from __future__ import annotations

from typing import Any

from ...contrib import (
    Datasource,
    DcsUser,
    DnsName,
    DnsRecords,
    Once,
    ScrapeTarget,
    TargetGroup,
    addr,
    is_hostname,
    is_ip,
    labels_of,
    vip_of,
)
from ...errors import Problem
from ...model import Fleet
from .model import MODULE, PgCluster, PgInstance, PgsqlModel
from .ports import pgsql_listeners


def publish(fleet: Fleet, model: PgsqlModel) -> None:
    board = fleet.board
    once = Once()
    for name in sorted(model.clusters):
        cluster = model.clusters[name]
        board.publish(MODULE, *(_instance_target(inst) for inst in cluster.instances))
        board.publish(MODULE, _dns(cluster, once))
        board.publish(MODULE, *_datasources(cluster))
        vip = _vip_target(cluster)
        if vip:
            board.publish(MODULE, vip)
        board.publish(MODULE, _dcs_user(cluster))
    board.publish(MODULE, *pgsql_listeners(fleet, model))


def _dcs_user(cluster: PgCluster) -> DcsUser:
    """Patroni's and vip-manager's etcd account: the cluster's scope (a Citus shard group shares one), read-write
    on `<pg_namespace>/<scope>/`, its password `pg_etcd_password` or, as Pigsty, the scope itself."""
    p = cluster.params()
    prefix = f"{str(p['pg_namespace']).rstrip('/')}/{cluster.scope}/"
    password = str(p.get("pg_etcd_password") or cluster.scope)
    hosts = tuple(i.host.ip for i in cluster.instances)
    return DcsUser(cluster.scope, prefix, f"{cluster.name}/pg_etcd_password", password, hosts)


def _vip_target(cluster: PgCluster) -> ScrapeTarget | None:
    """The VIP pinged once per member with the member's labels, the VIP and `job: pgsql-vip` (Pigsty's labels:
    each member registers the VIP it may hold)."""
    p = cluster.params()
    vip = vip_of(p.get("pg_vip_address")) if p.get("pg_vip_enabled") else None
    if not vip:
        return None
    groups = tuple(
        TargetGroup((vip,), labels_of(cluster.name, inst.name, inst.host.ip, vip=vip, job="pgsql-vip"))
        for inst in cluster.instances
    )
    return ScrapeTarget("ping", f"pgsql-{cluster.name}-vip", groups, cluster.name)


def _instance_target(inst: PgInstance) -> ScrapeTarget:
    """The exporters of one instance, and Patroni's /metrics: with them when it is plain HTTP on the same
    metrics path, else in a group of its own."""
    hp, ip = inst.host.params, inst.host.ip
    labels = labels_of(inst.cluster, inst.name, ip)
    exporters = []
    for key in ("pg_exporter", "pgbouncer_exporter", "pgbackrest_exporter"):
        if hp.get(f"{key}_enabled") and (key != "pgbouncer_exporter" or hp.get("pgbouncer_enabled", True)):
            exporters.append(addr(ip, hp[f"{key}_port"]))
    patroni = addr(ip, hp["patroni_port"])
    groups = []
    if hp.get("patroni_ssl_enabled"):
        groups = [TargetGroup((patroni,), {**labels, "__scheme__": "https", "__metrics_path__": "/metrics"})]
    elif exporters and str(hp.get("exporter_metrics_path") or "/metrics") == "/metrics":
        exporters.append(patroni)  # Patroni serves /metrics, like the exporters here
    else:
        groups = [TargetGroup((patroni,), {**labels, "__metrics_path__": "/metrics"})]
    if exporters:
        groups.insert(0, TargetGroup(tuple(exporters), labels))
    return ScrapeTarget("pgsql", inst.name, tuple(groups), ip)


def pg_dns_address(p: Any, primary: str | None) -> str | None:
    """Where the cluster's DNS name points (pg_dns_target): the VIP, the primary, an IP, or nowhere."""
    target = str(p.get("pg_dns_target") or "auto")
    vip = vip_of(p.get("pg_vip_address")) if p.get("pg_vip_enabled") else None
    if target == "auto":
        return vip or primary
    if target == "primary":
        return primary
    if target == "vip":
        return vip
    if target == "none":
        return None
    return target if is_ip(target) else None


def _dns(cluster: PgCluster, once: Once) -> DnsRecords:
    """`<ip> <instance><suffix>` per instance and `<target> <cluster><suffix>`, the names every member
    registers, and what is wrong with the DNS parameters (once per definition)."""
    p = cluster.params()
    suffix = str(p.get("pg_dns_suffix") or "")
    lines = [f"{inst.host.ip} {inst.name}{suffix}" for inst in cluster.instances]
    address = pg_dns_address(p, cluster.primary.host.ip if cluster.primary else None)
    if address:
        lines.append(f"{address} {cluster.name}{suffix}")
    names: list[DnsName] = []
    problems: list[Problem] = []
    for inst in cluster.instances:
        hp = inst.host.params
        own = str(hp.get("pg_dns_suffix") or "")
        names.append(DnsName(f"{inst.name}{own}", f"PostgreSQL instance {inst.name}", inst.host.path, inst.host.ip))
        if str(hp.get("pg_dns_target") or "auto") != "none":
            what = f"PostgreSQL cluster {cluster.name}"
            names.append(DnsName(f"{cluster.name}{own}", what, hp.source("pg_cluster"), inst.host.ip))
        problems += _dns_problems(inst, once)
    return DnsRecords(f"pgsql-{cluster.name}", tuple(lines), tuple(names), tuple(problems))


def _dns_problems(inst: PgInstance, once: Once) -> list[Problem]:
    p = inst.host.params
    out = []
    suffix = str(p.get("pg_dns_suffix") or "")
    bad = next((n for n in (f"{inst.name}{suffix}", f"{inst.cluster}{suffix}") if not is_hostname(n)), None)
    if bad and once(p, "pg_dns_suffix", "pg_cluster"):
        out.append(Problem(p.source("pg_dns_suffix"), f"the DNS name '{bad}' is not a valid host name"))
    target = str(p.get("pg_dns_target") or "auto")
    if not once(p, "pg_dns_target", "pg_vip_enabled"):
        return out
    if target not in ("auto", "primary", "vip", "none") and not is_ip(target):
        message = f"pg_dns_target '{target}' must be auto, primary, vip, none or an IP address"
        out.append(Problem(p.source("pg_dns_target"), message))
    elif target == "vip" and not p.get("pg_vip_enabled"):
        message = f"pg_dns_target is vip but cluster {inst.cluster} has no VIP (pg_vip_enabled is false)"
        out.append(Problem(p.source("pg_dns_target"), message))
    return out


def _datasources(cluster: PgCluster) -> list[Datasource]:
    """Pigsty's per-instance datasources: `<ins>.<datname>` at every member for `postgres` and each database
    (not `state: absent`, `register_datasource` not false), when the cluster is provisioned (`pg_provision`)."""
    out = []
    for inst in cluster.instances:
        p = inst.host.params
        if not p.get("pg_provision", True):
            continue
        names = ["postgres"]
        for db in p.get("pg_databases") or []:
            if not isinstance(db, dict) or not db.get("name") or db.get("register_datasource") is False:
                continue
            if db.get("state", "create") != "absent":
                names.append(str(db["name"]))
        version = int(p["pg_version"]) if str(p.get("pg_version", "")).isdigit() else 15
        for name in dict.fromkeys(names):
            out.append(
                Datasource(
                    kind="postgres",
                    cluster=cluster.name,
                    name=f"{inst.name}.{name}",
                    url=addr(inst.host.ip, p["pg_port"]),
                    database=name,
                    user=str(p["pg_monitor_username"]),
                    password_secret=f"{cluster.name}/pg_monitor_password",
                    password=p.get("pg_monitor_password"),
                    version=version,
                )
            )
    return out
