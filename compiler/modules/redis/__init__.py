"""REDIS: Redis clusters (standalone, sentinel, native cluster). Membership by `redis_cluster`.

A redis node (`redis_node` within its cluster) runs one instance per key of `redis_instances`, each named
`<cluster>-<node>-<port>` as Pigsty v4.5's REDIS role names it, so that an instance Pigsty deployed keeps its
files: config `/etc/redis/<name>.conf` (redis:redis 0600), unit `<name>.service`, data directory
`<redis_fs_main>/<name>` (0700) holding `<name>.rdb`, the AOF `<name>.aof` (in redis 7's `appendonlydir/`) and,
in cluster mode, `nodes-<port>.conf`; pid file `/var/run/redis/<name>.pid`, log `/var/log/redis/<name>.log`, no
unix socket. The server settings are Pigsty's, setting by setting (`stop-writes-on-bgsave-error no`,
`repl-diskless-sync no`, `maxclients 6000`, `cluster-require-full-coverage no`, `tcp-backlog 1024`,
`latency-monitor-threshold 0` ...), and so is the unit (`Type=notify`, redis:redis, `UMask=0077`,
`LimitNOFILE=10032`, `Restart=on-failure`, start/stop timeouts 1800 s/60 s, `AssertPathExists` of the config).
`/etc/redis`, `/var/log/redis` and `<redis_fs_main>` are redis' and 0700.

One redis_exporter per node scrapes every instance of the node (multi-target `/scrape?target=redis://ip:port`)
with Pigsty's options (connection timeout 10 s, system metrics, `exporter_metrics_path`, `CPUQuota=10%`). Each
node publishes its exporter's scrape targets, one file `<cluster>-<node>.yml` per node labelled as Pigsty's
scrape job labels them (`cls`, `ins`, `ip`, `instance=<ip>:<port>`), and the ports it binds on the board
(compiler/contrib.py).

Intentional differences from Pigsty v4.5, each for a reason:

- `redis_rdb_save: []` writes `save ""`: snapshots off, as the parameter is documented ("disable with empty
  list"). Pigsty's template then writes no `save` line at all, which leaves redis' built-in save points
  (3600 1 300 100 60 10000) in effect.
- sentinels are given their masters in their config (`sentinel monitor` and `sentinel auth-pass` from
  `redis_sentinel_monitor`) and the apply stage creates a native cluster once (`redis-cli --cluster create`
  with `redis_cluster_replicas`, action `redis-cluster-create`): Pigsty's role does neither and leaves it to
  commands run against the live instances; a bundle that is complete by itself needs no such step.
- the unit has no `PIDFile=`: `Type=notify` already tells systemd the main process, and systemd complains
  about a `PIDFile=` below the legacy `/var/run`. The config still writes Pigsty's pid file.
- `/var/run/redis` (redis, 0755) comes from the units' `RuntimeDirectory=redis` (kept between restarts) rather
  than a tmpfiles.d entry: the same directory, recreated before every start without another file to manage.
- the unit runs `/usr/bin/<redis_type>-server` (Pigsty: `/bin/...`, the same file on merged-/usr systems) and
  waits for `network-online.target`, since an instance bound to the host's address cannot start before it.
  `daemonize no` and `supervised systemd` are in the config instead of on the command line (same effect).
- the `redis` OS user is a system account without the home directory and SSH key pair Pigsty's task gives it:
  a service account needs neither. Directories are redis:redis 0700 (Pigsty leaves the group as created; with
  0700 the group grants nothing either way).
- redis_exporter runs as `redis`, not `prometheus` (an account sty does not create on redis nodes), and reads
  the instances' password from a JSON password file owned by redis (0600) instead of `REDIS_PASSWORD` in
  `/etc/default/redis_exporter`; its options are on its command line. `-redis.addr=` is empty so that its own
  `/metrics` page does not probe a `localhost:6379` the node may not run.
- the scrape target files list the exporter (`<ip>:<redis_exporter_port>`) with `__param_target` as a label,
  instead of the `redis://` URL that Pigsty's scrape job rewrites: the series get the same labels, and a node
  whose `redis_exporter_port` differs from the infra node's is still scraped.
- no SELinux file contexts are set (Pigsty labels `<redis_fs_main>` and `/run/redis` when `semanage` exists):
  sty's nodes keep SELinux permissive (`node_selinux_mode`).
- a `redis_conf` other than `redis.conf` is a warning: sty renders its own config, never a named template.
"""

from __future__ import annotations

from typing import Any

from ...bundle import Directory, HostBundle, OsUser
from ...contrib import Listener, ScrapeTarget, TargetGroup, addr, labels_of
from ...errors import Report, join_path
from ...logs import contribute_logs
from ...model import Fleet, Host
from ...module import FleetModule
from ...render import template_text
from .model import (
    CONF_DIR,
    LOG_DIR,
    MODULE,
    PACKAGE_UNITS,
    SERVERS,
    RedisCluster,
    RedisInstance,
    RedisModel,
    RedisNode,
    instance_ports,
    redis_model,
)
from .render import render_exporter, render_instance
from .rules import (
    CHECKED_PARAMS,
    check_native_cluster,
    check_params,
    check_ports,
    check_replication,
    check_sentinel,
)

__all__ = ["RedisModule", "RedisCluster", "RedisInstance", "RedisModel", "RedisNode", "redis_model"]


class RedisModule(FleetModule):
    name = MODULE
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
            if MODULE not in host.modules:
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
                check_params(host, report)
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
        fleet.derived[MODULE] = model
        for cluster in clusters.values():
            cluster.nodes.sort(key=lambda n: n.node)
            check_replication(cluster, model, report)
            if cluster.mode == "sentinel":
                check_sentinel(cluster, report)
            elif cluster.mode == "cluster":
                check_native_cluster(cluster, report)
        for node in node_of.values():
            check_ports(node, report)
            self._publish(node, fleet)

    def _publish(self, node: RedisNode, fleet: Fleet) -> None:
        """The node's ports, and its exporter's scrape target: one group per instance (multi-target), labelled
        `instance=<ip>:<port>` (the redis instance, not the exporter) as Pigsty's dashboards expect."""
        host, p = node.host, node.host.params
        ports = [Listener(host.ip, port, label, self.name, inst.source) for inst, port, label in instance_ports(node)]
        exporter = p.get("redis_exporter_enabled") and node.instances
        if exporter:
            port, param = int(p["redis_exporter_port"]), "redis_exporter_port"
            ports.append(Listener(host.ip, port, "redis_exporter", self.name, p.source(param), param))
        fleet.board.publish(self.name, *(x for x in ports if x.port <= 65535))
        if not p.get("redis_exporter_enabled"):
            return
        groups = []
        for inst in node.instances:
            labels = labels_of(
                node.cluster, inst.name, host.ip, instance=inst.address, __param_target=f"redis://{inst.address}"
            )
            groups.append(TargetGroup((addr(host.ip, p["redis_exporter_port"]),), labels))
        target = ScrapeTarget(MODULE, f"{node.cluster}-{node.node}", tuple(groups), host.ip)
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
            render_instance(host, cluster, inst, b, server_bin, auth, first)
        if p.get("redis_exporter_enabled") and node.instances:
            info["exporter"] = render_exporter(host, node, b, auth)
        b.info[MODULE] = info
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
                Directory(fs_main, "redis", "redis", "0700"),
                Directory(CONF_DIR, "redis", "redis", "0700"),
                Directory(LOG_DIR, "redis", "redis", "0700"),
            }
        )
