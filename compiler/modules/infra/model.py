"""The INFRA model: the infra nodes in `infra_seq` order and the fan-in they all share (scrape targets, DNS
records, HAProxy admin pages, Grafana datasources). Kept free of other modules' code: the fan-in is built by a
function handed in by the module (see `fanin.py`), so the data shapes here stay stable when the way other
modules contribute changes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ...model import Fleet, Host
from ...render import HEADER, to_yaml

MODULE = "infra"
TARGETS_DIR = "/infra/targets"
# the INFRA components each infra node may run, with `<comp>_enabled` / `<comp>_port` parameters
COMPONENTS = ("vmetrics", "vlogs", "vtraces", "vmalert", "alertmanager", "blackbox", "grafana")


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


# builds the fan-in from the fleet and the infra nodes (`fanin.build_fanin`): handed to the model rather than
# imported, so this file depends on no other module
FanInBuilder = Callable[[Fleet, list[Host]], FanIn]


class InfraModel:
    """The infra nodes (by infra_seq) and the fan-in, built on first use: the models it reads (PGSQL,
    ETCD ...) are derived after INFRA's own `derive`."""

    def __init__(self, fleet: Fleet, members: list[Host], build: FanInBuilder):
        self.fleet = fleet
        self.members = members
        self._build = build
        self._fanin: FanIn | None = None

    @property
    def fanin(self) -> FanIn:
        if self._fanin is None:
            self._fanin = self._build(self.fleet, self.members)
        return self._fanin


def infra_model(fleet: Fleet) -> InfraModel:
    return fleet.derived["infra"]


def infra_components(host: Host) -> list[tuple[str, int]]:
    """(component, port) of the INFRA components enabled on an infra node, scraped by every vmetrics."""
    p = host.params
    out = []
    if p.get("nginx_enabled") and p.get("nginx_exporter_enabled"):
        out.append(("nginx", int(p["nginx_exporter_port"])))
    for comp in COMPONENTS:
        if p.get(f"{comp}_enabled"):
            out.append((comp, int(p[f"{comp}_port"])))
    return out


def addr(ip: str, port: Any) -> str:
    return f"{ip}:{int(port)}"


def labels_of(cls: str, ins: str, ip: str, **extra: str) -> dict[str, str]:
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
