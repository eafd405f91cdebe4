"""PGSQL: HA PostgreSQL clusters. Membership by `pg_cluster`; per instance Patroni, the HBA file,
pgbouncer, and the cluster's HAProxy services (on its members or on `pg_service_provider` nodes)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

from .. import hba as hba_rules
from .. import tuning
from ..bundle import (
    DAEMON_RELOAD,
    Action,
    Directory,
    FileSpec,
    HostBundle,
    OsUser,
    Port,
    Unit,
    reload,
    restart,
)
from ..errors import Report, join_path
from ..model import Fleet, Host
from ..module import FleetModule
from ..render import HEADER, RenderError, render, to_yaml
from ..secrets import scram_verifier
from .etcd import etcd_cluster

CLUSTER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$.-]{0,62}$")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_@.-]{0,62}$")
ROLES = ("primary", "replica", "offline", "standby", "delayed")
# identity parameters offered to service selectors even when they only have their default
SELECTOR_DEFAULTS = ("pg_role", "pg_seq", "pg_offline_query", "pg_weight", "pg_cluster")
# parameters read by the per-instance checks: instances whose values come from the same places share one check
CHECKED_PARAMS = (
    "pg_vip_enabled",
    "pg_vip_address",
    "pg_rto",
    "pg_rto_plan",
    "pg_conf",
    "pg_users",
    "pg_default_roles",
    "pg_databases",
    "pg_dbsu",
    "pg_hba_rules",
    "pg_default_hba_rules",
    "pgb_hba_rules",
    "pgb_default_hba_rules",
    "admin_ip",
    "pg_replication_username",
    "pg_monitor_username",
    "pg_admin_username",
)
PATRONI_RELOAD = Action("patroni-reload")
PATRONI_DCS = Action("patroni-dcs-config")
PG_SQL = Action("pg-sql-primary")


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


@dataclass
class PgsqlModel:
    clusters: dict[str, PgCluster]
    instance_of: dict[str, PgInstance]  # host ip -> instance
    provided_by: dict[str, list[PgCluster]]  # host ip -> clusters whose services it runs


def pgsql_model(fleet: Fleet) -> PgsqlModel:
    return fleet.derived["pgsql"]


@cache
def _selector(expr: str):
    import warnings

    import jmespath

    with warnings.catch_warnings():  # Pigsty writes `primary` (a bare backtick literal), which jmespath deprecates
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return jmespath.compile(expr)


def select(expr: str | None, members: list[PgInstance]) -> list[PgInstance]:
    if not expr:
        return []
    views = [m.selector_view for m in members]
    chosen = _selector(expr).search(views) or []
    names = {v.get("inventory_hostname") for v in chosen if isinstance(v, dict)}
    return [m for m in members if m.host.ip in names]


def instance_ports(p) -> dict[int, str]:
    """Listeners of a PostgreSQL node besides the HAProxy services (for clash checks)."""
    ports = {p["pg_port"]: "postgres", p["patroni_port"]: "patroni"}
    if p.get("pgbouncer_enabled"):
        ports.setdefault(p["pgbouncer_port"], "pgbouncer")
    for key, label in (
        ("pg_exporter", "pg_exporter"),
        ("pgbouncer_exporter", "pgbouncer_exporter"),
        ("pgbackrest_exporter", "pgbackrest_exporter"),
    ):
        if p.get(f"{key}_enabled"):
            ports.setdefault(p[f"{key}_port"], label)
    return ports


def node_ports(p) -> dict[int, str]:
    ports: dict[int, str] = {}
    if p.get("node_exporter_enabled"):
        ports[p["node_exporter_port"]] = "node_exporter"
    if p.get("haproxy_enabled"):
        ports.setdefault(p["haproxy_exporter_port"], "haproxy admin")
    if p.get("vector_enabled"):
        ports.setdefault(p["vector_port"], "vector")
    for svc in p.get("haproxy_services") or []:
        if isinstance(svc, dict) and isinstance(svc.get("port"), int):
            ports.setdefault(svc["port"], f"haproxy service {svc.get('name')}")
    return ports


class PgsqlModule(FleetModule):
    name = "pgsql"

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return bool(host.params.raw("pg_cluster"))

    # -- model and cross-host rules -------------------------------------------------------------
    def derive(self, fleet: Fleet, report: Report) -> None:
        clusters: dict[str, PgCluster] = {}
        instance_of: dict[str, PgInstance] = {}
        for host in fleet.hosts.values():
            if "pgsql" not in host.modules:
                continue
            p = host.params
            name = str(p["pg_cluster"])
            if not CLUSTER_NAME.match(name) or name == "root":
                report.error(host.pp("pg_cluster"), f"pg_cluster '{name}' must match [A-Za-z0-9-]+ and not be 'root'")
                continue
            seq, role = p.get("pg_seq"), p.get("pg_role")
            if seq is None:
                report.error(f"{host.path}.pg_seq", f"{host.ip} is in cluster {name} but has no pg_seq")
                continue
            if role is None:
                report.error(f"{host.path}.pg_role", f"{host.ip} is in cluster {name} but has no pg_role")
                continue
            if role not in ROLES:
                report.error(host.pp("pg_role"), f"pg_role '{role}' is not one of {', '.join(ROLES)}")
                continue
            cluster = clusters.setdefault(name, PgCluster(name, []))
            clash = next((i for i in cluster.instances if i.seq == seq), None)
            if clash:
                report.error(host.pp("pg_seq"), f"pg_seq {seq} is already used in {name} by {clash.host.ip}")
                continue
            inst = PgInstance(host, name, seq, role)
            cluster.instances.append(inst)
            instance_of[host.ip] = inst

        checked: set[tuple[str, ...]] = set()
        model = PgsqlModel(clusters, instance_of, {})
        fleet.derived["pgsql"] = model
        if clusters and etcd_cluster(fleet) is None:
            report.error("all.children.etcd", "PostgreSQL clusters need an `etcd` group (the DCS) and there is none")
        for cluster in clusters.values():
            cluster.instances.sort(key=lambda i: i.seq)
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
            for inst in cluster.instances:
                key = tuple(inst.host.params.source(k) for k in CHECKED_PARAMS)
                if key not in checked:  # a definition shared by many hosts is checked once
                    checked.add(key)
                    self._check_instance(inst, report)
            self._services(cluster, fleet, model, report)
        self._check_listeners(fleet, model, report)

    def _check_instance(self, inst: PgInstance, report: Report) -> None:
        p = inst.host.params
        if p.get("pg_vip_enabled"):
            try:
                ipaddress.IPv4Interface(str(p.get("pg_vip_address")))
                if "/" not in str(p.get("pg_vip_address")):
                    raise ValueError
            except ValueError:
                report.error(p.source("pg_vip_address"), "pg_vip_address must be an IPv4 CIDR such as 10.10.10.3/24")
        rto = p.get("pg_rto")
        if rto not in (p.get("pg_rto_plan") or {}):
            report.error(p.source("pg_rto"), f"pg_rto '{rto}' is not a key of pg_rto_plan")
        try:
            tuning.profile_name(str(p.get("pg_conf")))
        except ValueError as exc:
            report.error(p.source("pg_conf"), str(exc))
        users = p.combined("pg_users")
        names = set()
        for i, user in enumerate(users):
            if not isinstance(user, dict):
                continue
            where = self._list_path(p, "pg_users", "pg_default_roles", i)
            name = user.get("name")
            if not isinstance(name, str) or not USER_NAME.match(name):
                report.error(join_path(where, "name"), f"user name {name!r} must match ^[a-z_][a-z0-9_@.-]{{0,62}}$")
            names.add(name)
        builtin = {p["pg_dbsu"], "public"}
        for i, db in enumerate(p.get("pg_databases") or []):
            if isinstance(db, dict) and not DB_NAME.match(str(db.get("name"))):
                report.error(
                    join_path(p.source("pg_databases"), i, "name"),
                    f"database name {db.get('name')!r} must match {DB_NAME.pattern}",
                )
        for i, db in enumerate(p.get("pg_databases") or []):
            if not isinstance(db, dict):
                continue
            where = join_path(p.source("pg_databases"), i)
            for key in ("owner", "pool_auth_user"):
                ref = db.get(key)
                if ref and ref not in names and ref not in builtin:
                    report.error(join_path(where, key), f"{key} '{ref}' is not a user of pg_users or pg_default_roles")
        for key, base, flavor in (
            ("pg_hba_rules", "pg_default_hba_rules", "postgres"),
            ("pgb_hba_rules", "pgb_default_hba_rules", "pgbouncer"),
        ):
            for i, rule in enumerate(p.combined(key)):
                for sub, message in hba_rules.rule_problems(rule, flavor):
                    report.error(join_path(self._list_path(p, key, base, i), *([sub] if sub else [])), message)

    @staticmethod
    def _list_path(p, key: str, base: str, index: int) -> str:
        """Path of item `index` of a combined list `base + key`."""
        head = p.get(base) or []
        if index < len(head):
            return join_path(p.source(base), index)
        return join_path(p.source(key), index - len(head))

    def _services(self, cluster: PgCluster, fleet: Fleet, model: PgsqlModel, report: Report) -> None:
        if not cluster.instances:
            return
        p = cluster.params()
        provider = p.get("pg_service_provider") or ""
        if provider:
            if provider not in fleet.inventory.groups:
                report.error(p.source("pg_service_provider"), f"pg_service_provider '{provider}' is not a group")
                return
            cluster.providers = fleet.group_hosts(provider)
        else:
            cluster.providers = [i.host for i in cluster.instances]
        names: dict[str, str] = {}
        ports: dict[int, str] = {}
        for i, spec in enumerate(p.combined("pg_services")):
            if not isinstance(spec, dict):
                continue
            where = self._list_path(p, "pg_services", "pg_default_services", i)
            name, port = str(spec.get("name")), spec.get("port")
            if name in names:
                report.error(join_path(where, "name"), f"service '{name}' is defined twice in {cluster.name}")
                continue
            if port in ports:
                report.error(join_path(where, "port"), f"port {port} is already used by service {ports[port]}")
                continue
            names[name], ports[port] = where, name
            dest = spec.get("dest", "default")
            if dest not in ("default", "postgres", "pgbouncer") and not (
                isinstance(dest, int) and not isinstance(dest, bool) and 0 < dest < 65536
            ):
                report.error(
                    join_path(where, "dest"), f"dest {dest!r} must be default, postgres, pgbouncer or a port number"
                )
                continue
            svc = Service(cluster.name, name, int(port), spec, where)
            try:
                svc.servers = select(spec.get("selector", "[]"), cluster.instances)
                chosen = {s.host.ip for s in svc.servers}
                svc.backups = [b for b in select(spec.get("backup"), cluster.instances) if b.host.ip not in chosen]
            except Exception as exc:  # jmespath raises several exception types
                report.error(join_path(where, "selector"), f"invalid JMESPath selector: {exc}")
                continue
            cluster.services.append(svc)
        for host in cluster.providers:
            model.provided_by.setdefault(host.ip, []).append(cluster)

    def _check_listeners(self, fleet: Fleet, model: PgsqlModel, report: Report) -> None:
        for ip, clusters in model.provided_by.items():
            host = fleet.hosts[ip]
            if not host.params.get("haproxy_enabled"):
                names = ", ".join(c.name for c in clusters)
                report.warning(
                    host.pp("haproxy_enabled"),
                    f"haproxy is disabled on {ip}, so it will not serve the services of {names}",
                )
                continue
            taken: dict[int, str] = node_ports(host.params)
            inst = model.instance_of.get(ip)
            if inst:
                for port, label in instance_ports(host.params).items():
                    taken.setdefault(port, label)
            for cluster in clusters:
                for svc in cluster.services:
                    if svc.port in taken:
                        report.error(
                            join_path(svc.source, "port"),
                            f"port {svc.port} of service {svc.full_name} clashes with {taken[svc.port]} on {ip}",
                        )
                    else:
                        taken[svc.port] = f"service {svc.full_name}"
            if inst:  # instance listeners among themselves
                seen: dict[int, str] = {}
                p = host.params
                for key, label in (
                    ("pg_port", "postgres"),
                    ("pgbouncer_port", "pgbouncer"),
                    ("patroni_port", "patroni"),
                ):
                    port = p.get(key)
                    if port in seen:
                        report.error(p.source(key), f"{key} {port} clashes with {seen[port]}")
                    seen[port] = label

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        model = pgsql_model(fleet)
        deps: list[Host] = []
        inst = model.instance_of.get(host.ip)
        if inst:
            deps += [i.host for i in model.clusters[inst.cluster].instances]
        for cluster in model.provided_by.get(host.ip, []):
            deps += [i.host for i in cluster.instances]
        etcd = etcd_cluster(fleet)
        if etcd:
            deps += [m.host for m in etcd.members]
        deps += [h for h in fleet.hosts.values() if "infra" in h.modules]
        return deps

    # -- rendering ------------------------------------------------------------------------------
    def serves(self, host: Host, fleet: Fleet) -> bool:
        return host.ip in pgsql_model(fleet).provided_by

    def render(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        model = pgsql_model(fleet)
        for cluster in model.provided_by.get(host.ip, []) if host.params.get("haproxy_enabled") else []:
            for svc in cluster.services:
                self._service_file(cluster, svc, b)
        inst = model.instance_of.get(host.ip)
        if inst is None:
            return
        cluster = model.clusters[inst.cluster]
        p = host.params
        b.info["pgsql"] = {
            "cluster": cluster.name,
            "instance": inst.name,
            "seq": inst.seq,
            "role": inst.role,
            "primary": cluster.primary.host.ip if cluster.primary else None,
            "members": {i.name: i.host.ip for i in cluster.instances},
        }
        version = int(p["pg_version"])
        bin_dir = p["pg_bin_dir"] if p.is_set("pg_bin_dir") else host.platform.pg_bin_dir.format(version=version)
        self._os(host, b, version)
        self._patroni(host, fleet, inst, cluster, b, bin_dir)
        self._hba(host, fleet, inst, cluster, b)
        if p.get("pgbouncer_enabled"):
            self._pgbouncer(host, fleet, inst, cluster, b)
        for peer in cluster.instances:  # peers resolve by instance name
            b.contribute("/etc/hosts", self.name, f"pgsql:{peer.seq:08d}", f"{peer.host.ip} {peer.name}")

    def _os(self, host: Host, b: HostBundle, version: int) -> None:
        p = host.params
        dbsu = p["pg_dbsu"]
        b.users.add(OsUser(dbsu, p["pg_dbsu_uid"], p["pg_dbsu_home"]))
        b.packages.update(x.format(version=version) for x in host.platform.pg_packages)
        b.packages.update(host.platform.patroni_packages)
        for path, mode in (
            (p["pg_fs_main"], "0700"),
            ("/pg", "0755"),
            (p["pg_data"], "0700"),
            ("/pg/conf", "0700"),
            ("/pg/tmp", "0700"),
            (p["pg_log_dir"], "0750"),
            (p["patroni_log_dir"], "0750"),
            (p["pg_localhost"], "2775"),
        ):
            b.directories.add(Directory(path, dbsu, dbsu, mode))

    def _patroni(self, host, fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle, bin_dir: str) -> None:
        p = host.params
        version = int(p["pg_version"])
        rto = list((p["pg_rto_plan"] or {})[p["pg_rto"]])
        ttl, loop, retry, start, margin = (int(x) for x in rto[:5])
        profile = tuning.profile_name(str(p["pg_conf"]))
        common = dict(
            pg_version=version,
            max_conn=p["pg_max_conn"],
            shared_buffer_ratio=float(p["pg_shared_buffer_ratio"]),
            storage_type=str(p["pg_storage_type"]),
            libs=str(p["pg_libs"]),
            log_dir=str(p["pg_log_dir"]),
            io_method=str(p["pg_io_method"]),
            rpo_bytes=int(p["pg_rpo"]),
            checksum=bool(p["pg_checksum"]),
        )
        try:
            leader = cluster.primary.host if cluster.primary else host
            res_leader = tuning.HostResources(leader.facts.cpu, leader.facts.mem_mb, leader.facts.disk_gb)
            res = tuning.HostResources(host.facts.cpu, host.facts.mem_mb, host.facts.disk_gb)
            dcs_params = tuning.dcs_parameters(profile, res_leader, **common)
            pg_params = tuning.postgres_parameters(profile, res, **common)
        except ValueError as exc:
            raise RenderError(str(exc)) from None
        pg_params.update({str(k): str(v) for k, v in (p.get("pg_parameters") or {}).items()})
        pg_params["hba_file"] = p["pg_hba_file"]
        pg_params["unix_socket_directories"] = p["pg_localhost"]
        pg_params["password_encryption"] = p["pg_pwd_enc"]
        sync = profile == "crit" or int(p["pg_rpo"]) == 0
        etcd = etcd_cluster(fleet)
        initdb: list[Any] = [
            {"encoding": p["pg_encoding"]},
            {"locale": p["pg_locale"]},
            {"lc-collate": p["pg_lc_collate"]},
            {"lc-ctype": p["pg_lc_ctype"]},
        ]
        if p["pg_checksum"]:
            initdb.append("data-checksums")
        superuser: dict[str, Any] = {"username": p["pg_dbsu"]}
        if p.get("pg_dbsu_password"):
            superuser["password"] = b.secret(f"{cluster.name}/pg_dbsu_password", p["pg_dbsu_password"])
        etcd_user = cluster.name
        doc = {
            "scope": cluster.name,
            "namespace": str(p["pg_namespace"]).rstrip("/") + "/",
            "name": inst.name,
            "log": {"dir": p["patroni_log_dir"], "level": "INFO", "file_num": 30, "file_size": 4194304},
            "restapi": {
                "listen": f"0.0.0.0:{p['patroni_port']}",
                "connect_address": f"{host.ip}:{p['patroni_port']}",
                "authentication": {
                    "username": p["patroni_username"],
                    "password": b.secret(f"{cluster.name}/patroni_password", p["patroni_password"]),
                },
            },
            "etcd3": {
                "hosts": etcd.client_endpoints() if etcd else [],
                "protocol": "http",
                "username": etcd_user,
                "password": b.secret(f"{cluster.name}/pg_etcd_password", p.get("pg_etcd_password") or cluster.name),
            },
            "bootstrap": {
                "dcs": {
                    "ttl": ttl,
                    "loop_wait": loop,
                    "retry_timeout": retry,
                    "primary_start_timeout": start,
                    "maximum_lag_on_failover": int(p["pg_rpo"]),
                    "synchronous_mode": sync,
                    "synchronous_mode_strict": False,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": dcs_params,
                    },
                },
                "method": "initdb",
                "initdb": initdb,
                # Patroni 3.0 insists on this list; it is inert because hba_file points at pg_hba_file
                "pg_hba": [f"local all {p['pg_dbsu']} ident"],
            },
            "postgresql": {
                "listen": f"{p['pg_listen']}:{p['pg_port']}",
                "connect_address": f"{host.ip}:{p['pg_port']}",
                "data_dir": p["pg_data"],
                "bin_dir": bin_dir,
                "pgpass": "/pg/tmp/pgpass",
                "use_unix_socket": True,
                "use_unix_socket_repl": False,
                "authentication": {
                    "superuser": superuser,
                    "replication": {
                        "username": p["pg_replication_username"],
                        "password": b.secret(f"{cluster.name}/pg_replication_password", p["pg_replication_password"]),
                    },
                    "rewind": dict(superuser),
                },
                "parameters": pg_params,
                "create_replica_methods": ["basebackup"],
                "basebackup": [{"max-rate": "1000M"}, {"checkpoint": "fast"}],
            },
            "watchdog": {
                "mode": "off" if p["patroni_watchdog_mode"] in (False, "off") else p["patroni_watchdog_mode"],
                "device": "/dev/watchdog",
                "safety_margin": margin,
            },
            "tags": {
                "nofailover": inst.role == "offline",
                "noloadbalance": False,
                "clonefrom": True,
                "nosync": inst.role == "offline",
            },
        }
        if p["patroni_ssl_enabled"]:
            doc["restapi"]["certfile"] = "/pg/cert/server.crt"
            doc["restapi"]["keyfile"] = "/pg/cert/server.key"
        dbsu = p["pg_dbsu"]
        b.add(
            FileSpec(
                "/etc/patroni/patroni.yml",
                self.name,
                to_yaml(doc, HEADER),
                "yaml",
                owner=dbsu,
                group=dbsu,
                mode="0600",
                actions=[PATRONI_RELOAD, PATRONI_DCS],
            )
        )
        unit = render("pgsql/patroni.service.j2", p=p, bin=host.platform.patroni_bin, dbsu=dbsu)
        b.add(
            FileSpec(
                "/etc/systemd/system/patroni.service",
                self.name,
                unit,
                "systemd",
                actions=[DAEMON_RELOAD, restart("patroni.service")],
            )
        )
        b.units.add(Unit("patroni.service", self.name, f"http://{host.ip}:{p['patroni_port']}/health"))
        b.ports.update({Port(p["pg_port"], "postgres", self.name), Port(p["patroni_port"], "patroni", self.name)})
        b.check("patroni", "/etc/patroni/patroni.yml", where="build")
        b.check("postgres-settings", "/etc/patroni/patroni.yml", where="build")
        b.check("systemd", "/etc/systemd/system/patroni.service")

    def _hba_context(self, host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster) -> hba_rules.HbaContext:
        p = host.params
        infra = tuple(h.ip for h in fleet.hosts.values() if "infra" in h.modules)
        return hba_rules.HbaContext(
            dbsu=p["pg_dbsu"],
            repl=p["pg_replication_username"],
            monitor=p["pg_monitor_username"],
            admin=p["pg_admin_username"],
            admin_ip=str(p["admin_ip"]),
            infra_ips=infra,
            cluster_ips=tuple(i.host.ip for i in cluster.instances),
            intranet=tuple(p.get("node_firewall_intranet") or hba_rules.DEFAULT_INTRANET),
            pwd_enc=str(p["pg_pwd_enc"]),
            role=inst.role,
            offline_query=inst.offline_query,
        )

    def _hba(self, host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
        p = host.params
        ctx = self._hba_context(host, fleet, inst, cluster)
        try:
            text = hba_rules.render_hba(p.combined("pg_hba_rules"), ctx, "postgres")
        except ValueError as exc:
            raise RenderError(str(exc)) from None
        dbsu = p["pg_dbsu"]
        b.add(
            FileSpec(
                p["pg_hba_file"],
                self.name,
                HEADER + text,
                "pg_hba",
                owner=dbsu,
                group=dbsu,
                mode="0600",
                actions=[PATRONI_RELOAD],
            )
        )
        b.check("postgres-hba", p["pg_hba_file"], where="both")

    def _pgbouncer(self, host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
        p = host.params
        dbsu = p["pg_dbsu"]
        users = [u for u in p.combined("pg_users") if isinstance(u, dict) and u.get("state", "create") != "absent"]
        pooled = [u for u in users if u.get("pgbouncer")]
        databases = [
            d
            for d in p.get("pg_databases") or []
            if isinstance(d, dict) and d.get("pgbouncer", True) and d.get("state", "create") != "absent"
        ]
        ctx = self._hba_context(host, fleet, inst, cluster)
        try:
            hba_text = hba_rules.render_hba(p.combined("pgb_hba_rules"), ctx, "pgbouncer")
        except ValueError as exc:
            raise RenderError(str(exc)) from None
        userlist = []
        for u in pooled:
            name = u["name"]
            if name == p["pg_monitor_username"]:
                value = b.secret_value(f"{cluster.name}/pg_monitor_password", p["pg_monitor_password"])
            elif name == p["pg_admin_username"]:
                value = b.secret_value(f"{cluster.name}/pg_admin_password", p["pg_admin_password"])
            else:
                value = b.secret_value(f"{cluster.name}/pg_users/{name}/password", u.get("password"))
            # an unknown password stays an empty secret: apply refuses to ship it until secrets.yml has it
            derived = scram_verifier(value, name) if value else ""
            verifier = b.secret(f"{cluster.name}/pg_users/{name}/scram", derived)
            userlist.append((name, verifier))
        files = {
            "/etc/pgbouncer/pgbouncer.ini": (render("pgsql/pgbouncer.ini.j2", p=p, dbsu=dbsu), "ini"),
            "/etc/pgbouncer/database.txt": (
                render("pgsql/database.txt.j2", p=p, databases=databases),
                "pgbouncer-db",
            ),
            "/etc/pgbouncer/useropts.txt": (render("pgsql/useropts.txt.j2", users=pooled), "pgbouncer-users"),
            "/etc/pgbouncer/pgb_hba.conf": (HEADER + hba_text, "pgb_hba"),
            "/etc/pgbouncer/userlist.txt": (
                render("pgsql/userlist.txt.j2", userlist=userlist),
                "pgbouncer-auth",
            ),
        }
        for path, (text, fmt) in files.items():
            b.add(
                FileSpec(
                    path,
                    self.name,
                    text,
                    fmt,
                    owner=dbsu,
                    group=dbsu,
                    mode="0600",
                    actions=[reload("pgbouncer.service")],
                )
            )
        unit = render("pgsql/pgbouncer.service.j2", p=p, bin=host.platform.pgbouncer_bin, dbsu=dbsu)
        b.add(
            FileSpec(
                "/etc/systemd/system/pgbouncer.service",
                self.name,
                unit,
                "systemd",
                actions=[DAEMON_RELOAD, restart("pgbouncer.service")],
            )
        )
        b.units.add(Unit("pgbouncer.service", self.name, f"port:{p['pgbouncer_port']}"))
        b.ports.add(Port(p["pgbouncer_port"], "pgbouncer", self.name))
        b.packages.add("pgbouncer")
        b.directories.add(Directory(p["pgbouncer_log_dir"], dbsu, dbsu, "0750"))
        b.directories.add(Directory("/etc/pgbouncer", dbsu, dbsu, "0750"))
        b.check("pgbouncer", *files, where="build")
        b.check("systemd", "/etc/systemd/system/pgbouncer.service")

    def _service_file(self, cluster: PgCluster, svc: Service, b: HostBundle) -> None:
        p = cluster.params()
        spec = svc.spec
        rto = list((p["pg_rto_plan"] or {})[p["pg_rto"]])
        inter, fastinter, downinter, rise, fall = rto[5:10]
        dest = spec.get("dest", "default")
        if dest == "default":
            dest = p["pg_default_service_dest"]
        maxconn = int(spec.get("maxconn", 5000))
        default_options = (
            f"inter {inter} fastinter {fastinter} downinter {downinter} rise {rise} fall {fall} "
            f"on-marked-down shutdown-sessions slowstart 30s maxconn {min(maxconn, 3000)} maxqueue 256 weight 100"
        )
        servers = []
        for inst, backup in [(s, False) for s in svc.servers] + [(s, True) for s in svc.backups]:
            hp = inst.host.params
            port = {"postgres": hp["pg_port"], "pgbouncer": hp["pgbouncer_port"]}.get(str(dest), dest)
            servers.append(
                {
                    "name": inst.name,
                    "ip": inst.host.ip,
                    "port": int(port),
                    "check_port": hp["patroni_port"],
                    "weight": int(hp.get("pg_weight", 100)),
                    "backup": backup,
                    "ssl": bool(hp.get("patroni_ssl_enabled")),
                }
            )
        text = render(
            "pgsql/service.cfg.j2",
            svc=svc,
            ip=spec.get("ip") or "*",
            check=spec.get("check") or "/",
            balance=spec.get("balance") or "roundrobin",
            maxconn=maxconn,
            options=spec.get("options") or default_options,
            servers=servers,
            dest=dest,
        )
        path = f"/etc/haproxy/conf.d/{svc.full_name}.cfg"
        b.add(FileSpec(path, self.name, text, "haproxy", actions=[reload("haproxy.service")]))
        b.ports.add(Port(svc.port, f"haproxy:{svc.full_name}", self.name))
        b.check("haproxy", "/etc/haproxy/haproxy.cfg", "/etc/haproxy/conf.d")
