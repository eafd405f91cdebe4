"""The contract every fleet module implements.

A fleet module is three things with the same name: `schemas/<name>.json`, `templates/<name>/`, and
`compiler/modules/<name>/` (or `<name>.py`) defining a `FleetModule` subclass, registered by one line in
`compiler/modules/__init__.py`. It declares its `name` and `phase` once, as class attributes.

Modules are peers: none imports another. They meet only through the core (compiler/contrib.py): a module
publishes typed records on `fleet.board` and reads those the others published. The pipeline calls, for the
whole fleet, every module's `derive` in phase order, then the core's rules on the board (two modules binding one
port), then every module's `review`; then, per host, `render` of the modules that run there or serve it. Hence:

- publish in `derive`;
- in `derive`, read only records of modules with a lower phase (ETCD's DCS is there when PGSQL derives);
- in `review` and `render`, read any record;
- in `depends_on`, name the hosts whose records shaped this host's files (incremental builds compare them).
"""

from __future__ import annotations

from typing import ClassVar

from .bundle import HostBundle
from .errors import Report
from .model import Fleet, Host


class FleetModule:
    # the module's name: owner of its files, ports and units, `host.modules` entry, schema and template folder
    name: ClassVar[str]
    # where the module comes in the fleet's order (lower first): the order `derive` runs in, `host.modules` lists
    # and the apply stage activates in. A module that reads another's records in `derive` needs a higher phase.
    phase: ClassVar[int]
    # the parameter that names a member's cluster (`pg_cluster`), if the module has clusters: a host is in at most
    # one cluster per module, and TARGET accepts the cluster's name
    cluster_key: ClassVar[str | None] = None
    # identity keys (the manifest's `identity.<module>`) a rebuild must not change, with the parameter that sets
    # each: a change there is a procedure (a major-version upgrade), never shipped as a configuration change
    pinned: ClassVar[dict[str, str]] = {}

    def pin_refusal(self, key: str, old: object, new: object, host: Host) -> str:
        """The sentence refusing a change of a pinned identity key (the build names the parameter's path)."""
        return f"{self.name} {key} would change from {old} to {new}, which a rebuild cannot do"

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        """Does this module run on the host? (Pigsty's rule: a group name or an identity parameter.)"""
        raise NotImplementedError

    def serves(self, host: Host, fleet: Fleet) -> bool:
        """Does the module put files on a host that is not a member (e.g. HAProxy service providers)?"""
        return False

    def derive(self, fleet: Fleet, report: Report) -> None:
        """Build this module's model from the fleet, report cross-host problems, publish records on the board."""

    def review(self, fleet: Fleet, report: Report) -> None:
        """Rules over what the other modules published, once every module derived (a consumer's checks)."""

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        """Other hosts whose parameters shape this host's files (for incremental builds), including the hosts
        whose published records this host's files are made of."""
        return []

    def render(self, host: Host, fleet: Fleet, bundle: HostBundle) -> None:
        """Add this module's files, fragments, ports, units, packages and checks to the host's bundle."""
        raise NotImplementedError
