"""Time sync on a node: chrony's config from node_ntp_servers, at the path and under the service name of
the platform family. The file is composed, so another module can contribute extra lines to it."""

from __future__ import annotations

from ...bundle import Contribution, FileSpec, HostBundle, Unit, restart
from ...model import Host
from ...render import one_line, render
from .identity import MODULE


def render_chrony(host: Host, b: HostBundle) -> None:
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
            MODULE,
            None,
            "chrony",
            compose=compose,
            actions=[restart(f"{plat.chrony_service}.service")],
        )
    )
    b.packages.add("chrony")
    b.units.add(Unit(f"{plat.chrony_service}.service", MODULE))
    b.check("chrony", plat.chrony_conf)
