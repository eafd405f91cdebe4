"""The PGSQL model: who is an instance of which cluster, with what role, and the services each cluster offers.

Built once by `derive` into `fleet.derived["pgsql"]` so that every renderer, and the records PGSQL publishes
for the other modules (`publish`), read the same identities instead of re-reading `pg_*` parameters.
The identity rules (cluster name, pg_seq, pg_role, exactly one primary) are checked here, while the model is
built, because nothing else can be derived from a member whose identity is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ...errors import Report, join_path
from ...model import Fleet, Host

MODULE = "pgsql"  # the module's name: owner of its files, ports and units
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
ROLES = ("primary", "replica", "offline", "standby", "delayed")
# identity parameters offered to service selectors even when they only have their default
SELECTOR_DEFAULTS = ("pg_role", "pg_seq", "pg_offline_query", "pg_weight", "pg_cluster")


@dataclass
class PgInstance:
    host: Host
    cluster: str
    seq: int
    role: str

    @property
    def name(self) -> str:
        return f"{self.cluster}-{self.seq}"

    @property
    def offline_query(self) -> bool:
        return bool(self.host.params.get("pg_offline_query"))

    @cached_property
    def selector_view(self) -> dict[str, Any]:
        """The member as JMESPath selectors see it (Pigsty selects over hostvars)."""
        p = self.host.params
        view = {key: p[key] for block in p.layers for key in block.data}
        for key in SELECTOR_DEFAULTS:
            view.setdefault(key, p.get(key))
        view["inventory_hostname"] = self.host.ip
        return view


@dataclass
class Service:
    cluster: str
    name: str  # without the cluster prefix
    port: int
    spec: dict[str, Any]
    source: str  # inventory path of the definition
    servers: list[PgInstance] = field(default_factory=list)
    backups: list[PgInstance] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.cluster}-{self.name}"


@dataclass
class PgCluster:
    name: str
    instances: list[PgInstance]
    services: list[Service] = field(default_factory=list)
    providers: list[Host] = field(default_factory=list)  # hosts that run this cluster's haproxy services

    @property
    def primary(self) -> PgInstance | None:
        return next((i for i in self.instances if i.role == "primary"), None)

    def params(self):
        """Cluster-level parameters: those of the primary (or the first member)."""
        return (self.primary or self.instances[0]).host.params

    @property
    def citus(self) -> bool:
        return self.params().get("pg_mode") == "citus"

    @property
    def scope(self) -> str:
        """Patroni's scope and the DCS user: a Citus shard group shares one scope (`pg_shard`), each shard of it
        (a sty cluster, `pg_group`) keeping its own leader under `<scope>/<group>/`."""
        return str(self.params().get("pg_shard") or self.name) if self.citus else self.name

    def leader_key(self) -> str:
        ns = str(self.params()["pg_namespace"]).rstrip("/")
        if self.citus:
            return f"{ns}/{self.scope}/{self.params().get('pg_group')}/leader"
        return f"{ns}/{self.name}/leader"


@dataclass
class PgsqlModel:
    clusters: dict[str, PgCluster]
    instance_of: dict[str, PgInstance]  # host ip -> instance
    provided_by: dict[str, list[PgCluster]]  # host ip -> clusters whose services it runs
    sql: dict[str, dict[str, str]] = field(default_factory=dict)  # cluster -> provisioning SQL (same on members)
    service_cfg: dict[tuple[str, str], str] = field(default_factory=dict)  # (cluster, service) -> HAProxy file


def pgsql_model(fleet: Fleet) -> PgsqlModel:
    return fleet.derived["pgsql"]


def list_path(p, key: str, base: str, index: int) -> str:
    """Path of item `index` of a combined list `base + key`."""
    head = p.get(base) or []
    if index < len(head):
        return join_path(p.source(base), index)
    return join_path(p.source(key), index - len(head))


def _identity(host: Host, report: Report) -> tuple[str, Any, Any] | None:
    """(cluster, pg_seq, pg_role) of a member, or None once the reason it has none is reported."""
    p = host.params
    name = str(p["pg_cluster"])
    if not CLUSTER_NAME.match(name) or name == "root":
        report.error(host.pp("pg_cluster"), f"pg_cluster '{name}' must match [A-Za-z0-9-]+ and not be 'root'")
        return None
    seq, role = p.get("pg_seq"), p.get("pg_role")
    if seq is None:
        report.error(f"{host.path}.pg_seq", f"{host.ip} is in cluster {name} but has no pg_seq")
        return None
    if role is None:
        report.error(f"{host.path}.pg_role", f"{host.ip} is in cluster {name} but has no pg_role")
        return None
    if role not in ROLES:
        report.error(host.pp("pg_role"), f"pg_role '{role}' is not one of {', '.join(ROLES)}")
        return None
    return name, seq, role


def build_model(fleet: Fleet, report: Report) -> PgsqlModel:
    """Clusters and instances of the fleet's pgsql members, sorted by pg_seq; a member whose identity is
    wrong (or whose pg_seq is taken) is reported and left out."""
    clusters: dict[str, PgCluster] = {}
    instance_of: dict[str, PgInstance] = {}
    for host in fleet.hosts.values():
        if "pgsql" not in host.modules:
            continue
        identity = _identity(host, report)
        if identity is None:
            continue
        name, seq, role = identity
        cluster = clusters.setdefault(name, PgCluster(name, []))
        clash = next((i for i in cluster.instances if i.seq == seq), None)
        if clash:
            report.error(host.pp("pg_seq"), f"pg_seq {seq} is already used in {name} by {clash.host.ip}")
            continue
        inst = PgInstance(host, name, seq, role)
        cluster.instances.append(inst)
        instance_of[host.ip] = inst
    for cluster in clusters.values():
        cluster.instances.sort(key=lambda i: i.seq)
    return PgsqlModel(clusters, instance_of, {})


def check_primary(cluster: PgCluster, report: Report) -> None:
    """Exactly one member with pg_role: primary."""
    primaries = [i for i in cluster.instances if i.role == "primary"]
    if not primaries:
        report.error(
            cluster.instances[0].host.pp("pg_role"),
            f"cluster {cluster.name} has no member with pg_role: primary; it needs exactly one",
        )
    for extra in primaries[1:]:  # reported where the second (third ...) primary is declared
        shown = ", ".join(i.host.ip for i in primaries)
        report.error(
            extra.host.pp("pg_role"),
            f"cluster {cluster.name} needs exactly one pg_role: primary, found {len(primaries)} ({shown})",
        )
