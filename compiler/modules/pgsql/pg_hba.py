"""The instance's `pg_hba.conf`, and the context (users, addresses, role) both of its HBA files expand from.

The rule engine in `hba` is pure and knows nothing of hosts; this module resolves its aliases for one instance
(the infra nodes, the cluster's members, the intranet, the instance's role) so that PostgreSQL's file here and
pgbouncer's in `pgbouncer` are expanded from the same addresses.
"""

from __future__ import annotations

from ...bundle import FileSpec, HostBundle
from ...model import Fleet, Host
from ...render import HEADER, RenderError
from . import hba as hba_rules
from .model import MODULE, PgCluster, PgInstance
from .patroni import PATRONI_RELOAD


def hba_context(host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster) -> hba_rules.HbaContext:
    p = host.params
    infra = tuple(h.ip for h in fleet.with_module("infra"))
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


def render_hba_file(host: Host, ctx: hba_rules.HbaContext, rules: str, flavor: str) -> str:
    """The text of an HBA file from the rules parameter `rules`; a rule the engine refuses fails the build."""
    try:
        return HEADER + hba_rules.render_hba(host.params.combined(rules), ctx, flavor)
    except ValueError as exc:
        raise RenderError(str(exc)) from None


def render_pg_hba(host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
    p = host.params
    text = render_hba_file(host, hba_context(host, fleet, inst, cluster), "pg_hba_rules", "postgres")
    dbsu = p["pg_dbsu"]
    b.add(
        FileSpec(
            p["pg_hba_file"],
            MODULE,
            text,
            "hba",
            owner=dbsu,
            group=dbsu,
            mode="0600",
            actions=[PATRONI_RELOAD],
        )
    )
    b.check("postgres-hba", p["pg_hba_file"], where="both")
