"""The contract every fleet module implements.

A fleet module is three things with the same name: `schemas/<name>.json`,
`templates/<name>/`, and `compiler/modules/<name>.py` defining a `FleetModule` subclass.
"""

from __future__ import annotations

from typing import ClassVar

from .bundle import HostBundle
from .errors import Report
from .model import Fleet, Host


class FleetModule:
    name: ClassVar[str]

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        """Does this module run on the host? (Pigsty's rule: a group name or an identity parameter.)"""
        raise NotImplementedError

    def serves(self, host: Host, fleet: Fleet) -> bool:
        """Does the module put files on a host that is not a member (e.g. HAProxy service providers)?"""
        return False

    def derive(self, fleet: Fleet, report: Report) -> None:
        """Build this module's model from the fleet and report cross-host problems."""

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        """Other hosts whose parameters shape this host's files (for incremental builds)."""
        return []

    def render(self, host: Host, fleet: Fleet, bundle: HostBundle) -> None:
        """Add this module's files, fragments, ports, units, packages and checks to the host's bundle."""
        raise NotImplementedError
