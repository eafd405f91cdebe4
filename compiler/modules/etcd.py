"""ETCD: the DCS of the fleet. One cluster per inventory (group `etcd`), members named `<cluster>-<seq>`.

As in Pigsty, peers and clients speak TLS: each member has a certificate from the fleet CA (signed at apply time,
for its name and addresses, usable as server and client) and trusts the CA at /etc/etcd/ca.crt. Trusting a CA on
the client side makes etcd require a client certificate: Patroni and vip-manager present their instance's.

It publishes the cluster as the fleet's `Dcs` (PGSQL's Patroni and vip-manager keep their state in it), a scrape
target per member and the ports each member binds (compiler/contrib.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ..bundle import DAEMON_RELOAD, Action, Certificate, Directory, FileSpec, HostBundle, OsUser, Port, Unit, restart
from ..contrib import Dcs, DcsMember, DcsUser, ScrapeTarget, TargetGroup, addr, labels_of, listeners, module_alert_rules
from ..errors import Report
from ..logs import contribute_logs
from ..model import Fleet, Host
from ..module import FleetModule
from ..render import HEADER, RenderError, render, template_text, to_yaml
from ..secrets import pick

ETCD_CA, ETCD_CERT, ETCD_KEY = "/etc/etcd/ca.crt", "/etc/etcd/server.crt", "/etc/etcd/server.key"
AUTH_SCRIPT = "/etc/etcd/auth.sh"


@dataclass
class EtcdMember:
    host: Host
    seq: int
    name: str


@dataclass
class EtcdCluster:
    name: str
    members: list[EtcdMember]


def etcd_cluster(fleet: Fleet) -> EtcdCluster | None:
    return fleet.derived.get("etcd")


class EtcdModule(FleetModule):
    name = "etcd"
    phase = 30
    cluster_key = "etcd_cluster"

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return "etcd" in host.groups

    def derive(self, fleet: Fleet, report: Report) -> None:
        fleet.board.publish(self.name, *module_alert_rules(self.name))
        hosts = fleet.with_module("etcd")
        if not hosts:
            return
        members: list[EtcdMember] = []
        seen: dict[int, Host] = {}
        names = {h.params["etcd_cluster"] for h in hosts}
        if len(names) > 1:
            report.error("all.children.etcd", f"etcd members disagree on etcd_cluster: {', '.join(sorted(names))}")
        cluster = sorted(names)[0]
        for host in hosts:
            seq = host.params.get("etcd_seq")
            if seq is None:
                report.error(f"{host.path}.etcd_seq", "etcd members need etcd_seq, a unique non-negative integer")
                continue
            if seq in seen:
                report.error(host.pp("etcd_seq"), f"etcd_seq {seq} is already used by {seen[seq].ip}")
                continue
            seen[seq] = host
            members.append(EtcdMember(host, seq, f"{cluster}-{seq}"))
        members.sort(key=lambda m: m.seq)
        fleet.derived["etcd"] = EtcdCluster(cluster, members)
        self._publish(fleet, fleet.derived["etcd"], hosts)

    def _publish(self, fleet: Fleet, cluster: EtcdCluster, hosts: list[Host]) -> None:
        """The DCS, a scrape target per member, and the two ports of every etcd host."""
        board = fleet.board
        ports = (("etcd_port", "etcd"), ("etcd_peer_port", "etcd peer"))
        for host in hosts:
            board.publish(self.name, *listeners(host.ip, self.name, host.params, ports))
        dcs = []
        for m in cluster.members:
            p, ip = m.host.params, m.host.ip
            dcs.append(DcsMember(m.name, ip, int(p["etcd_port"]), int(p["etcd_peer_port"])))
            # TLS, with the scraper's client certificate (etcd asks every client for one)
            group = TargetGroup((addr(ip, p["etcd_port"]),), labels_of(cluster.name, m.name, ip, __scheme__="https"))
            board.publish(self.name, ScrapeTarget("etcd", m.name, (group,), ip))
        board.publish(self.name, Dcs(cluster.name, tuple(dcs)))

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        cluster = etcd_cluster(fleet)
        users = [fleet.hosts[ip] for u in fleet.board.read(DcsUser) for ip in u.hosts if ip in fleet.hosts]
        return [m.host for m in cluster.members] + users if cluster else []

    def _auth(self, host: Host, fleet: Fleet, cluster: EtcdCluster, me: EtcdMember, b: HostBundle) -> None:
        """Authentication as Pigsty enables it: the root user (`etcd_root_password`), then one user per client
        cluster published on the board (PGSQL's Patroni and vip-manager), each on its own key prefix."""
        users: dict[str, DcsUser] = {}
        for user in sorted(fleet.board.read(DcsUser), key=lambda u: (u.name, u.secret)):
            users.setdefault(user.name, user)  # a Citus shard group shares one user
        root = f"{cluster.name}/etcd_root_password"
        for name, value in [
            (root, host.params["etcd_root_password"]),
            *((u.secret, u.password) for u in users.values()),
        ]:
            if any(c.isspace() for c in str(pick(name, value, b.overrides) or "")):
                raise RenderError(f"{name}: etcdctl reads a password up to its first blank; choose one without blanks")
        text = render(
            "etcd/auth.sh.j2",
            cluster=cluster.name,
            member=me.name,
            endpoint=f"https://127.0.0.1:{host.params['etcd_port']}",
            ca=ETCD_CA,
            cert=ETCD_CERT,
            key=ETCD_KEY,
            wait=120,
            root_password=b.secret(root, host.params["etcd_root_password"]),
            users=[
                {"name": u.name, "prefix": u.prefix, "password": b.secret(u.secret, u.password)} for u in users.values()
            ],
        )
        b.add(FileSpec(AUTH_SCRIPT, self.name, text, "shell", mode="0700", actions=[Action("etcd-auth")]))
        b.check("shellcheck", AUTH_SCRIPT, where="build")

    def render(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        p = host.params
        cluster = etcd_cluster(fleet)
        me = next(m for m in cluster.members if m.host is host)
        port, peer_port = p["etcd_port"], p["etcd_peer_port"]
        tls = {"cert-file": ETCD_CERT, "key-file": ETCD_KEY, "trusted-ca-file": ETCD_CA}
        conf = {
            "name": me.name,
            "data-dir": p["etcd_data"],
            "listen-client-urls": f"https://{host.ip}:{port},https://127.0.0.1:{port}",
            "advertise-client-urls": f"https://{host.ip}:{port}",
            "listen-peer-urls": f"https://{host.ip}:{peer_port}",
            "initial-advertise-peer-urls": f"https://{host.ip}:{peer_port}",
            "initial-cluster": ",".join(
                f"{m.name}=https://{m.host.ip}:{m.host.params['etcd_peer_port']}" for m in cluster.members
            ),
            "client-transport-security": dict(tls),
            "peer-transport-security": dict(tls),
            "initial-cluster-token": cluster.name,
            "initial-cluster-state": p["etcd_init"],
            "election-timeout": p["etcd_election_timeout"],
            "heartbeat-interval": p["etcd_heartbeat_interval"],
            "quota-backend-bytes": 8 * 1024**3,
            "auto-compaction-mode": "periodic",
            "auto-compaction-retention": "24h",
            "enable-v2": False,
            "enable-grpc-gateway": True,  # Patroni's etcd3 client speaks the v3 JSON gateway
            "logger": "zap",
            "log-outputs": ["stderr"],
        }
        b.add(
            FileSpec(
                "/etc/etcd/etcd.conf",
                self.name,
                to_yaml(conf, HEADER),
                "yaml",
                owner="etcd",
                group="etcd",
                mode="0644",
                actions=[restart("etcd.service")],
            )
        )
        unit = render("etcd/etcd.service.j2", etcd_bin=host.platform.etcd_bin, data=p["etcd_data"])
        b.add(
            FileSpec(
                "/etc/systemd/system/etcd.service",
                self.name,
                unit,
                "systemd",
                actions=[DAEMON_RELOAD, restart("etcd.service")],
            )
        )
        # etcd asks every TLS client for a certificate (its client side trusts the CA): apply's probe is the port,
        # `sty verify` asks etcdctl with the member's own certificate
        b.units.add(Unit("etcd.service", self.name, f"port:{port}"))
        sans = tuple(dict.fromkeys([me.name, host.nodename, host.ip, "127.0.0.1", "localhost"]))
        b.certificates.add(Certificate("etcd-server", me.name, sans, ETCD_CERT, ETCD_KEY, "etcd", "both"))
        b.trust.add(ETCD_CA)
        b.ports.update({Port(port, "etcd", self.name), Port(peer_port, "etcd-peer", self.name)})
        b.packages.update(host.platform.etcd_packages)
        b.users.add(OsUser("etcd", home=p["etcd_data"]))
        b.directories.add(Directory(p["etcd_data"], "etcd", "etcd", "0700"))
        if me is cluster.members[-1]:  # started in the last wave: the whole cluster runs by then
            self._auth(host, fleet, cluster, me, b)
        b.check("etcd", "/etc/etcd/etcd.conf", where="build")
        b.check("systemd", "/etc/systemd/system/etcd.service")
        b.info["etcd"] = {"cluster": cluster.name, "member": me.name, "seq": me.seq}
        logs = {
            "etcd": {
                "job": "etcd",
                "ins": me.name,
                "cls": cluster.name,
                "source": {"type": "journald", "include_units": ["etcd.service"]},
                "remap": template_text("etcd/etcd.vrl"),
            }
        }
        contribute_logs(b, host, self.name, logs)
