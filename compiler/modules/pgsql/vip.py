"""vip-manager: the cluster's L2 virtual IP, bound by whichever member holds the Patroni leader key.

`/etc/default/vip-manager.yml` + `vip-manager.service` (`pg_vip_enabled`) name the etcd endpoints, the trigger
key `<pg_namespace>/<cluster>/leader` and the instance name as its value. `pg_vip_interface: auto` is resolved
as Pigsty does (the interface that holds the node's address): from the node's facts when they name it, else when
the unit starts, by its ExecStart; an explicit or gathered name goes into the file. The manifest's identity
records which, because a wrong interface only shows once the VIP fails to move.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ...bundle import DAEMON_RELOAD, FileSpec, HostBundle, Unit, restart
from ...contrib import Dcs
from ...errors import Report
from ...model import Fleet, Host
from ...render import HEADER, render, to_yaml
from .model import MODULE, PgCluster, PgInstance
from .system import PG_CA

IFACE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
CONF = "/etc/default/vip-manager.yml"
UNIT = "vip-manager.service"


def check_vip_address(p, report: Report) -> None:
    try:
        ipaddress.IPv4Interface(str(p.get("pg_vip_address")))
        if "/" not in str(p.get("pg_vip_address")):
            raise ValueError
    except ValueError:
        report.error(p.source("pg_vip_address"), "pg_vip_address must be an IPv4 CIDR such as 10.10.10.3/24")


def check_vip_interface(p, report: Report) -> None:
    iface = str(p.get("pg_vip_interface") or "auto")
    if iface != "auto" and not IFACE.match(iface):
        report.error(p.source("pg_vip_interface"), f"'{iface}' is not a network interface name (or auto)")


def _interface(host: Host) -> tuple[str, str]:
    """(interface or 'auto', where the name came from)."""
    iface, how = str(host.params.get("pg_vip_interface") or "auto").strip(), "pg_vip_interface"
    fact = getattr(host.facts, "interface", None)  # a gathered fact names the interface holding the address
    if iface == "auto" and fact and IFACE.match(str(fact)):
        iface, how = str(fact), "facts"
    return iface, how


def _config(host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> dict[str, Any]:
    p = host.params
    vip = ipaddress.IPv4Interface(str(p["pg_vip_address"]))
    dcs = fleet.board.one(Dcs)
    return {
        "interval": 1000,
        "trigger-key": cluster.leader_key(),
        "trigger-value": inst.name,
        "ip": str(vip.ip),
        "netmask": vip.network.prefixlen,
        "manager-type": "basic",
        "dcs-type": "etcd",
        "dcs-endpoints": dcs.client_urls() if dcs else [],
        "etcd-ca-file": PG_CA,  # TLS to etcd, as Pigsty
        "etcd-cert-file": "/pg/cert/server.crt",
        "etcd-key-file": "/pg/cert/server.key",
        "etcd-user": cluster.scope,
        "etcd-password": b.secret(f"{cluster.name}/pg_etcd_password", p.get("pg_etcd_password") or cluster.scope),
        "retry-num": 2,
        "retry-after": 250,
        "verbose": False,
    }


def render_vip(host: Host, fleet: Fleet, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
    p = host.params
    vip = ipaddress.IPv4Interface(str(p["pg_vip_address"]))
    iface, how = _interface(host)
    doc = _config(host, fleet, inst, cluster, b)
    if iface != "auto":
        doc["interface"] = iface
    b.add(
        FileSpec(
            CONF,
            MODULE,
            to_yaml(doc, HEADER),
            "yaml",
            owner="root",
            group=p["pg_dbsu"],
            mode="0640",
            actions=[restart(UNIT)],
        )
    )
    text = render(
        "pgsql/vip-manager.service.j2",
        vip=str(vip),
        cluster=cluster.name,
        ip=host.ip,
        auto=iface == "auto",
        bin="/usr/bin/vip-manager",
        conf=CONF,
    )
    path = f"/etc/systemd/system/{UNIT}"
    b.add(FileSpec(path, MODULE, text, "systemd", actions=[DAEMON_RELOAD, restart(UNIT)]))
    b.units.add(Unit(UNIT, MODULE))
    b.packages.add("vip-manager")
    b.info["pgsql"]["vip"] = {
        "address": str(vip),
        "interface": iface if iface != "auto" else f"the interface holding {host.ip}, looked up at each start",
        "interface_from": how if iface != "auto" else "vip-manager.service",
    }
    b.check("vip_manager", CONF, path, where="build")
    b.check("systemd", path)
