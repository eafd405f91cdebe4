"""What a module contributes to a host: files, fragments of shared files, ports, units, packages,
OS users and directories, checks, and the activation actions each file needs.

A `HostBundle` is the in-memory form of `outputs/<host>/` plus `outputs/<host>.yml`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sty.contract.actions import ACTIONS, DAEMON_RELOAD, UNIT_ACTIONS, Action, reload, restart
from sty.contract.formats import SECRET, get_format, placeholder
from sty.contract.manifest import CHECK_WHERE, Certificate, Check, Directory, FileEntry, OsUser, Port, Unit

from .render import RenderError, list_item
from .secrets import pick
from .writer import unsafe_path

CA_CERT_PATH = "/etc/pki/ca.crt"  # where every host finds the fleet CA (Pigsty's path); compiler/ca.py signs it

__all__ = [
    "ACTIONS",
    "DAEMON_RELOAD",
    "UNIT_ACTIONS",
    "Action",
    "Certificate",
    "Check",
    "Contribution",
    "Directory",
    "FileSpec",
    "HostBundle",
    "OsUser",
    "Port",
    "Unit",
    "reload",
    "restart",
]


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
    format: str = ""  # required: one of sty.contract.formats.FORMATS
    owner: str = "root"
    group: str = "root"
    mode: str = "0644"
    kind: str = "file"  # file | block (a marked block inside a file the OS owns)
    actions: list[Action] = field(default_factory=list)
    compose: Callable[[str | None, list[Contribution]], str] | None = None
    # the manifest's entry, made once for the content it was made from (a file shared between hosts by
    # compiler/shared.py is hashed once)
    _entry: tuple[str | None, FileEntry, dict | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        get_format(self.format)  # the closed set: a YAML file is `yaml` whatever it configures

    @property
    def secrets(self) -> list[str]:
        return sorted(set(SECRET.findall(self.content or "")))

    def entry(self) -> FileEntry:
        """The file as the manifest lists it: its content's digest, the secrets it names, what a change needs."""
        if self._entry is not None and self._entry[0] is self.content:
            return self._entry[1]
        entry = FileEntry(
            path=self.path,
            module=self.module,
            format=self.format,
            sha256=hashlib.sha256((self.content or "").encode()).hexdigest(),
            kind=self.kind,
            owner=self.owner,
            group=self.group,
            mode=self.mode,
            actions=tuple(self.actions),
            secrets=tuple(self.secrets),
        )
        self._entry = (self.content, entry, None)
        return entry

    def listed(self) -> dict:
        """The entry as the manifest's `files` list carries it, laid out in YAML once (compiler/yaml_emitter.py)."""
        entry = self.entry()
        assert self._entry is not None
        if self._entry[2] is None:
            self._entry = (self.content, entry, list_item(entry.to_dict()))
        return self._entry[2]


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
    trust: set[str] = field(default_factory=set)  # where the apply stage installs the fleet CA on this host
    secrets: dict[str, str] = field(default_factory=dict)  # scoped name -> value (never written to outputs/)
    info: dict[str, Any] = field(default_factory=dict)  # module -> identity shown in the manifest
    overrides: dict[str, str] = field(default_factory=dict)  # values from secrets.yml

    def add(self, spec: FileSpec) -> FileSpec:
        """Register a file; its path must be safe to join under `outputs/<host>/` and to install as root.

        Names from the inventory become path components, and the schema's patterns are the first line of
        defence; this is the last one, so that no module can ever produce a path that climbs out of the
        bundle (`..`), is relative, or is spelled two ways (`//`, `/./`, a trailing `/`)."""
        problem = unsafe_path(spec.path)
        if problem:
            raise RenderError(f"{spec.module} would write the file {spec.path!r}, which {problem}")
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
        return placeholder(name)

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
