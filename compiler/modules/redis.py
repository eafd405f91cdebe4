"""REDIS: Redis clusters (standalone, sentinel, native cluster). Membership by `redis_cluster`.

A redis node (`redis_node` within its cluster) runs one instance per key of `redis_instances`, each named
`<cluster>-<node>-<port>` with its config `/etc/redis/<name>.conf`, its unit `<name>.service` and its data in
`<redis_fs_main>/<port>`. One redis_exporter per node scrapes every instance of the node (multi-target
`/scrape?target=redis://ip:port`, passwords from a JSON password file). Each node publishes its exporter's
scrape targets and the ports it binds on the board (compiler/contrib.py).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from ..bundle import DAEMON_RELOAD, Action, Directory, FileSpec, HostBundle, OsUser, Port, Unit, restart
from ..contrib import Listener, ScrapeTarget, TargetGroup, addr, labels_of
from ..errors import Report, join_path
from ..logs import contribute_logs
from ..model import Fleet, Host
from ..module import FleetModule
from ..render import render, template_text, to_json

MODES = ("standalone", "cluster", "sentinel")
CLUSTER_CREATE = Action("redis-cluster-create")
CONF_DIR = "/etc/redis"
LOG_DIR = "/var/log/redis"
RUN_DIR = "/run/redis"
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

MEMORY = re.compile(r"^[0-9]+(b|k|kb|m|mb|g|gb)?$", re.I)
SAVE = re.compile(r"^[0-9]+(\s+[0-9]+)*$")
COMMAND = re.compile(r"^[A-Za-z][A-Za-z0-9_|-]*$")
RENAMED = re.compile(r"^[A-Za-z0-9_-]*$")
SENTINEL_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
FS_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")
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
)


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
        return f"{self.cluster}-{self.node}-{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host.ip}:{self.port}"


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
    return fleet.derived["redis"]


def bind_addresses(p, ip: str) -> list[str]:
    """`redis_bind_address` as redis' `bind` arguments; empty means the host's own address."""
    value = str(p.get("redis_bind_address") or "").strip()
    return value.split() if value else [ip]


def _bind_problem(value: str) -> str | None:
    for word in value.split():
        addr = word[1:] if word.startswith("-") else word
        if addr == "*":
            continue
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            return f"redis_bind_address '{value}' must be IP addresses separated by spaces ('{word}' is not one)"
    return None


def _save_points(p) -> list[list[int]]:
    return [[int(x) for x in str(s).split()] for s in p.get("redis_rdb_save") or []]


class RedisModule(FleetModule):
    name = "redis"
    phase = 60
    cluster_key = "redis_cluster"

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return bool(host.params.raw("redis_cluster"))

    # -- model and cross-host rules -------------------------------------------------------------
    def derive(self, fleet: Fleet, report: Report) -> None:
        clusters: dict[str, RedisCluster] = {}
        node_of: dict[str, RedisNode] = {}
        instance_at: dict[tuple[str, int], RedisInstance] = {}
        checked: set[tuple[str, ...]] = set()
        for host in fleet.hosts.values():
            if "redis" not in host.modules:
                continue
            p = host.params
            name = str(p["redis_cluster"])
            number = p.get("redis_node")
            if number is None:
                report.error(f"{host.path}.redis_node", f"{host.ip} is in redis cluster {name} but has no redis_node")
                continue
            mode = str(p["redis_mode"])
            cluster = clusters.get(name)
            if cluster is None:
                cluster = clusters[name] = RedisCluster(name, mode)
            elif mode != cluster.mode:
                report.error(
                    host.pp("redis_mode"),
                    f"redis_mode '{mode}' differs from '{cluster.mode}' of the other members of {name}",
                )
                continue
            clash = next((n for n in cluster.nodes if n.node == number), None)
            if clash:
                report.error(host.pp("redis_node"), f"redis_node {number} is already used in {name} by {clash.host.ip}")
                continue
            key = tuple(p.source(k) for k in CHECKED_PARAMS)
            if key not in checked:  # a definition shared by many hosts is checked once
                checked.add(key)
                self._check_params(host, report)
            node = RedisNode(host, name, int(number))
            defined = p.get("redis_instances") or {}
            if not defined:  # harmless (nothing runs), but surely not meant
                report.warning(
                    f"{host.path}.redis_instances",
                    f"{host.ip} is redis node {number} of {name} but defines no redis_instances: nothing runs there",
                )
            for key_, spec in defined.items():
                where = join_path(p.source("redis_instances"), str(key_))
                try:
                    port = int(str(key_))
                except ValueError:
                    report.error(where, f"redis instance key '{key_}' must be a port number")
                    continue
                if not 0 < port < 65536:
                    report.error(where, f"redis instance port {port} is outside 1-65535")
                    continue
                inst = RedisInstance(host, name, node.node, port, dict(spec or {}), where)
                node.instances.append(inst)
                instance_at[(host.ip, port)] = inst
            node.instances.sort(key=lambda i: i.port)
            cluster.nodes.append(node)
            node_of[host.ip] = node

        model = RedisModel(clusters, node_of, instance_at)
        fleet.derived["redis"] = model
        for cluster in clusters.values():
            cluster.nodes.sort(key=lambda n: n.node)
            self._check_replication(cluster, model, report)
            if cluster.mode == "sentinel":
                self._check_sentinel(cluster, report)
            elif cluster.mode == "cluster":
                self._check_native_cluster(cluster, report)
        for node in node_of.values():
            self._check_ports(node, report)
            self._publish(node, fleet)

    def _check_params(self, host: Host, report: Report) -> None:
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
        problem = _bind_problem(str(p.get("redis_bind_address") or ""))
        if problem:
            report.error(p.source("redis_bind_address"), problem)
        for word in str(p.get("redis_exporter_options") or "").split():
            if not EXPORTER_OPTION.match(word):
                report.error(
                    p.source("redis_exporter_options"),
                    f"redis_exporter option '{word}' may only contain letters, digits and _.:/@+=,*-",
                )
        if str(p["redis_conf"]) != "redis.conf":
            report.warning(
                p.source("redis_conf"),
                f"sty renders its own redis.conf; the config template '{p['redis_conf']}' is not used",
            )

    def _check_replication(self, cluster: RedisCluster, model: RedisModel, report: Report) -> None:
        for inst in cluster.instances:
            upstream = inst.spec.get("replica_of")
            if upstream in (None, ""):
                continue
            where = join_path(inst.source, "replica_of")
            if cluster.mode != "standalone":
                report.error(
                    where, f"replica_of applies to standalone mode only; {cluster.name} is in {cluster.mode} mode"
                )
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

    def _check_sentinel(self, cluster: RedisCluster, report: Report) -> None:
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

    def _check_native_cluster(self, cluster: RedisCluster, report: Report) -> None:
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

    def _check_ports(self, node: RedisNode, report: Report) -> None:
        """The node's own ports among themselves (the core's rule compares them with other modules' ports)."""
        host = node.host
        p = host.params
        taken: dict[int, str] = {}
        for inst, port, label in self._ports(node):
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

    @staticmethod
    def _ports(node: RedisNode) -> list[tuple[RedisInstance, int, str]]:
        """(instance, port, label) of every instance port and, in cluster mode, its cluster bus port."""
        out = []
        for inst in node.instances:
            out.append((inst, inst.port, f"redis instance {inst.name}"))
            if node.host.params["redis_mode"] == "cluster":
                out.append((inst, inst.port + CLUSTER_BUS_OFFSET, f"cluster bus of {inst.name}"))
        return out

    def _publish(self, node: RedisNode, fleet: Fleet) -> None:
        """The node's ports, and its exporter's scrape target: one group per instance (multi-target)."""
        host, p = node.host, node.host.params
        ports = [Listener(host.ip, port, label, self.name, inst.source) for inst, port, label in self._ports(node)]
        exporter = p.get("redis_exporter_enabled") and node.instances
        if exporter:
            port, param = int(p["redis_exporter_port"]), "redis_exporter_port"
            ports.append(Listener(host.ip, port, "redis_exporter", self.name, p.source(param), param))
        fleet.board.publish(self.name, *(x for x in ports if x.port <= 65535))
        if not p.get("redis_exporter_enabled"):
            return
        groups = []
        for inst in node.instances:
            labels = labels_of(node.cluster, inst.name, host.ip, __param_target=f"redis://{host.ip}:{inst.port}")
            groups.append(TargetGroup((addr(host.ip, p["redis_exporter_port"]),), labels))
        target = ScrapeTarget("redis", f"{node.cluster}-{node.node}", tuple(groups), host.ip)
        fleet.board.publish(self.name, target)

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        model = redis_model(fleet)
        node = model.node_of.get(host.ip)
        return [n.host for n in model.clusters[node.cluster].nodes] if node else []

    # -- rendering ------------------------------------------------------------------------------
    def render(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        model = redis_model(fleet)
        node = model.node_of.get(host.ip)
        if node is None:
            return
        cluster = model.clusters[node.cluster]
        p = host.params
        family = host.platform.family
        server_bin, packages = SERVERS.get((family, str(p["redis_type"])), SERVERS[("deb", "redis")])
        password = b.secret_value(f"{cluster.name}/redis_password", p.get("redis_password"))
        auth = b.secret(f"{cluster.name}/redis_password", password) if password else ""
        first = cluster.nodes[0] is node
        fs_main = str(p["redis_fs_main"]).rstrip("/") or "/"
        info: dict[str, Any] = {
            "cluster": cluster.name,
            "node": node.node,
            "mode": cluster.mode,
            "instances": {i.name: i.port for i in node.instances},
            "members": {i.name: i.address for i in cluster.instances},
        }
        if PACKAGE_UNITS.get(family):
            info["disable_units"] = list(PACKAGE_UNITS[family])
        if cluster.mode == "cluster":
            info["cluster_create"] = {
                "members": [i.address for i in cluster.instances],
                "replicas": int(p["redis_cluster_replicas"]),
                "run_on": cluster.nodes[0].host.ip,
                "password_secret": f"{cluster.name}/redis_password" if password else None,
            }
        for inst in node.instances:
            self._instance(host, cluster, inst, b, server_bin, auth, fs_main, first)
        if p.get("redis_exporter_enabled") and node.instances:
            info["exporter"] = self._exporter(host, cluster, node, b, auth)
        b.info["redis"] = info
        logs = {
            "redis": {
                "job": "redis",
                "cls": cluster.name,
                "source": {"type": "file", "include": [f"{LOG_DIR}/*.log"]},
                "remap": template_text("redis/redis.vrl"),
            }
        }
        contribute_logs(b, host, self.name, logs)
        b.packages.update(packages)
        b.users.add(OsUser("redis"))
        b.directories.update(
            {
                Directory(fs_main, "redis", "redis", "0755"),
                Directory(CONF_DIR, "redis", "redis", "0750"),
                Directory(LOG_DIR, "redis", "redis", "0750"),
            }
        )

    def _instance(
        self,
        host: Host,
        cluster: RedisCluster,
        inst: RedisInstance,
        b: HostBundle,
        server_bin: str,
        auth: str,
        fs_main: str,
        first: bool,
    ) -> None:
        sentinel = cluster.mode == "sentinel"
        data_dir = f"{fs_main}/{inst.port}"
        text = self._instance_config(host, cluster, inst, b, auth, data_dir)
        unit = f"{inst.name}.service"
        conf = f"{CONF_DIR}/{inst.name}.conf"
        actions = [restart(unit)]
        if cluster.mode == "cluster" and first:
            actions.append(CLUSTER_CREATE)
        b.add(FileSpec(conf, self.name, text, "redis", owner="redis", group="redis", mode="0600", actions=actions))
        unit_text = render(
            "redis/redis.service.j2",
            name=inst.name,
            mode=cluster.mode,
            bin=server_bin,
            conf=conf,
            dir=data_dir,
            sentinel=sentinel,
        )
        unit_path = f"/etc/systemd/system/{unit}"
        b.add(FileSpec(unit_path, self.name, unit_text, "systemd", actions=[DAEMON_RELOAD, restart(unit)]))
        b.units.add(Unit(unit, self.name, f"port:{inst.port}"))
        b.ports.add(Port(inst.port, "redis-sentinel" if sentinel else "redis", self.name))
        if cluster.mode == "cluster":
            b.ports.add(Port(inst.port + CLUSTER_BUS_OFFSET, "redis-cluster-bus", self.name))
        b.directories.add(Directory(data_dir, "redis", "redis", "0700"))
        b.check("redis", conf, where="both")
        b.check("systemd", unit_path)

    def _instance_config(
        self, host: Host, cluster: RedisCluster, inst: RedisInstance, b: HostBundle, auth: str, data_dir: str
    ) -> str:
        """The instance's config: the settings a server and a sentinel share, then a sentinel's monitors or
        a server's persistence, memory and replication settings."""
        p = host.params
        common = dict(
            name=inst.name,
            mode=cluster.mode,
            ip=host.ip,
            port=inst.port,
            bind=bind_addresses(p, host.ip),
            pidfile=f"{RUN_DIR}/{inst.name}.pid",
            logfile=f"{LOG_DIR}/{inst.name}.log",
            dir=data_dir,
            auth=auth,
        )
        if cluster.mode == "sentinel":
            monitors = self._sentinel_monitors(host, cluster, b)
            return render("redis/redis-sentinel.conf.j2", monitors=monitors, **common)
        upstream = None
        m = REPLICA_OF.match(str(inst.spec.get("replica_of") or ""))
        if m and cluster.mode == "standalone":
            upstream = {"ip": m.group(1), "port": int(m.group(2))}
        return render(
            "redis/redis.conf.j2",
            replica_of=upstream,
            save=_save_points(p),
            rename=sorted((p.get("redis_rename_commands") or {}).items()),
            maxmemory=str(p["redis_max_memory"]),
            policy=str(p["redis_mem_policy"]),
            aof=bool(p["redis_aof_enabled"]),
            cluster=cluster.mode == "cluster",
            **common,
        )

    def _sentinel_monitors(self, host: Host, cluster: RedisCluster, b: HostBundle) -> list[dict]:
        """The masters a sentinel watches; their passwords go through the secret store, never in the bundle."""
        monitors = []
        for entry in host.params.get("redis_sentinel_monitor") or []:
            secret = ""
            if entry.get("password"):
                secret = b.secret(f"{cluster.name}/redis_sentinel_monitor/{entry['name']}/password", entry["password"])
            monitors.append(
                {
                    "name": entry["name"],
                    "host": entry["host"],
                    "port": int(entry["port"]),
                    "quorum": int(entry.get("quorum", 1)),
                    "auth": secret,
                }
            )
        return monitors

    def _exporter(self, host: Host, cluster: RedisCluster, node: RedisNode, b: HostBundle, auth: str) -> dict:
        p = host.params
        exporter_bin, package = EXPORTERS.get(host.platform.family, EXPORTERS["deb"])
        port = p["redis_exporter_port"]
        targets = [f"redis://{i.address}" for i in node.instances]
        if auth:
            passwords = {t: auth for t in targets}
            b.add(
                FileSpec(
                    EXPORTER_PASSWORDS,
                    self.name,
                    to_json(passwords),
                    "json",
                    owner="redis",
                    group="redis",
                    mode="0600",
                    actions=[restart(EXPORTER_UNIT)],
                )
            )
        text = render(
            "redis/redis_exporter.service.j2",
            bin=exporter_bin,
            port=port,
            password_file=EXPORTER_PASSWORDS if auth else "",
            options=str(p.get("redis_exporter_options") or "").split(),
        )
        unit_path = f"/etc/systemd/system/{EXPORTER_UNIT}"
        b.add(FileSpec(unit_path, self.name, text, "systemd", actions=[DAEMON_RELOAD, restart(EXPORTER_UNIT)]))
        b.units.add(Unit(EXPORTER_UNIT, self.name, f"http://{host.ip}:{port}/metrics"))
        b.ports.add(Port(port, "redis_exporter", self.name))
        b.packages.add(package)
        b.check("systemd", unit_path)
        return {"port": port, "targets": targets, "scrape": f"http://{host.ip}:{port}/scrape?target="}
