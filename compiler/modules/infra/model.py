"""The INFRA model: the infra nodes in `infra_seq` order and the fan-in they all share (scrape targets, DNS
records, HAProxy admin pages, Grafana datasources). The fan-in is read from the records every module published
on the board (compiler/contrib.py), INFRA's own included, so INFRA knows no other module: a module that
publishes a scrape target is scraped, whoever it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from ...contrib import Board, Datasource, DnsRecords, HaproxyPage, ScrapeTarget, ip_key
from ...model import Fleet, Host
from ...render import HEADER, to_yaml

MODULE = "infra"
TARGETS_DIR = "/infra/targets"
# the INFRA components each infra node may run, with `<comp>_enabled` / `<comp>_port` parameters
COMPONENTS = ("vmetrics", "vlogs", "vtraces", "vmalert", "alertmanager", "blackbox", "grafana")


@dataclass
class TargetFile:
    """One file_sd file `/infra/targets/<job>/<name>.yml`: a published scrape target as INFRA writes it."""

    target: ScrapeTarget

    @property
    def job(self) -> str:
        return self.target.job

    @property
    def path(self) -> str:
        return f"{TARGETS_DIR}/{self.target.job}/{self.target.name}.yml"

    @cached_property
    def text(self) -> str:  # rendered once, shared by every infra node
        return to_yaml([g.as_dict() for g in self.target.groups], HEADER)


@dataclass
class FanIn:
    """What every INFRA node collects from the whole fleet (identical on every INFRA node)."""

    targets: dict[str, TargetFile] = field(default_factory=dict)  # path -> file
    dns: dict[str, list[str]] = field(default_factory=dict)  # record file name -> "ip name" lines
    haproxy: list[HaproxyPage] = field(default_factory=list)  # in address order
    datasources: list[Datasource] = field(default_factory=list)

    def jobs(self) -> set[str]:
        return {t.job for t in self.targets.values()}

    def https_jobs(self) -> set[str]:
        """The jobs some target of which is scraped over HTTPS: the job trusts the fleet CA."""
        return {t.job for t in self.targets.values() if t.target.https}


def read_fanin(board: Board) -> FanIn:
    """The fan-in from the published records. A target without groups or a DNS record without lines writes no
    file; two publishers of one file are a programming error (each file has one owner)."""
    fan = FanIn()
    for target in board.read(ScrapeTarget):
        tf = TargetFile(target)
        if tf.path in fan.targets:
            raise RuntimeError(f"{tf.path} is published twice: a scrape target file has one publisher")
        if target.groups:
            fan.targets[tf.path] = tf
    for records in board.read(DnsRecords):
        if records.key in fan.dns:
            raise RuntimeError(f"DNS records {records.key} are published twice: a hosts file has one publisher")
        if records.lines:
            fan.dns[records.key] = list(records.lines)
    fan.haproxy = sorted(board.read(HaproxyPage), key=lambda page: ip_key(page.ip))
    fan.datasources = board.read(Datasource)
    return fan


class InfraModel:
    """The infra nodes (by infra_seq) and the fan-in, read on first use: the records it is made of are
    published by modules deriving after INFRA."""

    def __init__(self, fleet: Fleet, members: list[Host]):
        self.fleet = fleet
        self.members = members
        self.remote: dict[str, list] = {}  # infra node address -> its pg_exporters (pgrds.RemoteExporter)

    @cached_property
    def fanin(self) -> FanIn:
        return read_fanin(self.fleet.board)


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
