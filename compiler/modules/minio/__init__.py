"""MINIO: S3 object storage as Pigsty v4.5 runs it (Silo, its MinIO-compatible server). Membership by `minio_cluster`.

Every member runs `silo.service` (`/etc/systemd/system/silo.service`, `Type=notify`, `/usr/bin/silo server
$MINIO_OPTS $MINIO_VOLUMES` as `minio_user`, working directory /usr/bin, `Restart=always`, `LimitNOFILE=8388608`,
`TasksMax=infinity`, no stop timeout and no SIGKILL, conflicting with an old `minio.service`) from packages `silo`
and `mcli`. Its environment is `/etc/default/silo` (root:<group> 0640), after the legacy `/etc/default/minio` when
a host still has one: MINIO_OPTS (`--address :<minio_port> --console-address :<minio_admin_port>`),
MINIO_VOLUMES, the root credentials, MINIO_PROMETHEUS_AUTH_TYPE=public with MINIO_PROMETHEUS_JOB_ID=minio and
MINIO_PROMETHEUS_URL=http://<admin_ip>:<vmetrics_port>, then `minio_extra_vars`. MINIO_VOLUMES is `minio_volumes`
when set, else `minio_data` on a single node (`/data{1...4}` stays MinIO's ellipsis: several drives) and, on
several nodes, `<scheme>://<minio_node with ${minio_seq} as {first...last}>:<minio_port><minio_data>`
(`https://minio-{1...4}.pigsty:9000/data{1...4}`). Every data drive, `~/.minio` and (https) `~/.minio/certs`
and its `CAs` are the user's, 0750. Every member resolves every node name through `/etc/hosts`, and the infra
nameservers serve `<ip> <minio_node>` and `<ip> <cluster>-<seq>` for each member.

TLS (`minio_https`, the default): the certificate `~/.minio/certs/public.crt` and key `private.key` (0600) are
issued by the fleet CA at apply time (CN the node name; SANs localhost, the node name, the cluster, `<cluster>-<seq>`,
`minio_domain`, 127.0.0.1 and the host's address) and the CA goes to `~/.minio/certs/CAs/ca.crt`: the members
verify each other. Keys never enter outputs/.

Provisioning (`minio_provision`): `/etc/minio/provision.sh`, run by apply (action `minio-provision`) on every
member whose script changed, sets the alias `minio_alias` -> `minio_endpoint` (default
`<scheme>://<minio_domain>:<minio_port>`) with the root credentials; on the cluster's first member it then waits
for the cluster's write quorum and, as Pigsty does, creates each bucket of `minio_buckets` (`mcli mb
--ignore-existing`, `--with-lock` for `lock`, `--with-versioning` for `versioning`) with a policy of the bucket's
name allowing `s3:*` on the bucket and its objects, and each user of `minio_users` (`mcli admin user add`),
attaching its `policy` when it has one. Each member's scrape target (job `minio`) and ports, and each cluster's DNS
records, are published on the board (compiler/contrib.py).

Intentional differences from Pigsty v4.5, each for a reason:

- MINIO_OPTS also names the certificate directory (`--certs-dir /home/<minio_user>/.minio/certs`, Pigsty's path,
  which Silo would otherwise find as `~/.minio/certs`): the server reads the directory the certificate is installed
  in even when the account already existed with another home.
- `EnvironmentFile=/etc/default/silo` has no `-`: the file is part of the bundle, and a missing one should stop the
  unit instead of starting Silo without MINIO_VOLUMES. Every value is double-quoted with the one env quoting (so
  systemd and sh read the same value), and `minio_extra_vars` is parsed into NAME=value lines and refused when a
  line is not one or a value holds a quote, `$`, a backquote or a backslash; Pigsty pastes the text verbatim into
  the file, where a stray line would break it or the script that sources it.
- the OS group is named after `minio_user` (the apply stage creates users with `useradd --user-group`); Pigsty's
  group is always `minio`. With the default user both are `minio`.
- the unit's health probe (the apply stage's `curl`, which does not trust the fleet CA) is the listening port when
  https is on and `/minio/health/live` over plain http. Before provisioning, the script waits (5 minutes at most)
  for `/minio/health/cluster` with `curl --cacert /etc/pki/ca.crt`, where Pigsty runs `silo healthcheck ...
  cluster` (5 tries, 5 seconds apart).
- the mcli alias is root's, on every member (`--config-dir /root/.mcli`, whatever HOME sudo leaves, with the fleet
  CA in `/root/.mcli/certs/CAs` when the endpoint is https): the apply stage works as root, and a module's files
  go to its own members only. Pigsty sets it for the Ansible connection user on every member and every infra node,
  and relies on the system trust store (which sty's nodes do not change) for TLS.
- a versioned bucket also gets `mcli version enable`: Pigsty's `--with-versioning` acts only when the bucket is
  created, so turning `versioning` on later changed nothing there. A bucket's `policy` (none, download, upload,
  public) is sty's addition: `mcli anonymous set` (Pigsty ignores the key).
- what Pigsty's provisioning would get wrong or fail on, with its errors ignored, is refused at build time: bucket
  names outside the S3 rules, a bucket or user listed twice, a bucket named like a built-in policy (its policy
  would replace MinIO's), a user policy that is not one name; a policy that is neither a bucket's nor built-in is a
  warning (it must exist on the server). The script stops at the first failing command and the apply fails.
- generated MINIO_VOLUMES need consecutive `minio_seq` (Pigsty spans min...max, naming nodes that do not exist),
  every node the same drives and the same `minio_port`; set `minio_volumes` for anything else.
- the certificate is signed by the fleet CA when apply runs, with CN and SANs only (no O/OU) and both server and
  client usage; the CA copy in `certs/CAs` is root's 0644 (Pigsty: minio's).
- `/etc/hosts` gets the node names inside NODE's marked block rather than lines ending `# minio dns`; the infra
  nameservers get the same names from INFRA's per-cluster hosts file instead of a file per instance.
- `minio_safeguard`, `minio_rm_data` and `minio_rm_pkg` (Pigsty's minio_remove) are accepted and not used: sty
  removes the files it installed when they leave a bundle, never data or packages.

INFRA's scrape job (compiler/modules/infra/victoria.py) reads `/minio/metrics/v3` and drops the per-bucket series, as
Pigsty's does.
"""

from __future__ import annotations

from ...bundle import Directory, HostBundle, OsUser, Port, Unit
from ...contrib import DnsName, DnsRecords, Once, ScrapeTarget, TargetGroup, addr, ip_key, is_hostname, labels_of
from ...contrib import listeners as port_listeners
from ...errors import Problem, Report
from ...model import Fleet, Host
from ...module import FleetModule
from . import render as files
from .model import (
    MODULE,
    PACKAGES,
    UNIT,
    MinioCluster,
    MinioMember,
    MinioModel,
    endpoint,
    expand,
    instance,
    minio_model,
    scheme,
)
from .rules import CHECKED_PARAMS, check_cluster, check_data, check_params, check_ports

__all__ = ["MinioModule"]


class MinioModule(FleetModule):
    name = MODULE
    phase = 40
    cluster_key = "minio_cluster"

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return bool(host.params.raw("minio_cluster"))

    # -- model and cross-host rules -------------------------------------------------------------
    def derive(self, fleet: Fleet, report: Report) -> None:
        clusters: dict[str, MinioCluster] = {}
        checked: set[tuple[str, ...]] = set()
        valid_data: dict[str, bool] = {}
        for host in fleet.hosts.values():
            if MODULE not in host.modules:
                continue
            p = host.params
            name = str(p["minio_cluster"])
            seq = p.get("minio_seq")
            if seq is None:
                report.error(f"{host.path}.minio_seq", f"{host.ip} is in MinIO cluster {name} but has no minio_seq")
                continue
            cluster = clusters.setdefault(name, MinioCluster(name))
            clash = next((m for m in cluster.members if m.seq == seq), None)
            if clash:
                report.error(host.pp("minio_seq"), f"minio_seq {seq} is already used in {name} by {clash.host.ip}")
                continue
            key = tuple(p.source(k) for k in CHECKED_PARAMS)
            if key not in checked:  # a definition shared by many hosts is checked once
                checked.add(key)
                check_params(host, report)
            data = str(p["minio_data"])
            if data not in valid_data:
                valid_data[data] = check_data(p, report)
            drives = expand(data) if valid_data[data] else []
            cluster.members.append(MinioMember(host, int(seq), str(p["minio_node"]), drives))

        model = MinioModel(clusters, {}, {})
        fleet.derived[MODULE] = model
        for cluster in clusters.values():
            cluster.members.sort(key=lambda m: m.seq)
            for m in cluster.members:
                model.member_of[m.host.ip] = m
                model.cluster_of[m.host.ip] = cluster
            check_cluster(cluster, report)
            check_ports(cluster, report)
        self._publish(fleet, model)

    def _publish(self, fleet: Fleet, model: MinioModel) -> None:
        """Per member (in address order) its ports and scrape target; per cluster its DNS records (each member's
        `<cluster>-<seq>`, then each member's node name), with the names they register and the problems of those
        names (reported where the records are served)."""
        once, dns = Once(), {}
        for m in sorted(model.member_of.values(), key=lambda m: ip_key(m.host.ip)):
            p, ip, cls = m.host.params, m.host.ip, model.cluster_of[m.host.ip].name
            ins, name = instance(cls, m.seq), m.nodename
            tls = {"__scheme__": "https"} if p.get("minio_https") else {}
            target = addr(ip, p["minio_port"])  # as Pigsty: the instance and the server's flavor label the series
            flavor = str(p.get("minio_type") or "silo")
            group = TargetGroup((target,), labels_of(cls, ins, ip, instance=target, flavor=flavor, **tls))
            ports = port_listeners(ip, MODULE, p, (("minio_port", "minio"), ("minio_admin_port", "minio console")))
            fleet.board.publish(MODULE, ScrapeTarget("minio", ins, (group,), ip), *ports)
            short, full, names, problems = dns.setdefault(cls, ([], [], [], []))
            if ins != name:
                short.append(f"{ip} {ins}")
                names.append(DnsName(ins, f"MinIO node {ins}", m.host.pp("minio_seq"), ip))
            full.append(f"{ip} {name}")
            names.append(DnsName(name, f"MinIO node {ins}", m.host.path, ip))
            if once(p, "minio_node") and not is_hostname(name):
                problems.append(
                    Problem(p.source("minio_node"), f"the MinIO node name '{name}' is not a valid host name")
                )
        for cls, (short, full, names, problems) in sorted(dns.items()):
            records = DnsRecords(f"minio-{cls}", (*short, *full), tuple(names), tuple(problems))
            fleet.board.publish(MODULE, records)

    def depends_on(self, host: Host, fleet: Fleet) -> list[Host]:
        cluster = minio_model(fleet).cluster_of.get(host.ip)
        return [m.host for m in cluster.members] if cluster else []

    # -- rendering ------------------------------------------------------------------------------
    def render(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        model = minio_model(fleet)
        me = model.member_of.get(host.ip)
        if me is None:
            return
        cluster = model.cluster_of[host.ip]
        p = host.params
        user = str(p["minio_user"])
        home = f"/home/{user}"
        port = p["minio_port"]
        https = bool(p["minio_https"])

        files.environment(host, cluster, me, b)
        files.unit(host, me, b)
        if https:
            files.tls(host, cluster, me, b)
        if p.get("minio_provision"):
            files.provision(host, cluster, me, b)
        if p.get("node_write_etc_hosts"):  # NODE owns /etc/hosts; every member resolves every node name
            for m in cluster.members:
                b.contribute("/etc/hosts", MODULE, f"minio:{m.seq:08d}", f"{m.host.ip} {m.nodename}")
        health = f"port:{port}" if https else f"http://{host.ip}:{port}/minio/health/live"
        b.units.add(Unit(UNIT, MODULE, health))
        b.ports.update({Port(port, "minio", MODULE), Port(p["minio_admin_port"], "minio-console", MODULE)})
        b.packages.update(PACKAGES)
        b.users.add(OsUser(user, home=home))
        b.directories.update(Directory(d, user, user, "0750") for d in me.drives)
        b.directories.update({Directory(home, user, user, "0750"), Directory(f"{home}/.minio", user, user, "0750")})
        b.info[MODULE] = {
            "cluster": cluster.name,
            "seq": me.seq,
            "node": me.nodename,
            "members": {m.nodename: m.host.ip for m in cluster.members},
            "volumes": cluster.volumes,
            "scheme": scheme(p),
            "endpoint": endpoint(p),
            "provision_on": cluster.first.host.ip if p.get("minio_provision") else None,
        }
