"""Target platforms: package names and paths that differ between distributions.

Selected per host by `sty_platform`; any entry can be overridden by the parameter of the same
name where one exists (for example `pg_bin_dir`).
"""

from __future__ import annotations

from dataclasses import dataclass


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
    pgbackrest_block_is_beta: bool = False  # the distribution's pgBackRest (2.45 on Debian 12) gates repo-block


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
        pgbackrest_block_is_beta=True,
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
    ),
}
