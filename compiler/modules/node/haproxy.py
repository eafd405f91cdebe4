"""HAProxy on a node: its main config with the stats page and metrics listener, one conf.d file per entry of
haproxy_services, and the unit. Other modules (PGSQL services) add their own conf.d files, which is why NODE
owns the folder and the check that validates the whole of it.

Pigsty v4.5's haproxy role, setting by setting: the process drops to user and group `haproxy` (the master
stays root, so the admin socket `/run/haproxy.sock`, mode 600, and the master CLI `/run/haproxy-master.sock`
remain root's), `node <nodename>`, `maxconn 65535`, the defaults (tcp, 3 retries, 3 s queue, connect and
check timeouts, `haproxy_client_timeout` / `haproxy_server_timeout`), and the `stats` listener on
`haproxy_exporter_port`: the page at `/haproxy/<nodename>/` (hidden version, 30 s refresh, node shown), the
Prometheus exporter at `exporter_metrics_path`. A haproxy_services entry takes Pigsty's defaults: `maxconn`
10000, `balance roundrobin`, `default-server` from the entry's `default` or `inter 3s fastinter 1s downinter 5s
rise 3 fall 3 on-marked-down shutdown-sessions slowstart 30s maxconn 3000 maxqueue 128 weight 100`, and each
server line `server <name> <ip>:<port> [backup] [weight <w>] [<options>]`. The unit has Pigsty's limits
(`LimitNPROC`, `LimitCORE` infinity), `Restart=always` after 5 s, the `-Ws` master-worker mode and the config
check before start and reload. /etc/haproxy and conf.d are mode 0700 as Pigsty's tasks make them (the files,
0644, hold the admin password). The listener is named `stats` as in Pigsty (the name is the `proxy` label of
its metrics, which NODE's HaproxyBackendDown alert leaves out).

Intentional differences from Pigsty, with their reason:
- Authentication follows `haproxy_auth_enabled` (Pigsty's template ignores it and always asks for a login):
  with it, one `stats auth` user (`haproxy_admin_username`, the password a secret) who may use the admin
  actions; without it, the page is read-only for everyone. Pigsty's second, read-only user `haproxy` with the
  fixed password `haproxy` is not created: a well-known credential the inventory cannot change.
- The page is also served at `/` (an internal `set-path` to `/haproxy/<nodename>/`): sty's portal proxies
  `/haproxy/<nodename>/` to the node's `/`, and Pigsty-style proxies that keep the path work as well.
- `log /dev/log` with `option httplog` on the stats listener: vector ships the unit's journal (Pigsty keeps
  HAProxy's logging off).
- `timeout http-request 5s` / `timeout http-keep-alive 10s`: without them an HTTP client of the stats page
  may hold a connection for `haproxy_client_timeout` (24 h) without sending a request.
- `stats timeout 2m` and `expose-fd listeners` on the admin socket (seamless reloads), `no strict-limits` in
  global (HAProxy lowers maxconn to the open-files limit instead of refusing to start, e.g. in containers).
- `LimitNOFILE=1048576` (Pigsty: 4194304): the kernel's default `fs.nr_open` is 1048576 and the unit must
  start where node_sysctl_params does not raise it; maxconn 65535 needs about 131072 descriptors.
- No `EnvironmentFile=-/etc/default/haproxy`: the config paths are sty's, a distribution file cannot move
  them. `After=`/`Wants=network-online.target` (Pigsty: `network.target`): a service bound to an address binds
  once the network is up.
- `/run/haproxy.pid` and `/run/haproxy.sock` (Pigsty: /var/run, a link to /run on every systemd distribution).
- A haproxy_services `options` given as one string is one line (Pigsty iterates it character by character);
  a server `weight` outside 0..255 is refused by the schema (Pigsty silently drops it).
"""

from __future__ import annotations

from ...bundle import DAEMON_RELOAD, Directory, FileSpec, HostBundle, Port, Unit, reload, restart
from ...errors import Report
from ...model import Host
from ...render import render
from .identity import MODULE

HAPROXY_DIR = "/etc/haproxy"
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
HAPROXY_CONF_D = "/etc/haproxy/conf.d"
HAPROXY_UNIT = "/etc/systemd/system/haproxy.service"

# Pigsty's defaults for a haproxy_services entry
SERVICE_MAXCONN = 10000
SERVICE_DEFAULT_SERVER = (
    "inter 3s fastinter 1s downinter 5s rise 3 fall 3 on-marked-down shutdown-sessions slowstart 30s "
    "maxconn 3000 maxqueue 128 weight 100"
)


def check_haproxy_services(host: Host, report: Report) -> None:
    """Service names become file names and ports become listeners: both must be unique on the host."""
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


def stats_uri(nodename: str) -> str:
    """Where the stats page lives (Pigsty's path, which its portal proxies unchanged)."""
    return f"/haproxy/{nodename}/"


def service_view(svc: dict) -> dict:
    """A haproxy_services entry with Pigsty's defaults filled in, as the template writes it."""
    options = svc.get("options") or []
    return {
        "name": svc["name"],
        "ip": svc.get("ip") or "*",
        "port": svc["port"],
        "mode": svc.get("protocol") or "tcp",
        "maxconn": svc.get("maxconn") or SERVICE_MAXCONN,
        "balance": svc.get("balance") or "roundrobin",
        "options": [options] if isinstance(options, str) else list(options),
        "default": svc.get("default") or SERVICE_DEFAULT_SERVER,
        "servers": [{"backup": False, "weight": None, "options": "", **s} for s in svc.get("servers") or []],
    }


def render_haproxy(host: Host, b: HostBundle) -> None:
    p = host.params
    if not p.get("haproxy_enabled"):
        return
    plat = host.platform
    password = None
    if p.get("haproxy_auth_enabled"):
        password = b.secret(f"{host.ip}/haproxy_admin_password", p.get("haproxy_admin_password"))
    nodename = b.info["node"]["nodename"]
    cfg = render(
        "node/haproxy.cfg.j2",
        p=p,
        ip=host.ip,
        nodename=nodename,
        stats_uri=stats_uri(nodename),
        metrics_path=p.get("exporter_metrics_path") or "/metrics",
        admin_port=p["haproxy_exporter_port"],
        password=password,
    )
    b.add(FileSpec(HAPROXY_CFG, MODULE, cfg, "haproxy", actions=[reload("haproxy.service")]))
    for svc in p.get("haproxy_services") or []:
        path = f"{HAPROXY_CONF_D}/{svc['name']}.cfg"
        text = render("node/haproxy-service.cfg.j2", svc=service_view(svc))
        b.add(FileSpec(path, MODULE, text, "haproxy", actions=[reload("haproxy.service")]))
        b.ports.add(Port(int(svc["port"]), f"haproxy:{svc['name']}", MODULE))
    unit = render("node/haproxy.service.j2", bin=plat.haproxy_bin)
    b.add(FileSpec(HAPROXY_UNIT, MODULE, unit, "systemd", actions=[DAEMON_RELOAD, restart("haproxy.service")]))
    b.units.add(Unit("haproxy.service", MODULE, f"port:{p['haproxy_exporter_port']}"))
    b.ports.add(Port(p["haproxy_exporter_port"], "haproxy", MODULE))
    b.packages.add("haproxy")
    b.directories.add(Directory(HAPROXY_DIR, mode="0700"))
    b.directories.add(Directory(HAPROXY_CONF_D, mode="0700"))
    b.check("haproxy", HAPROXY_CFG, HAPROXY_CONF_D)
    b.check("systemd", HAPROXY_UNIT)
