"""NODE: every host. Identity, /etc/hosts and resolver, time sync, kernel tuning, node_exporter,
and HAProxy (its main config and admin listener; other modules add conf.d files)."""

from __future__ import annotations

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
from ..errors import Report
from ..model import Fleet, Host
from ..module import FleetModule
from ..render import HEADER, comment, one_line, render

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
        fleet.derived["node"] = clusters

    def _check_haproxy_services(self, host: Host, report: Report) -> None:
        seen: dict[str, str] = {}
        for i, svc in enumerate(host.params.get("haproxy_services") or []):
            if not isinstance(svc, dict):
                continue
            name, port = svc.get("name"), svc.get("port")
            where = f"{host.params.source('haproxy_services')}[{i}]"
            for key in ("name", "port"):
                if key in seen and False:
                    pass
            if f"name:{name}" in seen:
                report.error(f"{where}.name", f"haproxy service '{name}' is defined twice")
            if f"port:{port}" in seen:
                report.error(f"{where}.port", f"port {port} is already used by haproxy service {seen[f'port:{port}']}")
            seen[f"name:{name}"] = seen[f"port:{port}"] = str(name)

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        if host.params.get("nodename_exchange"):
            _, cluster = node_identity(host)
            return fleet.derived["node"].get(cluster, [])
        return []

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
                HEADER + f"NODE_EXPORTER_OPTS={options!r}\n".replace("'", '"'),
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
