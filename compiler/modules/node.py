"""NODE: every host. Identity, /etc/hosts and resolver, time sync, kernel tuning, node_exporter,
HAProxy (its main config and admin listener; other modules add conf.d files), the vector log agent
(`/etc/vector/vector.yaml`, which other modules feed with their log sources) and the node cluster's
L2 VIP with keepalived."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..bundle import (
    DAEMON_RELOAD,
    Contribution,
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
from ..render import HEADER, RenderError, comment, env_quote, one_line, render, to_yaml, token

# Kernel settings per node_tune profile (sty's table, following the intent of Pigsty's tuned profiles:
# oltp favours latency, olap throughput, crit durability, tiny small machines).
_COMMON = {
    "fs.aio-max-nr": "1048576",
    "fs.file-max": "16777216",
    "kernel.numa_balancing": "0",
    "net.core.somaxconn": "65535",
    "net.core.netdev_max_backlog": "10000",
    "net.ipv4.ip_local_port_range": "10000 65535",
    "net.ipv4.tcp_fin_timeout": "5",
    "net.ipv4.tcp_max_syn_backlog": "8192",
    "net.ipv4.tcp_tw_reuse": "1",
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv4.tcp_keepalive_time": "60",
    "net.ipv4.tcp_keepalive_intvl": "10",
    "net.ipv4.tcp_keepalive_probes": "6",
}
NODE_TUNE: dict[str, dict[str, str]] = {
    "oltp": {
        **_COMMON,
        "vm.swappiness": "0",
        "vm.dirty_background_ratio": "5",
        "vm.dirty_ratio": "10",
        "vm.overcommit_memory": "0",
        "kernel.sched_autogroup_enabled": "0",
    },
    "olap": {
        **_COMMON,
        "vm.swappiness": "10",
        "vm.dirty_background_ratio": "10",
        "vm.dirty_ratio": "40",
        "vm.overcommit_memory": "0",
    },
    "crit": {
        **_COMMON,
        "vm.swappiness": "0",
        "vm.dirty_background_ratio": "3",
        "vm.dirty_ratio": "5",
        "vm.overcommit_memory": "2",
        "vm.overcommit_ratio": "100",
        "kernel.sched_autogroup_enabled": "0",
    },
    "tiny": {
        "vm.swappiness": "10",
        "vm.dirty_background_ratio": "5",
        "vm.dirty_ratio": "20",
        "net.core.somaxconn": "4096",
        "net.ipv4.tcp_tw_reuse": "1",
    },
    "none": {},
}

HOSTS_FILE = "/etc/hosts"

# -- vector: the log agent of every node ---------------------------------------------------------------
#
# NODE owns /etc/vector/vector.yaml (serialised from data). Other modules hand in their log sources with
#
#     b.contribute(VECTOR_CONFIG, module, key, {
#         "<log id>": {                     # [a-z][a-z0-9_]*, unique on the host; becomes the `src` field
#             "job": "pgsql",               # required: the `job` field (node infra etcd pgsql redis minio)
#             "ins": "pg-test-1",           # optional: `ins` unless the remap sets it (default: nodename)
#             "cls": "pg-test",             # optional: `cls` unless the remap sets it (default: node_cluster)
#             "source": {"type": "file", "include": ["/pg/log/postgres/*.csv"]},  # a vector source: file | journald
#             "remap": "<VRL>",             # optional: parses the raw event (sets .message, ._time, .level ...)
#         },
#     })
#
# (or `contribute_logs(b, host, module, {...})`, which does nothing where vector_enabled is false), and the
# composer turns each into a source `<id>_raw` (file sources get `read_from` from vector_read_from,
# journald sources `since_now`), a remap transform `<id>_logs` (journald fields trimmed, the module's VRL,
# then job/ip/src and default ins/cls/_time added) and feeds every `*_logs` transform to one http sink per
# VictoriaLogs receiver (`vector_log_endpoint`). The system journal is one source (`syslog`) that leaves out
# the units a journald contribution claims with `include_units`, so no line is shipped twice.
VECTOR_CONFIG = "/etc/vector/vector.yaml"
VECTOR_UNIT = "/etc/systemd/system/vector.service"
VECTOR_API = "127.0.0.1:8686"
VLOGS_INSERT = "/insert/jsonline"  # VictoriaLogs' JSON-lines insert API, as Pigsty ships logs
VLOGS_DEFAULT_PORT = 9428
LOG_ID = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
LOG_FIELD = re.compile(r"^[A-Za-z0-9_.:@-]+$")  # values vector's VRL writes (ins, cls): see vrl_string
LOG_SOURCE_TYPES = ("file", "journald")
LOG_SPEC_KEYS = frozenset({"job", "ins", "cls", "source", "remap"})
VLOGS_HEADERS = {
    "VL-Stream-Fields": "job,ins,ip",
    "VL-Msg-Field": "message",
    "VL-Time-Field": "_time",
    "VL-Ignore-Fields": "timestamp,file",
    "AccountID": "0",
    "ProjectID": "0",
}
# journald events carry dozens of trusted fields: keep the line, its time, unit, identifier and priority
JOURNAL_TRIM = """.unit = del(._SYSTEMD_UNIT)
.ident = del(.SYSLOG_IDENTIFIER)
.level = del(.PRIORITY)
. = compact({"message": .message, "timestamp": .timestamp, "unit": .unit, "ident": .ident, "level": .level})"""
# program paths and package names per platform family (Pigsty's repository names the exporter's deb with a dash)
VECTOR_BIN = "/usr/bin/vector"
KEEPALIVED_EXPORTER_BIN = "/usr/bin/keepalived_exporter"
KEEPALIVED_EXPORTER_PACKAGE = {"deb": "keepalived-exporter", "rpm": "keepalived_exporter"}

# -- node VIP ------------------------------------------------------------------------------------------
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
KEEPALIVED_EXPORTER_UNIT = "/etc/systemd/system/keepalived_exporter.service"
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


def vrl_string(value: Any) -> str:
    """A VRL string literal of a checked value (no quotes, backslashes or template braces can occur)."""
    return '"' + token(value) + '"'


@dataclass
class VipGroup:
    """The hosts that hold one L2 VIP with keepalived (one VRRP instance, named after their node cluster)."""

    name: str
    address: str
    vrid: int
    members: list[Host] = field(default_factory=list)


def _ip_key(ip: str) -> tuple:
    try:
        return tuple(int(x) for x in ip.split("."))
    except ValueError:
        return (999, ip)


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


def log_endpoint_kind(entry: Any, fleet: Fleet) -> str:
    """group | url | ip | invalid: what one item of vector_log_endpoint names."""
    text = str(entry)
    if text in fleet.inventory.groups:
        return "group"
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.hostname and not any(c.isspace() for c in text):
        return "url"
    try:
        ipaddress.IPv4Address(text)
        return "ip"
    except ValueError:
        return "invalid"


def log_receivers(host: Host, fleet: Fleet) -> tuple[list[tuple[str, str]], list[Host]]:
    """([(sink id, uri)], hosts whose parameters shaped them): VictoriaLogs insert endpoints of this host."""
    uris: list[str] = []
    hosts: list[Host] = []
    for entry in host.params.get("vector_log_endpoint") or []:
        kind = log_endpoint_kind(entry, fleet)
        if kind == "group":
            for peer in sorted(fleet.group_hosts(str(entry)), key=lambda h: _ip_key(h.ip)):
                hosts.append(peer)
                if peer.params.get("vlogs_enabled", True):
                    port = peer.params.get("vlogs_port", VLOGS_DEFAULT_PORT)
                    uris.append(f"http://{peer.ip}:{port}{VLOGS_INSERT}")
        elif kind == "ip":
            peer = fleet.hosts.get(str(entry))
            port = peer.params.get("vlogs_port", VLOGS_DEFAULT_PORT) if peer else VLOGS_DEFAULT_PORT
            if peer:
                hosts.append(peer)
            uris.append(f"http://{entry}:{port}{VLOGS_INSERT}")
        elif kind == "url":
            uris.append(str(entry))
    out: list[tuple[str, str]] = []
    for uri in dict.fromkeys(uris):
        base = "vlogs_" + re.sub(r"[^a-z0-9]+", "_", (urlsplit(uri).netloc or uri).lower()).strip("_")
        sink, n = base, 1
        while any(sink == s for s, _ in out):
            n += 1
            sink = f"{base}_{n}"
        out.append((sink, uri))
    return out, hosts


def contribute_logs(b: HostBundle, host: Host, module: str, logs: dict[str, Any]) -> None:
    """Hand a module's log sources (the contract above) to the host's vector.yaml; nothing when vector is
    disabled there (a contribution to a file nobody owns would be an error)."""
    if host.params.get("vector_enabled"):
        b.contribute(VECTOR_CONFIG, module, module, logs)


@dataclass
class LogSource:
    id: str
    module: str
    job: str
    source: dict[str, Any]
    ins: str | None = None
    cls: str | None = None
    remap: str = ""


def log_sources(fragments: list[Contribution]) -> dict[str, LogSource]:
    """The contributed log sources, checked against the contract (violations are programming errors)."""
    found: dict[str, LogSource] = {}
    for fragment in fragments:
        if not isinstance(fragment.data, dict):
            raise RuntimeError(f"{fragment.module}: a vector contribution maps log ids to log sources")
        for log_id, spec in fragment.data.items():
            where = f"{fragment.module}: vector log source {log_id!r}"
            if not isinstance(log_id, str) or not LOG_ID.match(log_id):
                raise RuntimeError(f"{where}: a log id matches {LOG_ID.pattern}")
            if log_id in found:
                raise RuntimeError(f"{where} is also contributed by {found[log_id].module}")
            if not isinstance(spec, dict) or set(spec) - LOG_SPEC_KEYS:
                raise RuntimeError(f"{where}: only the keys {', '.join(sorted(LOG_SPEC_KEYS))} are understood")
            source = spec.get("source")
            if not spec.get("job") or not isinstance(source, dict):
                raise RuntimeError(f"{where}: `job` and `source` are required")
            if source.get("type") not in LOG_SOURCE_TYPES:
                raise RuntimeError(f"{where}: source type must be one of {', '.join(LOG_SOURCE_TYPES)}")
            if source["type"] == "file" and not source.get("include"):
                raise RuntimeError(f"{where}: a file source needs `include`")
            found[log_id] = LogSource(
                log_id,
                fragment.module,
                str(spec["job"]),
                dict(source),
                spec.get("ins"),
                spec.get("cls"),
                str(spec.get("remap") or ""),
            )
    return found


@dataclass
class VectorSettings:
    ip: str
    ins: str
    cls: str
    data_dir: str
    port: int
    read_from: str
    receivers: list[tuple[str, str]]


def compose_vector(cfg: VectorSettings):
    """Composer of vector.yaml: system and contributed log sources, their remaps, and the sinks."""

    def compose(base: str | None, fragments: list[Contribution]) -> str:
        logs = log_sources(fragments) if cfg.receivers else {}
        sources: dict[str, Any] = {
            "internal_metrics": {"type": "internal_metrics", "scrape_interval_secs": 15},
        }
        transforms: dict[str, Any] = {}
        claimed = sorted(
            {u for s in logs.values() if s.source["type"] == "journald" for u in s.source.get("include_units") or []}
        )
        for log_id, log in sorted(logs.items()):
            source = dict(log.source)
            if source["type"] == "file":
                source.setdefault("read_from", cfg.read_from)
            else:
                source.setdefault("since_now", cfg.read_from == "end")
                if log_id == "syslog" and log.module == "node" and claimed:
                    source["exclude_units"] = sorted(set(source.get("exclude_units") or []) | set(claimed))
            sources[f"{log_id}_raw"] = source
            program = [JOURNAL_TRIM] if source["type"] == "journald" else []
            if log.remap.strip():
                program.append(log.remap.strip("\n"))
            program += [
                f".job = {vrl_string(log.job)}",
                f".ip = {vrl_string(cfg.ip)}",
                f".src = {vrl_string(log_id)}",
                f"if !exists(.ins) {{ .ins = {vrl_string(log.ins or cfg.ins)} }}",
                f"if !exists(.cls) {{ .cls = {vrl_string(log.cls or cfg.cls)} }}",
                "if !exists(._time) { ._time = .timestamp }",
                "del(.source_type)",
                "del(.host)",
            ]
            transforms[f"{log_id}_logs"] = {
                "type": "remap",
                "inputs": [f"{log_id}_raw"],
                "source": "\n".join(program) + "\n",
            }
        sinks: dict[str, Any] = {
            "prometheus": {
                "type": "prometheus_exporter",
                "inputs": ["internal_metrics"],
                "address": f"0.0.0.0:{cfg.port}",
                "default_namespace": "vector",
            }
        }
        if transforms:
            for sink, uri in cfg.receivers:
                sinks[sink] = {
                    "type": "http",
                    "inputs": sorted(transforms),
                    "uri": uri,
                    "encoding": {"codec": "json"},
                    "framing": {"method": "newline_delimited"},
                    "compression": "gzip",
                    "healthcheck": {"enabled": False},
                    "request": {"headers": dict(VLOGS_HEADERS)},
                }
        doc: dict[str, Any] = {
            "data_dir": cfg.data_dir,
            "api": {"enabled": True, "address": VECTOR_API},
            "sources": sources,
            "sinks": sinks,
        }
        if transforms:
            doc["transforms"] = transforms
        return to_yaml(doc, HEADER)

    return compose


def node_identity(host: Host) -> tuple[str | None, str]:
    """(nodename, node_cluster): Pigsty lets a PGSQL node borrow its instance's identity."""
    p = host.params
    nodename, cluster = p.get("nodename"), p.get("node_cluster") or "nodes"
    if p.get("node_id_from_pg") and p.raw("pg_cluster") and p.raw("pg_seq") is not None:
        nodename = nodename or f"{p['pg_cluster']}-{p['pg_seq']}"
        if not p.is_set("node_cluster"):
            cluster = p["pg_cluster"]
    return (str(nodename) if nodename else None), str(cluster)


def compose_lines(title: str):
    """Composer for a marked block of lines that several modules contribute to."""

    def compose(base: str | None, fragments: list[Contribution]) -> str:
        lines: list[str] = []
        for fragment in [Contribution("", "node", "", base or "")] + fragments:
            for line in (fragment.data or "").splitlines():
                if line and line not in lines:
                    lines.append(line)
        return f"# BEGIN sty: {title}\n" + "".join(f"{line}\n" for line in lines) + f"# END sty: {title}\n"

    return compose


class NodeModule(FleetModule):
    name = "node"

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return True

    def derive(self, fleet: Fleet, report: Report) -> None:
        clusters: dict[str, list[Host]] = {}
        names: dict[str, Host] = {}
        for host in fleet.hosts.values():
            nodename, cluster = node_identity(host)
            host.derived_nodename = nodename
            clusters.setdefault(cluster, []).append(host)
            if nodename:
                if nodename in names:
                    report.error(
                        host.pp("nodename") if host.params.is_set("nodename") else host.path,
                        f"nodename '{nodename}' is also the name of {names[nodename].ip}",
                    )
                names[nodename] = host
            self._check_haproxy_services(host, report)
            self._check_node_ports(host, report)
            if host.params.get("vector_enabled"):
                self._check_log_identity(host, nodename, cluster, report)
        fleet.derived["node"] = clusters
        self._check_log_endpoints(fleet, report)
        fleet.derived["node_vip"] = self._derive_vip(fleet, clusters, report)

    # -- cross-host rules: log endpoints, node ports, VIP --------------------------------------
    def _check_log_endpoints(self, fleet: Fleet, report: Report) -> None:
        """Each distinct vector_log_endpoint definition once: items name groups, IPv4 addresses or URLs."""
        seen: set[str] = set()
        for host in fleet.hosts.values():
            p = host.params
            if not p.get("vector_enabled"):
                continue
            source = p.source("vector_log_endpoint")
            if source in seen:
                continue
            seen.add(source)
            entries = p.get("vector_log_endpoint") or []
            for i, entry in enumerate(entries):
                kind = log_endpoint_kind(entry, fleet)
                where = join_path(source, i)
                if kind == "invalid" and p.is_set("vector_log_endpoint"):
                    report.error(
                        where,
                        f"'{entry}' is neither a group of the inventory, an IPv4 address nor an http(s) URL "
                        "of a VictoriaLogs insert API",
                    )
                elif kind == "invalid":
                    report.note(where, f"there is no group '{entry}', so vector ships no logs (only its metrics)")
                elif kind == "group" and not any(
                    h.params.get("vlogs_enabled", True) for h in fleet.group_hosts(str(entry))
                ):
                    report.note(where, f"no host of group '{entry}' runs VictoriaLogs, so no logs are shipped there")

    def _check_log_identity(self, host: Host, nodename: str | None, cluster: str, report: Report) -> None:
        """nodename and node_cluster become the `ins` and `cls` fields that vector's VRL writes."""
        p = host.params
        for key, value in (("nodename", nodename), ("node_cluster", cluster)):
            if value and not LOG_FIELD.match(value) and p.is_set(key):
                report.error(
                    p.source(key),
                    f"{key} '{value[:40]}' is a log field of vector and may only contain letters, digits and _.:@-",
                )

    def _check_node_ports(self, host: Host, report: Report) -> None:
        """The listeners NODE adds (vector, keepalived_exporter) must not clash with the other node ports."""
        p = host.params
        taken: dict[int, str] = {}
        if p.get("node_exporter_enabled"):
            taken[p["node_exporter_port"]] = "node_exporter_port"
        if p.get("haproxy_enabled"):
            taken.setdefault(p["haproxy_exporter_port"], "haproxy_exporter_port")
            for svc in p.get("haproxy_services") or []:
                if isinstance(svc, dict) and isinstance(svc.get("port"), int):
                    taken.setdefault(svc["port"], f"haproxy service {svc.get('name')}")
        for key, enabled in (("vector_port", "vector_enabled"), ("vip_exporter_port", "vip_enabled")):
            if not p.get(enabled):
                continue
            port = p.get(key)
            if port in taken:
                report.error(p.source(key), f"{key} {port} clashes with {taken[port]} on {host.ip}")
            else:
                taken[port] = key

    def _derive_vip(self, fleet: Fleet, clusters: dict[str, list[Host]], report: Report) -> dict[str, VipGroup]:
        """VRRP groups: the hosts with vip_enabled that share a vip_address (Pigsty's rule), keyed by host.

        vip_address and vip_vrid are cluster parameters: the vip-enabled members of a node cluster must agree
        on them. A VIP whose holders span several node clusters (Pigsty's ha/octo.yml binds one to its minio
        group) is one group named after the node cluster of its lowest address, so that every holder derives
        the same auth password, which Pigsty's per-cluster `<cls>-<vrid>` does not.
        """
        by_address: dict[str, list[Host]] = {}
        for name, hosts in sorted(clusters.items()):
            members = sorted((h for h in hosts if h.params.get("vip_enabled")), key=lambda h: _ip_key(h.ip))
            ref: Host | None = None
            for h in members:
                p = h.params
                block = p.source("vip_enabled").rsplit(".", 1)[0]
                missing = [key for key in ("vip_address", "vip_vrid") if p.get(key) in (None, "")]
                for key in missing:
                    report.error(f"{block}.{key}", f"{key} is required when vip_enabled is true (node {h.ip})")
                self._check_vip_member(h, report)
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
        groups: dict[str, VipGroup] = {}
        seen_vrid: dict[int, VipGroup] = {}
        for address, members in sorted(by_address.items(), key=lambda kv: _ip_key(kv[0])):
            members.sort(key=lambda h: _ip_key(h.ip))
            first = members[0]
            fp = first.params
            vrid = int(fp["vip_vrid"])
            names = list(dict.fromkeys(node_identity(h)[1] for h in members))
            group = VipGroup(names[0], address, vrid, members)
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
                    f"node cluster name '{group.name}' names a VRRP instance and may only contain "
                    "letters, digits and _.-",
                )
            if address in fleet.hosts:
                report.error(fp.source("vip_address"), f"vip_address {address} is the address of host {address}")
            if vrid in seen_vrid:
                report.warning(
                    fp.source("vip_vrid"),
                    f"vip_vrid {vrid} is also used for VIP {seen_vrid[vrid].address} "
                    f"(node cluster {seen_vrid[vrid].name}); VRRP router ids must differ within one VLAN",
                )
            seen_vrid.setdefault(vrid, group)
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
            for h in members:
                groups[h.ip] = group
        return groups

    def _check_vip_member(self, host: Host, report: Report) -> None:
        p = host.params
        interface, how = vip_interface(host)
        if how != "assumed" and not IFNAME.match(interface):
            report.error(
                p.source("vip_interface"),
                f"vip_interface '{interface}' is not a network interface name (1-15 of letters, digits, _.:@-)",
            )
        password = p.get("vip_auth_pass")
        if password and (not AUTH_PASS.match(str(password)) or set(str(password)) & AUTH_PASS_BAD):
            report.error(
                p.source("vip_auth_pass"),
                "vip_auth_pass must be 1 to 8 printable characters without spaces, quotes, # ! or \\ "
                "(keepalived reads 8 characters of a PASS)",
            )

    def _check_haproxy_services(self, host: Host, report: Report) -> None:
        seen: dict[str, str] = {}
        for i, svc in enumerate(host.params.get("haproxy_services") or []):
            if not isinstance(svc, dict):
                continue
            name, port = svc.get("name"), svc.get("port")
            where = f"{host.params.source('haproxy_services')}[{i}]"
            if f"name:{name}" in seen:
                report.error(f"{where}.name", f"haproxy service '{name}' is defined twice")
            if f"port:{port}" in seen:
                report.error(f"{where}.port", f"port {port} is already used by haproxy service {seen[f'port:{port}']}")
            seen[f"name:{name}"] = seen[f"port:{port}"] = str(name)

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        p = host.params
        _, cluster = node_identity(host)
        deps: list[Host] = []
        if p.get("nodename_exchange"):
            deps += fleet.derived["node"].get(cluster, [])
        vip = fleet.derived.get("node_vip", {}).get(host.ip)
        if vip is not None:
            deps += vip.members
        if p.get("vector_enabled"):
            deps += log_receivers(host, fleet)[1]
        return list({h.ip: h for h in deps}.values())

    def render(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        p = host.params
        nodename, cluster = node_identity(host)
        b.info["node"] = {"nodename": nodename or host.ip, "cluster": cluster}
        self._etc_hosts(host, fleet, b)
        self._resolver(host, b)
        self._chrony(host, b)
        self._sysctl(host, b)
        self._node_exporter(host, b)
        self._haproxy(host, b)
        self._vector(host, fleet, b)
        self._vip(host, fleet, b)
        if p.get("node_admin_enabled"):
            b.users.add(
                OsUser(p["node_admin_username"], p["node_admin_uid"], f"/home/{p['node_admin_username']}", False)
            )
        b.directories.add(Directory(p["node_data"], mode="0777"))

    # -- /etc/hosts and resolver ----------------------------------------------------------------
    def _etc_hosts(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        p = host.params
        if not p.get("node_write_etc_hosts"):
            return
        lines = [one_line(r) for r in p.combined("node_etc_hosts")]
        nodename, cluster = node_identity(host)
        if nodename:
            lines.append(f"{host.ip} {nodename}")
        if p.get("nodename_exchange"):
            for peer in fleet.derived["node"].get(cluster, []):
                if peer.derived_nodename:
                    lines.append(f"{peer.ip} {peer.derived_nodename}")
        b.add(
            FileSpec(
                HOSTS_FILE,
                self.name,
                "\n".join(lines),
                "hosts",
                kind="block",
                compose=compose_lines("static records"),
            )
        )
        b.check("hosts", HOSTS_FILE, where="build")

    def _resolver(self, host: Host, b: HostBundle) -> None:
        p = host.params
        method = p.get("node_dns_method")
        if method == "none":
            return
        servers = [one_line(s) for s in p.get("node_dns_servers") or []]
        options = [one_line(o) for o in p.get("node_dns_options") or []]
        body = "".join(f"nameserver {s}\n" for s in servers) + "".join(f"{o}\n" for o in options)
        if method == "overwrite":
            b.add(FileSpec("/etc/resolv.conf", self.name, HEADER + body, "resolv"))
        else:  # add: our nameservers go first, the OS keeps the rest
            text = "# BEGIN sty: nameservers\n" + body + "# END sty: nameservers\n"
            b.add(FileSpec("/etc/resolv.conf", self.name, text, "resolv", kind="block"))

    # -- time -----------------------------------------------------------------------------------
    def _chrony(self, host: Host, b: HostBundle) -> None:
        p = host.params
        if not p.get("node_ntp_enabled"):
            return
        plat = host.platform
        servers = [one_line(s) for s in p.get("node_ntp_servers") or []]

        def compose(base: str | None, fragments: list[Contribution]) -> str:
            extra = [str(f.data) for f in fragments]
            return render("node/chrony.conf.j2", servers=servers, extra=extra, platform=plat)

        b.add(
            FileSpec(
                plat.chrony_conf,
                self.name,
                None,
                "chrony",
                compose=compose,
                actions=[restart(f"{plat.chrony_service}.service")],
            )
        )
        b.packages.add("chrony")
        b.units.add(Unit(f"{plat.chrony_service}.service", self.name))
        b.check("chrony", plat.chrony_conf)

    # -- kernel ---------------------------------------------------------------------------------
    def _sysctl(self, host: Host, b: HostBundle) -> None:
        p = host.params
        settings = dict(NODE_TUNE.get(p.get("node_tune") or "none", {}))
        if p.get("node_hugepage_count"):
            settings["vm.nr_hugepages"] = str(p["node_hugepage_count"])
        elif p.get("node_hugepage_ratio"):
            settings["vm.nr_hugepages"] = str(int(host.facts.mem_mb * float(p["node_hugepage_ratio"]) / 2))
        if p.get("node_overcommit_ratio"):
            settings["vm.overcommit_memory"] = "2"
            settings["vm.overcommit_ratio"] = str(p["node_overcommit_ratio"])
        for key, value in (p.get("node_sysctl_params") or {}).items():
            settings[one_line(key)] = one_line(value)
        if not settings:
            return
        text = HEADER + f"# node_tune: {comment(p.get('node_tune'))}\n"
        text += "".join(f"{k} = {v}\n" for k, v in sorted(settings.items()))
        b.add(
            FileSpec(
                "/etc/sysctl.d/90-sty-node.conf",
                self.name,
                text,
                "sysctl",
                actions=[restart("systemd-sysctl.service")],
            )
        )

    # -- node_exporter --------------------------------------------------------------------------
    def _node_exporter(self, host: Host, b: HostBundle) -> None:
        p = host.params
        if not p.get("node_exporter_enabled"):
            return
        plat = host.platform
        port = p["node_exporter_port"]
        env = f"{plat.sysconfig_dir}/node_exporter"
        options = f"--web.listen-address=:{port} {one_line(p.get('node_exporter_options') or '')}".strip()
        b.add(
            FileSpec(
                env,
                self.name,
                HEADER + f"NODE_EXPORTER_OPTS={env_quote(options)}\n",
                "env",
                actions=[restart("node_exporter.service")],
            )
        )
        unit = render("node/node_exporter.service.j2", bin=plat.node_exporter_bin, env=env)
        b.add(
            FileSpec(
                "/etc/systemd/system/node_exporter.service",
                self.name,
                unit,
                "systemd",
                actions=[DAEMON_RELOAD, restart("node_exporter.service")],
            )
        )
        b.units.add(Unit("node_exporter.service", self.name, f"http://{host.ip}:{port}/metrics"))
        b.ports.add(Port(port, "node_exporter", self.name))
        b.packages.add(plat.node_exporter_package)
        b.check("systemd", "/etc/systemd/system/node_exporter.service")

    # -- haproxy --------------------------------------------------------------------------------
    def _haproxy(self, host: Host, b: HostBundle) -> None:
        p = host.params
        if not p.get("haproxy_enabled"):
            return
        plat = host.platform
        password = None
        if p.get("haproxy_auth_enabled"):
            password = b.secret(f"{host.ip}/haproxy_admin_password", p.get("haproxy_admin_password"))
        cfg = render(
            "node/haproxy.cfg.j2",
            p=p,
            ip=host.ip,
            nodename=b.info["node"]["nodename"],
            admin_port=p["haproxy_exporter_port"],
            password=password,
        )
        b.add(FileSpec("/etc/haproxy/haproxy.cfg", self.name, cfg, "haproxy", actions=[reload("haproxy.service")]))
        for svc in p.get("haproxy_services") or []:
            path = f"/etc/haproxy/conf.d/{svc['name']}.cfg"
            text = render("node/haproxy-service.cfg.j2", svc=svc)
            b.add(FileSpec(path, self.name, text, "haproxy", actions=[reload("haproxy.service")]))
            b.ports.add(Port(int(svc["port"]), f"haproxy:{svc['name']}", self.name))
        unit = render("node/haproxy.service.j2", bin=plat.haproxy_bin)
        b.add(
            FileSpec(
                "/etc/systemd/system/haproxy.service",
                self.name,
                unit,
                "systemd",
                actions=[DAEMON_RELOAD, restart("haproxy.service")],
            )
        )
        b.units.add(Unit("haproxy.service", self.name, f"port:{p['haproxy_exporter_port']}"))
        b.ports.add(Port(p["haproxy_exporter_port"], "haproxy", self.name))
        b.packages.add("haproxy")
        b.directories.add(Directory("/etc/haproxy/conf.d"))
        b.check("haproxy", "/etc/haproxy/haproxy.cfg", "/etc/haproxy/conf.d")
        b.check("systemd", "/etc/systemd/system/haproxy.service")

    # -- vector ---------------------------------------------------------------------------------
    def _vector(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        p = host.params
        if not p.get("vector_enabled"):
            return
        nodename, cluster = node_identity(host)
        receivers, _ = log_receivers(host, fleet)
        settings = VectorSettings(
            ip=host.ip,
            ins=nodename or host.ip,
            cls=cluster,
            data_dir=str(p["vector_data"]),
            port=int(p["vector_port"]),
            read_from=str(p["vector_read_from"]),
            receivers=receivers,
        )
        b.add(
            FileSpec(
                VECTOR_CONFIG,
                self.name,
                None,
                "yaml",
                mode="0600",
                actions=[reload("vector.service")],
                compose=compose_vector(settings),
            )
        )
        # NODE's own logs: the system journal, and HAProxy's (it logs to /dev/log, i.e. the journal)
        own: dict[str, Any] = {"syslog": {"job": "node", "source": {"type": "journald"}}}
        if p.get("haproxy_enabled"):
            own["haproxy"] = {"job": "node", "source": {"type": "journald", "include_units": ["haproxy.service"]}}
        b.contribute(VECTOR_CONFIG, self.name, "node", own)
        unit = render("node/vector.service.j2", bin=VECTOR_BIN, config=VECTOR_CONFIG)
        b.add(
            FileSpec(
                VECTOR_UNIT,
                self.name,
                unit,
                "systemd",
                actions=[DAEMON_RELOAD, restart("vector.service")],
            )
        )
        port = settings.port
        b.units.add(Unit("vector.service", self.name, f"http://{host.ip}:{port}/metrics"))
        b.ports.add(Port(port, "vector", self.name))
        b.ports.add(Port(int(VECTOR_API.rsplit(":", 1)[1]), "vector-api", self.name, "127.0.0.1"))
        b.packages.add("vector")
        b.directories.add(Directory(settings.data_dir, mode="0700"))
        b.directories.add(Directory("/etc/vector", mode="0755"))
        b.check("vector", VECTOR_CONFIG)
        b.check("systemd", VECTOR_UNIT)

    # -- node VIP (keepalived) ------------------------------------------------------------------
    def _vip(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        p = host.params
        if not p.get("vip_enabled"):
            return
        vip = fleet.derived.get("node_vip", {}).get(host.ip)
        if vip is None:
            return
        cluster = vip.name
        interface, how = vip_interface(host)
        role = str(p.get("vip_role") or "backup")
        preempt = bool(p.get("vip_preempt"))
        # keepalived ignores nopreempt for an initial MASTER (and `keepalived -t` rejects the pair): a master
        # that must not preempt starts as BACKUP with the higher priority and wins the first election
        state = "MASTER" if role == "master" and preempt else "BACKUP"
        name = f"{cluster}/vip_auth_pass"
        explicit = p.get("vip_auth_pass")
        value = b.secret_value(name, explicit or vip_auth_default(cluster, vip.vrid))
        if not AUTH_PASS.match(value) or set(value) & AUTH_PASS_BAD:
            raise RenderError(
                f"the secret {name} must be 1 to 8 printable characters without spaces, quotes, # ! or \\"
            )
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
        b.add(
            FileSpec(
                KEEPALIVED_CONF, self.name, text, "keepalived", mode="0600", actions=[reload("keepalived.service")]
            )
        )
        b.info["node"]["vip"] = {
            "address": vip.address,
            "vrid": vip.vrid,
            "role": role,
            "state": state,
            "interface": interface,
            "interface_from": how,
            "peers": peers,
        }
        b.units.add(Unit("keepalived.service", self.name))
        b.packages.add("keepalived")
        b.check("keepalived", KEEPALIVED_CONF)
        # keepalived_exporter (Pigsty's package; its env file sits where the platform keeps unit defaults)
        plat = host.platform
        port = int(p["vip_exporter_port"])
        env = f"{plat.sysconfig_dir}/keepalived_exporter"
        b.add(
            FileSpec(
                env,
                self.name,
                HEADER + f'KEEPALIVED_EXPORTER_OPTS="--web.listen-address=:{port} --web.telemetry-path=/metrics"\n',
                "env",
                actions=[restart("keepalived_exporter.service")],
            )
        )
        unit = render("node/keepalived_exporter.service.j2", bin=KEEPALIVED_EXPORTER_BIN, env=env)
        b.add(
            FileSpec(
                KEEPALIVED_EXPORTER_UNIT,
                self.name,
                unit,
                "systemd",
                actions=[DAEMON_RELOAD, restart("keepalived_exporter.service")],
            )
        )
        b.units.add(Unit("keepalived_exporter.service", self.name, f"http://{host.ip}:{port}/metrics"))
        b.ports.add(Port(port, "keepalived_exporter", self.name))
        b.packages.add(KEEPALIVED_EXPORTER_PACKAGE[plat.family])
        b.check("systemd", KEEPALIVED_EXPORTER_UNIT)
