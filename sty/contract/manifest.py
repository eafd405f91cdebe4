"""The per-host manifest, `outputs/<host>.yml`: everything the apply stage needs, without the inventory.

One writer (`Manifest.to_dict`, serialised by the compiler) and one reader (`read_manifest`), both typed.
The reader treats the file as untrusted (it arrives in pull requests): every field is checked for its
type, and a manifest written by a newer sty is refused with a sentence instead of being half understood.

A *retirement manifest* (`retired: true`) stands for a host that left the inventory: it keeps how to reach
the host and lists nothing to install, so that `sty apply` removes what earlier applies put there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .actions import Action
from .formats import get_format

MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


class ManifestError(Exception):
    """A manifest is missing, malformed or from a newer sty; the message names the file and the field."""


class _Fields:
    """Typed access to one mapping of an untrusted manifest; errors name the field's path."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, dict):
            raise ManifestError(f"{where} must be a mapping")
        self.data, self.where = data, where

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise ManifestError(f"{self.where}.{key} is missing")
            return default
        value = self.data[key]
        if isinstance(value, bool) and kind is int or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ManifestError(f"{self.where}.{key} must be a {names}")
        return value

    def strings(self, key: str) -> list[str]:
        items = self.get(key, list, [])
        if not all(isinstance(i, str) for i in items):
            raise ManifestError(f"{self.where}.{key} must be a list of strings")
        return list(items)

    def records(self, key: str) -> list[_Fields]:
        return [_Fields(item, f"{self.where}.{key}[{i}]") for i, item in enumerate(self.get(key, list, []))]


@dataclass(frozen=True, order=True)
class Port:
    port: int
    component: str
    module: str
    address: str = "0.0.0.0"

    def to_dict(self) -> dict[str, Any]:
        return {"port": self.port, "component": self.component, "module": self.module, "address": self.address}

    @classmethod
    def read(cls, f: _Fields) -> Port:
        return cls(f.get("port", int), f.get("component", str), f.get("module", str), f.get("address", str, "0.0.0.0"))


@dataclass(frozen=True, order=True)
class Unit:
    name: str  # e.g. patroni.service
    module: str
    health: str = ""  # a URL or `port:N` the apply stage checks after activation

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "module": self.module, "health": self.health}

    @classmethod
    def read(cls, f: _Fields) -> Unit:
        return cls(f.get("name", str), f.get("module", str), f.get("health", str, ""))


@dataclass(frozen=True, order=True)
class OsUser:
    name: str
    uid: int | None = None
    home: str | None = None
    system: bool = True

    def to_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "uid": self.uid, "home": self.home, "system": self.system}
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def read(cls, f: _Fields) -> OsUser:
        return cls(f.get("name", str), f.get("uid", int, None), f.get("home", str, None), f.get("system", bool, True))


@dataclass(frozen=True, order=True)
class Directory:
    path: str
    owner: str = "root"
    group: str = "root"
    mode: str = "0755"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "owner": self.owner, "group": self.group, "mode": self.mode}

    @classmethod
    def read(cls, f: _Fields) -> Directory:
        return cls(f.get("path", str), f.get("owner", str, "root"), f.get("group", str, "root"), f.get("mode", str))


CHECK_WHERE = ("build", "host", "both")


@dataclass(frozen=True, order=True)
class Check:
    """A real program judging some of the bundle's files: at build time (`sty lint`), on the host, or both."""

    checker: str
    files: tuple[str, ...]
    where: str = "both"

    def to_dict(self) -> dict[str, Any]:
        return {"checker": self.checker, "files": list(self.files), "where": self.where}

    @classmethod
    def read(cls, f: _Fields) -> Check:
        where = f.get("where", str, "both")
        if where not in CHECK_WHERE:
            raise ManifestError(f"{f.where}.where must be one of {', '.join(CHECK_WHERE)}")
        return cls(f.get("checker", str), tuple(f.strings("files")), where)


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "common_name": self.common_name,
            "sans": list(self.sans),
            "cert": self.cert,
            "key": self.key,
            "owner": self.owner,
            "usage": self.usage,
        }

    @classmethod
    def read(cls, f: _Fields) -> Certificate:
        return cls(
            f.get("name", str),
            f.get("common_name", str),
            tuple(f.strings("sans")),
            f.get("cert", str),
            f.get("key", str),
            f.get("owner", str, "root"),
            f.get("usage", str, "server"),
        )


@dataclass(frozen=True)
class FileEntry:
    """One file of the bundle (or a marked block inside a file the OS owns) and what its change needs."""

    path: str
    module: str
    format: str
    sha256: str
    kind: str = "file"  # file | block
    owner: str = "root"
    group: str = "root"
    mode: str = "0644"
    actions: tuple[Action, ...] = ()
    secrets: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "module": self.module,
            "format": self.format,
            "kind": self.kind,
            "owner": self.owner,
            "group": self.group,
            "mode": self.mode,
            "sha256": self.sha256,
            "actions": [a.as_dict() for a in sorted(set(self.actions))] or [{"action": "none"}],
        }
        if self.secrets:
            data["secrets"] = list(self.secrets)
        if self.kind == "block":
            data["marker"] = "sty"
        return data

    @classmethod
    def read(cls, f: _Fields) -> FileEntry:
        kind = f.get("kind", str, "file")
        if kind not in ("file", "block"):
            raise ManifestError(f"{f.where}.kind must be file or block")
        try:
            fmt = get_format(f.get("format", str)).name
            actions = tuple(Action.from_dict(a.data) for a in f.records("actions") if a.data.get("action") != "none")
        except ValueError as exc:
            raise ManifestError(f"{f.where}: {exc}") from None
        return cls(
            f.get("path", str),
            f.get("module", str),
            fmt,
            f.get("sha256", str, ""),
            kind,
            f.get("owner", str, "root"),
            f.get("group", str, "root"),
            f.get("mode", str, "0644"),
            actions,
            tuple(f.strings("secrets")),
        )


@dataclass(frozen=True)
class Ssh:
    host: str
    port: int = 22
    user: str = "root"


@dataclass(frozen=True)
class Facts:
    cpu: int
    mem_mb: int
    disk_gb: int
    source: dict[str, str] = field(default_factory=dict)
    assumed: tuple[str, ...] = ()


@dataclass
class Manifest:
    address: str
    nodename: str
    ssh: Ssh
    platform: str
    package_manager: str
    modules: list[str]  # this host's modules, in activation order
    groups: list[str]
    identity: dict[str, dict[str, Any]]  # per module: cluster, instance, seq, role, members ... (module-defined)
    facts: Facts
    ports: list[Port] = field(default_factory=list)
    units: list[Unit] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    users: list[OsUser] = field(default_factory=list)
    directories: list[Directory] = field(default_factory=list)
    files: list[FileEntry] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)  # every module of the fleet, in activation order
    trust: list[str] = field(default_factory=list)  # host paths where the apply stage installs the fleet CA
    retired: bool = False  # the host left the inventory: apply removes every module it recorded there

    # -- derived views ---------------------------------------------------------------------------
    @property
    def secrets(self) -> list[str]:
        return sorted({s for f in self.files for s in f.secrets})

    def files_of(self, module: str) -> list[FileEntry]:
        return [f for f in self.files if f.module == module]

    def units_of(self, module: str) -> list[str]:
        return [u.name for u in self.units if u.module == module]

    def port_of(self, component: str, default: int | None = None) -> int | None:
        return next((p.port for p in self.ports if p.component == component), default)

    def clusters(self) -> set[str]:
        """Cluster names this host answers to, for the TARGET grammar."""
        return {str(v["cluster"]) for v in self.identity.values() if isinstance(v, dict) and v.get("cluster")}

    def target_names(self) -> set[str]:
        return set(self.groups) | self.clusters()

    # -- one writer ------------------------------------------------------------------------------
    def to_dict(self, file_entry: Callable[[FileEntry], dict] | None = None) -> dict[str, Any]:
        """The manifest as data. `file_entry` makes each file's entry (default `FileEntry.to_dict`): the compiler
        passes entries it laid out in YAML once per shared file, equal to those."""
        retired = {"retired": True} if self.retired else {}  # absent when false: live manifests stay as they were
        return retired | {
            "sty_manifest": MANIFEST_VERSION,
            "address": self.address,
            "nodename": self.nodename,
            "ssh": {"host": self.ssh.host, "port": self.ssh.port, "user": self.ssh.user},
            "platform": self.platform,
            "package_manager": self.package_manager,
            "modules": list(self.modules),
            "phases": list(self.phases),
            "groups": list(self.groups),
            "identity": self.identity,
            "facts": {
                "cpu": self.facts.cpu,
                "mem_mb": self.facts.mem_mb,
                "disk_gb": self.facts.disk_gb,
                "source": dict(sorted(self.facts.source.items())),
                "assumed": list(self.facts.assumed),
            },
            "ports": [p.to_dict() for p in sorted(self.ports)],
            "units": [u.to_dict() for u in sorted(self.units)],
            "packages": sorted(self.packages),
            "users": [u.to_dict() for u in sorted(self.users)],
            "directories": [d.to_dict() for d in sorted(self.directories)],
            "files": [(file_entry or FileEntry.to_dict)(f) for f in sorted(self.files, key=lambda f: f.path)],
            "checks": [c.to_dict() for c in sorted(self.checks)],
            "certificates": [c.to_dict() for c in sorted(self.certificates)],
            "trust": sorted(self.trust),
            "secrets": self.secrets,
        }

    # -- one reader ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, where: str = "manifest") -> Manifest:
        top = _Fields(data, where)
        version = top.get("sty_manifest", int)
        if version > MANIFEST_VERSION:
            raise ManifestError(
                f"{where} was written by a newer sty (manifest version {version}, this sty reads up to "
                f"{MANIFEST_VERSION}); upgrade sty"
            )
        ssh, facts = _Fields(top.get("ssh", dict), f"{where}.ssh"), _Fields(top.get("facts", dict), f"{where}.facts")
        identity = top.get("identity", dict, {})
        for module, value in identity.items():
            _Fields(value, f"{where}.identity.{module}")
        retired = top.get("retired", bool, False)
        if retired:  # a half-retired host would be both removed and installed: refuse it
            for key in _NOTHING_WHEN_RETIRED:
                if top.get(key, list, []):
                    raise ManifestError(f"{where}.{key} must be empty in the manifest of a retired host")
        return cls(
            address=top.get("address", str),
            nodename=top.get("nodename", str, ""),
            ssh=Ssh(ssh.get("host", str), ssh.get("port", int, 22), ssh.get("user", str, "root")),
            platform=top.get("platform", str, ""),
            package_manager=top.get("package_manager", str, "apt"),
            modules=top.strings("modules"),
            groups=top.strings("groups"),
            identity=identity,
            facts=Facts(
                facts.get("cpu", int, 0),
                facts.get("mem_mb", int, 0),
                facts.get("disk_gb", int, 0),
                dict(facts.get("source", dict, {})),
                tuple(facts.strings("assumed")),
            ),
            ports=[Port.read(f) for f in top.records("ports")],
            units=[Unit.read(f) for f in top.records("units")],
            packages=top.strings("packages"),
            users=[OsUser.read(f) for f in top.records("users")],
            directories=[Directory.read(f) for f in top.records("directories")],
            files=[FileEntry.read(f) for f in top.records("files")],
            checks=[Check.read(f) for f in top.records("checks")],
            certificates=[Certificate.read(f) for f in top.records("certificates")],
            phases=top.strings("phases"),
            trust=top.strings("trust"),
            retired=retired,
        )


_NOTHING_WHEN_RETIRED = ("modules", "files", "units", "ports", "packages", "checks", "certificates")


def read_manifest(path: Path) -> tuple[Manifest, str]:
    """The manifest at `path` and its text (whose digest identifies the bundle)."""
    import yaml

    try:
        if path.is_symlink() or not path.is_file():
            raise ManifestError(f"{path}: no such bundle manifest (run sty build first)")
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path}: larger than {MAX_MANIFEST_BYTES // 2**20} MiB, not a manifest")
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not a manifest: {exc}".splitlines()[0]) from None
    return Manifest.from_dict(data, str(path)), text


def is_retired(path: Path) -> bool:
    """Whether `path` is a retirement manifest. Only a file with a top-level `retired:` line is parsed (the writer
    emits the key only when true), so finding the bundles of a large fleet stays cheap."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with path.open("rb") as fh:
            head = fh.read(MAX_MANIFEST_BYTES)
    except OSError:
        return False
    if not re.search(rb"^retired:", head, re.M):
        return False
    try:
        return read_manifest(path)[0].retired
    except ManifestError:
        return False  # not understood: whoever reads it next reports why


def discover(outdir: Path, retired: bool = False) -> list[str]:
    """Host addresses that have a bundle in `outdir`: an `<address>.yml` beside an `<address>/` folder, not
    retired; with `retired`, the retired hosts (`<address>.yml` alone) too, for the apply stage to clean them."""
    from .targets import sort_hosts

    if not outdir.is_dir():
        return []
    found = []
    for path in outdir.glob("*.yml"):
        folder = outdir / path.stem
        if is_retired(path):  # its folder may remain, holding files sty did not write
            if retired:
                found.append(path.stem)
        elif folder.is_dir() and not folder.is_symlink():
            found.append(path.stem)
    return sort_hosts(found)
