"""What a PostgreSQL instance needs from its node: the superuser account, packages and directories, the
server certificate, log shipping through the node's vector, and `/etc/hosts` names for its peers.

These are contributions to things other modules own (NODE's vector and /etc/hosts) or that every PostgreSQL
component shares (the `/pg` tree, the certificate Patroni and pgbouncer both serve), so they are rendered once
per instance here rather than by any one component.
"""

from __future__ import annotations

from typing import Any

from ...bundle import Certificate, Directory, HostBundle, OsUser
from ...logs import contribute_logs
from ...model import Host
from ...render import template_text
from .model import MODULE, PgCluster, PgInstance

# a log line of PostgreSQL's csvlog (and pgBackRest's) starts with its date; others continue the previous one
FIRST_LINE = r"^\d{4}-\d{2}-\d{2} "


PG_CA = "/pg/cert/ca.crt"


def render_os(host: Host, b: HostBundle, version: int) -> None:
    """The database superuser, the PostgreSQL and Patroni packages, and the `/pg` directory tree."""
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


def render_logs(host: Host, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
    """PostgreSQL, Patroni, pgbouncer and pgBackRest logs for the node's vector."""
    p = host.params
    who = {"job": "pgsql", "ins": inst.name, "cls": cluster.name}
    multiline = {
        "start_pattern": FIRST_LINE,
        "condition_pattern": FIRST_LINE,
        "mode": "halt_before",
        "timeout_ms": 1000,
    }
    logs: dict[str, Any] = {
        "postgres": {
            **who,
            "source": {"type": "file", "include": [f"{p['pg_log_dir']}/*.csv"], "multiline": multiline},
            "remap": template_text("pgsql/vrl/postgres.vrl"),
        },
        "patroni": {
            **who,
            "source": {"type": "file", "include": [f"{p['patroni_log_dir']}/patroni.log"]},
            "remap": template_text("pgsql/vrl/patroni.vrl"),
        },
    }
    if p.get("pgbouncer_enabled"):
        logs["pgbouncer"] = {
            **who,
            "source": {"type": "file", "include": [f"{p['pgbouncer_log_dir']}/pgbouncer.log"]},
            "remap": template_text("pgsql/vrl/pgbouncer.vrl"),
        }
    if p.get("pgbackrest_enabled"):
        logs["pgbackrest"] = {
            **who,
            "source": {
                "type": "file",
                "include": [f"{p['pgbackrest_log_dir']}/*.log"],
                "fingerprint": {"strategy": "device_and_inode"},
            },
            "remap": template_text("pgsql/vrl/pgbackrest.vrl"),
        }
    contribute_logs(b, host, MODULE, logs)


def render_certificate(host: Host, inst: PgInstance, b: HostBundle) -> None:
    """The instance's server certificate (Patroni's REST API, pgbouncer's client TLS), signed at apply time."""
    p = host.params
    sans = tuple(dict.fromkeys([inst.name, host.nodename, host.ip, "127.0.0.1", "localhost"]))
    b.certificates.add(
        Certificate(
            "pgsql-server",
            inst.name,
            sans,
            "/pg/cert/server.crt",
            "/pg/cert/server.key",
            owner=p["pg_dbsu"],
            usage="both",
        )
    )
    b.directories.add(Directory("/pg/cert", p["pg_dbsu"], p["pg_dbsu"], "0700"))
    b.trust.add(PG_CA)  # where PostgreSQL, Patroni and pgbouncer find the fleet CA, as in Pigsty


def render_peer_names(cluster: PgCluster, b: HostBundle) -> None:
    """`/etc/hosts` lines so that peers resolve by instance name (only where NODE writes /etc/hosts)."""
    for peer in cluster.instances:
        b.contribute("/etc/hosts", MODULE, f"pgsql:{peer.seq:08d}", f"{peer.host.ip} {peer.name}")
