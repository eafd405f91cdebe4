"""The node cluster's L2 VIP: the hosts with vip_enabled that share a vip_address form one VRRP group
(derived once for the fleet, with its rules), and each holder gets keepalived's config and a
keepalived_exporter. The group, not the host, names the VRRP instance and its default auth password,
so that every holder of one VIP agrees on both. Each holder's keepalived_exporter (`vip_exporter_port`, 9650)
is published as a `node` scrape target with Pigsty's labels (`cls`, `ins`, `ip`, `vip`). Intentional differences
from Pigsty: that group is a file of its own (`node/<ip>-keepalived.yml`; Pigsty writes it into `node/<ip>.yml`,
which NODE's publisher owns), scraped at the exporter's /metrics whatever `exporter_metrics_path` says."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...bundle import DAEMON_RELOAD, FileSpec, HostBundle, Port, Unit, reload, restart
from ...contrib import ScrapeTarget, TargetGroup, addr, labels_of
from ...errors import Report
from ...model import Fleet, Host
from ...render import HEADER, RenderError, render
from .identity import MODULE, ip_key, node_identity

KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
KEEPALIVED_EXPORTER_UNIT = "/etc/systemd/system/keepalived_exporter.service"
# program path and package names per platform family (Pigsty's repository names the exporter's deb with a dash)
KEEPALIVED_EXPORTER_BIN = "/usr/bin/keepalived_exporter"
KEEPALIVED_EXPORTER_PATH = "/metrics"
KEEPALIVED_EXPORTER_PACKAGE = {"deb": "keepalived-exporter", "rpm": "keepalived_exporter"}
VIP_PRIORITY = {"master": 128, "backup": 100}  # Pigsty's priorities
VIP_ASSUMED_INTERFACE = "eth0"  # Pigsty's default before `auto`
INTERFACE_FROM = {
    "parameter": "from vip_interface",
    "facts": "vip_interface is auto: from the node's facts",
    "assumed": "vip_interface is auto and no fact names it: assumed; set vip_interface if it is another",
}
IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
VRRP_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
AUTH_PASS = re.compile(r"^[!-~]{1,8}$")  # keepalived reads 8 characters of a PASS; no space
AUTH_PASS_BAD = set("\"'#!\\")


@dataclass
class VipGroup:
    """The hosts that hold one L2 VIP with keepalived (one VRRP instance, named after their node cluster)."""

    name: str
    address: str
    vrid: int
    members: list[Host] = field(default_factory=list)


def vip_interface(host: Host) -> tuple[str, str]:
    """(interface, how it was resolved): the parameter, a gathered fact, or Pigsty's old default."""
    value = str(host.params.get("vip_interface") or "auto").strip()
    if value.lower() != "auto":
        return value, "parameter"
    fact = getattr(host.facts, "interface", None)
    if fact:
        return str(fact), "facts"
    return VIP_ASSUMED_INTERFACE, "assumed"


def vip_auth_default(cluster: str, vrid: int) -> str:
    """Pigsty's `<cls>-<vrid>`, cut to the 8 characters keepalived uses (it truncates longer ones itself)."""
    return f"{cluster}-{vrid}"[:8]


def auth_pass_ok(value: str) -> bool:
    """Can keepalived.conf carry this password unquoted and read all of it?"""
    return bool(AUTH_PASS.match(value)) and not set(value) & AUTH_PASS_BAD


# -- derive: the VRRP groups of the fleet and their rules -----------------------------------------------
def derive_vip(fleet: Fleet, clusters: dict[str, list[Host]], report: Report) -> dict[str, VipGroup]:
    """VRRP groups: the hosts with vip_enabled that share a vip_address (Pigsty's rule), keyed by host.

    vip_address and vip_vrid are cluster parameters: the vip-enabled members of a node cluster must agree
    on them. A VIP whose holders span several node clusters (Pigsty's ha/octo.yml binds one to its minio
    group) is one group named after the node cluster of its lowest address, so that every holder derives
    the same auth password, which Pigsty's per-cluster `<cls>-<vrid>` does not.
    """
    groups: dict[str, VipGroup] = {}
    seen_vrid: dict[int, VipGroup] = {}
    for address, members in sorted(vip_holders(clusters, report).items(), key=lambda kv: ip_key(kv[0])):
        members.sort(key=lambda h: ip_key(h.ip))
        names = list(dict.fromkeys(node_identity(h)[1] for h in members))
        group = VipGroup(names[0], address, int(members[0].params["vip_vrid"]), members)
        check_vip_group(group, names, fleet, seen_vrid, report)
        seen_vrid.setdefault(group.vrid, group)
        for h in members:
            groups[h.ip] = group
    publish_keepalived_exporters(fleet, groups)
    return groups


def publish_keepalived_exporters(fleet: Fleet, groups: dict[str, VipGroup]) -> None:
    """Each VIP holder's keepalived_exporter, scraped in the `node` job with Pigsty's labels (the node's `cls`,
    `ins`, `ip` and the `vip`): a file `<ip>-keepalived.yml` beside the node's own `<ip>.yml`, where Pigsty writes
    a second group into the node's file. The exporter serves /metrics whatever the node job's path."""
    for ip, group in sorted(groups.items(), key=lambda kv: ip_key(kv[0])):
        host = fleet.hosts[ip]
        labels = labels_of(node_identity(host)[1], host.derived_nodename or ip, ip, vip=group.address)
        labels["__metrics_path__"] = KEEPALIVED_EXPORTER_PATH
        target = TargetGroup((addr(ip, host.params["vip_exporter_port"]),), labels)
        fleet.board.publish(MODULE, ScrapeTarget("node", f"{ip}-keepalived", (target,), ip))


def vip_holders(clusters: dict[str, list[Host]], report: Report) -> dict[str, list[Host]]:
    """{vip_address: hosts}: the complete vip-enabled members, each node cluster agreeing on its VIP."""
    by_address: dict[str, list[Host]] = {}
    for name, hosts in sorted(clusters.items()):
        members = sorted((h for h in hosts if h.params.get("vip_enabled")), key=lambda h: ip_key(h.ip))
        ref: Host | None = None
        for h in members:
            p = h.params
            block = p.source("vip_enabled").rsplit(".", 1)[0]
            missing = [key for key in ("vip_address", "vip_vrid") if p.get(key) in (None, "")]
            for key in missing:
                report.error(f"{block}.{key}", f"{key} is required when vip_enabled is true (node {h.ip})")
            check_vip_member(h, report)
            if missing:
                continue
            ref = ref or h
            for key in ("vip_address", "vip_vrid"):
                if p.get(key) != ref.params.get(key):
                    report.error(
                        p.source(key),
                        f"{key} {p.get(key)} differs from {ref.params.get(key)} on {ref.ip}; "
                        f"the members of node cluster {name} hold one VIP",
                    )
            by_address.setdefault(str(p["vip_address"]), []).append(h)
    return by_address


def check_vip_member(host: Host, report: Report) -> None:
    """The holder's own parameters: an interface name keepalived accepts, a password it reads whole."""
    p = host.params
    interface, how = vip_interface(host)
    if how != "assumed" and not IFNAME.match(interface):
        report.error(
            p.source("vip_interface"),
            f"vip_interface '{interface}' is not a network interface name (1-15 of letters, digits, _.:@-)",
        )
    password = p.get("vip_auth_pass")
    if password and not auth_pass_ok(str(password)):
        report.error(
            p.source("vip_auth_pass"),
            "vip_auth_pass must be 1 to 8 printable characters without spaces, quotes, # ! or \\ "
            "(keepalived reads 8 characters of a PASS)",
        )


def check_vip_group(
    group: VipGroup, names: list[str], fleet: Fleet, seen_vrid: dict[int, VipGroup], report: Report
) -> None:
    """One VIP's rules across its holders (names: their node clusters), and against the VIPs seen before."""
    address, vrid, members = group.address, group.vrid, group.members
    first = members[0]
    fp = first.params
    for h in members[1:]:
        if h.params.get("vip_vrid") != vrid:
            report.error(
                h.params.source("vip_vrid"),
                f"vip_vrid {h.params.get('vip_vrid')} differs from {vrid} on {first.ip}, "
                f"which holds the same VIP {address}",
            )
    if len(names) > 1:
        report.warning(
            fp.source("vip_address"),
            f"VIP {address} is held by members of node clusters {', '.join(names)}: they form one VRRP "
            f"group named {group.name}, and share its auth password",
        )
    if not VRRP_NAME.match(group.name):
        report.error(
            fp.source("node_cluster") if fp.is_set("node_cluster") else fp.source("vip_enabled"),
            f"node cluster name '{group.name}' names a VRRP instance and may only contain letters, digits and _.-",
        )
    if address in fleet.hosts:
        report.error(fp.source("vip_address"), f"vip_address {address} is the address of host {address}")
    if vrid in seen_vrid:
        report.warning(
            fp.source("vip_vrid"),
            f"vip_vrid {vrid} is also used for VIP {seen_vrid[vrid].address} "
            f"(node cluster {seen_vrid[vrid].name}); VRRP router ids must differ within one VLAN",
        )
    masters = [h for h in members if h.params.get("vip_role") == "master"]
    if len(masters) > 1:
        report.warning(
            masters[1].params.source("vip_role"),
            f"VIP {address} has {len(masters)} holders with vip_role master "
            f"({', '.join(h.ip for h in masters)}); one is enough",
        )
    assumed = [h.ip for h in members if vip_interface(h)[1] == "assumed"]
    if assumed:
        report.note(
            fp.source("vip_interface"),
            f"vip_interface is auto and no fact names the interface of {', '.join(assumed)}: "
            f"keepalived binds {VIP_ASSUMED_INTERFACE} for VIP {address} (set vip_interface to change it)",
        )


# -- render: keepalived and its exporter on each holder ----------------------------------------------
def render_vip(host: Host, fleet: Fleet, b: HostBundle) -> None:
    if not host.params.get("vip_enabled"):
        return
    vip = fleet.derived.get("node_vip", {}).get(host.ip)
    if vip is None:
        return
    render_keepalived(host, vip, b)
    render_keepalived_exporter(host, b)


def render_keepalived(host: Host, vip: VipGroup, b: HostBundle) -> None:
    p = host.params
    cluster = vip.name
    interface, how = vip_interface(host)
    role = str(p.get("vip_role") or "backup")
    preempt = bool(p.get("vip_preempt"))
    # keepalived ignores nopreempt for an initial MASTER (and `keepalived -t` rejects the pair): a master
    # that must not preempt starts as BACKUP with the higher priority and wins the first election
    state = "MASTER" if role == "master" and preempt else "BACKUP"
    name = f"{cluster}/vip_auth_pass"
    value = b.secret_value(name, p.get("vip_auth_pass") or vip_auth_default(cluster, vip.vrid))
    if not auth_pass_ok(value):
        raise RenderError(f"the secret {name} must be 1 to 8 printable characters without spaces, quotes, # ! or \\")
    peers = [h.ip for h in vip.members if h is not host]
    text = render(
        "node/keepalived.conf.j2",
        nodename=b.info["node"]["nodename"],
        cluster=cluster,
        state=state,
        interface=interface,
        interface_from=INTERFACE_FROM[how],
        vrid=vip.vrid,
        priority=VIP_PRIORITY[role],
        nopreempt=not preempt,
        ip=host.ip,
        peers=peers,
        auth_pass=b.secret(name, value),
        address=vip.address,
    )
    b.add(FileSpec(KEEPALIVED_CONF, MODULE, text, "keepalived", mode="0600", actions=[reload("keepalived.service")]))
    b.info["node"]["vip"] = {
        "address": vip.address,
        "vrid": vip.vrid,
        "role": role,
        "state": state,
        "interface": interface,
        "interface_from": how,
        "peers": peers,
    }
    b.units.add(Unit("keepalived.service", MODULE))
    b.packages.add("keepalived")
    b.check("keepalived", KEEPALIVED_CONF)


def render_keepalived_exporter(host: Host, b: HostBundle) -> None:
    """Pigsty's package; its env file sits where the platform keeps unit defaults."""
    plat = host.platform
    port = int(host.params["vip_exporter_port"])
    env = f"{plat.sysconfig_dir}/keepalived_exporter"
    options = f"--web.listen-address=:{port} --web.telemetry-path={KEEPALIVED_EXPORTER_PATH}"
    b.add(
        FileSpec(
            env,
            MODULE,
            HEADER + f'KEEPALIVED_EXPORTER_OPTS="{options}"\n',
            "env",
            actions=[restart("keepalived_exporter.service")],
        )
    )
    unit = render("node/keepalived_exporter.service.j2", bin=KEEPALIVED_EXPORTER_BIN, env=env)
    b.add(
        FileSpec(
            KEEPALIVED_EXPORTER_UNIT,
            MODULE,
            unit,
            "systemd",
            actions=[DAEMON_RELOAD, restart("keepalived_exporter.service")],
        )
    )
    b.units.add(Unit("keepalived_exporter.service", MODULE, f"http://{host.ip}:{port}{KEEPALIVED_EXPORTER_PATH}"))
    b.ports.add(Port(port, "keepalived_exporter", MODULE))
    b.packages.add(KEEPALIVED_EXPORTER_PACKAGE[plat.family])
    b.check("systemd", KEEPALIVED_EXPORTER_UNIT)
