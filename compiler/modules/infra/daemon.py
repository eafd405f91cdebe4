"""How an INFRA component is installed as a service: its options in an EnvironmentFile, the systemd unit when
sty owns it (or a drop-in completing the package's unit), its packages, unit health check and port. Every
component goes through `add_daemon`, so the distributions' packaging differences (see `Platform.infra_daemons`)
are handled in one place.
"""

from __future__ import annotations

from ...bundle import DAEMON_RELOAD, FileSpec, HostBundle, OsUser, Port, Unit, restart
from ...model import Host
from ...platform import Daemon
from ...render import one_line, render
from .model import MODULE

DESCRIPTIONS = {
    "vmetrics": ("VictoriaMetrics: metrics database and scraper", "https://docs.victoriametrics.com/"),
    "vmalert": ("vmalert: alerting and recording rules", "https://docs.victoriametrics.com/vmalert/"),
    "vlogs": ("VictoriaLogs: log database", "https://docs.victoriametrics.com/victorialogs/"),
    "vtraces": ("VictoriaTraces: trace database", "https://docs.victoriametrics.com/victoriatraces/"),
    "alertmanager": ("Alertmanager: alert routing", "https://prometheus.io/docs/alerting/latest/alertmanager/"),
    "blackbox": ("blackbox_exporter: ICMP, TCP and HTTP probes", "https://github.com/prometheus/blackbox_exporter"),
    "nginx_exporter": (
        "nginx exporter: nginx stub_status metrics",
        "https://github.com/nginx/nginx-prometheus-exporter",
    ),
    "dnsmasq": ("dnsmasq: DNS records of the fleet", "https://thekelleys.org.uk/dnsmasq/doc.html"),
}


def daemon_of(host: Host, comp: str) -> Daemon:
    return host.platform.infra_daemons[comp]


def add_daemon(
    host: Host,
    comp: str,
    flags: list[str],
    extra: str,
    b: HostBundle,
    *,
    port: int | None,
    health: str,
    reloadable: bool = True,
    caps: bool = False,
) -> Daemon:
    """Environment file with the options, the unit when sty owns it, the unit in the manifest."""
    d = daemon_of(host, comp)
    options = " ".join([*flags, one_line(extra or "").strip()]).strip()
    env = render("infra/env.j2", comp=comp, var=d.var, options=options)
    b.add(FileSpec(d.env, MODULE, env, "env", actions=[restart(d.unit)]))
    if d.own_unit:
        _own_unit(d, comp, b, reloadable=reloadable, caps=caps)
    elif caps or (reloadable and not d.package_reloads):
        # the package's unit, completed by a drop-in: a reload (SIGHUP) and/or the raw-socket capability
        path = f"/etc/systemd/system/{d.unit}.d/sty.conf"
        text = render("infra/dropin.conf.j2", reload=reloadable and not d.package_reloads, caps=caps)
        b.add(FileSpec(path, MODULE, text, "systemd", actions=[DAEMON_RELOAD, restart(d.unit)]))
    b.packages.update(d.packages)
    b.units.add(Unit(d.unit, MODULE, health))
    if port is not None:
        b.ports.add(Port(int(port), comp, MODULE))
    return d


def _own_unit(d: Daemon, comp: str, b: HostBundle, *, reloadable: bool, caps: bool) -> None:
    """The unit sty writes where the package brings none (or one that ignores the EnvironmentFile)."""
    desc, docs = DESCRIPTIONS[comp]
    unit = render(
        "infra/daemon.service.j2",
        description=desc,
        docs=docs,
        user=d.user,
        env=d.env,
        bin=d.bin,
        var=d.var,
        reloadable=reloadable,
        caps=caps,
    )
    path = f"/etc/systemd/system/{d.unit}"
    b.add(FileSpec(path, MODULE, unit, "systemd", actions=[DAEMON_RELOAD, restart(d.unit)]))
    b.check("systemd", path)
    if d.user not in ("root",):
        b.users.add(OsUser(d.user))
