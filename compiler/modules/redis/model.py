"""REDIS model: clusters, their nodes and instances, and where each instance keeps its files.

The names and paths are Pigsty's (roles/redis: tasks/instance.yml, templates/redis.conf, redis.svc): an instance
Pigsty deployed, migrated to sty, finds its config, unit, data, RDB and AOF files where they already are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...model import Fleet, Host

MODULE = "redis"
MODES = ("standalone", "cluster", "sentinel")
CONF_DIR = "/etc/redis"
LOG_DIR = "/var/log/redis"
RUN_DIR = "/var/run/redis"  # Pigsty's spelling in pidfile; /var/run is /run on every supported distribution
EXPORTER_UNIT = "redis_exporter.service"
EXPORTER_PASSWORDS = "/etc/redis/redis_exporter.json"
CLUSTER_BUS_OFFSET = 10000  # a cluster-enabled instance also listens on port + 10000

# server binary and packages per (package family, redis_type)
SERVERS = {
    ("deb", "redis"): ("/usr/bin/redis-server", ("redis-server", "redis-tools")),
    ("deb", "valkey"): ("/usr/bin/valkey-server", ("valkey-server", "valkey-tools")),
    ("rpm", "redis"): ("/usr/bin/redis-server", ("redis",)),
    ("rpm", "valkey"): ("/usr/bin/valkey-server", ("valkey",)),
}
EXPORTERS = {
    "deb": ("/usr/bin/prometheus-redis-exporter", "prometheus-redis-exporter"),
    "rpm": ("/usr/bin/redis_exporter", "redis_exporter"),
}
# units the distribution's packages enable that would hold the same ports (apply disables them)
PACKAGE_UNITS = {"deb": ("redis-server.service", "prometheus-redis-exporter.service"), "rpm": ()}


@dataclass
class RedisInstance:
    host: Host
    cluster: str
    node: int
    port: int
    spec: dict[str, Any]
    source: str  # inventory path of this instance's definition

    @property
    def name(self) -> str:
        """`<cluster>-<node>-<port>`: the stem of every file of the instance, and its unit."""
        return f"{self.cluster}-{self.node}-{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host.ip}:{self.port}"

    @property
    def conf(self) -> str:
        return f"{CONF_DIR}/{self.name}.conf"

    @property
    def unit(self) -> str:
        return f"{self.name}.service"

    @property
    def pidfile(self) -> str:
        return f"{RUN_DIR}/{self.name}.pid"

    @property
    def logfile(self) -> str:
        return f"{LOG_DIR}/{self.name}.log"

    @property
    def rdb(self) -> str:  # relative to the data directory
        return f"{self.name}.rdb"

    @property
    def aof(self) -> str:  # the AOF base name (redis 7 keeps the files in appendonlydir/ of the data directory)
        return f"{self.name}.aof"

    def data_dir(self, fs_main: str) -> str:
        return f"{fs_main.rstrip('/')}/{self.name}"


@dataclass
class RedisNode:
    host: Host
    cluster: str
    node: int
    instances: list[RedisInstance] = field(default_factory=list)


@dataclass
class RedisCluster:
    name: str
    mode: str
    nodes: list[RedisNode] = field(default_factory=list)

    @property
    def instances(self) -> list[RedisInstance]:
        return [i for n in self.nodes for i in n.instances]


@dataclass
class RedisModel:
    clusters: dict[str, RedisCluster]
    node_of: dict[str, RedisNode]  # host ip -> its redis node
    instance_at: dict[tuple[str, int], RedisInstance]  # (ip, port) -> instance, every cluster


def redis_model(fleet: Fleet) -> RedisModel:
    return fleet.derived[MODULE]


def bind_addresses(p, ip: str) -> list[str]:
    """`redis_bind_address` as redis' `bind` arguments; empty means the host's own address."""
    value = str(p.get("redis_bind_address") or "").strip()
    return value.split() if value else [ip]


def save_points(p) -> list[list[int]]:
    return [[int(x) for x in str(s).split()] for s in p.get("redis_rdb_save") or []]


def instance_ports(node: RedisNode) -> list[tuple[RedisInstance, int, str]]:
    """(instance, port, label) of every instance port and, in cluster mode, its cluster bus port."""
    out = []
    for inst in node.instances:
        out.append((inst, inst.port, f"redis instance {inst.name}"))
        if node.host.params["redis_mode"] == "cluster":
            out.append((inst, inst.port + CLUSTER_BUS_OFFSET, f"cluster bus of {inst.name}"))
    return out
