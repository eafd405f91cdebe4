"""PGSQL: HA PostgreSQL clusters. Membership by `pg_cluster`; per instance Patroni, the HBA file,
pgbouncer, pgBackRest, the exporters, vip-manager, the superuser's crontab, the SQL that provisions
roles and databases, and the cluster's HAProxy services (on its members or on `pg_service_provider`
nodes).

This module is the orchestration: `derive` builds the model (`model`) and runs the rules, `render` calls one
renderer per concern. Each concern's files, and the checks that guard them, are in their own module:
`patroni`, `pg_hba` (with the rule engine `hba`), `pgbouncer`, `backup` (pgBackRest), `exporters`, `vip`,
`crontab`, `provision` (the SQL, checked by `provision_check`, quoted by `sql`), `services` (HAProxy),
`system` (user, directories, logs, certificate), `ports`, and `tuning` for Pigsty's `pg_conf` formulas.
What PGSQL offers the other modules (scrape targets, DNS records, datasources, its ports) is published on the
board by `publish`; the DCS it needs is the `Dcs` record another module (ETCD) publishes in an earlier phase.
"""

from __future__ import annotations

from typing import ClassVar

from ...bundle import HostBundle
from ...contrib import Dcs, module_alert_rules
from ...errors import Report
from ...model import Fleet, Host
from ...module import FleetModule
from .backup import PGBACKREST_SECRET_FIELDS, render_pgbackrest
from .crontab import render_crontab
from .exporters import env_quote, exporter_ports, render_exporters
from .model import MODULE, PgCluster, PgInstance, PgsqlModel, Service, build_model, check_primary, pgsql_model
from .patroni import pg_setting, render_patroni
from .pg_hba import render_pg_hba
from .pgbouncer import passwordless_pooled, render_pgbouncer
from .ports import check_listeners, instance_ports
from .provision import render_sql
from .provision_check import PROVISION_PARAMS, check_provision, parse_default_privilege
from .publish import publish
from .rules import CHECKED_PARAMS, check_instance, check_mode, check_upstream
from .scripts import render_scripts
from .services import derive_services, render_service, select
from .sql import guc_values, sql_dollar, sql_guc, sql_ident, sql_literal
from .system import render_certificate, render_logs, render_os, render_peer_names
from .vip import render_vip

__all__ = [
    "CHECKED_PARAMS",
    "PGBACKREST_SECRET_FIELDS",
    "PROVISION_PARAMS",
    "PgCluster",
    "PgInstance",
    "PgsqlModel",
    "PgsqlModule",
    "Service",
    "env_quote",
    "exporter_ports",
    "guc_values",
    "instance_ports",
    "parse_default_privilege",
    "pg_setting",
    "pgsql_model",
    "select",
    "sql_dollar",
    "sql_guc",
    "sql_ident",
    "sql_literal",
]


class PgsqlModule(FleetModule):
    name = MODULE
    phase = 50  # after the DCS's module: `derive` reads the `Dcs` record
    cluster_key = "pg_cluster"

    pinned: ClassVar[dict[str, str]] = {"version": "pg_version"}

    def pin_refusal(self, key: str, old: object, new: object, host: Host) -> str:
        cluster = host.params.get("pg_cluster")
        return (
            f"{cluster} runs PostgreSQL {old} and the inventory now says {new}: a major-version change is an upgrade "
            'procedure, not a configuration change (docs/operations.md, "Major-version upgrade"); after it, '
            "build with --allow-upgrade"
        )

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return bool(host.params.raw("pg_cluster"))

    # -- model and cross-host rules -------------------------------------------------------------
    def review(self, fleet: Fleet, report: Report) -> None:
        passwordless_pooled(fleet, fleet.overrides, report)

    def derive(self, fleet: Fleet, report: Report) -> None:
        fleet.board.publish(self.name, *module_alert_rules(self.name))
        model = build_model(fleet, report)
        fleet.derived["pgsql"] = model
        if model.clusters and fleet.board.one(Dcs) is None:
            report.error("all.children.etcd", "PostgreSQL clusters need an `etcd` group (the DCS) and there is none")
        checked: set[tuple[str, ...]] = set()
        for cluster in model.clusters.values():
            check_primary(cluster, report)
            check_upstream(cluster, report)
            check_mode(cluster, report)
            self._check_definitions(cluster, checked, report)
            derive_services(cluster, fleet, model, report)
        check_listeners(fleet, model, report)
        publish(fleet, model)

    @staticmethod
    def _check_definitions(cluster: PgCluster, checked: set[tuple[str, ...]], report: Report) -> None:
        """Per-instance and provisioning rules, once per distinct definition: a definition shared by many
        hosts (a group's vars) is checked, and its errors reported, once."""
        for inst in cluster.instances:
            key = tuple(inst.host.params.source(k) for k in CHECKED_PARAMS)
            if key not in checked:
                checked.add(key)
                check_instance(inst, report)
        cp = cluster.params()
        key = ("provision", *(cp.source(k) for k in PROVISION_PARAMS))
        if key not in checked:
            checked.add(key)
            check_provision(cp, report)

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        model = pgsql_model(fleet)
        deps: list[Host] = []
        inst = model.instance_of.get(host.ip)
        if inst:
            deps += [i.host for i in model.clusters[inst.cluster].instances]
        for cluster in model.provided_by.get(host.ip, []):
            deps += [i.host for i in cluster.instances]
        dcs = fleet.board.one(Dcs)
        if dcs:
            deps += [fleet.hosts[ip] for ip in dcs.hosts]
        deps += fleet.with_module("infra")
        return deps

    # -- rendering ------------------------------------------------------------------------------
    def serves(self, host: Host, fleet: Fleet) -> bool:
        return host.ip in pgsql_model(fleet).provided_by

    def render(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        model = pgsql_model(fleet)
        for cluster in model.provided_by.get(host.ip, []) if host.params.get("haproxy_enabled") else []:
            for svc in cluster.services:
                render_service(cluster, svc, b, model.service_cfg)
        inst = model.instance_of.get(host.ip)
        if inst is None:
            return
        cluster = model.clusters[inst.cluster]
        self._identity(host, inst, cluster, b)
        self._components(host, fleet, inst, cluster, b)
        if cluster.params().get("pg_provision"):
            render_sql(cluster, b, model)
        render_logs(host, inst, cluster, b)
        p = host.params
        render_certificate(host, inst, b)  # PostgreSQL's TLS always; Patroni's API and pgbouncer when enabled
        if p.get("node_write_etc_hosts"):  # NODE owns /etc/hosts only then
            render_peer_names(cluster, b)

    @staticmethod
    def _identity(host: Host, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
        """The instance as the manifest and `sty verify` know it, and the passwords verify logs in with."""
        p = host.params
        b.info["pgsql"] = {
            "cluster": cluster.name,
            "instance": inst.name,
            "seq": inst.seq,
            "role": inst.role,
            "primary": cluster.primary.host.ip if cluster.primary else None,
            "members": {i.name: i.host.ip for i in cluster.instances},
            "version": int(p["pg_version"]),
            "dbsu": p["pg_dbsu"],
            "init_backup": bool(p.get("pgbackrest_enabled") and p.get("pgbackrest_init_backup")),
        }
        # values `sty verify` logs in with; kept in the store, written into no file
        b.keep(f"{cluster.name}/pg_admin_password", p["pg_admin_password"])
        for user in p.combined("pg_users"):
            if isinstance(user, dict) and user.get("pgbouncer") and user.get("name"):
                b.keep(f"{cluster.name}/pg_users/{user['name']}/password", user.get("password"))

    @staticmethod
    def _components(host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
        """PostgreSQL under Patroni and the components each instance runs beside it, as enabled."""
        p = host.params
        version = int(p["pg_version"])
        bin_dir = p["pg_bin_dir"] if p.is_set("pg_bin_dir") else host.platform.pg_bin_dir.format(version=version)
        render_os(host, b, version)
        render_patroni(host, fleet, inst, cluster, b, bin_dir)
        render_pg_hba(host, fleet, inst, cluster, b)
        if p.get("pgbouncer_enabled"):
            render_pgbouncer(host, fleet, inst, cluster, b)
        if p.get("pgbackrest_enabled"):
            render_pgbackrest(host, inst, cluster, b)
        render_exporters(host, cluster, b)
        if p.get("pg_vip_enabled"):
            render_vip(host, fleet, inst, cluster, b)
        if p.get("pg_crontab"):
            render_crontab(host, inst, b)
        render_scripts(host, inst, cluster, b)
