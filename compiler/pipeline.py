"""The build pipeline: load → resolve → validate → model → render, in one process.

`compile_fleet` does everything that needs the whole inventory (validation, cross-host rules,
module models, the records modules publish for each other) once; `render_host` turns one host into its bundle.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from sty.contract.targets import select

from . import shared
from .bundle import HostBundle
from .contrib import check_listeners
from .errors import PUBLISHED_SECRET, UNKNOWN, InventoryError, Report
from .loader import Positions, parse_inventory, read_marked
from .model import Fleet, Host, build_hosts
from .modules import all_modules
from .processes import collector_paused
from .render import RenderError
from .schema import registry
from .secrets import PUBLISHED_DEFAULTS, load_overrides, pick
from .validate import validate_blocks, validate_host_keys, validate_one_cluster_per_module, validate_shape


@dataclass
class Compiled:
    fleet: Fleet
    report: Report
    overrides: dict[str, str] = field(default_factory=dict)
    secrets_digest: str = ""


@dataclass(frozen=True)
class Policy:
    """What the command line's switches make of some kinds of problem (compiler/errors.py kinds).

    Unknown names are errors: a typo must not silently fall back to a default. `allow_unknown` makes them
    warnings (an inventory carrying another tool's variables) and wins over `strict`; `strict_secrets`
    makes only the published-default-secret warnings errors; `strict` makes every warning an error."""

    strict: bool = False
    allow_unknown: bool = False
    strict_secrets: bool = False

    def settle(self, report: Report) -> None:
        """Before the report decides whether the inventory is valid: unknown names as the policy says."""
        if self.allow_unknown:
            report.relax(UNKNOWN)

    def finish(self, report: Report) -> None:
        self.settle(report)
        if self.strict:
            report.strict(keep=(UNKNOWN,) if self.allow_unknown else ())
        elif self.strict_secrets:
            report.strict(kinds=(PUBLISHED_SECRET,))


def compile_fleet(
    inventory: str | Path,
    facts_dir: str | Path | None = None,
    strict: bool = False,
    *,
    allow_unknown: bool = False,
    strict_secrets: bool = False,
) -> Compiled:
    """Everything up to rendering. Raises InventoryError with every problem when the input is invalid; every
    problem whose inventory path was written in the file carries its file, line and column."""
    inventory = Path(inventory)
    policy = Policy(strict, allow_unknown, strict_secrets)
    with collector_paused():
        data, positions = read_marked(inventory)
        try:
            compiled = _compile(inventory, facts_dir, policy, data, positions)
        except InventoryError as exc:
            exc.report.locate(positions.find)
            raise
        compiled.report.locate(positions.find)
    return compiled


def _compile(
    inventory: Path, facts_dir: str | Path | None, policy: Policy, data: object, positions: Positions
) -> Compiled:
    report = Report()
    reg = registry()
    if isinstance(data, dict) and isinstance(data.get("all"), dict):
        validate_shape(data, reg, report)
        if report.errors:
            raise InventoryError(report)
    inv = parse_inventory(data, str(inventory), positions)
    validate_host_keys(inv, report)
    validate_blocks(inv, reg, report)
    validate_one_cluster_per_module(inv, report, cluster_keys())
    overrides, secrets_digest = load_overrides(inventory, report)
    policy.settle(report)
    if report.errors:  # cross-host rules assume well-typed parameters
        raise InventoryError(report)

    facts_path = Path(facts_dir) if facts_dir else inventory.parent / "facts"
    hosts = build_hosts(inv, reg, facts_path if facts_path.is_dir() else None, report)
    fleet = Fleet(inventory=inv, registry=reg, hosts=hosts, overrides=overrides)
    modules = all_modules()  # in phase order
    for host in hosts.values():
        host.modules = [m.name for m in modules if m.is_member(host, fleet)]
    fleet.members_known = True
    for module in modules:  # each publishes its records; reads those of earlier phases (compiler/module.py)
        module.derive(fleet, report)
    check_listeners(fleet.board, report)
    for module in modules:
        module.review(fleet, report)
    _warn_default_secrets(fleet, overrides, report)
    policy.finish(report)
    if report.errors:
        raise InventoryError(report)
    return Compiled(fleet, report, overrides, secrets_digest)


def _warn_default_secrets(fleet: Fleet, overrides: dict[str, str], report: Report) -> None:
    """A secret still holding a value Pigsty publishes is one warning per parameter."""
    used = {m for h in fleet.hosts.values() for m in h.modules} | {"infra"}
    secrets = [(n, s) for n, s in fleet.registry.params.items() if s.secret and s.module in used]
    warned: set[str] = set()
    for host in fleet.hosts.values():
        for name, spec in secrets:
            if name in warned:
                continue
            if spec.module not in host.modules and spec.module != "node":
                continue
            value = pick(name, host.params.raw(name), overrides)
            if value in PUBLISHED_DEFAULTS:
                warned.add(name)
                report.warning(
                    host.params.source(name) if host.params.is_set(name) else f"all.vars.{name}",
                    f"the secret {name} still has Pigsty's published default value; set your own in secrets.yml",
                    PUBLISHED_SECRET,
                )


def render_host(host: Host, compiled: Compiled) -> HostBundle:
    shared.begin(compiled)
    bundle = HostBundle(host.ip, overrides=compiled.overrides)
    for module in all_modules():
        if module.name in host.modules or module.serves(host, compiled.fleet):
            module.render(host, compiled.fleet, bundle)
    bundle.finish()
    return bundle


def input_digest(host: Host, compiled: Compiled, code: str) -> str:
    """Everything this host's bundle depends on: code, secrets file, its blocks and those of its peers."""
    h = hashlib.sha256()
    h.update(code.encode())
    h.update(compiled.secrets_digest.encode())
    h.update(host.digest.encode())
    h.update(",".join(host.modules).encode())
    peers: set[str] = set()
    for module in all_modules():
        if module.name in host.modules or module.serves(host, compiled.fleet):
            peers.update(p.digest + p.ip + ",".join(p.modules) for p in module.depends_on(host, compiled.fleet))
    for peer in sorted(peers):
        h.update(peer.encode())
    return h.hexdigest()


def cluster_keys() -> dict[str, str]:
    """Module -> the parameter naming its clusters, as each module declares it."""
    return {m.name: m.cluster_key for m in all_modules() if m.cluster_key}


def target_index(fleet: Fleet) -> dict[str, set[str]]:
    """Host address -> the group and cluster names it answers to (the TARGET grammar's names)."""
    index: dict[str, set[str]] = {ip: set(host.groups) for ip, host in fleet.hosts.items()}
    for ip, host in fleet.hosts.items():
        for module, key in cluster_keys().items():
            if module in host.modules and host.params.raw(key) is not None:
                index[ip].add(str(host.params.raw(key)))
    for name, members in fleet.derived.get("node", {}).items():
        for member in members:
            index[member.ip].add(str(name))
    return index


def resolve_target(fleet: Fleet, target: str | None) -> list[str]:
    """TARGET grammar (sty.contract.targets): addresses, clusters, groups or `all`, comma-separated."""
    return select(target_index(fleet), target)


__all__ = ["Compiled", "Policy", "compile_fleet", "render_host", "input_digest", "resolve_target", "RenderError"]
