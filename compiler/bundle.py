"""What a module contributes to a host: files, fragments of shared files, ports, units, packages,
OS users and directories, checks, and the activation actions each file needs.

A `HostBundle` is the in-memory form of `outputs/<host>/` plus `outputs/<host>.yml`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .secrets import pick

# The activation vocabulary. Unit actions name a unit; the others act on a module's service.
ACTIONS = {
    "none": "nothing to do",
    "daemon-reload": "systemctl daemon-reload",
    "start": "enable and start a unit that is not running",
    "reload": "reload a unit",
    "restart": "restart a unit",
    "patroni-reload": "patronictl reload: Patroni re-reads its file and reloads PostgreSQL",
    "patroni-dcs-config": "patronictl edit-config: change the cluster-wide DCS configuration",
    "pg-rolling-restart": "restart PostgreSQL replicas first, then switch over and restart the old primary",
    "pg-sql-primary": "run SQL on the cluster primary",
    "pgbackrest-stanza": "create the pgBackRest stanza on the primary (and a first full backup if asked)",
    "redis-cluster-create": "create the native Redis cluster once all members run",
    "minio-provision": "create MinIO buckets, users and policies",
}
UNIT_ACTIONS = {"start", "reload", "restart"}

SECRET = re.compile(r"<<secret:([^<>\s]+)>>")
CHECK_WHERE = ("build", "host", "both")


@dataclass(frozen=True, order=True)
class Action:
    action: str
    unit: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action}")
        if (self.action in UNIT_ACTIONS) != (self.unit is not None):
            raise ValueError(f"action {self.action} {'needs' if self.action in UNIT_ACTIONS else 'takes no'} unit")

    def as_dict(self) -> dict[str, str]:
        return {"action": self.action, **({"unit": self.unit} if self.unit else {})}

    def __str__(self) -> str:
        return f"{self.action} {self.unit}" if self.unit else self.action


def restart(unit: str) -> Action:
    return Action("restart", unit)


def reload(unit: str) -> Action:
    return Action("reload", unit)


DAEMON_RELOAD = Action("daemon-reload")


@dataclass
class Contribution:
    """A fragment of a file owned by another module (`/etc/hosts` lines, vector sources ...)."""

    path: str
    module: str
    key: str  # sorts fragments deterministically
    data: Any


@dataclass
class FileSpec:
    path: str  # absolute path on the host
    module: str
    content: str | None = None
    format: str = "text"
    owner: str = "root"
    group: str = "root"
    mode: str = "0644"
    kind: str = "file"  # file | block (a marked block inside a file the OS owns)
    actions: list[Action] = field(default_factory=list)
    compose: Callable[[str | None, list[Contribution]], str] | None = None

    @property
    def secrets(self) -> list[str]:
        return sorted(set(SECRET.findall(self.content or "")))


@dataclass(frozen=True, order=True)
class Port:
    port: int
    component: str
    module: str
    address: str = "0.0.0.0"


@dataclass(frozen=True, order=True)
class Unit:
    name: str  # e.g. patroni.service
    module: str
    health: str = ""  # an URL or `port:N` the apply stage checks after activation


@dataclass(frozen=True, order=True)
class OsUser:
    name: str
    uid: int | None = None
    home: str | None = None
    system: bool = True


@dataclass(frozen=True, order=True)
class Directory:
    path: str
    owner: str = "root"
    group: str = "root"
    mode: str = "0755"


@dataclass(frozen=True, order=True)
class Check:
    checker: str
    files: tuple[str, ...]
    where: str = "both"


@dataclass(frozen=True, order=True)
class Certificate:
    """A certificate the host needs, signed by the fleet CA at apply time (keys never enter outputs/)."""

    name: str  # e.g. etcd-server
    common_name: str
    sans: tuple[str, ...]  # DNS names and IP addresses
    cert: str  # host path of the certificate
    key: str  # host path of the private key
    owner: str = "root"
    usage: str = "server"  # server | client | both


@dataclass
class HostBundle:
    ip: str
    files: dict[str, FileSpec] = field(default_factory=dict)
    contributions: dict[str, list[Contribution]] = field(default_factory=dict)
    ports: set[Port] = field(default_factory=set)
    units: set[Unit] = field(default_factory=set)
    packages: set[str] = field(default_factory=set)
    users: set[OsUser] = field(default_factory=set)
    directories: set[Directory] = field(default_factory=set)
    checks: set[Check] = field(default_factory=set)
    certificates: set[Certificate] = field(default_factory=set)
    secrets: dict[str, str] = field(default_factory=dict)  # scoped name -> value (never written to outputs/)
    info: dict[str, Any] = field(default_factory=dict)  # module -> identity shown in the manifest
    overrides: dict[str, str] = field(default_factory=dict)  # values from secrets.yml

    def add(self, spec: FileSpec) -> FileSpec:
        if spec.path in self.files:
            other = self.files[spec.path].module
            raise RuntimeError(f"{spec.path} is produced by both {other} and {spec.module}; a file has one owner")
        self.files[spec.path] = spec
        return spec

    def contribute(self, path: str, module: str, key: str, data: Any) -> None:
        self.contributions.setdefault(path, []).append(Contribution(path, module, key, data))

    def check(self, checker: str, *files: str, where: str = "both") -> None:
        assert where in CHECK_WHERE
        self.checks.add(Check(checker, tuple(files), where))

    def secret(self, name: str, value: Any) -> str:
        """Register a secret's value for the store and return the placeholder the bundle carries."""
        self.secrets[name] = pick(name, value, self.overrides)
        return f"<<secret:{name}>>"

    def keep(self, name: str, value: Any) -> None:
        """A secret the apply stage or `sty verify` needs although no file carries it."""
        value = pick(name, value, self.overrides)
        if value:
            self.secrets[name] = value

    def secret_value(self, name: str, value: Any) -> str:
        """The effective value of a secret (for deriving another secret from it)."""
        return pick(name, value, self.overrides)

    def finish(self) -> None:
        """Compose shared files from their owner's base and every module's fragments."""
        for path, fragments in sorted(self.contributions.items()):
            spec = self.files.get(path)
            if spec is None or spec.compose is None:
                raise RuntimeError(f"{path} receives contributions but no module owns it with a composer")
            fragments.sort(key=lambda c: (c.key, c.module))
            spec.content = spec.compose(spec.content, fragments)
        for spec in self.files.values():
            if spec.content is None and spec.compose is not None:
                spec.content = spec.compose(None, [])
            if spec.content is None:
                raise RuntimeError(f"{spec.path} has no content")
