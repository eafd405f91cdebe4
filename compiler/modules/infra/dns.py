"""dnsmasq on the infra nodes: the fleet's DNS names, served from hosts files in `dns_hosts_dir`, one per source
(the inventory's `dns_records`, and one per DNS record group published on the board: a node VIP, a PostgreSQL
or MinIO cluster ...), so that a cluster's records change or disappear as a single file.
"""

from __future__ import annotations

from typing import Any

from ...bundle import Directory, FileSpec, HostBundle, reload, restart
from ...contrib import HOSTNAME, is_ip
from ...model import Host
from ...render import one_line, render
from ...shared import shared
from .daemon import add_daemon, daemon_of
from .model import MODULE, InfraModel

DNSMASQ_CONF = "/etc/dnsmasq.conf"


def _records(host: Host, b: HostBundle, model: InfraModel) -> None:
    """One hosts file per source of records: the inventory's `dns_records` and what each module published."""
    p = host.params
    unit = daemon_of(host, "dnsmasq").unit
    folder = str(p["dns_hosts_dir"]).rstrip("/") or "/"
    records = {"default": [one_line(r).strip() for r in p.get("dns_records") or [] if str(r).strip()]}
    records.update(model.fanin.dns)
    for name, lines in sorted(records.items()):
        text = render("infra/hosts.j2", name=name, lines=[" ".join(line.split()) for line in lines])
        b.add(FileSpec(f"{folder}/{name}", MODULE, text, "hosts", actions=[reload(unit)]))


def render_dns(host: Host, model: InfraModel, b: HostBundle) -> None:
    p = host.params
    d = daemon_of(host, "dnsmasq")
    folder = str(p["dns_hosts_dir"]).rstrip("/") or "/"
    port = int(p["dns_port"])
    conf = render("infra/dnsmasq.conf.j2", port=port, addresses=["127.0.0.1", host.ip], hosts_dir=folder)
    b.add(FileSpec(DNSMASQ_CONF, MODULE, conf, "dnsmasq", actions=[restart(d.unit)]))
    shared(_records, host, b, model)  # alike on every infra node: rendered once (compiler/shared.py)
    add_daemon(host, "dnsmasq", ["-k", f"--conf-file={DNSMASQ_CONF}"], "", b, port=port, health=f"port:{port}")
    b.directories.add(Directory(folder))
    b.check("dnsmasq", DNSMASQ_CONF, folder)


def record_problem(record: Any) -> str | None:
    """Why a `dns_records` entry is not a valid hosts-file line ("<ip> <name> ..."), or None."""
    if not isinstance(record, str):
        return f"a DNS record must be a string '<ip> <name> ...', got {record!r}"
    parts = record.split()
    if any(c in record for c in "\n\r\x00#"):
        return "a DNS record must be one line without '#'"
    if len(parts) < 2:
        return f"DNS record '{record}' needs an IP address and at least one name"
    if not is_ip(parts[0]):
        return f"DNS record '{record}' does not start with an IP address (is a ${{...}} placeholder unresolved?)"
    bad = next((n for n in parts[1:] if not HOSTNAME.match(n)), None)
    if bad:
        return f"'{bad}' in DNS record '{record}' is not a valid host name"
    return None
