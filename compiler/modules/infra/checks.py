"""INFRA's inventory rules, run by `derive`: unique `infra_seq`s, the infra nodes' own parameters (portal, users,
DNS records, scrape timing), and the values every other host contributes to the infra nodes (DNS names, VIPs).
Rendering relies on them: a value rejected here is never rendered.
"""

from __future__ import annotations

import re

from ...errors import Report, join_path
from ...model import Fleet, Host
from .dns import HOSTNAME, record_problem
from .fanin import node_cluster_of
from .model import is_ip, vip_of
from .portal import PATH, portal_entries

_USER = re.compile(r"^[A-Za-z0-9_.@-]+$")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}

# the parameters `check_node` reads: infra nodes sharing all their definitions are checked once
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


def duration_seconds(text: str) -> float:
    return sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))


def infra_members(fleet: Fleet, report: Report) -> list[Host]:
    """The infra nodes in infra_seq order; a node without a seq, or with a taken one, is reported and left out."""
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
    return [h for _, h in sorted(members, key=lambda m: m[0])]


def check_nodes(members: list[Host], report: Report) -> None:
    checked: set[tuple[str, ...]] = set()
    for host in members:
        key = tuple(host.params.source(k) for k in CHECKED_PARAMS)
        if key not in checked:  # a definition shared by many infra nodes is checked once
            checked.add(key)
            check_node(host, members, report)


def check_node(host: Host, members: list[Host], report: Report) -> None:
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
    if not PATH.match(str(p.get("dns_hosts_dir") or "")):
        report.error(p.source("dns_hosts_dir"), "dns_hosts_dir must be an absolute directory path")
    if not _check_scrape_timing(host, report):
        return
    if p.get("vmalert_enabled"):
        if not any(m.params.get("vmetrics_enabled") for m in members):
            report.error(p.source("vmetrics_enabled"), "vmalert needs VictoriaMetrics on an infra node")
        if not any(m.params.get("alertmanager_enabled") for m in members):
            report.error(p.source("alertmanager_enabled"), "vmalert needs Alertmanager on an infra node")
    if p.get("nginx_sslmode") not in ("disable", "enable", "enforce"):
        report.error(p.source("nginx_sslmode"), "nginx_sslmode must be disable, enable or enforce")


def _check_scrape_timing(host: Host, report: Report) -> bool:
    """Scrape interval and timeout are durations, the timeout no longer; False when one is not a duration."""
    p = host.params
    for key in ("vmetrics_scrape_interval", "vmetrics_scrape_timeout"):
        if not _DURATION.match(str(p.get(key))):
            report.error(p.source(key), f"{key} '{p.get(key)}' is not a duration such as 10s or 1m30s")
            return False
    if duration_seconds(str(p["vmetrics_scrape_timeout"])) > duration_seconds(str(p["vmetrics_scrape_interval"])):
        report.error(
            p.source("vmetrics_scrape_timeout"),
            f"vmetrics_scrape_timeout {p['vmetrics_scrape_timeout']} is longer than "
            f"vmetrics_scrape_interval {p['vmetrics_scrape_interval']}",
        )
    return True


class _Once:
    """Checks a value once per definition: many hosts inherit the same cluster or group variable."""

    def __init__(self) -> None:
        self.checked: set[tuple[str, ...]] = set()

    def __call__(self, p, *keys: str) -> bool:
        key = tuple(p.source(k) for k in keys) + keys
        if key in self.checked:
            return False
        self.checked.add(key)
        return True


def check_fleet_values(fleet: Fleet, report: Report) -> None:
    """Rules on the values other modules' hosts contribute to the INFRA nodes (DNS names, targets)."""
    once = _Once()
    dns_names: dict[str, dict[str, str]] = {}  # DNS name -> {what registers it: inventory path}
    for host in fleet.hosts.values():
        for name, what, path in _dns_names(host):
            dns_names.setdefault(name, {}).setdefault(what, path)
        _check_node_vip(host, once, report)
        _check_pg_dns(host, once, report)
        _check_minio_node(host, once, report)
    for name, sources in sorted(dns_names.items()):
        if len(sources) > 1:
            (first, _), (what, path) = list(sources.items())[:2]
            report.warning(
                path,
                f"DNS name {name} is registered for {what} and for {first}: dnsmasq would answer with both addresses",
            )


def _dns_names(host: Host) -> list[tuple[str, str, str]]:
    """(DNS name, what registers it, inventory path) of the names this host adds to dnsmasq."""
    p = host.params
    out = []
    if p.get("vip_enabled") and p.get("vip_address"):
        cls = node_cluster_of(host)
        out.append((f"{cls}{p.get('vip_dns_suffix') or ''}", f"the VIP of node cluster {cls}", p.source("vip_address")))
    if p.raw("pg_cluster") and p.get("pg_seq") is not None:
        suffix, cls = str(p.get("pg_dns_suffix") or ""), str(p["pg_cluster"])
        out.append((f"{cls}-{p['pg_seq']}{suffix}", f"PostgreSQL instance {cls}-{p['pg_seq']}", host.path))
        if str(p.get("pg_dns_target") or "auto") != "none":
            out.append((f"{cls}{suffix}", f"PostgreSQL cluster {cls}", p.source("pg_cluster")))
    if p.raw("minio_cluster") and p.get("minio_seq") is not None:
        out.append((str(p.get("minio_node")), f"MinIO node {p['minio_cluster']}-{p['minio_seq']}", host.path))
    return out


def _check_node_vip(host: Host, once: _Once, report: Report) -> None:
    p = host.params
    if not (p.get("vip_enabled") and p.get("vip_address") and once(p, "vip_address", "vip_dns_suffix")):
        return
    if vip_of(p["vip_address"]) is None:
        report.error(p.source("vip_address"), f"vip_address '{p['vip_address']}' is not an IP address")
    name = f"{node_cluster_of(host)}{p.get('vip_dns_suffix') or ''}"
    if not HOSTNAME.match(name):
        report.error(p.source("vip_dns_suffix"), f"the VIP DNS name '{name}' is not a valid host name")


def _check_pg_dns(host: Host, once: _Once, report: Report) -> None:
    p = host.params
    if not (p.raw("pg_cluster") and p.get("pg_seq") is not None):
        return
    suffix = str(p.get("pg_dns_suffix") or "")
    names = [f"{p['pg_cluster']}-{p['pg_seq']}{suffix}", f"{p['pg_cluster']}{suffix}"]
    bad = next((n for n in names if not HOSTNAME.match(n)), None)
    if bad and once(p, "pg_dns_suffix", "pg_cluster"):
        report.error(p.source("pg_dns_suffix"), f"the DNS name '{bad}' is not a valid host name")
    target = str(p.get("pg_dns_target") or "auto")
    if not once(p, "pg_dns_target", "pg_vip_enabled"):
        return
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


def _check_minio_node(host: Host, once: _Once, report: Report) -> None:
    p = host.params
    if p.raw("minio_cluster") and p.get("minio_seq") is not None and once(p, "minio_node"):
        name = str(p.get("minio_node"))
        if not HOSTNAME.match(name):
            report.error(p.source("minio_node"), f"the MinIO node name '{name}' is not a valid host name")
