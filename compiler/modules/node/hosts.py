"""Name resolution on a node: the marked block of /etc/hosts (static records, the node's own name and,
with nodename_exchange, its cluster peers; other modules contribute lines) and the nameservers of
/etc/resolv.conf, either replacing the file or prepended to what the OS keeps."""

from __future__ import annotations

from ...bundle import Contribution, FileSpec, HostBundle
from ...model import Fleet, Host
from ...render import HEADER, one_line
from .identity import MODULE, node_identity

HOSTS_FILE = "/etc/hosts"
RESOLV_CONF = "/etc/resolv.conf"


def compose_lines(title: str):
    """Composer for a marked block of lines that several modules contribute to."""

    def compose(base: str | None, fragments: list[Contribution]) -> str:
        lines: list[str] = []
        for fragment in [Contribution("", MODULE, "", base or "")] + fragments:
            for line in (fragment.data or "").splitlines():
                if line and line not in lines:
                    lines.append(line)
        return f"# BEGIN sty: {title}\n" + "".join(f"{line}\n" for line in lines) + f"# END sty: {title}\n"

    return compose


def render_etc_hosts(host: Host, fleet: Fleet, b: HostBundle) -> None:
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
            MODULE,
            "\n".join(lines),
            "hosts",
            kind="block",
            compose=compose_lines("static records"),
        )
    )
    b.check("hosts", HOSTS_FILE, where="build")


def render_resolver(host: Host, b: HostBundle) -> None:
    p = host.params
    method = p.get("node_dns_method")
    if method == "none":
        return
    servers = [one_line(s) for s in p.get("node_dns_servers") or []]
    options = [one_line(o) for o in p.get("node_dns_options") or []]
    body = "".join(f"nameserver {s}\n" for s in servers) + "".join(f"{o}\n" for o in options)
    if method == "overwrite":
        b.add(FileSpec(RESOLV_CONF, MODULE, HEADER + body, "resolv"))
    else:  # add: our nameservers go first, the OS keeps the rest
        text = "# BEGIN sty: nameservers\n" + body + "# END sty: nameservers\n"
        b.add(FileSpec(RESOLV_CONF, MODULE, text, "resolv", kind="block"))
