"""The TARGET grammar and the order of hosts, the same for every command on either side.

TARGET is `all`, a host address, a group name or a cluster name (of any module), or several of these
separated by commas. Hosts are always listed in address order (10.10.10.9 before 10.10.10.10).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping

from .exits import UsageError


@functools.lru_cache(maxsize=1 << 17)
def host_key(address: str) -> tuple:
    """Sort key of a host address: numeric for IPv4 and IPv6, then anything else by text. Remembered: every
    listing of hosts sorts by it, and parsing an address is most of a sort's cost."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return (2, 0, address)
    return (0 if ip.version == 4 else 1, int(ip), address)


def sort_hosts(addresses: Iterable[str]) -> list[str]:
    return sorted(addresses, key=host_key)


def parse_target(target: str | None) -> list[str]:
    """The names a TARGET lists; `[]` means every host."""
    names = [part.strip() for part in str(target or "").split(",")]
    names = [n for n in names if n]
    return [] if not names or "all" in names else names


def select(index: Mapping[str, Iterable[str]], target: str | None, where: str = "the inventory") -> list[str]:
    """Hosts a TARGET names, in address order. `index` maps each host address to the group and cluster
    names it answers to. An unknown name is a UsageError naming it."""
    wanted = parse_target(target)
    if not wanted:
        return sort_hosts(index)
    chosen: set[str] = set()
    for name in wanted:
        found = [host for host, names in index.items() if name == host or name in names]
        if not found:
            raise UsageError(f"target '{name}' is not a host address, cluster, group or 'all' of {where}")
        chosen.update(found)
    return sort_hosts(chosen)
