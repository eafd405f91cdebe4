"""The fleet model: typed hosts with their effective parameters, facts and module memberships.

Module-specific structure (PostgreSQL clusters, etcd members ...) is derived by each fleet
module and stored in `Fleet.derived[module]`, so the core never needs to know a module's shape;
what modules offer each other is published on `Fleet.board` (compiler/contrib.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .contrib import Board
from .errors import Report, join_path
from .loader import Inventory
from .platform import PLATFORMS, Platform
from .resolve import Params, host_layers
from .schema import Registry

DEFAULT_FACTS = {"cpu": 2, "mem_mb": 4096, "disk_gb": 100}
FACT_PARAMS = {"cpu": "node_cpu", "mem_mb": "node_mem_mb", "disk_gb": "node_disk_gb"}


@dataclass
class Facts:
    cpu: int
    mem_mb: int
    disk_gb: int
    source: dict[str, str]  # fact -> facts-file | inventory | assumed

    @property
    def assumed(self) -> list[str]:
        return sorted(k for k, v in self.source.items() if v == "assumed")


@dataclass
class Host:
    ip: str
    path: str  # inventory path of the host's first declaration
    groups: list[str]
    params: Params
    facts: Facts
    platform: Platform
    modules: list[str] = field(default_factory=list)
    digest: str = ""  # digest of the host's own inputs (blocks + facts)

    @property
    def nodename(self) -> str:
        return self.derived_nodename or self.ip

    derived_nodename: str | None = None

    def pp(self, key: str) -> str:
        """Inventory path of a parameter in effect on this host (for messages)."""
        return self.params.source(key)


@dataclass
class Fleet:
    inventory: Inventory
    registry: Registry
    hosts: dict[str, Host]
    derived: dict[str, Any] = field(default_factory=dict)  # module -> its model (no other module reads it)
    board: Board = field(default_factory=Board)  # the records modules publish for each other
    overrides: dict[str, str] = field(default_factory=dict)  # secrets.yml's values (names -> values), never printed

    def group_hosts(self, name: str) -> list[Host]:
        group = self.inventory.groups.get(name)
        return [self.hosts[h] for h in group.hosts] if group else []

    members_known: bool = False  # set once every host's modules are decided (compiler/pipeline.py)
    _members: dict[str, list[Host]] = field(default_factory=dict, repr=False)

    def with_module(self, module: str) -> list[Host]:
        """The hosts of one module, in inventory order. Kept once membership is decided: modules ask this for every
        host they render (the infra nodes a pg_hba admits), which was quadratic in the fleet's size."""
        if not self.members_known:
            return [h for h in self.hosts.values() if module in h.modules]
        if module not in self._members:
            self._members[module] = [h for h in self.hosts.values() if module in h.modules]
        return list(self._members[module])


def read_facts(facts_dir: Path | None, ip: str, report: Report) -> dict[str, Any]:
    if facts_dir is None:
        return {}
    path = facts_dir / f"{ip}.yml"
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        report.error(str(path), f"cannot parse facts file: {exc}")
        return {}
    if not isinstance(data, dict):
        report.error(str(path), "a facts file must be a mapping with cpu, mem_mb and disk_gb")
        return {}
    out = {}
    for key in DEFAULT_FACTS:
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                report.error(join_path(str(path), key), f"expected a positive integer, got {value!r}")
            else:
                out[key] = value
    return out


def host_facts(params: Params, from_file: dict[str, Any]) -> Facts:
    values: dict[str, int] = {}
    source: dict[str, str] = {}
    for fact, default in DEFAULT_FACTS.items():
        param = params.raw(FACT_PARAMS[fact])
        if fact in from_file:
            values[fact], source[fact] = from_file[fact], "facts-file"
        elif isinstance(param, int) and not isinstance(param, bool) and param > 0:
            values[fact], source[fact] = param, "inventory"
        else:
            values[fact], source[fact] = default, "assumed"
    return Facts(**values, source=source)


def block_digest(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def build_hosts(inv: Inventory, reg: Registry, facts_dir: Path | None, report: Report) -> dict[str, Host]:
    """One Host per inventory host with lazy effective parameters, facts and platform."""
    defaults = reg.defaults
    secret_shapes = reg.secret_shapes
    digests: dict[int, str] = {}
    literal: dict[int, tuple[Any, bool]] = {}  # Params' shared memo of placeholder-free values
    results: dict[int, Any] = {}  # and of what substitution made of them (Params._substituted)

    def digest(block) -> str:
        key = id(block)
        if key not in digests:
            digests[key] = block_digest(block.data)
        return digests[key]

    hosts: dict[str, Host] = {}
    for name, decl in inv.hosts.items():
        layers = host_layers(inv, decl)
        params = Params(name, layers, defaults, secret_shapes, literal, results)
        facts = host_facts(params, read_facts(facts_dir, name, report))
        platform_name = params.raw("sty_platform", "debian12")
        platform = PLATFORMS.get(platform_name, PLATFORMS["debian12"])
        h = hashlib.sha256()
        for block in layers:
            h.update(digest(block).encode())
        h.update(json.dumps([facts.cpu, facts.mem_mb, facts.disk_gb]).encode())
        hosts[name] = Host(
            ip=name,
            path=decl.path,
            groups=sorted(decl.groups),
            params=params,
            facts=facts,
            platform=platform,
            digest=h.hexdigest(),
        )
    return hosts
