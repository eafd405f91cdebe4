"""Target platforms: package names and paths that differ between distributions.

Selected per host by `sty_platform`; any entry can be overridden by the parameter of the same
name where one exists (for example `pg_bin_dir`). This is the one platform table: every module
reads its per-distribution facts here, so supporting a new distribution means adding one entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Daemon:
    """How one INFRA component runs on a platform: the distributions package these services differently
    (Debian ships its own units reading /etc/default, Pigsty's EL packages leave the unit to sty)."""

    unit: str  # systemd unit
    bin: str  # program
    env: str  # EnvironmentFile holding the options
    var: str  # the variable of `env` the unit passes to the program
    packages: tuple[str, ...]
    user: str
    own_unit: bool  # sty writes the unit; otherwise the package's unit reads `env`
    package_reloads: bool = True  # the package's unit has an ExecReload (else a drop-in adds one)


_VICTORIA = "victoria"


@dataclass(frozen=True)
class Platform:
    name: str
    family: str  # deb | rpm
    package_manager: str
    pg_bin_dir: str  # str.format(version=...)
    pg_packages: tuple[str, ...]  # str.format(version=...)
    patroni_bin: str
    patroni_packages: tuple[str, ...]
    pgbouncer_bin: str
    haproxy_bin: str
    etcd_bin: str
    etcd_packages: tuple[str, ...]
    node_exporter_bin: str
    node_exporter_package: str
    chrony_conf: str
    chrony_service: str
    chrony_user: str
    sysconfig_dir: str  # where units read their EnvironmentFile
    # INFRA: the observability stack, keyed by component (vmetrics, vmalert, vlogs, ...); not compared or
    # hashed, a platform is identified by its other fields
    infra_daemons: Mapping[str, Daemon] = field(compare=False)
    nginx_user: str
    nginx_packages: tuple[str, ...]
    grafana_packages: tuple[str, ...]
    grafana_user: str
    pgbackrest_block_is_beta: bool = False  # the distribution's pgBackRest (2.45 on Debian 12) gates repo-block
    # pgbouncer 1.21+ pools prepared statements (Pigsty's repo); Debian 12's own 1.18 refuses the setting
    pgbouncer_prepared_statements: bool = True

    def program_packages(self) -> dict[str, str]:
        """Program path -> the package that brings it, for the programs the units of this platform run
        (the systemd checker tells a missing program of this machine from one of another platform)."""
        return {
            self.haproxy_bin: "haproxy",
            self.etcd_bin: self.etcd_packages[0],
            self.patroni_bin: self.patroni_packages[0],
            self.pgbouncer_bin: "pgbouncer",
            self.node_exporter_bin: self.node_exporter_package,
        }


def program_packages() -> dict[str, dict[str, str]]:
    """Platform name -> program path -> package, for the checkers (handed over by the command line)."""
    return {name: plat.program_packages() for name, plat in PLATFORMS.items()}


PLATFORMS: dict[str, Platform] = {
    "debian12": Platform(
        name="debian12",
        family="deb",
        package_manager="apt",
        pg_bin_dir="/usr/lib/postgresql/{version}/bin",
        pg_packages=("postgresql-{version}", "postgresql-client-{version}"),
        patroni_bin="/usr/bin/patroni",
        patroni_packages=("patroni", "python3-etcd", "python3-psycopg2"),
        pgbouncer_bin="/usr/sbin/pgbouncer",
        haproxy_bin="/usr/sbin/haproxy",
        etcd_bin="/usr/bin/etcd",
        etcd_packages=("etcd-server", "etcd-client"),
        node_exporter_bin="/usr/bin/prometheus-node-exporter",
        node_exporter_package="prometheus-node-exporter",
        chrony_conf="/etc/chrony/chrony.conf",
        chrony_service="chrony",
        chrony_user="_chrony",
        sysconfig_dir="/etc/default",
        # Debian's own packages (and their units) where Debian has them; Pigsty's repo for the rest
        infra_daemons={
            "vmetrics": Daemon(
                "victoria-metrics.service",
                "/usr/bin/victoria-metrics",
                "/etc/default/victoria-metrics",
                "ARGS",
                ("victoria-metrics",),
                "_victoria-metrics",
                False,
                package_reloads=False,
            ),
            "vmalert": Daemon(
                "vmalert.service",
                "/usr/bin/vmalert",
                "/etc/default/vmalert",
                "VMALERT_OPTS",
                ("victoria-metrics",),
                _VICTORIA,
                True,
            ),
            "vlogs": Daemon(
                "vlogs.service",
                "/usr/bin/victoria-logs",
                "/etc/default/vlogs",
                "VLOGS_OPTS",
                ("victoria-logs",),
                _VICTORIA,
                True,
            ),
            "vtraces": Daemon(
                "vtraces.service",
                "/usr/bin/victoria-traces",
                "/etc/default/vtraces",
                "VTRACES_OPTS",
                ("victoria-traces",),
                _VICTORIA,
                True,
            ),
            "alertmanager": Daemon(
                "prometheus-alertmanager.service",
                "/usr/bin/prometheus-alertmanager",
                "/etc/default/prometheus-alertmanager",
                "ARGS",
                ("prometheus-alertmanager",),
                "prometheus",
                False,
            ),
            "blackbox": Daemon(
                "prometheus-blackbox-exporter.service",
                "/usr/bin/prometheus-blackbox-exporter",
                "/etc/default/prometheus-blackbox-exporter",
                "ARGS",
                ("prometheus-blackbox-exporter",),
                "prometheus",
                False,
            ),
            "nginx_exporter": Daemon(
                "prometheus-nginx-exporter.service",
                "/usr/bin/prometheus-nginx-exporter",
                "/etc/default/prometheus-nginx-exporter",
                "ARGS",
                ("prometheus-nginx-exporter",),
                "prometheus",
                False,
            ),
            "dnsmasq": Daemon(
                "dnsmasq.service",
                "/usr/sbin/dnsmasq",
                "/etc/default/dnsmasq-sty",
                "DNSMASQ_OPTS",
                ("dnsmasq-base",),
                "root",
                True,
            ),
        },
        nginx_user="www-data",
        nginx_packages=("nginx",),
        grafana_packages=("grafana", "grafana-victoriametrics-ds", "grafana-victorialogs-ds"),
        grafana_user="grafana",
        pgbackrest_block_is_beta=True,
        pgbouncer_prepared_statements=False,
    ),
    "el9": Platform(
        name="el9",
        family="rpm",
        package_manager="dnf",
        pg_bin_dir="/usr/pgsql-{version}/bin",
        pg_packages=("postgresql{version}-server", "postgresql{version}-contrib"),
        patroni_bin="/usr/bin/patroni",
        patroni_packages=("patroni", "patroni-etcd"),
        pgbouncer_bin="/usr/bin/pgbouncer",
        haproxy_bin="/usr/sbin/haproxy",
        etcd_bin="/usr/bin/etcd",
        etcd_packages=("etcd",),
        node_exporter_bin="/usr/bin/node_exporter",
        node_exporter_package="node_exporter",
        chrony_conf="/etc/chrony.conf",
        chrony_service="chronyd",
        chrony_user="chrony",
        sysconfig_dir="/etc/sysconfig",
        # Pigsty's repo packages, units written by sty
        infra_daemons={
            "vmetrics": Daemon(
                "vmetrics.service",
                "/usr/bin/victoria-metrics",
                "/etc/sysconfig/vmetrics",
                "VMETRICS_OPTS",
                ("victoria-metrics",),
                _VICTORIA,
                True,
            ),
            "vmalert": Daemon(
                "vmalert.service",
                "/usr/bin/vmalert",
                "/etc/sysconfig/vmalert",
                "VMALERT_OPTS",
                ("vmutils",),
                _VICTORIA,
                True,
            ),
            "vlogs": Daemon(
                "vlogs.service",
                "/usr/bin/victoria-logs",
                "/etc/sysconfig/vlogs",
                "VLOGS_OPTS",
                ("victoria-logs",),
                _VICTORIA,
                True,
            ),
            "vtraces": Daemon(
                "vtraces.service",
                "/usr/bin/victoria-traces",
                "/etc/sysconfig/vtraces",
                "VTRACES_OPTS",
                ("victoria-traces",),
                _VICTORIA,
                True,
            ),
            "alertmanager": Daemon(
                "alertmanager.service",
                "/usr/bin/alertmanager",
                "/etc/sysconfig/alertmanager",
                "ALERTMANAGER_OPTS",
                ("alertmanager",),
                "prometheus",
                True,
            ),
            "blackbox": Daemon(
                "blackbox_exporter.service",
                "/usr/bin/blackbox_exporter",
                "/etc/sysconfig/blackbox_exporter",
                "BLACKBOX_OPTS",
                ("blackbox_exporter",),
                "prometheus",
                True,
            ),
            "nginx_exporter": Daemon(
                "nginx_exporter.service",
                "/usr/bin/nginx_exporter",
                "/etc/sysconfig/nginx_exporter",
                "NGINX_EXPORTER_OPTS",
                ("nginx_exporter",),
                "prometheus",
                True,
            ),
            "dnsmasq": Daemon(
                "dnsmasq.service",
                "/usr/sbin/dnsmasq",
                "/etc/sysconfig/dnsmasq-sty",
                "DNSMASQ_OPTS",
                ("dnsmasq",),
                "root",
                True,
            ),
        },
        nginx_user="nginx",
        nginx_packages=("nginx",),
        grafana_packages=("grafana", "grafana-victoriametrics-ds", "grafana-victorialogs-ds"),
        grafana_user="grafana",
    ),
}
