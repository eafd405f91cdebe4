"""INFRA's boundary with the other modules: the fan-in it gathers from their models (scrape targets, DNS records,
HAProxy admin pages, PostgreSQL datasources) and the log source it hands to NODE. This is the only file of the
package that reaches into another module's code (NODE's identity and log hook, the ETCD and PGSQL models), so
replacing that with a contribution mechanism is a change to this file alone.
"""

from __future__ import annotations

from typing import Any

from ...bundle import HostBundle
from ...model import Fleet, Host
from ..etcd import etcd_cluster
from ..node import contribute_logs, node_identity
from ..pgsql import pgsql_model
from .model import (
    MODULE,
    FanIn,
    HaproxyPage,
    TargetFile,
    TargetGroup,
    addr,
    infra_components,
    is_ip,
    labels_of,
    vip_of,
)


def nodename_of(host: Host) -> str:
    return host.derived_nodename or node_identity(host)[0] or host.ip


def node_cluster_of(host: Host) -> str:
    return node_identity(host)[1]


def contribute_nginx_logs(host: Host, b: HostBundle) -> None:
    """nginx's access and error logs, shipped by the node's vector agent."""
    seq = int(host.params["infra_seq"])
    source = {"type": "file", "include": ["/var/log/nginx/*.log"]}
    logs = {"nginx": {"job": "infra", "ins": f"infra-{seq}", "cls": "infra", "source": source}}
    contribute_logs(b, host, MODULE, logs)


def build_fanin(fleet: Fleet, members: list[Host]) -> FanIn:
    """Every host's contribution to the INFRA nodes, from the models of every module (built after all
    `derive`s ran). Values that `check_fleet_values` rejects never get here."""
    fan = FanIn()
    hosts = [fleet.hosts[ip] for ip in sorted(fleet.hosts, key=_ip_key)]
    _nodes(hosts, fan)
    _etcd(fleet, fan)
    _pgsql(fleet, fan)
    for host in hosts:
        _redis(host, fan)
    _minio(hosts, fan)
    for h in members:
        _infra_node(h, fan)
    return fan


def _ip_key(ip: str) -> tuple[Any, ...]:
    """Hosts in numeric address order (names that are not IPv4 addresses last)."""
    try:
        return tuple(int(x) for x in ip.split("."))
    except ValueError:
        return (999, ip)


# -- NODE: exporters, ping, HAProxy admin page, node cluster VIPs ----------------------------------------------


def _nodes(hosts: list[Host], fan: FanIn) -> None:
    node_vips: dict[str, tuple[str, Host]] = {}
    for host in hosts:
        p = host.params
        ins, cls = nodename_of(host), node_cluster_of(host)
        _node(host, ins, cls, fan)
        if p.get("vip_enabled") and p.get("vip_address") and cls not in node_vips:
            vip = vip_of(p["vip_address"])
            if vip is not None:
                node_vips[cls] = (vip, host)
    for cls, (vip, host) in sorted(node_vips.items()):
        p = host.params
        name = f"{cls}{p.get('vip_dns_suffix') or ''}"
        fan.dns[f"node-{cls}"] = [f"{vip} {name}"]
        fan.add(TargetFile("ping", f"node-{cls}-vip", [TargetGroup([vip], labels_of(cls, f"{cls}-vip", vip))], cls))


def _node(host: Host, ins: str, cls: str, fan: FanIn) -> None:
    """A host's node-level exporters (node_exporter, haproxy, vector), its ping target and HAProxy page."""
    p, ip = host.params, host.ip
    targets = []
    if p.get("node_exporter_enabled"):
        targets.append(addr(ip, p["node_exporter_port"]))
    if p.get("haproxy_enabled"):
        targets.append(addr(ip, p["haproxy_exporter_port"]))
        fan.haproxy.append(HaproxyPage(ins, ip, int(p["haproxy_exporter_port"])))
    if p.get("vector_enabled"):
        targets.append(addr(ip, p["vector_port"]))
    fan.add(TargetFile("node", ip, [TargetGroup(targets, labels_of(cls, ins, ip))] if targets else [], ip))
    fan.add(TargetFile("ping", ip, [TargetGroup([ip], labels_of(cls, ins, ip))], ip))


# -- ETCD --------------------------------------------------------------------------------------------------------


def _etcd(fleet: Fleet, fan: FanIn) -> None:
    etcd = etcd_cluster(fleet)
    for m in etcd.members if etcd else []:
        g = TargetGroup([addr(m.host.ip, m.host.params["etcd_port"])], labels_of(etcd.name, m.name, m.host.ip))
        fan.add(TargetFile("etcd", m.name, [g], m.host.ip))


# -- PGSQL: exporters and Patroni, DNS names, VIP, Grafana datasources -------------------------------------------


def _pgsql(fleet: Fleet, fan: FanIn) -> None:
    model = pgsql_model(fleet) if "pgsql" in fleet.derived else None
    for name in sorted(model.clusters) if model else []:
        cluster = model.clusters[name]
        for inst in cluster.instances:
            _pg_instance(cluster, inst, fan)
        _pg_dns(cluster, fan)
        _pg_datasources(cluster, fan)
        p = cluster.params()
        if p.get("pg_vip_enabled"):
            vip = vip_of(p.get("pg_vip_address"))
            if vip:
                g = TargetGroup([vip], labels_of(cluster.name, f"{cluster.name}-vip", vip))
                fan.add(TargetFile("ping", f"pgsql-{cluster.name}-vip", [g], cluster.name))


def _pg_instance(cluster, inst, fan: FanIn) -> None:
    """The exporters of one instance, and Patroni's /metrics: with them when it is plain HTTP on the same
    metrics path, else in a group of its own."""
    hp, ip = inst.host.params, inst.host.ip
    labels = labels_of(cluster.name, inst.name, ip)
    exporters = []
    for key in ("pg_exporter", "pgbouncer_exporter", "pgbackrest_exporter"):
        if hp.get(f"{key}_enabled") and (key != "pgbouncer_exporter" or hp.get("pgbouncer_enabled", True)):
            exporters.append(addr(ip, hp[f"{key}_port"]))
    groups = [TargetGroup(exporters, labels)] if exporters else []
    patroni = addr(ip, hp["patroni_port"])
    if hp.get("patroni_ssl_enabled"):
        fan.patroni_tls = True
        groups.append(TargetGroup([patroni], {**labels, "__scheme__": "https", "__metrics_path__": "/metrics"}))
    elif groups and str(hp.get("exporter_metrics_path") or "/metrics") == "/metrics":
        groups[0].targets.append(patroni)  # Patroni serves /metrics, like the exporters here
    else:
        groups.append(TargetGroup([patroni], {**labels, "__metrics_path__": "/metrics"}))
    fan.add(TargetFile("pgsql", inst.name, groups, ip))


def pg_dns_address(p, primary: str | None) -> str | None:
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


def _pg_dns(cluster, fan: FanIn) -> None:
    """`<ip> <instance><suffix>` per instance and `<target> <cluster><suffix>` per cluster."""
    p = cluster.params()
    suffix = str(p.get("pg_dns_suffix") or "")
    lines = [f"{inst.host.ip} {inst.name}{suffix}" for inst in cluster.instances]
    address = pg_dns_address(p, cluster.primary.host.ip if cluster.primary else None)
    if address:
        lines.append(f"{address} {cluster.name}{suffix}")
    fan.dns[f"pgsql-{cluster.name}"] = lines


def _pg_datasources(cluster, fan: FanIn) -> None:
    """One Grafana datasource per database (register_datasource not false) at the cluster primary."""
    if cluster.primary is None:
        return
    p = cluster.params()
    ip = cluster.primary.host.ip
    for db in p.get("pg_databases") or []:
        if not isinstance(db, dict) or db.get("register_datasource") is False:
            continue
        if db.get("state", "create") == "absent":
            continue
        fan.pg_datasources.append(_pg_datasource(cluster.name, ip, db, p))


def _pg_datasource(cluster: str, ip: str, db: dict[str, Any], p) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "name": f"{cluster}.{db['name']}",
        "url": addr(ip, p["pg_port"]),
        "database": str(db["name"]),
        "user": str(p["pg_monitor_username"]),
        "password": p.get("pg_monitor_password"),
        "version": int(p["pg_version"]) if str(p.get("pg_version", "")).isdigit() else 15,
    }


# -- REDIS (identity read directly: redis_cluster / redis_node / redis_instances), MINIO -------------------------


def _redis(host: Host, fan: FanIn) -> None:
    p, ip = host.params, host.ip
    cls, node = p.raw("redis_cluster"), p.get("redis_node")
    if not cls or node is None or not p.get("redis_exporter_enabled"):
        return
    instances = p.get("redis_instances") or {}
    groups = []
    for port in sorted(instances, key=lambda x: int(x)) if isinstance(instances, dict) else []:
        labels = labels_of(p["redis_cluster"], f"{p['redis_cluster']}-{node}-{port}", ip)
        labels["__param_target"] = f"redis://{ip}:{int(port)}"
        groups.append(TargetGroup([addr(ip, p["redis_exporter_port"])], labels))
    fan.add(TargetFile("redis", f"{p['redis_cluster']}-{node}", groups, ip))


def _minio(hosts: list[Host], fan: FanIn) -> None:
    minio_dns: dict[str, list[str]] = {}
    for host in hosts:
        p, ip = host.params, host.ip
        cls, seq = p.raw("minio_cluster"), p.get("minio_seq")
        if not cls or seq is None:
            continue
        cls = str(p["minio_cluster"])
        ins = f"{cls}-{seq}"
        labels = labels_of(cls, ins, ip)
        if p.get("minio_https"):
            fan.minio_tls = True
            labels["__scheme__"] = "https"
        fan.add(TargetFile("minio", ins, [TargetGroup([addr(ip, p["minio_port"])], labels)], ip))
        minio_dns.setdefault(cls, []).append(f"{ip} {p.get('minio_node') or ins}")
    for cls, lines in sorted(minio_dns.items()):
        fan.dns[f"minio-{cls}"] = lines


# -- INFRA: every infra node's own components --------------------------------------------------------------------


def _infra_node(h: Host, fan: FanIn) -> None:
    seq = h.params["infra_seq"]
    groups = [
        TargetGroup([addr(h.ip, port)], labels_of(comp, f"{comp}-{seq}", h.ip)) for comp, port in infra_components(h)
    ]
    fan.add(TargetFile("infra", f"infra-{seq}", groups, h.ip))
