"""REDIS: Redis clusters (standalone, sentinel, native cluster). Membership by `redis_cluster`."""

from __future__ import annotations

from ..bundle import HostBundle
from ..errors import Report
from ..model import Fleet, Host
from ..module import FleetModule


class RedisModule(FleetModule):
    name = "redis"

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return bool(host.params.raw("redis_cluster"))

    def derive(self, fleet: Fleet, report: Report) -> None:
        pass

    def render(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        pass
