"""INFRA: the observability and admin nodes (group `infra`, identity `infra_seq`).

Every INFRA node runs nginx (the portal), VictoriaMetrics / VictoriaLogs / VictoriaTraces, vmalert,
Alertmanager, the blackbox exporter, Grafana, dnsmasq and serves NTP. Its bundle is a fan-in: besides
its own services it holds one contribution from every host of the inventory, derived from the fleet
model (scrape targets, DNS records, HAProxy admin pages, Grafana datasources), so that removing a
host removes exactly its contributions. `depends_on` therefore returns every host.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..bundle import (
    DAEMON_RELOAD,
    Certificate,
    Directory,
    FileSpec,
    HostBundle,
    OsUser,
    Port,
    Unit,
    reload,
    restart,
)
from ..errors import Report, join_path
from ..model import Fleet, Host
from ..module import FleetModule
from ..render import HEADER, RenderError, one_line, render, to_yaml
from .etcd import etcd_cluster
from .node import contribute_logs, node_identity

# --------------------------------------------------------------------------------------------------
# constants and per-platform facts
# --------------------------------------------------------------------------------------------------

TARGETS_DIR = "/infra/targets"
RULES_DIR = "/infra/rules"
SCRAPE_CONFIG = "/infra/prometheus.yml"
ALERTMANAGER_CONF = "/etc/alertmanager/alertmanager.yml"
BLACKBOX_CONF = "/etc/blackbox.yml"
NGINX_CONF = "/etc/nginx/nginx.conf"
NGINX_CONFD = "/etc/nginx/conf.d"
NGINX_CERT_DIR = "/etc/nginx/conf.d/cert"
HTPASSWD = "/etc/nginx/.htpasswd"
DNSMASQ_CONF = "/etc/dnsmasq.conf"
GRAFANA_INI = "/etc/grafana/grafana.ini"
GRAFANA_DATASOURCES = "/etc/grafana/provisioning/datasources/sty.yml"
# The fleet CA certificate the scrapers trust for HTTPS targets (issued by the CA module).
CA_CERT = "/etc/pki/ca.crt"
ALERTMANAGER_CLUSTER_PORT = 9094  # Alertmanager's gossip port, used when several infra nodes run it


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")
_PORTAL_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ENDPOINT = re.compile(r"^(?P<host>[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$")
_PATH = re.compile(r"^/[A-Za-z0-9_./@%+=,~-]*$")
_USER = re.compile(r"^[A-Za-z0-9_.@-]+$")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_UID = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Daemon:
    """How one INFRA component runs on a platform."""

    unit: str  # systemd unit
    bin: str  # program
    env: str  # EnvironmentFile holding the options
    var: str  # the variable of `env` the unit passes to the program
    packages: tuple[str, ...]
    user: str
    own_unit: bool  # sty writes the unit; otherwise the package's unit reads `env`
    package_reloads: bool = True  # the package's unit has an ExecReload (else a drop-in adds one)


@dataclass(frozen=True)
class InfraPlatform:
    daemons: dict[str, Daemon]
    nginx_user: str
    nginx_packages: tuple[str, ...]
    grafana_packages: tuple[str, ...]
    grafana_user: str


_VICTORIA = "victoria"
INFRA_PLATFORMS: dict[str, InfraPlatform] = {
    # Debian 12: Debian's own packages (and their units) where Debian has them; Pigsty's repo for the rest
    "debian12": InfraPlatform(
        daemons={
            "vmetrics": Daemon(
                "victoria-metrics.service",
                "/usr/bin/victoria-metrics",
                "/etc/default/victoria-metrics",
                "ARGS",
                ("victoria-metrics",),
                "_victoria-metrics",
                False,
                package_reloads=False,
            ),
            "vmalert": Daemon(
                "vmalert.service",
                "/usr/bin/vmalert",
                "/etc/default/vmalert",
                "VMALERT_OPTS",
                ("victoria-metrics",),
                _VICTORIA,
                True,
            ),
            "vlogs": Daemon(
                "vlogs.service",
                "/usr/bin/victoria-logs",
                "/etc/default/vlogs",
                "VLOGS_OPTS",
                ("victoria-logs",),
                _VICTORIA,
                True,
            ),
            "vtraces": Daemon(
                "vtraces.service",
                "/usr/bin/victoria-traces",
                "/etc/default/vtraces",
                "VTRACES_OPTS",
                ("victoria-traces",),
                _VICTORIA,
                True,
            ),
            "alertmanager": Daemon(
                "prometheus-alertmanager.service",
                "/usr/bin/prometheus-alertmanager",
                "/etc/default/prometheus-alertmanager",
                "ARGS",
                ("prometheus-alertmanager",),
                "prometheus",
                False,
            ),
            "blackbox": Daemon(
                "prometheus-blackbox-exporter.service",
                "/usr/bin/prometheus-blackbox-exporter",
                "/etc/default/prometheus-blackbox-exporter",
                "ARGS",
                ("prometheus-blackbox-exporter",),
                "prometheus",
                False,
            ),
            "nginx_exporter": Daemon(
                "prometheus-nginx-exporter.service",
                "/usr/bin/prometheus-nginx-exporter",
                "/etc/default/prometheus-nginx-exporter",
                "ARGS",
                ("prometheus-nginx-exporter",),
                "prometheus",
                False,
            ),
            "dnsmasq": Daemon(
                "dnsmasq.service",
                "/usr/sbin/dnsmasq",
                "/etc/default/dnsmasq-sty",
                "DNSMASQ_OPTS",
                ("dnsmasq-base",),
                "root",
                True,
            ),
        },
        nginx_user="www-data",
        nginx_packages=("nginx",),
        grafana_packages=("grafana", "grafana-victoriametrics-ds", "grafana-victorialogs-ds"),
        grafana_user="grafana",
    ),
    # EL 9: Pigsty's repo packages, units written by sty
    "el9": InfraPlatform(
        daemons={
            "vmetrics": Daemon(
                "vmetrics.service",
                "/usr/bin/victoria-metrics",
                "/etc/sysconfig/vmetrics",
                "VMETRICS_OPTS",
                ("victoria-metrics",),
                _VICTORIA,
                True,
            ),
            "vmalert": Daemon(
                "vmalert.service",
                "/usr/bin/vmalert",
                "/etc/sysconfig/vmalert",
                "VMALERT_OPTS",
                ("vmutils",),
                _VICTORIA,
                True,
            ),
            "vlogs": Daemon(
                "vlogs.service",
                "/usr/bin/victoria-logs",
                "/etc/sysconfig/vlogs",
                "VLOGS_OPTS",
                ("victoria-logs",),
                _VICTORIA,
                True,
            ),
            "vtraces": Daemon(
                "vtraces.service",
                "/usr/bin/victoria-traces",
                "/etc/sysconfig/vtraces",
                "VTRACES_OPTS",
                ("victoria-traces",),
                _VICTORIA,
                True,
            ),
            "alertmanager": Daemon(
                "alertmanager.service",
                "/usr/bin/alertmanager",
                "/etc/sysconfig/alertmanager",
                "ALERTMANAGER_OPTS",
                ("alertmanager",),
                "prometheus",
                True,
            ),
            "blackbox": Daemon(
                "blackbox_exporter.service",
                "/usr/bin/blackbox_exporter",
                "/etc/sysconfig/blackbox_exporter",
                "BLACKBOX_OPTS",
                ("blackbox_exporter",),
                "prometheus",
                True,
            ),
            "nginx_exporter": Daemon(
                "nginx_exporter.service",
                "/usr/bin/nginx_exporter",
                "/etc/sysconfig/nginx_exporter",
                "NGINX_EXPORTER_OPTS",
                ("nginx_exporter",),
                "prometheus",
                True,
            ),
            "dnsmasq": Daemon(
                "dnsmasq.service",
                "/usr/sbin/dnsmasq",
                "/etc/sysconfig/dnsmasq-sty",
                "DNSMASQ_OPTS",
                ("dnsmasq",),
                "root",
                True,
            ),
        },
        nginx_user="nginx",
        nginx_packages=("nginx",),
        grafana_packages=("grafana", "grafana-victoriametrics-ds", "grafana-victorialogs-ds"),
        grafana_user="grafana",
    ),
}

DESCRIPTIONS = {
    "vmetrics": ("VictoriaMetrics: metrics database and scraper", "https://docs.victoriametrics.com/"),
    "vmalert": ("vmalert: alerting and recording rules", "https://docs.victoriametrics.com/vmalert/"),
    "vlogs": ("VictoriaLogs: log database", "https://docs.victoriametrics.com/victorialogs/"),
    "vtraces": ("VictoriaTraces: trace database", "https://docs.victoriametrics.com/victoriatraces/"),
    "alertmanager": ("Alertmanager: alert routing", "https://prometheus.io/docs/alerting/latest/alertmanager/"),
    "blackbox": ("blackbox_exporter: ICMP, TCP and HTTP probes", "https://github.com/prometheus/blackbox_exporter"),
    "nginx_exporter": (
        "nginx exporter: nginx stub_status metrics",
        "https://github.com/nginx/nginx-prometheus-exporter",
    ),
    "dnsmasq": ("dnsmasq: DNS records of the fleet", "https://thekelleys.org.uk/dnsmasq/doc.html"),
}


def infra_platform(host: Host) -> InfraPlatform:
    return (
        INFRA_PLATFORMS.get(host.platform.name)
        or INFRA_PLATFORMS["el9" if host.platform.family == "rpm" else "debian12"]
    )


# --------------------------------------------------------------------------------------------------
# the fan-in model
# --------------------------------------------------------------------------------------------------


@dataclass
class TargetGroup:
    targets: list[str]
    labels: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"labels": dict(sorted(self.labels.items())), "targets": list(self.targets)}


@dataclass
class TargetFile:
    """One file_sd file `/infra/targets/<job>/<name>.yml`, contributed by `source` (a host or cluster)."""

    job: str
    name: str
    groups: list[TargetGroup]
    source: str

    @property
    def path(self) -> str:
        return f"{TARGETS_DIR}/{self.job}/{self.name}.yml"

    @cached_property
    def text(self) -> str:  # rendered once, shared by every infra node
        return to_yaml([g.as_dict() for g in self.groups], HEADER)


@dataclass
class HaproxyPage:
    nodename: str
    ip: str
    port: int


@dataclass
class FanIn:
    """What every INFRA node collects from the whole fleet (identical on every INFRA node)."""

    targets: dict[str, TargetFile] = field(default_factory=dict)  # path -> file
    dns: dict[str, list[str]] = field(default_factory=dict)  # record file name -> "ip name" lines
    haproxy: list[HaproxyPage] = field(default_factory=list)
    pg_datasources: list[dict[str, Any]] = field(default_factory=list)
    patroni_tls: bool = False  # some Patroni REST API is HTTPS
    minio_tls: bool = False  # some MinIO serves HTTPS

    def add(self, tf: TargetFile) -> None:
        if tf.groups:
            self.targets[tf.path] = tf

    def jobs(self) -> set[str]:
        return {t.job for t in self.targets.values()}


class InfraModel:
    """The infra nodes (by infra_seq) and the fan-in, built on first use: the models it reads (PGSQL,
    ETCD ...) are derived after INFRA's own `derive`."""

    def __init__(self, fleet: Fleet, members: list[Host]):
        self.fleet = fleet
        self.members = members
        self._fanin: FanIn | None = None

    @property
    def fanin(self) -> FanIn:
        if self._fanin is None:
            self._fanin = build_fanin(self.fleet, self.members)
        return self._fanin


def infra_model(fleet: Fleet) -> InfraModel:
    return fleet.derived["infra"]


def _addr(ip: str, port: Any) -> str:
    return f"{ip}:{int(port)}"


def _labels(cls: str, ins: str, ip: str, **extra: str) -> dict[str, str]:
    return {"cls": str(cls), "ins": str(ins), "ip": str(ip), **extra}


def vip_of(cidr: Any) -> str | None:
    try:
        return str(ipaddress.ip_interface(str(cidr)).ip)
    except ValueError:
        return None


def is_ip(text: Any) -> bool:
    try:
        ipaddress.ip_address(str(text))
        return True
    except ValueError:
        return False


def duration_seconds(text: str) -> float:
    return sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))


def nodename_of(host: Host) -> str:
    return host.derived_nodename or node_identity(host)[0] or host.ip


def node_cluster_of(host: Host) -> str:
    return node_identity(host)[1]


def build_fanin(fleet: Fleet, members: list[Host]) -> FanIn:
    """Every host's contribution to the INFRA nodes, from the models of every module (built after all
    `derive`s ran). Values that `check_fleet_values` rejects never get here."""
    from .pgsql import pgsql_model

    fan = FanIn()
    ips = sorted(fleet.hosts, key=_ip_key)
    # -- NODE: exporters, ping, HAProxy admin page, node cluster VIPs ---------------------------------
    node_vips: dict[str, tuple[str, Host]] = {}
    for ip in ips:
        host = fleet.hosts[ip]
        p = host.params
        ins, cls = nodename_of(host), node_cluster_of(host)
        targets = []
        if p.get("node_exporter_enabled"):
            targets.append(_addr(ip, p["node_exporter_port"]))
        if p.get("haproxy_enabled"):
            targets.append(_addr(ip, p["haproxy_exporter_port"]))
            fan.haproxy.append(HaproxyPage(ins, ip, int(p["haproxy_exporter_port"])))
        if p.get("vector_enabled"):
            targets.append(_addr(ip, p["vector_port"]))
        fan.add(TargetFile("node", ip, [TargetGroup(targets, _labels(cls, ins, ip))] if targets else [], ip))
        fan.add(TargetFile("ping", ip, [TargetGroup([ip], _labels(cls, ins, ip))], ip))
        if p.get("vip_enabled") and p.get("vip_address") and cls not in node_vips:
            vip = vip_of(p["vip_address"])
            if vip is not None:
                node_vips[cls] = (vip, host)
    for cls, (vip, host) in sorted(node_vips.items()):
        p = host.params
        name = f"{cls}{p.get('vip_dns_suffix') or ''}"
        fan.dns[f"node-{cls}"] = [f"{vip} {name}"]
        fan.add(TargetFile("ping", f"node-{cls}-vip", [TargetGroup([vip], _labels(cls, f"{cls}-vip", vip))], cls))
    # -- ETCD ------------------------------------------------------------------------------------------
    etcd = etcd_cluster(fleet)
    for m in etcd.members if etcd else []:
        g = TargetGroup([_addr(m.host.ip, m.host.params["etcd_port"])], _labels(etcd.name, m.name, m.host.ip))
        fan.add(TargetFile("etcd", m.name, [g], m.host.ip))
    # -- PGSQL -----------------------------------------------------------------------------------------
    model = pgsql_model(fleet) if "pgsql" in fleet.derived else None
    for name in sorted(model.clusters) if model else []:
        cluster = model.clusters[name]
        for inst in cluster.instances:
            hp, ip = inst.host.params, inst.host.ip
            labels = _labels(cluster.name, inst.name, ip)
            exporters = []
            for key in ("pg_exporter", "pgbouncer_exporter", "pgbackrest_exporter"):
                if hp.get(f"{key}_enabled") and (key != "pgbouncer_exporter" or hp.get("pgbouncer_enabled", True)):
                    exporters.append(_addr(ip, hp[f"{key}_port"]))
            groups = [TargetGroup(exporters, labels)] if exporters else []
            patroni = _addr(ip, hp["patroni_port"])
            if hp.get("patroni_ssl_enabled"):
                fan.patroni_tls = True
                groups.append(TargetGroup([patroni], {**labels, "__scheme__": "https", "__metrics_path__": "/metrics"}))
            elif groups and str(hp.get("exporter_metrics_path") or "/metrics") == "/metrics":
                groups[0].targets.append(patroni)  # Patroni serves /metrics, like the exporters here
            else:
                groups.append(TargetGroup([patroni], {**labels, "__metrics_path__": "/metrics"}))
            fan.add(TargetFile("pgsql", inst.name, groups, ip))
        _pg_dns(cluster, fan)
        _pg_datasources(cluster, fan)
        p = cluster.params()
        if p.get("pg_vip_enabled"):
            vip = vip_of(p.get("pg_vip_address"))
            if vip:
                g = TargetGroup([vip], _labels(cluster.name, f"{cluster.name}-vip", vip))
                fan.add(TargetFile("ping", f"pgsql-{cluster.name}-vip", [g], cluster.name))
    # -- REDIS (identity read directly: redis_cluster / redis_node / redis_instances) -------------------
    for ip in ips:
        host = fleet.hosts[ip]
        p = host.params
        cls, node = p.raw("redis_cluster"), p.get("redis_node")
        if not cls or node is None or not p.get("redis_exporter_enabled"):
            continue
        instances = p.get("redis_instances") or {}
        groups = []
        for port in sorted(instances, key=lambda x: int(x)) if isinstance(instances, dict) else []:
            labels = _labels(p["redis_cluster"], f"{p['redis_cluster']}-{node}-{port}", ip)
            labels["__param_target"] = f"redis://{ip}:{int(port)}"
            groups.append(TargetGroup([_addr(ip, p["redis_exporter_port"])], labels))
        fan.add(TargetFile("redis", f"{p['redis_cluster']}-{node}", groups, ip))
    # -- MINIO (minio_cluster / minio_seq) ----------------------------------------------------------------
    minio_dns: dict[str, list[str]] = {}
    for ip in ips:
        host = fleet.hosts[ip]
        p = host.params
        cls, seq = p.raw("minio_cluster"), p.get("minio_seq")
        if not cls or seq is None:
            continue
        cls = str(p["minio_cluster"])
        ins = f"{cls}-{seq}"
        labels = _labels(cls, ins, ip)
        if p.get("minio_https"):
            fan.minio_tls = True
            labels["__scheme__"] = "https"
        fan.add(TargetFile("minio", ins, [TargetGroup([_addr(ip, p["minio_port"])], labels)], ip))
        minio_dns.setdefault(cls, []).append(f"{ip} {p.get('minio_node') or ins}")
    for cls, lines in sorted(minio_dns.items()):
        fan.dns[f"minio-{cls}"] = lines
    # -- INFRA: every infra node's own components ---------------------------------------------------------
    for h in members:
        seq = h.params["infra_seq"]
        groups = [
            TargetGroup([_addr(h.ip, port)], _labels(comp, f"{comp}-{seq}", h.ip)) for comp, port in infra_components(h)
        ]
        fan.add(TargetFile("infra", f"infra-{seq}", groups, h.ip))
    return fan


def infra_components(host: Host) -> list[tuple[str, int]]:
    """(component, port) of the INFRA components enabled on an infra node, scraped by every vmetrics."""
    p = host.params
    out = []
    if p.get("nginx_enabled") and p.get("nginx_exporter_enabled"):
        out.append(("nginx", int(p["nginx_exporter_port"])))
    for comp in ("vmetrics", "vlogs", "vtraces", "vmalert", "alertmanager", "blackbox", "grafana"):
        if p.get(f"{comp}_enabled"):
            out.append((comp, int(p[f"{comp}_port"])))
    return out


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


def check_fleet_values(fleet: Fleet, report: Report) -> None:
    """Rules on the values other modules' hosts contribute to the INFRA nodes (DNS names, targets)."""
    checked: set[tuple[str, ...]] = set()

    def once(p, *keys: str) -> bool:
        key = tuple(p.source(k) for k in keys) + keys
        if key in checked:
            return False
        checked.add(key)
        return True

    dns_names: dict[str, dict[str, str]] = {}  # DNS name -> {what registers it: inventory path}

    def register(name: str, what: str, path: str) -> None:
        dns_names.setdefault(name, {}).setdefault(what, path)

    for host in fleet.hosts.values():
        p = host.params
        if p.get("vip_enabled") and p.get("vip_address"):
            cls = node_cluster_of(host)
            register(f"{cls}{p.get('vip_dns_suffix') or ''}", f"the VIP of node cluster {cls}", p.source("vip_address"))
        if p.raw("pg_cluster") and p.get("pg_seq") is not None:
            suffix, cls = str(p.get("pg_dns_suffix") or ""), str(p["pg_cluster"])
            register(f"{cls}-{p['pg_seq']}{suffix}", f"PostgreSQL instance {cls}-{p['pg_seq']}", host.path)
            if str(p.get("pg_dns_target") or "auto") != "none":
                register(f"{cls}{suffix}", f"PostgreSQL cluster {cls}", p.source("pg_cluster"))
        if p.raw("minio_cluster") and p.get("minio_seq") is not None:
            register(str(p.get("minio_node")), f"MinIO node {p['minio_cluster']}-{p['minio_seq']}", host.path)
        if p.get("vip_enabled") and p.get("vip_address") and once(p, "vip_address", "vip_dns_suffix"):
            if vip_of(p["vip_address"]) is None:
                report.error(p.source("vip_address"), f"vip_address '{p['vip_address']}' is not an IP address")
            name = f"{node_cluster_of(host)}{p.get('vip_dns_suffix') or ''}"
            if not _HOSTNAME.match(name):
                report.error(p.source("vip_dns_suffix"), f"the VIP DNS name '{name}' is not a valid host name")
        if p.raw("pg_cluster") and p.get("pg_seq") is not None:
            suffix = str(p.get("pg_dns_suffix") or "")
            names = [f"{p['pg_cluster']}-{p['pg_seq']}{suffix}", f"{p['pg_cluster']}{suffix}"]
            bad = next((n for n in names if not _HOSTNAME.match(n)), None)
            if bad and once(p, "pg_dns_suffix", "pg_cluster"):
                report.error(p.source("pg_dns_suffix"), f"the DNS name '{bad}' is not a valid host name")
            target = str(p.get("pg_dns_target") or "auto")
            if once(p, "pg_dns_target", "pg_vip_enabled"):
                if target not in ("auto", "primary", "vip", "none") and not is_ip(target):
                    report.error(
                        p.source("pg_dns_target"),
                        f"pg_dns_target '{target}' must be auto, primary, vip, none or an IP address",
                    )
                elif target == "vip" and not p.get("pg_vip_enabled"):
                    report.error(
                        p.source("pg_dns_target"),
                        f"pg_dns_target is vip but cluster {p['pg_cluster']} has no VIP (pg_vip_enabled is false)",
                    )
        if p.raw("minio_cluster") and p.get("minio_seq") is not None and once(p, "minio_node"):
            name = str(p.get("minio_node"))
            if not _HOSTNAME.match(name):
                report.error(p.source("minio_node"), f"the MinIO node name '{name}' is not a valid host name")
    for name, sources in sorted(dns_names.items()):
        if len(sources) > 1:
            (first, _), (what, path) = list(sources.items())[:2]
            report.warning(
                path,
                f"DNS name {name} is registered for {what} and for {first}: dnsmasq would answer with both addresses",
            )


def _uid(name: str) -> str:
    uid = _UID.sub("-", name)
    if len(uid) > 40:
        uid = uid[:31] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return uid


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
        name = f"{cluster.name}.{db['name']}"
        fan.pg_datasources.append(
            {
                "cluster": cluster.name,
                "name": name,
                "url": _addr(ip, p["pg_port"]),
                "database": str(db["name"]),
                "user": str(p["pg_monitor_username"]),
                "password": p.get("pg_monitor_password"),
                "version": int(p["pg_version"]) if str(p.get("pg_version", "")).isdigit() else 15,
            }
        )


def _ip_key(ip: str):
    try:
        return tuple(int(x) for x in ip.split("."))
    except ValueError:
        return (999, ip)


# --------------------------------------------------------------------------------------------------
# portal entries (infra_portal)
# --------------------------------------------------------------------------------------------------


@dataclass
class Portal:
    key: str
    kind: str  # home | endpoint | path
    domain: str
    domains: list[str]
    spec: dict[str, Any]

    @property
    def names(self) -> list[str]:
        return [self.domain, *self.domains]


def portal_entries(p, report: Report | None = None) -> list[Portal]:
    """The `infra_portal` entries nginx serves (those with a domain), validated."""

    def err(path: str, message: str) -> None:
        if report is not None:
            report.error(path, message)

    out: list[Portal] = []
    where = p.source("infra_portal")
    seen: dict[str, str] = {}
    for key, spec in sorted((p.get("infra_portal") or {}).items()):
        at = join_path(where, key)
        if not isinstance(spec, dict):
            err(at, "a portal entry must be a mapping")
            continue
        domain = spec.get("domain")
        if not domain:
            continue  # Pigsty: only entries with a domain get an nginx server
        if not _PORTAL_KEY.match(str(key)):
            err(at, f"portal name '{key}' may only contain letters, digits and _.-")
            continue
        domains = spec.get("domains") or []
        bad = [d for d in [domain, *domains] if not isinstance(d, str) or not _DOMAIN.match(d)]
        if bad:
            err(join_path(at, "domain" if bad[0] == domain else "domains"), f"'{bad[0]}' is not a valid domain name")
            continue
        if "conf" in spec:
            err(join_path(at, "conf"), "custom nginx templates (conf) are not supported: use endpoint, path or config")
            continue
        if key == "home":
            kind = "home"
        elif spec.get("path"):
            kind = "path"
        elif spec.get("endpoint"):
            kind = "endpoint"
        else:
            err(at, f"portal entry '{key}' has a domain but neither endpoint nor path")
            continue
        if kind == "endpoint":
            m = _ENDPOINT.match(str(spec["endpoint"]))
            if not m or not 0 < int(m.group("port")) < 65536:
                err(join_path(at, "endpoint"), f"endpoint '{spec['endpoint']}' must be host:port")
                continue
        for sub in ("path", "cert", "key"):
            if sub in spec and not _PATH.match(str(spec[sub])):
                err(join_path(at, sub), f"{sub} '{spec[sub]}' must be an absolute path without spaces or quotes")
                break
        else:
            if "log" in spec and not re.match(r"^[A-Za-z0-9_.-]+$", str(spec["log"])):
                err(join_path(at, "log"), f"log '{spec['log']}' must be a file name")
                continue
            if "certbot" in spec and spec["certbot"] and not _DOMAIN.match(str(spec["certbot"])):
                err(join_path(at, "certbot"), f"certbot '{spec['certbot']}' must be a certificate (domain) name")
                continue
            config = spec.get("config") or ""
            if config and not _balanced(str(config)):
                err(join_path(at, "config"), "config must be nginx directives with balanced braces")
                continue
            clash = next((n for n in [domain, *domains] if n in seen), None)
            if clash:
                err(join_path(at, "domain"), f"domain {clash} is already served by portal entry {seen[clash]}")
                continue
            for n in [domain, *domains]:
                seen[n] = key
            out.append(Portal(str(key), kind, str(domain), [str(d) for d in domains], spec))
    return out


def _balanced(text: str) -> bool:
    depth = 0
    for c in re.sub(r"(\"[^\"]*\"|'[^']*'|#[^\n]*)", "", text):
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return False
    return depth == 0


# --------------------------------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------------------------------


class InfraModule(FleetModule):
    name = "infra"

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return "infra" in host.groups

    # -- model and rules ------------------------------------------------------------------------
    def derive(self, fleet: Fleet, report: Report) -> None:
        seen: dict[int, Host] = {}
        members: list[tuple[int, Host]] = []
        for host in fleet.hosts.values():
            if "infra" not in host.modules:
                continue
            seq = host.params.get("infra_seq")
            if seq is None:
                report.error(f"{host.path}.infra_seq", "infra nodes need infra_seq, a unique non-negative integer")
                continue
            if seq in seen:
                report.error(host.pp("infra_seq"), f"infra_seq {seq} is already used by {seen[seq].ip}")
                continue
            seen[seq] = host
            members.append((seq, host))
        ordered = [h for _, h in sorted(members, key=lambda m: m[0])]
        fleet.derived["infra"] = InfraModel(fleet, ordered)
        if ordered:  # the fan-in is only read by infra nodes
            check_fleet_values(fleet, report)
        checked: set[tuple[str, ...]] = set()
        for host in ordered:
            key = tuple(host.params.source(k) for k in CHECKED_PARAMS)
            if key not in checked:  # a definition shared by many infra nodes is checked once
                checked.add(key)
                self._check_node(host, ordered, report)

    def _check_node(self, host: Host, members: list[Host], report: Report) -> None:
        p = host.params
        portals = portal_entries(p, report)
        users = p.get("nginx_users") or {}
        for name in users:
            if not _USER.match(str(name)):
                report.error(join_path(p.source("nginx_users"), name), f"nginx user name '{name}' may not contain ':'")
        if any(x.spec.get("auth") for x in portals) and not users:
            report.error(p.source("infra_portal"), "a portal entry asks for auth but nginx_users is empty")
        for i, rec in enumerate(p.get("dns_records") or []):
            problem = record_problem(rec)
            if problem:
                report.error(join_path(p.source("dns_records"), i), problem)
        if not _PATH.match(str(p.get("dns_hosts_dir") or "")):
            report.error(p.source("dns_hosts_dir"), "dns_hosts_dir must be an absolute directory path")
        for key in ("vmetrics_scrape_interval", "vmetrics_scrape_timeout"):
            if not _DURATION.match(str(p.get(key))):
                report.error(p.source(key), f"{key} '{p.get(key)}' is not a duration such as 10s or 1m30s")
                return
        if duration_seconds(str(p["vmetrics_scrape_timeout"])) > duration_seconds(str(p["vmetrics_scrape_interval"])):
            report.error(
                p.source("vmetrics_scrape_timeout"),
                f"vmetrics_scrape_timeout {p['vmetrics_scrape_timeout']} is longer than "
                f"vmetrics_scrape_interval {p['vmetrics_scrape_interval']}",
            )
        if p.get("vmalert_enabled"):
            if not any(m.params.get("vmetrics_enabled") for m in members):
                report.error(p.source("vmetrics_enabled"), "vmalert needs VictoriaMetrics on an infra node")
            if not any(m.params.get("alertmanager_enabled") for m in members):
                report.error(p.source("alertmanager_enabled"), "vmalert needs Alertmanager on an infra node")
        if p.get("nginx_sslmode") not in ("disable", "enable", "enforce"):
            report.error(p.source("nginx_sslmode"), "nginx_sslmode must be disable, enable or enforce")

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        # the fan-in: every host contributes targets, DNS records, admin pages or datasources
        return list(fleet.hosts.values())

    # -- rendering ------------------------------------------------------------------------------
    def render(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        model = infra_model(fleet)
        p = host.params
        seq = int(p["infra_seq"])
        b.info["infra"] = {
            "seq": seq,
            "name": f"infra-{seq}",
            "members": {f"infra-{m.params['infra_seq']}": m.ip for m in model.members},
        }
        plat = infra_platform(host)
        data = str(p["infra_data"]).rstrip("/") or "/"
        b.directories.update({Directory("/infra"), Directory(data)})
        if p.get("nginx_enabled"):
            self._nginx(host, model, plat, b)
            logs = {
                "nginx": {
                    "job": "infra",
                    "ins": f"infra-{seq}",
                    "cls": "infra",
                    "source": {"type": "file", "include": ["/var/log/nginx/*.log"]},
                }
            }
            contribute_logs(b, host, self.name, logs)
        self._targets(host, model, b)
        self._victoria(host, model, plat, data, b)
        if p.get("alertmanager_enabled"):
            self._alertmanager(host, model, plat, data, b)
        if p.get("blackbox_enabled"):
            self._blackbox(host, plat, b)
        if p.get("grafana_enabled"):
            self._grafana(host, model, plat, b)
        if p.get("dns_enabled"):
            self._dns(host, model, plat, b)
        self._chrony(host, b)

    # -- helpers --------------------------------------------------------------------------------
    def _daemon(
        self,
        host: Host,
        plat: InfraPlatform,
        comp: str,
        flags: list[str],
        extra: str,
        b: HostBundle,
        *,
        port: int | None,
        health: str,
        reloadable: bool = True,
        caps: bool = False,
    ) -> Daemon:
        """Environment file with the options, the unit when sty owns it, the unit in the manifest."""
        d = plat.daemons[comp]
        options = " ".join([*flags, one_line(extra or "").strip()]).strip()
        env = render("infra/env.j2", comp=comp, var=d.var, options=options)
        b.add(FileSpec(d.env, self.name, env, "env", actions=[restart(d.unit)]))
        if d.own_unit:
            desc, docs = DESCRIPTIONS[comp]
            unit = render(
                "infra/daemon.service.j2",
                description=desc,
                docs=docs,
                user=d.user,
                env=d.env,
                bin=d.bin,
                var=d.var,
                reloadable=reloadable,
                caps=caps,
            )
            path = f"/etc/systemd/system/{d.unit}"
            b.add(FileSpec(path, self.name, unit, "systemd", actions=[DAEMON_RELOAD, restart(d.unit)]))
            b.check("systemd", path)
            if d.user not in ("root",):
                b.users.add(OsUser(d.user))
        elif caps or (reloadable and not d.package_reloads):
            # the package's unit, completed by a drop-in: a reload (SIGHUP) and/or the raw-socket capability
            path = f"/etc/systemd/system/{d.unit}.d/sty.conf"
            text = render("infra/dropin.conf.j2", reload=reloadable and not d.package_reloads, caps=caps)
            b.add(FileSpec(path, self.name, text, "systemd", actions=[DAEMON_RELOAD, restart(d.unit)]))
        b.packages.update(d.packages)
        b.units.add(Unit(d.unit, self.name, health))
        if port is not None:
            b.ports.add(Port(int(port), comp, self.name))
        return d

    # -- nginx ----------------------------------------------------------------------------------
    def _nginx(self, host: Host, model: InfraModel, plat: InfraPlatform, b: HostBundle) -> None:
        p = host.params
        portals = portal_entries(p)
        sslmode = str(p["nginx_sslmode"])
        home_dir = str(p["nginx_home"])
        reload_nginx = [reload("nginx.service")]
        b.add(
            FileSpec(
                NGINX_CONF,
                self.name,
                render("infra/nginx.conf.j2", user=plat.nginx_user),
                "nginx",
                actions=reload_nginx,
            )
        )
        users = p.get("nginx_users") or {}
        if users:
            lines = []
            for name in sorted(users, key=str):
                value = b.secret_value(f"{host.ip}/nginx_users/{name}", users[name])
                # an unknown password stays an empty secret: apply refuses to ship it until secrets.yml has it
                hashed = ssha(value, str(name)) if value else ""
                lines.append((str(name), b.secret(f"{host.ip}/nginx_users/{name}/htpasswd", hashed)))
            b.add(
                FileSpec(
                    HTPASSWD,
                    self.name,
                    render("infra/htpasswd.j2", users=lines),
                    "htpasswd",
                    group=plat.nginx_user,
                    mode="0640",
                    actions=reload_nginx,
                )
            )
        svc = {
            comp: int(p[f"{comp}_port"])
            for comp in ("grafana", "vmetrics", "vlogs", "vtraces", "vmalert", "alertmanager", "blackbox")
            if p.get(f"{comp}_enabled")
        }
        for portal in portals:
            enforce = sslmode == "enforce" or bool(portal.spec.get("enforce_https"))
            tls = None
            if sslmode != "disable":
                cert = portal.spec.get("cert") or f"{NGINX_CERT_DIR}/{portal.domain}.crt"
                key = portal.spec.get("key") or f"{NGINX_CERT_DIR}/{portal.domain}.key"
                tls = {"cert": cert, "key": key}
                if not (portal.spec.get("cert") or portal.spec.get("key")):
                    sans = tuple(dict.fromkeys([*portal.names, *([host.ip] if portal.kind == "home" else [])]))
                    b.certificates.add(Certificate(f"nginx-{portal.key}", portal.domain, sans, cert, key, "root"))
            endpoint = portal.spec.get("endpoint")
            text = render(
                "infra/nginx-server.conf.j2",
                portal=portal,
                kind=portal.kind,
                names=portal.names,
                port=int(p["nginx_port"]),
                ssl_port=int(p["nginx_ssl_port"]),
                tls=tls,
                enforce=enforce,
                auth=bool(portal.spec.get("auth")) and bool(users),
                realm=str(portal.spec.get("realm") or "Pigsty"),
                htpasswd=HTPASSWD,
                log=str(portal.spec.get("log") or f"{portal.key}.log"),
                upstream=f"portal_{portal.key}".replace(".", "_"),
                endpoint=endpoint,
                scheme=str(portal.spec.get("scheme") or portal.spec.get("schema") or "http"),
                websocket=bool(portal.spec.get("websocket")),
                stream=bool(portal.spec.get("stream")),
                root=str(portal.spec.get("path") or home_dir),
                autoindex=portal.spec.get("index", portal.kind == "path") is not False,
                certbot=bool(portal.spec.get("certbot")),
                acme=f"{home_dir.rstrip('/')}/acme",
                config=str(portal.spec.get("config") or ""),
                services=svc,
                stub_status=bool(p.get("nginx_exporter_enabled")),
                haproxy=model.fanin.haproxy if portal.kind == "home" else [],
            )
            b.add(FileSpec(f"{NGINX_CONFD}/{portal.key}.conf", self.name, text, "nginx", actions=reload_nginx))
        b.check("nginx", NGINX_CONF, NGINX_CONFD, *([HTPASSWD] if users else []))
        b.packages.update(plat.nginx_packages)
        b.units.add(Unit("nginx.service", self.name, f"port:{p['nginx_port']}"))
        b.ports.add(Port(int(p["nginx_port"]), "nginx", self.name))
        if sslmode != "disable":
            b.ports.add(Port(int(p["nginx_ssl_port"]), "nginx-ssl", self.name))
        b.directories.update(
            {
                Directory(NGINX_CONFD),
                Directory(NGINX_CERT_DIR, "root", plat.nginx_user, "0750"),
                Directory(home_dir, plat.nginx_user, plat.nginx_user),
                Directory(f"{home_dir.rstrip('/')}/acme", plat.nginx_user, plat.nginx_user),
            }
        )
        if p.get("nginx_exporter_enabled"):
            flags = [
                f"--nginx.scrape-uri=http://127.0.0.1:{int(p['nginx_port'])}/nginx",
                f"--web.listen-address=:{int(p['nginx_exporter_port'])}",
            ]
            self._daemon(
                host,
                plat,
                "nginx_exporter",
                flags,
                "",
                b,
                port=p["nginx_exporter_port"],
                health=f"http://{host.ip}:{int(p['nginx_exporter_port'])}/metrics",
                reloadable=False,
            )

    # -- scrape targets -------------------------------------------------------------------------
    def _targets(self, host: Host, model: InfraModel, b: HostBundle) -> None:
        if not host.params.get("vmetrics_enabled"):
            return
        for path, tf in sorted(model.fanin.targets.items()):
            b.add(FileSpec(path, self.name, tf.text, "yaml"))
        jobs = model.fanin.jobs()
        b.directories.add(Directory(TARGETS_DIR))
        for job in sorted(jobs):
            b.directories.add(Directory(f"{TARGETS_DIR}/{job}"))

    # -- Victoria stack -------------------------------------------------------------------------
    def _victoria(self, host: Host, model: InfraModel, plat: InfraPlatform, data: str, b: HostBundle) -> None:
        p = host.params
        if p.get("vmetrics_enabled"):
            d = plat.daemons["vmetrics"]
            b.add(
                FileSpec(
                    SCRAPE_CONFIG,
                    self.name,
                    to_yaml(scrape_config(host, model), HEADER),
                    "yaml",
                    actions=[reload(d.unit)],
                )
            )
            b.check("promtool", SCRAPE_CONFIG, TARGETS_DIR, where="build")
            b.check("vmagent", SCRAPE_CONFIG)
            self._victoria_daemon(host, plat, "vmetrics", data, b, [f"-promscrape.config={SCRAPE_CONFIG}"], "/health")
        if p.get("vlogs_enabled"):
            self._victoria_daemon(host, plat, "vlogs", data, b, [], "/health")
        if p.get("vtraces_enabled"):
            self._victoria_daemon(host, plat, "vtraces", data, b, [], "/health")
        if p.get("vmalert_enabled"):
            self._vmalert(host, model, plat, b)

    def _victoria_daemon(self, host, plat, comp, data, b, extra_flags, health_path) -> None:
        p = host.params
        port = int(p[f"{comp}_port"])
        store = f"{data}/{comp}"
        d = plat.daemons[comp]
        flags = [f"-httpListenAddr=:{port}", f"-storageDataPath={store}", *extra_flags]
        self._daemon(
            host,
            plat,
            comp,
            flags,
            p.get(f"{comp}_options") or "",
            b,
            port=port,
            health=f"http://{host.ip}:{port}{health_path}",
        )
        b.directories.add(Directory(store, d.user, d.user, "0750"))

    def _vmalert(self, host: Host, model: InfraModel, plat: InfraPlatform, b: HostBundle) -> None:
        p = host.params
        port = int(p["vmalert_port"])
        if p.get("vmetrics_enabled"):
            metrics = f"http://127.0.0.1:{int(p['vmetrics_port'])}"
        else:
            peer = next(m for m in model.members if m.params.get("vmetrics_enabled"))
            metrics = f"http://{peer.ip}:{int(peer.params['vmetrics_port'])}"
        notifiers = [
            f"-notifier.url=http://{m.ip}:{int(m.params['alertmanager_port'])}"
            for m in model.members
            if m.params.get("alertmanager_enabled")
        ]
        flags = [
            f"-httpListenAddr=:{port}",
            f"-rule={RULES_DIR}/*.yml",
            f"-datasource.url={metrics}",
            f"-remoteWrite.url={metrics}",
            f"-remoteRead.url={metrics}",
            *notifiers,
            f"-evaluationInterval={one_line(p['vmetrics_scrape_interval'])}",
        ]
        d = plat.daemons["vmalert"]
        for name, groups in sorted(alert_rules().items()):
            b.add(
                FileSpec(
                    f"{RULES_DIR}/{name}.yml",
                    self.name,
                    to_yaml({"groups": groups}, HEADER),
                    "yaml",
                    actions=[reload(d.unit)],
                )
            )
        b.directories.add(Directory(RULES_DIR))
        b.check("promtool", RULES_DIR, where="build")
        b.check("vmalert", RULES_DIR)
        self._daemon(
            host,
            plat,
            "vmalert",
            flags,
            p.get("vmalert_options") or "",
            b,
            port=port,
            health=f"http://{host.ip}:{port}/health",
        )

    # -- Alertmanager ---------------------------------------------------------------------------
    def _alertmanager(self, host: Host, model: InfraModel, plat: InfraPlatform, data: str, b: HostBundle) -> None:
        p = host.params
        port = int(p["alertmanager_port"])
        d = plat.daemons["alertmanager"]
        b.add(
            FileSpec(
                ALERTMANAGER_CONF,
                self.name,
                to_yaml(alertmanager_config(), HEADER),
                "yaml",
                actions=[reload(d.unit)],
            )
        )
        store = f"{data}/alertmanager"
        peers = [m for m in model.members if m.params.get("alertmanager_enabled") and m is not host]
        flags = [
            f"--config.file={ALERTMANAGER_CONF}",
            f"--storage.path={store}",
            f"--web.listen-address=:{port}",
        ]
        if peers:
            flags.append(f"--cluster.listen-address={host.ip}:{ALERTMANAGER_CLUSTER_PORT}")
            flags += [f"--cluster.peer={m.ip}:{ALERTMANAGER_CLUSTER_PORT}" for m in peers]
            b.ports.add(Port(ALERTMANAGER_CLUSTER_PORT, "alertmanager-cluster", self.name))
        else:
            flags.append("--cluster.listen-address=")
        self._daemon(
            host,
            plat,
            "alertmanager",
            flags,
            p.get("alertmanager_options") or "",
            b,
            port=port,
            health=f"http://{host.ip}:{port}/-/healthy",
        )
        b.directories.update({Directory("/etc/alertmanager"), Directory(store, d.user, d.user, "0750")})
        b.check("amtool", ALERTMANAGER_CONF)

    # -- blackbox exporter ----------------------------------------------------------------------
    def _blackbox(self, host: Host, plat: InfraPlatform, b: HostBundle) -> None:
        p = host.params
        port = int(p["blackbox_port"])
        d = plat.daemons["blackbox"]
        b.add(
            FileSpec(BLACKBOX_CONF, self.name, to_yaml(blackbox_config(), HEADER), "yaml", actions=[reload(d.unit)])
        )
        flags = [f"--config.file={BLACKBOX_CONF}", f"--web.listen-address=:{port}"]
        self._daemon(
            host,
            plat,
            "blackbox",
            flags,
            p.get("blackbox_options") or "",
            b,
            port=port,
            health=f"http://{host.ip}:{port}/-/healthy",
            caps=True,
        )
        b.check("blackbox", BLACKBOX_CONF)

    # -- Grafana --------------------------------------------------------------------------------
    def _grafana(self, host: Host, model: InfraModel, plat: InfraPlatform, b: HostBundle) -> None:
        p = host.params
        port = int(p["grafana_port"])
        password = b.secret(f"{host.ip}/grafana_admin_password", p.get("grafana_admin_password"))
        pgurl = p.get("grafana_pgurl") or ""
        home = next((x for x in portal_entries(p) if x.kind == "home"), None)
        ini = render(
            "infra/grafana.ini.j2",
            port=port,
            domain=home.domain if home else host.ip,
            scheme="https" if p.get("nginx_sslmode") == "enforce" else "http",
            subpath=bool(p.get("nginx_enabled") and home),
            admin_user=p["grafana_admin_username"],
            admin_password=password,
            pgurl=b.secret(f"{host.ip}/grafana_pgurl", pgurl) if pgurl else "",
            auth_proxy=bool(p.get("grafana_auth_proxy")),
        )
        restart_grafana = [restart("grafana-server.service")]
        group = plat.grafana_user
        b.add(FileSpec(GRAFANA_INI, self.name, ini, "grafana-ini", group=group, mode="0640", actions=restart_grafana))
        sources = grafana_datasources(host, model, b)
        b.add(
            FileSpec(
                GRAFANA_DATASOURCES,
                self.name,
                to_yaml(sources, HEADER),
                "yaml",
                group=group,
                mode="0640",
                actions=restart_grafana,
            )
        )
        b.check("grafana", GRAFANA_INI, GRAFANA_DATASOURCES)
        b.packages.update(plat.grafana_packages)
        b.units.add(Unit("grafana-server.service", self.name, f"http://{host.ip}:{port}/api/health"))
        b.ports.add(Port(port, "grafana", self.name))
        b.directories.update(
            {
                Directory("/etc/grafana", "root", group, "0755"),
                Directory("/etc/grafana/provisioning/datasources", "root", group, "0750"),
            }
        )

    # -- DNS ------------------------------------------------------------------------------------
    def _dns(self, host: Host, model: InfraModel, plat: InfraPlatform, b: HostBundle) -> None:
        p = host.params
        d = plat.daemons["dnsmasq"]
        folder = str(p["dns_hosts_dir"]).rstrip("/") or "/"
        port = int(p["dns_port"])
        conf = render("infra/dnsmasq.conf.j2", port=port, addresses=["127.0.0.1", host.ip], hosts_dir=folder)
        b.add(FileSpec(DNSMASQ_CONF, self.name, conf, "dnsmasq", actions=[restart(d.unit)]))
        records = {"default": [one_line(r).strip() for r in p.get("dns_records") or [] if str(r).strip()]}
        records.update(model.fanin.dns)
        for name, lines in sorted(records.items()):
            text = render("infra/hosts.j2", name=name, lines=[" ".join(line.split()) for line in lines])
            b.add(FileSpec(f"{folder}/{name}", self.name, text, "hosts", actions=[reload(d.unit)]))
        self._daemon(
            host, plat, "dnsmasq", ["-k", f"--conf-file={DNSMASQ_CONF}"], "", b, port=port, health=f"port:{port}"
        )
        b.directories.add(Directory(folder))
        b.check("dnsmasq", DNSMASQ_CONF, folder)

    # -- NTP server -----------------------------------------------------------------------------
    def _chrony(self, host: Host, b: HostBundle) -> None:
        """Infra nodes serve time to the intranet: lines for NODE's chrony config."""
        p = host.params
        if not p.get("node_ntp_enabled"):
            return
        path = host.platform.chrony_conf
        b.contribute(path, self.name, "infra:0", "local stratum 10")
        for i, cidr in enumerate(p.get("node_firewall_intranet") or []):
            try:
                net = ipaddress.ip_network(str(cidr), strict=False)
            except ValueError:
                raise RenderError(f"node_firewall_intranet entry {cidr!r} is not a CIDR") from None
            b.contribute(path, self.name, f"infra:1:{i:04d}", f"allow {net}")
        b.ports.add(Port(123, "ntp", self.name))


CHECKED_PARAMS = (
    "infra_portal",
    "nginx_users",
    "dns_records",
    "dns_hosts_dir",
    "vmetrics_scrape_interval",
    "vmetrics_scrape_timeout",
    "vmalert_enabled",
    "nginx_sslmode",
    "admin_ip",
)


def record_problem(record: Any) -> str | None:
    """Why a `dns_records` entry is not a valid hosts-file line ("<ip> <name> ..."), or None."""
    if not isinstance(record, str):
        return f"a DNS record must be a string '<ip> <name> ...', got {record!r}"
    parts = record.split()
    if any(c in record for c in "\n\r\x00#"):
        return "a DNS record must be one line without '#'"
    if len(parts) < 2:
        return f"DNS record '{record}' needs an IP address and at least one name"
    if not is_ip(parts[0]):
        return f"DNS record '{record}' does not start with an IP address (is a ${{...}} placeholder unresolved?)"
    bad = next((n for n in parts[1:] if not _HOSTNAME.match(n)), None)
    if bad:
        return f"'{bad}' in DNS record '{record}' is not a valid host name"
    return None


def ssha(password: str, seed: str) -> str:
    """nginx's {SSHA} password hash with a salt derived from the user and password (stable across builds)."""
    import base64

    salt = hashlib.sha256(f"sty-htpasswd:{seed}:{password}".encode()).digest()[:8]
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


# --------------------------------------------------------------------------------------------------
# data documents: scrape config, alerting rules, Alertmanager, blackbox, Grafana datasources
# --------------------------------------------------------------------------------------------------


def _file_sd(job: str) -> list[dict[str, Any]]:
    return [{"files": [f"{TARGETS_DIR}/{job}/*.yml"]}]


def scrape_config(host: Host, model: InfraModel) -> dict[str, Any]:
    """A Prometheus-compatible scrape config that vmagent 1.79 also accepts (no rule_files, alerting,
    evaluation_interval or file_sd refresh_interval)."""
    p = host.params
    fan = model.fanin
    jobs = fan.jobs()
    metrics_path = str(p["exporter_metrics_path"])
    configs: list[dict[str, Any]] = []
    if p.get("blackbox_enabled") and "ping" in jobs:
        configs.append(
            {
                "job_name": "ping",
                "metrics_path": "/probe",
                "params": {"module": ["icmp"]},
                "file_sd_configs": _file_sd("ping"),
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": f"127.0.0.1:{int(p['blackbox_port'])}"},
                ],
            }
        )
    if "infra" in jobs:
        configs.append({"job_name": "infra", "metrics_path": "/metrics", "file_sd_configs": _file_sd("infra")})
    if "node" in jobs:
        configs.append({"job_name": "node", "metrics_path": metrics_path, "file_sd_configs": _file_sd("node")})
    if "etcd" in jobs:
        configs.append({"job_name": "etcd", "metrics_path": "/metrics", "file_sd_configs": _file_sd("etcd")})
    if "pgsql" in jobs:
        job: dict[str, Any] = {"job_name": "pgsql", "metrics_path": metrics_path, "file_sd_configs": _file_sd("pgsql")}
        if fan.patroni_tls:
            job["tls_config"] = {"ca_file": CA_CERT}
        configs.append(job)
    if "redis" in jobs:
        configs.append({"job_name": "redis", "metrics_path": "/scrape", "file_sd_configs": _file_sd("redis")})
    if "minio" in jobs:
        job = {"job_name": "minio", "metrics_path": "/minio/v2/metrics/cluster", "file_sd_configs": _file_sd("minio")}
        if fan.minio_tls:
            job["tls_config"] = {"ca_file": CA_CERT}
        configs.append(job)
    return {
        "global": {
            "scrape_interval": str(p["vmetrics_scrape_interval"]),
            "scrape_timeout": str(p["vmetrics_scrape_timeout"]),
        },
        "scrape_configs": configs,
    }


def _alert(name: str, expr: str, duration: str, severity: str, category: str, summary: str, description: str):
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if duration:
        rule["for"] = duration
    rule["labels"] = {"severity": severity, "category": category}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


_FS = 'fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|devtmpfs|fuse.*",mountpoint!~"/(run|sys|proc|dev)($|/.*)"'


def alert_rules() -> dict[str, list[dict[str, Any]]]:
    """Recording and alerting rules per subject (sty's own rule set)."""
    node = [
        {
            "name": "node-record",
            "rules": [
                {
                    "record": "node:ins:cpu_count",
                    "expr": 'count by (cls, ins, ip) (node_cpu_seconds_total{mode="idle"})',
                },
                {
                    "record": "node:ins:cpu_usage_5m",
                    "expr": '1 - avg by (cls, ins, ip) (rate(node_cpu_seconds_total{mode="idle"}[5m]))',
                },
                {
                    "record": "node:ins:mem_usage",
                    "expr": "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
                },
                {
                    "record": "node:fs:space_usage",
                    "expr": f"1 - node_filesystem_avail_bytes{{{_FS}}} / node_filesystem_size_bytes{{{_FS}}}",
                },
                {
                    "record": "node:fs:inode_usage",
                    "expr": f"1 - node_filesystem_files_free{{{_FS}}} / node_filesystem_files{{{_FS}}}",
                },
            ],
        },
        {
            "name": "node-alert",
            "rules": [
                _alert(
                    "NodeUnreachable",
                    'probe_success{job="ping"} == 0',
                    "1m",
                    "critical",
                    "node",
                    "{{ $labels.ins }} ({{ $labels.ip }}) does not answer ping",
                    "The ICMP probe from the blackbox exporter to {{ $labels.ip }} has failed for 1 minute.",
                ),
                _alert(
                    "NodeExporterDown",
                    'up{job="node"} == 0',
                    "1m",
                    "critical",
                    "node",
                    "{{ $labels.instance }} of {{ $labels.ins }} cannot be scraped",
                    "A node-level exporter (node_exporter, haproxy or vector) of {{ $labels.ins }} is down.",
                ),
                _alert(
                    "NodeCpuHigh",
                    "node:ins:cpu_usage_5m > 0.90",
                    "5m",
                    "warning",
                    "node",
                    "CPU of {{ $labels.ins }} is {{ $value | humanizePercentage }} busy",
                    "Average CPU usage over 5 minutes has been above 90% for 5 minutes.",
                ),
                _alert(
                    "NodeMemoryHigh",
                    "node:ins:mem_usage > 0.90",
                    "5m",
                    "warning",
                    "node",
                    "memory of {{ $labels.ins }} is {{ $value | humanizePercentage }} used",
                    "Less than 10% of the memory of {{ $labels.ins }} has been available for 5 minutes.",
                ),
                _alert(
                    "NodeDiskAlmostFull",
                    "node:fs:space_usage > 0.90",
                    "5m",
                    "critical",
                    "node",
                    "{{ $labels.mountpoint }} on {{ $labels.ins }} is {{ $value | humanizePercentage }} full",
                    "The file system {{ $labels.mountpoint }} ({{ $labels.device }}) has less than 10% free space.",
                ),
                _alert(
                    "NodeDiskFillingUp",
                    f"predict_linear(node_filesystem_avail_bytes{{{_FS}}}[1h], 4 * 3600) < 0"
                    " and node:fs:space_usage > 0.70",
                    "10m",
                    "warning",
                    "node",
                    "{{ $labels.mountpoint }} on {{ $labels.ins }} will be full within 4 hours",
                    "At the rate of the last hour the file system {{ $labels.mountpoint }} runs out of space soon.",
                ),
                _alert(
                    "NodeInodesAlmostFull",
                    "node:fs:inode_usage > 0.90",
                    "5m",
                    "warning",
                    "node",
                    "{{ $labels.mountpoint }} on {{ $labels.ins }} has used {{ $value | humanizePercentage }} inodes",
                    "Less than 10% of the inodes of {{ $labels.mountpoint }} are free.",
                ),
                _alert(
                    "NodeClockSkew",
                    "abs(node_timex_offset_seconds) > 0.05",
                    "5m",
                    "warning",
                    "node",
                    "clock of {{ $labels.ins }} is {{ $value }}s off",
                    "The kernel reports a time offset above 50 ms; check chrony on {{ $labels.ins }}.",
                ),
            ],
        },
    ]
    pgsql = [
        {
            "name": "pgsql-record",
            "rules": [
                {"record": "pg:ins:is_primary", "expr": "1 - pg_in_recovery"},
                {"record": "pg:cls:primary_count", "expr": "count by (cls) (pg_in_recovery == 0)"},
                {"record": "pg:cls:instance_count", "expr": 'count by (cls) (up{job="pgsql"} == 1)'},
                {
                    "record": "pg:ins:lag_seconds",
                    "expr": 'max by (cls, ins, appname) (pg_repl_replay_lag{appname!~"pg_receivewal|pg_basebackup"})',
                },
                {
                    "record": "pg:ins:lag_bytes",
                    "expr": 'max by (cls, ins, appname) (pg_repl_replay_diff{appname!~"pg_receivewal|pg_basebackup"})',
                },
                {"record": "pg:ins:xact_rate_1m", "expr": "sum by (cls, ins) (rate(pg_db_xact_commit[1m]))"},
                {
                    "record": "pg:ins:conn_usage",
                    "expr": "sum by (cls, ins) (pg_activity_count) / on (cls, ins) group_left() max by (cls, ins) "
                    "(pg_setting_max_connections)",
                },
            ],
        },
        {
            "name": "pgsql-alert",
            "rules": [
                _alert(
                    "PostgresDown",
                    "pg_up == 0",
                    "1m",
                    "critical",
                    "pgsql",
                    "PostgreSQL {{ $labels.ins }} is down",
                    "pg_exporter on {{ $labels.ins }} cannot reach its PostgreSQL server.",
                ),
                _alert(
                    "PgExporterDown",
                    'up{job="pgsql"} == 0',
                    "1m",
                    "warning",
                    "pgsql",
                    "{{ $labels.instance }} of {{ $labels.ins }} cannot be scraped",
                    "An exporter (pg_exporter, pgbouncer_exporter, pgbackrest_exporter or Patroni) is down.",
                ),
                _alert(
                    "PgbouncerDown",
                    "pgbouncer_up == 0",
                    "1m",
                    "critical",
                    "pgsql",
                    "pgbouncer of {{ $labels.ins }} is down",
                    "pgbouncer_exporter on {{ $labels.ins }} cannot reach pgbouncer.",
                ),
                _alert(
                    "PostgresNoPrimary",
                    "count by (cls) (pg_up == 1) unless on (cls) (pg_in_recovery == 0)",
                    "1m",
                    "critical",
                    "pgsql",
                    "cluster {{ $labels.cls }} has no primary",
                    "Every reachable instance of {{ $labels.cls }} is in recovery: writes are impossible.",
                ),
                _alert(
                    "PostgresSplitBrain",
                    "pg:cls:primary_count > 1",
                    "30s",
                    "critical",
                    "pgsql",
                    "cluster {{ $labels.cls }} has {{ $value }} primaries",
                    "More than one instance of {{ $labels.cls }} accepts writes.",
                ),
                _alert(
                    "PostgresReplicationLagHigh",
                    "pg:ins:lag_seconds > 30",
                    "1m",
                    "warning",
                    "pgsql",
                    "replica {{ $labels.appname }} of {{ $labels.cls }} lags {{ $value | humanizeDuration }}",
                    "The replay lag seen by the primary {{ $labels.ins }} has been above 30 seconds for 1 minute.",
                ),
                _alert(
                    "PostgresReplicationLagBytes",
                    "pg:ins:lag_bytes > 1073741824",
                    "1m",
                    "critical",
                    "pgsql",
                    "replica {{ $labels.appname }} of {{ $labels.cls }} is {{ $value | humanize1024 }}B behind",
                    "More than 1 GiB of WAL is not replayed on the replica; failover would lose or wait for it.",
                ),
                _alert(
                    "PostgresReplicaWithoutUpstream",
                    "pg_in_recovery == 1 unless on (cls, ins) pg_recv_flush_tli",
                    "2m",
                    "warning",
                    "pgsql",
                    "replica {{ $labels.ins }} receives no WAL",
                    "The WAL receiver of {{ $labels.ins }} is not running.",
                ),
                _alert(
                    "PostgresConnectionsHigh",
                    "pg:ins:conn_usage > 0.85",
                    "5m",
                    "warning",
                    "pgsql",
                    "{{ $labels.ins }} uses {{ $value | humanizePercentage }} of max_connections",
                    "Backends are close to max_connections; new connections will be refused.",
                ),
                _alert(
                    "PostgresXidWraparound",
                    "max by (cls, ins) (pg_db_age) > 1500000000",
                    "5m",
                    "critical",
                    "pgsql",
                    "a database of {{ $labels.ins }} is {{ $value }} transactions old",
                    "Transaction ID age is near wraparound; run VACUUM FREEZE.",
                ),
            ],
        },
    ]
    patroni = [
        {
            "name": "patroni-alert",
            "rules": [
                _alert(
                    "PatroniPostgresNotRunning",
                    "patroni_postgres_running == 0",
                    "1m",
                    "critical",
                    "patroni",
                    "Patroni of {{ $labels.ins }} runs no PostgreSQL",
                    "Patroni on {{ $labels.ins }} reports that its PostgreSQL is not running.",
                ),
                _alert(
                    "PatroniNoLeader",
                    "max by (cls) (patroni_primary) == 0",
                    "30s",
                    "critical",
                    "patroni",
                    "Patroni cluster {{ $labels.cls }} has no leader",
                    "No Patroni member of {{ $labels.cls }} holds the leader lock.",
                ),
                _alert(
                    "PatroniClusterUnlocked",
                    "max by (cls) (patroni_cluster_unlocked) == 1",
                    "1m",
                    "critical",
                    "patroni",
                    "the leader lock of {{ $labels.cls }} is free",
                    "Patroni reports the cluster unlocked: a failover is stuck or the DCS is unreachable.",
                ),
                _alert(
                    "PatroniDcsUnreachable",
                    "time() - patroni_dcs_last_seen > 60",
                    "1m",
                    "critical",
                    "patroni",
                    "Patroni of {{ $labels.ins }} has not reached the DCS for {{ $value | humanizeDuration }}",
                    "Patroni cannot talk to etcd; the primary will demote when its leader key expires.",
                ),
                _alert(
                    "PatroniPaused",
                    "max by (cls) (patroni_is_paused) == 1",
                    "1h",
                    "warning",
                    "patroni",
                    "Patroni cluster {{ $labels.cls }} has been paused for an hour",
                    "Automatic failover is disabled while the cluster is in maintenance mode.",
                ),
            ],
        }
    ]
    etcd = [
        {
            "name": "etcd-alert",
            "rules": [
                _alert(
                    "EtcdDown",
                    'up{job="etcd"} == 0',
                    "1m",
                    "critical",
                    "etcd",
                    "etcd member {{ $labels.ins }} is down",
                    "The etcd member {{ $labels.ins }} cannot be scraped.",
                ),
                _alert(
                    "EtcdNoLeader",
                    "etcd_server_has_leader == 0",
                    "30s",
                    "critical",
                    "etcd",
                    "etcd member {{ $labels.ins }} has no leader",
                    "The member sees no leader: the cluster lost quorum or the member is partitioned.",
                ),
                _alert(
                    "EtcdQuorumAtRisk",
                    'count by (cls) (up{job="etcd"} == 0) * 2 >= count by (cls) (up{job="etcd"})',
                    "1m",
                    "critical",
                    "etcd",
                    "half or more of etcd cluster {{ $labels.cls }} is down",
                    "The etcd cluster has lost, or is one failure away from losing, its quorum.",
                ),
                _alert(
                    "EtcdLeaderChanges",
                    "increase(etcd_server_leader_changes_seen_total[15m]) > 3",
                    "",
                    "warning",
                    "etcd",
                    "etcd member {{ $labels.ins }} saw {{ $value }} leader changes in 15 minutes",
                    "Frequent elections point at slow disks or an unstable network.",
                ),
                _alert(
                    "EtcdDatabaseQuotaNear",
                    "etcd_mvcc_db_total_size_in_bytes / etcd_server_quota_backend_bytes > 0.80",
                    "5m",
                    "warning",
                    "etcd",
                    "etcd database of {{ $labels.ins }} is {{ $value | humanizePercentage }} of its quota",
                    "Compact and defragment etcd before the quota is reached and it stops accepting writes.",
                ),
            ],
        }
    ]
    haproxy = [
        {
            "name": "haproxy-alert",
            "rules": [
                _alert(
                    "HaproxyBackendDown",
                    '(haproxy_backend_active_servers{proxy!="admin"} + haproxy_backend_backup_servers == 0)'
                    " and on (instance, proxy) (count by (instance, proxy) (haproxy_server_status) > 0)",
                    "1m",
                    "critical",
                    "haproxy",
                    "service {{ $labels.proxy }} on {{ $labels.ins }} has no server",
                    "Every server of the haproxy backend {{ $labels.proxy }} is down: the service refuses clients.",
                ),
            ],
        }
    ]
    infra = [
        {
            "name": "infra-alert",
            "rules": [
                _alert(
                    "InfraComponentDown",
                    'up{job="infra"} == 0',
                    "1m",
                    "critical",
                    "infra",
                    "{{ $labels.ins }} on {{ $labels.ip }} is down",
                    "The INFRA component {{ $labels.cls }} ({{ $labels.instance }}) cannot be scraped.",
                ),
            ],
        }
    ]
    return {"node": node, "pgsql": pgsql, "patroni": patroni, "etcd": etcd, "haproxy": haproxy, "infra": infra}


def alertmanager_config() -> dict[str, Any]:
    """One route tree: critical alerts repeat faster; a critical alert silences the warnings of the same
    subject. The receiver has no integration until a notifier is configured."""
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "default",
            "group_by": ["alertname", "cls"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"receiver": "default", "matchers": ['severity="critical"'], "repeat_interval": "1h"},
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["cls", "ins"],
            }
        ],
        "receivers": [{"name": "default"}],
    }


def blackbox_config() -> dict[str, Any]:
    return {
        "modules": {
            "icmp": {"prober": "icmp", "timeout": "5s", "icmp": {"preferred_ip_protocol": "ip4"}},
            "tcp_connect": {"prober": "tcp", "timeout": "5s", "tcp": {"preferred_ip_protocol": "ip4"}},
            "http_2xx": {
                "prober": "http",
                "timeout": "5s",
                "http": {"preferred_ip_protocol": "ip4", "valid_status_codes": [], "method": "GET"},
            },
        }
    }


def grafana_datasources(host: Host, model: InfraModel, b: HostBundle) -> dict[str, Any]:
    """vmetrics/vlogs/vtraces of every infra node (this node's vmetrics is the default) and one PostgreSQL
    datasource per registered database."""
    me = int(host.params["infra_seq"])
    sources: list[dict[str, Any]] = []
    for m in model.members:
        mp, seq = m.params, int(m.params["infra_seq"])
        if mp.get("vmetrics_enabled"):
            sources.append(
                {
                    "name": f"vmetrics-{seq}",
                    "uid": f"vmetrics-{seq}",
                    "type": "victoriametrics-metrics-datasource",
                    "access": "proxy",
                    "url": f"http://{m.ip}:{int(mp['vmetrics_port'])}",
                    "isDefault": seq == me and bool(host.params.get("vmetrics_enabled")),
                    "editable": True,
                    "jsonData": {"timeInterval": str(mp["vmetrics_scrape_interval"]), "httpMethod": "POST"},
                }
            )
        if mp.get("vlogs_enabled"):
            sources.append(
                {
                    "name": f"vlogs-{seq}",
                    "uid": f"vlogs-{seq}",
                    "type": "victoriametrics-logs-datasource",
                    "access": "proxy",
                    "url": f"http://{m.ip}:{int(mp['vlogs_port'])}",
                    "editable": True,
                }
            )
        if mp.get("vtraces_enabled"):
            sources.append(
                {
                    "name": f"vtraces-{seq}",
                    "uid": f"vtraces-{seq}",
                    "type": "jaeger",
                    "access": "proxy",
                    "url": f"http://{m.ip}:{int(mp['vtraces_port'])}/select/jaeger",
                    "editable": True,
                }
            )
    for ds in model.fanin.pg_datasources:
        password = b.secret(f"{ds['cluster']}/pg_monitor_password", ds["password"])
        sources.append(
            {
                "name": ds["name"],
                "uid": _uid(f"pg-{ds['name']}"),
                "type": "postgres",
                "access": "proxy",
                "url": ds["url"],
                "user": ds["user"],
                "editable": True,
                "jsonData": {
                    "database": ds["database"],
                    "sslmode": "disable",
                    "postgresVersion": min(ds["version"], 15) * 100,
                    "maxOpenConns": 8,
                    "maxIdleConns": 2,
                    "connMaxLifetime": 14400,
                },
                "secureJsonData": {"password": password},
            }
        )
    return {"apiVersion": 1, "datasources": sources}


__all__ = ["InfraModule", "infra_model", "build_fanin", "alert_rules", "scrape_config"]
