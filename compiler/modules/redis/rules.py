"""REDIS rules: the values written into configs and command lines, replication, sentinels, native clusters and
the ports of a node."""

from __future__ import annotations

import ipaddress
import posixpath
import re

from ...errors import Report, join_path
from ...model import Host
from .model import RedisCluster, RedisModel, RedisNode, instance_ports

MEMORY = re.compile(r"^[0-9]+(b|k|kb|m|mb|g|gb)?$", re.I)
SAVE = re.compile(r"^[0-9]+(\s+[0-9]+)*$")
COMMAND = re.compile(r"^[A-Za-z][A-Za-z0-9_|-]*$")
RENAMED = re.compile(r"^[A-Za-z0-9_-]*$")
SENTINEL_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
FS_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")
URL_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")
EXPORTER_OPTION = re.compile(r"^[A-Za-z0-9_.:/@+=,*-]+$")
REPLICA_OF = re.compile(r"^\s*(\S+)\s+([0-9]+)\s*$")
# parameters read by the per-host checks: hosts whose values come from the same places share one check
CHECKED_PARAMS = (
    "redis_fs_main",
    "redis_max_memory",
    "redis_rdb_save",
    "redis_rename_commands",
    "redis_bind_address",
    "redis_exporter_options",
    "redis_conf",
    "exporter_metrics_path",
)


def bind_problem(value: str) -> str | None:
    for word in value.split():
        addr = word[1:] if word.startswith("-") else word
        if addr == "*":
            continue
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            return f"redis_bind_address '{value}' must be IP addresses separated by spaces ('{word}' is not one)"
    return None


def check_params(host: Host, report: Report) -> None:
    p = host.params
    fs_main = str(p["redis_fs_main"])
    if not FS_PATH.match(fs_main) or ".." in fs_main.split("/"):
        report.error(
            p.source("redis_fs_main"),
            f"redis_fs_main '{fs_main}' must be an absolute path of letters, digits and _.-/",
        )
    elif posixpath.normpath(fs_main) in ("/", "/data"):
        report.error(
            p.source("redis_fs_main"),
            f"redis_fs_main must not be {posixpath.normpath(fs_main)}: removing redis deletes this directory; "
            "use a directory of its own such as /data/redis",
        )
    memory = str(p["redis_max_memory"])
    if not MEMORY.match(memory):
        report.error(
            p.source("redis_max_memory"),
            f"redis_max_memory '{memory}' must be a number of bytes with an optional unit k, kb, m, mb, g, gb",
        )
    for i, point in enumerate(p.get("redis_rdb_save") or []):
        words = str(point).split()
        if not SAVE.match(str(point)) or len(words) % 2:
            report.error(
                join_path(p.source("redis_rdb_save"), i),
                f"RDB save point '{point}' must be '<seconds> <changes>' pairs of integers, e.g. '1200 1'",
            )
    for old, new in (p.get("redis_rename_commands") or {}).items():
        where = join_path(p.source("redis_rename_commands"), str(old))
        if not COMMAND.match(str(old)):
            report.error(where, f"'{old}' is not a redis command name")
        elif not isinstance(new, str) or not RENAMED.match(new):
            report.error(where, f"the new name of {old} must be letters, digits, _ or - (empty disables it)")
    problem = bind_problem(str(p.get("redis_bind_address") or ""))
    if problem:
        report.error(p.source("redis_bind_address"), problem)
    for word in str(p.get("redis_exporter_options") or "").split():
        if not EXPORTER_OPTION.match(word):
            report.error(
                p.source("redis_exporter_options"),
                f"redis_exporter option '{word}' may only contain letters, digits and _.:/@+=,*-",
            )
    if p.get("redis_exporter_enabled"):
        path = str(p.get("exporter_metrics_path") or "/metrics")
        if not URL_PATH.match(path):
            report.error(
                p.source("exporter_metrics_path"),
                f"exporter_metrics_path '{path}' (redis_exporter's metrics path) must be a URL path of letters, "
                "digits and _.-/ starting with /",
            )
    if str(p["redis_conf"]) != "redis.conf":
        report.warning(
            p.source("redis_conf"),
            f"sty renders its own redis.conf; the config template '{p['redis_conf']}' is not used",
        )


def check_replication(cluster: RedisCluster, model: RedisModel, report: Report) -> None:
    for inst in cluster.instances:
        upstream = inst.spec.get("replica_of")
        if upstream in (None, ""):
            continue
        where = join_path(inst.source, "replica_of")
        if cluster.mode != "standalone":
            report.error(where, f"replica_of applies to standalone mode only; {cluster.name} is in {cluster.mode} mode")
            continue
        m = REPLICA_OF.match(str(upstream))
        if not m:
            report.error(where, f"replica_of '{upstream}' must be '<ip> <port>', e.g. '10.10.10.10 6379'")
            continue
        ip, port = m.group(1), int(m.group(2))
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            report.error(where, f"replica_of '{upstream}' must name its primary by IPv4 address")
            continue
        if (ip, port) == (inst.host.ip, inst.port):
            report.error(where, f"instance {inst.name} cannot replicate from itself")
        elif (ip, port) not in model.instance_at:
            report.error(where, f"replica_of '{upstream}' is not a redis instance of this inventory")
        else:
            primary = model.instance_at[(ip, port)]
            mode = str(primary.host.params["redis_mode"])
            if mode != "standalone":
                report.error(where, f"replica_of '{upstream}' is {primary.name}, a {mode} instance, not a primary")


def check_sentinel(cluster: RedisCluster, report: Report) -> None:
    sentinels = len(cluster.instances)
    seen: set[str] = set()
    for node in cluster.nodes:
        p = node.host.params
        source = p.source("redis_sentinel_monitor")
        if source in seen:  # a list shared by many hosts is checked once
            continue
        seen.add(source)
        names: set[str] = set()
        for i, entry in enumerate(p.get("redis_sentinel_monitor") or []):
            where = join_path(source, i)
            if not isinstance(entry, dict):
                continue
            name = str(entry.get("name", ""))
            if not SENTINEL_NAME.match(name):
                report.error(join_path(where, "name"), f"sentinel master name '{name}' may only use A-z 0-9 . - _")
            elif name in names:
                report.error(join_path(where, "name"), f"sentinel master name '{name}' is listed twice")
            names.add(name)
            try:
                ipaddress.IPv4Address(str(entry.get("host")))
            except ValueError:
                report.error(
                    join_path(where, "host"),
                    f"sentinel monitor host '{entry.get('host')}' must be an IPv4 address (sentinels do not "
                    "resolve host names)",
                )
            if entry.get("port") is None:
                report.error(join_path(where, "port"), f"sentinel monitor '{name}' needs the primary's port")
            quorum = entry.get("quorum", 1)
            if not isinstance(quorum, int) or isinstance(quorum, bool) or quorum < 1:
                report.error(join_path(where, "quorum"), f"quorum {quorum!r} must be a positive integer")
            elif quorum > sentinels:
                report.error(
                    join_path(where, "quorum"),
                    f"quorum {quorum} exceeds the {sentinels} sentinel instance(s) of {cluster.name}: "
                    "a failover could never be agreed",
                )


def check_native_cluster(cluster: RedisCluster, report: Report) -> None:
    first = cluster.nodes[0].host.params if cluster.nodes else None
    if first is None:
        return
    replicas = int(first["redis_cluster_replicas"])
    needed = 3 * (replicas + 1)
    have = len(cluster.instances)
    if have < needed:
        report.error(
            first.source("redis_cluster_replicas"),
            f"a native redis cluster with redis_cluster_replicas {replicas} needs at least {needed} instances "
            f"(3 primaries with {replicas} replica(s) each); {cluster.name} has {have}",
        )


def check_ports(node: RedisNode, report: Report) -> None:
    """The node's own ports among themselves (the core's rule compares them with other modules' ports)."""
    host = node.host
    p = host.params
    taken: dict[int, str] = {}
    for inst, port, label in instance_ports(node):
        if port in taken:
            report.error(inst.source, f"port {port} ({label}) clashes with {taken[port]} on {host.ip}")
        elif port > 65535:
            report.error(inst.source, f"{label} would need port {port}, above 65535")
        else:
            taken[port] = label
    if p.get("redis_exporter_enabled") and node.instances:
        port = p["redis_exporter_port"]
        if port in taken:
            report.error(host.pp("redis_exporter_port"), f"redis_exporter_port {port} clashes with {taken[port]}")
