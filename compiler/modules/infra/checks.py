"""INFRA's inventory rules, run by `derive`: unique `infra_seq`s and the infra nodes' own parameters (portal,
users, DNS records, scrape timing). Rendering relies on them: a value rejected here is never rendered. The rules
on what the other modules publish for the infra nodes (DNS names) are `fanin.check_published`, run by `review`.
"""

from __future__ import annotations

import re

from ...errors import Report, join_path
from ...model import Fleet, Host
from .dns import record_problem
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
