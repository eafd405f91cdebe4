"""The vector log agent of every node: NODE owns /etc/vector/vector.yaml, composes it from the log
sources other modules contribute (the core's contract: compiler/logs.py) plus the system journal, and ships
every source to the VictoriaLogs receivers named by vector_log_endpoint. The inventory rules for those
endpoints and for the `ins`/`cls` fields vector writes live here as well, next to the code that relies on them.

The events carry the labels Pigsty's vector config gives them, which its log dashboards query: `job` (`syslog`
for the journal, `postgres`, `patroni`, `pgbackrest`, `nginx`, `redis` ... set by each source's VRL or its
contribution), `ins`, `cls` and `ip`, with VictoriaLogs' stream fields `job,ins,ip`. The journal is shipped whole
as `job: syslog` with the node's `ins` (nodename) and `cls` (node_cluster) and Pigsty's fields (`app`, `unit`
without `.service`, `pid`, `level` as a syslog level name, `p`: templates/node/vrl/journal.vrl).

Intentional differences from Pigsty (tests/test_monitoring_pigsty.py runs both VRL programs on the same lines):
- every event also carries `src` (the log id), and keeps `file` and `timestamp` (VictoriaLogs ignores both);
- a journald source a module contributes (etcd's unit) is shipped as its own stream besides the whole journal, so
  those lines arrive twice: once in Pigsty's `syslog` stream, once parsed under the module's `job`;
- PostgreSQL: `_time` is the record's own time (Pigsty's `%Z` parse never succeeds, so it falls back to the time
  vector read the line) and `message` names its parts (`msg DETAIL: … HINT: … CONTEXT: … QUERY: …`) instead of
  joining nine fields with commas; pgbouncer's log is shipped as `job: pgbouncer` (Pigsty ships none);
- the sinks are named after their receiver (`vlogs_<host>_<port>`, Pigsty: `vlogs`, `vlogs2` ...) and read the
  transforms by name.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ...bundle import DAEMON_RELOAD, Contribution, Directory, FileSpec, HostBundle, Port, Unit, reload, restart
from ...errors import Report, join_path
from ...logs import VECTOR_CONFIG, log_sources
from ...model import Fleet, Host
from ...render import HEADER, render, template_text, to_yaml, token
from .identity import MODULE, ip_key, node_identity

# The log-source contract (what other modules contribute to VECTOR_CONFIG, and how each contribution becomes a
# source and a remap) is the core's: compiler/logs.py.
VECTOR_UNIT = "/etc/systemd/system/vector.service"
VECTOR_API = "127.0.0.1:8686"
VLOGS_INSERT = "/insert/jsonline"  # VictoriaLogs' JSON-lines insert API, as Pigsty ships logs
VLOGS_DEFAULT_PORT = 9428
LOG_FIELD = re.compile(r"^[A-Za-z0-9_.:@-]+$")  # values vector's VRL writes (ins, cls): see vrl_string
VLOGS_HEADERS = {
    "VL-Stream-Fields": "job,ins,ip",
    "VL-Msg-Field": "message",
    "VL-Time-Field": "_time",
    "VL-Ignore-Fields": "timestamp,file",
    "AccountID": "0",
    "ProjectID": "0",
}
# journald events carry dozens of trusted fields: the program that shapes them as Pigsty's syslog stream
JOURNAL_VRL = "node/vrl/journal.vrl"
# the program path (the same on every platform family)
VECTOR_BIN = "/usr/bin/vector"


def vrl_string(value: Any) -> str:
    """A VRL string literal of a checked value (no quotes, backslashes or template braces can occur)."""
    return '"' + token(value) + '"'


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
            for peer in sorted(fleet.group_hosts(str(entry)), key=lambda h: ip_key(h.ip)):
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


@dataclass
class VectorSettings:
    """The host's values the composer needs, taken at render time (the composer runs after every module)."""

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
        for log_id, log in sorted(logs.items()):
            source = dict(log.source)
            if source["type"] == "file":
                source.setdefault("read_from", cfg.read_from)
            else:
                source.setdefault("current_boot_only", True)
                source.setdefault("since_now", cfg.read_from == "end")
            sources[f"{log_id}_raw"] = source
            program = [template_text(JOURNAL_VRL).strip("\n")] if source["type"] == "journald" else []
            if log.remap.strip():
                program.append(log.remap.strip("\n"))
            program += [
                f"if !exists(.job) {{ .job = {vrl_string(log.job)} }}",
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


def check_log_endpoints(fleet: Fleet, report: Report) -> None:
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


def check_log_identity(host: Host, nodename: str | None, cluster: str, report: Report) -> None:
    """nodename and node_cluster become the `ins` and `cls` fields that vector's VRL writes."""
    p = host.params
    for key, value in (("nodename", nodename), ("node_cluster", cluster)):
        if value and not LOG_FIELD.match(value) and p.is_set(key):
            report.error(
                p.source(key),
                f"{key} '{value[:40]}' is a log field of vector and may only contain letters, digits and _.:@-",
            )


def render_vector(host: Host, fleet: Fleet, b: HostBundle) -> None:
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
            MODULE,
            None,
            "yaml",
            mode="0600",
            actions=[reload("vector.service")],
            compose=compose_vector(settings),
        )
    )
    # NODE's own log: the whole system journal (HAProxy's lines included: it logs to /dev/log), as Pigsty's job
    own: dict[str, Any] = {"syslog": {"job": "syslog", "source": {"type": "journald"}}}
    b.contribute(VECTOR_CONFIG, MODULE, "node", own)
    unit = render("node/vector.service.j2", bin=VECTOR_BIN, config=VECTOR_CONFIG)
    b.add(FileSpec(VECTOR_UNIT, MODULE, unit, "systemd", actions=[DAEMON_RELOAD, restart("vector.service")]))
    port = settings.port
    b.units.add(Unit("vector.service", MODULE, f"http://{host.ip}:{port}/metrics"))
    b.ports.add(Port(port, "vector", MODULE))
    b.ports.add(Port(int(VECTOR_API.rsplit(":", 1)[1]), "vector-api", MODULE, "127.0.0.1"))
    b.packages.add("vector")
    b.directories.add(Directory(settings.data_dir, mode="0700"))
    b.directories.add(Directory("/etc/vector", mode="0755"))
    b.check("vector", VECTOR_CONFIG)
    b.check("systemd", VECTOR_UNIT)
