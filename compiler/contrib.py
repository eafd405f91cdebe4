"""The contribution board: how fleet modules meet without importing one another.

A fleet module never reads another module's code or model. What one module offers the others is a typed
record below, published on the fleet's `Board` (`fleet.board`); whoever needs it reads the records of that
type, whoever published them. So INFRA scrapes, names and charts every module that publishes scrape targets,
DNS records, HAProxy admin pages or datasources (new modules included) without knowing any of them, PGSQL finds
its DCS without knowing ETCD, and one core rule finds two modules binding the same port on a host.

The rules (see also `FleetModule` in module.py):

- A module publishes in `derive`. Modules derive in phase order (`FleetModule.phase`), so in `derive` a module
  may read what modules of EARLIER phases published (PGSQL reads ETCD's `Dcs`), and nothing else.
- In `review` (after every module derived, and after the core's rules ran) and in `render`, every record is
  there: INFRA checks the DNS names in `review` and builds its fan-in from the records at render time.
- A record whose inputs are invalid still gets published, carrying the problems instead of a wrong value
  (`DnsRecords.problems`): the value matters only where it is consumed, so its consumer reports them
  (no infra node, no DNS server, no DNS rule).
- Records are read in publication order, i.e. phase order, then each module's own order.
- A host's bundle may depend on the records other hosts publish: the consumer's `depends_on` must name those
  hosts (INFRA depends on every host; PGSQL on the hosts of the `Dcs`).

The core's own rule on the board is `check_listeners`: each module declares the ports it binds on a host
(`Listener`) and two modules binding one port on one host is an error, reported at the listener published
later. A module's rules among its own ports stay in the module.

Log sources are the other contribution between modules; they are per host and go through the host's bundle
(`compiler/logs.py`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sty.contract.targets import host_key as ip_key  # one host order for the whole of sty

from .errors import Problem, Report
from .paths import TEMPLATES
from .render import template_text

__all__ = [
    "HOSTNAME",
    "AlertRules",
    "module_alert_rules",
    "Board",
    "Datasource",
    "Dcs",
    "DcsMember",
    "DnsName",
    "DnsRecords",
    "HaproxyPage",
    "Listener",
    "Once",
    "ScrapeTarget",
    "TargetGroup",
    "addr",
    "check_listeners",
    "is_hostname",
    "ip_key",
    "is_ip",
    "labels_of",
    "listeners",
    "vip_of",
]

R = TypeVar("R")

# a DNS host name (labels of letters, digits, _ and -), as dnsmasq serves them
HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")


# -- the board --------------------------------------------------------------------------------------------------


class Board:
    """Every record the modules published, by type, in publication order."""

    def __init__(self) -> None:
        self._records: dict[type, list[tuple[str, Any]]] = {}

    def publish(self, module: str, *records: Any) -> None:
        """Offer records to the other modules (`module` names the publisher, for messages)."""
        for record in records:
            self._records.setdefault(type(record), []).append((module, record))

    def read(self, kind: type[R]) -> list[R]:
        """Every published record of one type."""
        return [record for _, record in self._records.get(kind, [])]

    def one(self, kind: type[R]) -> R | None:
        """The record of a type the fleet has at most one of (the DCS); None when nobody published it."""
        found = self._records.get(kind, [])
        if len(found) > 1:
            raise RuntimeError(f"{kind.__name__} is published by {', '.join(m for m, _ in found)}; expected one")
        return found[0][1] if found else None


# -- monitoring: alert rules, scrape targets, HAProxy admin pages, datasources ---------------------------------


@dataclass(frozen=True)
class AlertRules:
    """A Prometheus rule file a module ships for its own components, kept as data in its template folder
    (`templates/<module>/rules/<subject>.yml`, judged by promtool and vmalert in every bundle that carries it);
    INFRA's vmalert evaluates every published one as `/infra/rules/<subject>.yml`."""

    subject: str
    template: str  # the data file, relative to the templates package

    def groups(self) -> list[dict[str, Any]]:
        """Parsed on every call (the text is cached), so that no caller sees another's changes."""
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the pure-Python parser cost 0.2 s a node
        return yaml.load(template_text(self.template), Loader=loader)["groups"]


def module_alert_rules(module: str) -> list[AlertRules]:
    """The rule files of `templates/<module>/rules/`: what a module publishes with `board.publish`."""
    folder = TEMPLATES / module / "rules"
    return [AlertRules(p.stem, f"{module}/rules/{p.name}") for p in sorted(folder.glob("*.yml"))]


@dataclass(frozen=True)
class TargetGroup:
    """One file_sd target group: addresses scraped with the same labels (`__scheme__: https` for TLS)."""

    targets: tuple[str, ...]
    labels: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"labels": dict(sorted(self.labels.items())), "targets": list(self.targets)}

    @property
    def https(self) -> bool:
        return self.labels.get("__scheme__") == "https"


@dataclass(frozen=True)
class ScrapeTarget:
    """What the metrics scrapers read for one scrape job (`job`) from one publisher (`name`, unique per job): one
    file_sd file on every infra node, so that a host or cluster leaving the inventory removes exactly its file.
    A job is scraped over HTTPS (trusting the fleet CA) when any of its groups says `__scheme__: https`."""

    job: str  # node, pgsql, redis ... : the scrape job (and the folder of its files)
    name: str  # the file name without .yml
    groups: tuple[TargetGroup, ...]
    owner: str  # the host address or cluster name it describes

    @property
    def https(self) -> bool:
        return any(g.https for g in self.groups)


@dataclass(frozen=True)
class HaproxyPage:
    """A HAProxy admin page the portal links to."""

    nodename: str
    ip: str
    port: int


@dataclass(frozen=True)
class Datasource:
    """A database the fleet's Grafana queries (today PostgreSQL's). The password stays a secret: its value is
    registered under `password_secret` by the consumer's bundle, the file carries a placeholder."""

    kind: str  # postgres
    cluster: str
    name: str
    url: str  # host:port
    database: str
    user: str
    password_secret: str  # scoped secret name ("pg-meta/pg_monitor_password")
    password: Any
    version: int


# -- DNS ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DnsName:
    """A name registered for something, for the rule that one DNS name answers for one thing."""

    name: str
    owner: str  # what the name is registered for ("PostgreSQL cluster pg-test")
    path: str  # the inventory path that registers it
    host: str  # the host it is registered by: names are compared in inventory host order


@dataclass(frozen=True)
class DnsRecords:
    """One hosts file the DNS servers serve (`key`), its `<ip> <name>` lines (none: no file), the names it
    registers, and the problems that kept a value out of it (reported by whoever serves it)."""

    key: str
    lines: tuple[str, ...] = ()
    names: tuple[DnsName, ...] = ()
    problems: tuple[Problem, ...] = ()


# -- the DCS -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DcsMember:
    name: str
    ip: str
    port: int  # client port
    peer_port: int


@dataclass(frozen=True)
class Dcs:
    """The fleet's distributed configuration store (one etcd cluster), for the clusters that keep their state
    and leader lock in it."""

    name: str
    members: tuple[DcsMember, ...]
    scheme: str = "https"  # clients verify the members' certificates against the fleet CA

    def client_endpoints(self) -> list[str]:
        return [f"{m.ip}:{m.port}" for m in self.members]

    def client_urls(self) -> list[str]:
        return [f"{self.scheme}://{e}" for e in self.client_endpoints()]

    @property
    def hosts(self) -> list[str]:
        """The addresses whose parameters shape the record (for `depends_on`)."""
        return [m.ip for m in self.members]


@dataclass(frozen=True)
class DcsUser:
    """A DCS account for one client cluster: read-write on its key prefix only (Pigsty's per-cluster etcd user).
    `secret` is the scoped name of its password, `password` the value the bundle registers for the store (never
    written to outputs/); `hosts` are the addresses whose parameters shape it."""

    name: str
    prefix: str
    secret: str
    password: str
    hosts: tuple[str, ...]


# -- listeners ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    """A port a module binds on a host. `path` is where the port is set in the inventory (where a clash is
    reported); `param` the parameter's name when the port is its value, so the message can name it."""

    host: str
    port: int
    label: str  # what listens: "node_exporter", "redis instance redis-ms-1-6379"
    module: str
    path: str
    param: str = ""

    @property
    def subject(self) -> str:
        return f"{self.param} {self.port}" if self.param else f"port {self.port} ({self.label})"

    @property
    def described(self) -> str:
        return f"{self.label} ({self.param})" if self.param else self.label


def check_listeners(board: Board, report: Report) -> None:
    """Two modules binding one port on one host fail only when the second starts, on one node, long after the
    build: report each such listener against the first one published (earlier phase), once per pair of
    inventory definitions (a group's vars reach many hosts)."""
    first: dict[tuple[str, int], Listener] = {}
    reported: set[tuple[str, str, int]] = set()
    for listener in board.read(Listener):
        key = (listener.host, listener.port)
        other = first.setdefault(key, listener)
        if other is listener or other.module == listener.module:
            continue
        once = (listener.path, other.path, listener.port)
        if once in reported:
            continue
        reported.add(once)
        report.error(
            listener.path,
            f"{listener.subject} clashes with {other.described} on {listener.host}",
        )


def listeners(host: str, module: str, p: Any, ports: Iterable[tuple[str, str]]) -> list[Listener]:
    """Listeners of ports that are one parameter each: (parameter, label) pairs read from the host's params."""
    return [Listener(host, int(p[param]), label, module, p.source(param), param) for param, label in ports]


# -- helpers the publishers share -------------------------------------------------------------------------------


def addr(ip: str, port: Any) -> str:
    return f"{ip}:{int(port)}"


def labels_of(cls: str, ins: str, ip: str, **extra: str) -> dict[str, str]:
    """The identity labels every target carries (cls, ins, ip), as Pigsty's dashboards expect."""
    return {"cls": str(cls), "ins": str(ins), "ip": str(ip), **extra}


def vip_of(cidr: Any) -> str | None:
    """The address of `10.10.10.2/24` (or of a bare address); None when it is not one."""
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


def is_hostname(name: str) -> bool:
    return bool(HOSTNAME.match(name))


@dataclass
class Once:
    """Checks a value once per definition: many hosts inherit the same cluster or group variable."""

    checked: set[tuple[str, ...]] = field(default_factory=set)

    def __call__(self, p: Any, *keys: str) -> bool:
        key = tuple(p.source(k) for k in keys) + keys
        if key in self.checked:
            return False
        self.checked.add(key)
        return True
