"""nginx on the infra nodes: the portal. One server file per `infra_portal` entry (the home entry also lists
every HAProxy admin page of the fleet), TLS certificates requested from the fleet CA unless the entry brings
its own, basic-auth users hashed into an htpasswd file, and the nginx exporter that reads stub_status.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from ...bundle import Action, Certificate, Directory, FileSpec, HostBundle, Port, Unit, reload
from ...model import Host
from ...render import render
from .daemon import add_daemon
from .model import MODULE, InfraModel
from .portal import Portal, portal_entries

NGINX_CONF = "/etc/nginx/nginx.conf"
NGINX_CONFD = "/etc/nginx/conf.d"
NGINX_CERT_DIR = "/etc/nginx/conf.d/cert"
HTPASSWD = "/etc/nginx/.htpasswd"
# the components the home page links to, in the order it lists them
PORTAL_SERVICES = ("grafana", "vmetrics", "vlogs", "vtraces", "vmalert", "alertmanager", "blackbox")


def render_nginx(host: Host, model: InfraModel, b: HostBundle) -> None:
    p = host.params
    plat = host.platform
    conf = render("infra/nginx.conf.j2", user=plat.nginx_user)
    b.add(FileSpec(NGINX_CONF, MODULE, conf, "nginx", actions=_reload_nginx()))
    users = _htpasswd(host, b)
    services = {comp: int(p[f"{comp}_port"]) for comp in PORTAL_SERVICES if p.get(f"{comp}_enabled")}
    for portal in portal_entries(p):
        text = _server(host, model, portal, services, bool(users), b)
        b.add(FileSpec(f"{NGINX_CONFD}/{portal.key}.conf", MODULE, text, "nginx", actions=_reload_nginx()))
    b.check("nginx", NGINX_CONF, NGINX_CONFD, *([HTPASSWD] if users else []))
    _service(host, b)
    if p.get("nginx_exporter_enabled"):
        _exporter(host, b)


def _htpasswd(host: Host, b: HostBundle) -> dict[Any, Any]:
    """The basic-auth users (`nginx_users`), hashed into HTPASSWD; returns them (empty: no auth file)."""
    p = host.params
    users = p.get("nginx_users") or {}
    if not users:
        return users
    lines = []
    for name in sorted(users, key=str):
        value = b.secret_value(f"{host.ip}/nginx_users/{name}", users[name])
        # an unknown password stays an empty secret: apply refuses to ship it until secrets.yml has it
        hashed = ssha(value, str(name)) if value else ""
        lines.append((str(name), b.secret(f"{host.ip}/nginx_users/{name}/htpasswd", hashed)))
    text = render("infra/htpasswd.j2", users=lines)
    group = host.platform.nginx_user
    b.add(FileSpec(HTPASSWD, MODULE, text, "htpasswd", group=group, mode="0640", actions=_reload_nginx()))
    return users


def _server(host: Host, model: InfraModel, portal: Portal, services: dict[str, int], auth: bool, b: HostBundle) -> str:
    """One portal entry's server block(s)."""
    p = host.params
    spec = portal.spec
    home_dir = str(p["nginx_home"])
    return render(
        "infra/nginx-server.conf.j2",
        portal=portal,
        kind=portal.kind,
        names=portal.names,
        port=int(p["nginx_port"]),
        ssl_port=int(p["nginx_ssl_port"]),
        tls=_tls(host, portal, b),
        enforce=str(p["nginx_sslmode"]) == "enforce" or bool(spec.get("enforce_https")),
        auth=bool(spec.get("auth")) and auth,
        realm=str(spec.get("realm") or "Pigsty"),
        htpasswd=HTPASSWD,
        log=str(spec.get("log") or f"{portal.key}.log"),
        upstream=f"portal_{portal.key}".replace(".", "_"),
        endpoint=spec.get("endpoint"),
        scheme=str(spec.get("scheme") or spec.get("schema") or "http"),
        websocket=bool(spec.get("websocket")),
        stream=bool(spec.get("stream")),
        root=str(spec.get("path") or home_dir),
        autoindex=spec.get("index", portal.kind == "path") is not False,
        certbot=bool(spec.get("certbot")),
        acme=f"{home_dir.rstrip('/')}/acme",
        config=str(spec.get("config") or ""),
        services=services,
        stub_status=bool(p.get("nginx_exporter_enabled")),
        haproxy=model.fanin.haproxy if portal.kind == "home" else [],
    )


def _tls(host: Host, portal: Portal, b: HostBundle) -> dict[str, str] | None:
    """The entry's certificate and key (None when nginx_sslmode is disable); issued by the fleet CA unless the
    entry names its own."""
    if str(host.params["nginx_sslmode"]) == "disable":
        return None
    cert = portal.spec.get("cert") or f"{NGINX_CERT_DIR}/{portal.domain}.crt"
    key = portal.spec.get("key") or f"{NGINX_CERT_DIR}/{portal.domain}.key"
    if not (portal.spec.get("cert") or portal.spec.get("key")):
        sans = tuple(dict.fromkeys([*portal.names, *([host.ip] if portal.kind == "home" else [])]))
        b.certificates.add(Certificate(f"nginx-{portal.key}", portal.domain, sans, cert, key, "root"))
    return {"cert": cert, "key": key}


def _service(host: Host, b: HostBundle) -> None:
    """The nginx unit, its packages, ports and directories."""
    p = host.params
    plat = host.platform
    home_dir = str(p["nginx_home"])
    b.packages.update(plat.nginx_packages)
    b.units.add(Unit("nginx.service", MODULE, f"port:{p['nginx_port']}"))
    b.ports.add(Port(int(p["nginx_port"]), "nginx", MODULE))
    if str(p["nginx_sslmode"]) != "disable":
        b.ports.add(Port(int(p["nginx_ssl_port"]), "nginx-ssl", MODULE))
    b.directories.update(
        {
            Directory(NGINX_CONFD),
            Directory(NGINX_CERT_DIR, "root", plat.nginx_user, "0750"),
            Directory(home_dir, plat.nginx_user, plat.nginx_user),
            Directory(f"{home_dir.rstrip('/')}/acme", plat.nginx_user, plat.nginx_user),
        }
    )


def _exporter(host: Host, b: HostBundle) -> None:
    p = host.params
    flags = [
        f"--nginx.scrape-uri=http://127.0.0.1:{int(p['nginx_port'])}/nginx",
        f"--web.listen-address=:{int(p['nginx_exporter_port'])}",
    ]
    health = f"http://{host.ip}:{int(p['nginx_exporter_port'])}/metrics"
    add_daemon(host, "nginx_exporter", flags, "", b, port=p["nginx_exporter_port"], health=health, reloadable=False)


def _reload_nginx() -> list[Action]:
    return [reload("nginx.service")]  # a fresh list per file: a FileSpec's actions are its own


def ssha(password: str, seed: str) -> str:
    """nginx's {SSHA} password hash with a salt derived from the user and password (stable across builds)."""
    salt = hashlib.sha256(f"sty-htpasswd:{seed}:{password}".encode()).digest()[:8]
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()
