"""REDIS rendering: each instance's config and unit, and the node's redis_exporter."""

from __future__ import annotations

from typing import Any

from ...bundle import DAEMON_RELOAD, Action, Directory, FileSpec, HostBundle, Port, Unit, restart
from ...model import Host
from ...render import render, to_json
from .model import (
    CLUSTER_BUS_OFFSET,
    EXPORTER_PASSWORDS,
    EXPORTER_UNIT,
    EXPORTERS,
    MODULE,
    RedisCluster,
    RedisInstance,
    RedisNode,
    bind_addresses,
    save_points,
)
from .rules import REPLICA_OF

CLUSTER_CREATE = Action("redis-cluster-create")
EXPORTER_TIMEOUT = "10s"  # Pigsty's REDIS_EXPORTER_CONNECTION_TIMEOUT


def render_instance(
    host: Host,
    cluster: RedisCluster,
    inst: RedisInstance,
    b: HostBundle,
    server_bin: str,
    auth: str,
    first: bool,
) -> None:
    """The instance's config (redis.conf, or sentinel.conf in sentinel mode), its unit, data directory and ports."""
    sentinel = cluster.mode == "sentinel"
    data_dir = inst.data_dir(str(host.params["redis_fs_main"]))
    text = instance_config(host, cluster, inst, b, auth, data_dir)
    actions = [restart(inst.unit)]
    if cluster.mode == "cluster" and first:
        actions.append(CLUSTER_CREATE)
    b.add(FileSpec(inst.conf, MODULE, text, "redis", owner="redis", group="redis", mode="0600", actions=actions))
    unit_text = render(
        "redis/redis.service.j2",
        name=inst.name,
        ip=host.ip,
        port=inst.port,
        bin=server_bin,
        conf=inst.conf,
        dir=data_dir,
        sentinel=sentinel,
    )
    unit_path = f"/etc/systemd/system/{inst.unit}"
    b.add(FileSpec(unit_path, MODULE, unit_text, "systemd", actions=[DAEMON_RELOAD, restart(inst.unit)]))
    b.units.add(Unit(inst.unit, MODULE, f"port:{inst.port}"))
    b.ports.add(Port(inst.port, "redis-sentinel" if sentinel else "redis", MODULE))
    if cluster.mode == "cluster":
        b.ports.add(Port(inst.port + CLUSTER_BUS_OFFSET, "redis-cluster-bus", MODULE))
    b.directories.add(Directory(data_dir, "redis", "redis", "0700"))
    b.check("redis", inst.conf, where="both")
    b.check("systemd", unit_path)


def instance_config(
    host: Host, cluster: RedisCluster, inst: RedisInstance, b: HostBundle, auth: str, data_dir: str
) -> str:
    """The settings a server and a sentinel share, then a sentinel's monitors or a server's persistence, memory,
    replication and cluster settings."""
    p = host.params
    common = dict(
        name=inst.name,
        mode=cluster.mode,
        ip=host.ip,
        port=inst.port,
        bind=bind_addresses(p, host.ip),
        pidfile=inst.pidfile,
        logfile=inst.logfile,
        dir=data_dir,
        auth=auth,
    )
    if cluster.mode == "sentinel":
        return render("redis/redis-sentinel.conf.j2", monitors=sentinel_monitors(host, cluster, b), **common)
    upstream = None
    m = REPLICA_OF.match(str(inst.spec.get("replica_of") or ""))
    if m and cluster.mode == "standalone":
        upstream = {"ip": m.group(1), "port": int(m.group(2))}
    return render(
        "redis/redis.conf.j2",
        replica_of=upstream,
        save=save_points(p),
        rename=sorted((p.get("redis_rename_commands") or {}).items()),
        maxmemory=str(p["redis_max_memory"]),
        policy=str(p["redis_mem_policy"]),
        aof=bool(p["redis_aof_enabled"]),
        dbfilename=inst.rdb,
        appendfilename=inst.aof,
        cluster=cluster.mode == "cluster",
        **common,
    )


def sentinel_monitors(host: Host, cluster: RedisCluster, b: HostBundle) -> list[dict[str, Any]]:
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


def render_exporter(host: Host, node: RedisNode, b: HostBundle, auth: str) -> dict[str, Any]:
    """One redis_exporter per node, scraping every instance of the node through `/scrape?target=`; the instances'
    password comes from a JSON password file (never the command line)."""
    p = host.params
    exporter_bin, package = EXPORTERS.get(host.platform.family, EXPORTERS["deb"])
    port = p["redis_exporter_port"]
    path = str(p.get("exporter_metrics_path") or "/metrics")
    targets = [f"redis://{i.address}" for i in node.instances]
    if auth:
        passwords = {t: auth for t in targets}
        b.add(
            FileSpec(
                EXPORTER_PASSWORDS,
                MODULE,
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
        path=path,
        timeout=EXPORTER_TIMEOUT,
        password_file=EXPORTER_PASSWORDS if auth else "",
        options=str(p.get("redis_exporter_options") or "").split(),
    )
    unit_path = f"/etc/systemd/system/{EXPORTER_UNIT}"
    b.add(FileSpec(unit_path, MODULE, text, "systemd", actions=[DAEMON_RELOAD, restart(EXPORTER_UNIT)]))
    b.units.add(Unit(EXPORTER_UNIT, MODULE, f"http://{host.ip}:{port}{path}"))
    b.ports.add(Port(port, "redis_exporter", MODULE))
    b.packages.add(package)
    b.check("systemd", unit_path)
    return {"port": port, "targets": targets, "scrape": f"http://{host.ip}:{port}/scrape?target="}
