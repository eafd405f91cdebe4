"""MINIO: S3-compatible object storage (single node or multi-node multi-drive). Membership by `minio_cluster`.

Every member runs `minio.service` with its environment in `/etc/default/minio` (Pigsty's MINIO_VOLUMES,
MINIO_OPTS, root credentials ...). A multi-node cluster names its members `minio_node` (default
`${minio_cluster}-${minio_seq}.pigsty`); MINIO_VOLUMES spans them with MinIO's ellipsis notation
(`https://minio-{1...4}.pigsty:9000/data{1...4}`) and every member resolves every node name through
`/etc/hosts`. Buckets, policies and users are created by a provisioning script that apply runs on the
first member (`minio-provision`). Each member's scrape target and ports, and each cluster's DNS records, are
published on the board (compiler/contrib.py).
"""

from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from ..bundle import DAEMON_RELOAD, Action, Certificate, Directory, FileSpec, HostBundle, OsUser, Port, Unit, restart
from ..contrib import (
    DnsName,
    DnsRecords,
    Once,
    ScrapeTarget,
    TargetGroup,
    addr,
    ip_key,
    is_hostname,
    labels_of,
    listeners,
)
from ..errors import Problem, Report, join_path
from ..model import Fleet, Host
from ..module import FleetModule
from ..render import RenderError, one_line, render, to_json

ENV_FILE = "/etc/default/minio"
UNIT = "minio.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
PROVISION_FILE = "/etc/minio/provision.sh"
PROVISION = Action("minio-provision")
MINIO_BIN = "/usr/bin/minio"
PACKAGES = ("minio", "mcli")
BUILTIN_POLICIES = ("readwrite", "readonly", "writeonly", "diagnostics", "consoleAdmin")
ANONYMOUS = ("none", "download", "upload", "public")

ELLIPSIS = re.compile(r"\{([0-9]+)\.\.\.([0-9]+)\}")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
DATA_PATH = re.compile(r"^/[A-Za-z0-9_./{}-]*$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
ACCESS_KEY = re.compile(r"^[A-Za-z0-9_.@+-]{3,128}$")
POLICY = re.compile(r"^[A-Za-z0-9_.-]+$")
ALIAS = re.compile(r"^[A-Za-z0-9_-]+$")
OS_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
URL = re.compile(r"^(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/?$")
VOLUME_URL = re.compile(r"^(https?)://([A-Za-z0-9.{}-]+)(:[0-9]{1,5})?(/.*)$")
VOLUME_CHARS = re.compile(r"[^A-Za-z0-9_.:/{}@+=,-]")
ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
ENV_VALUE_FORBIDDEN = set("'\"`$\\\n\r\x00")
# parameters read by the per-host checks: hosts whose values come from the same places share one check
CHECKED_PARAMS = (
    "minio_data",
    "minio_volumes",
    "minio_domain",
    "minio_endpoint",
    "minio_alias",
    "minio_user",
    "minio_access_key",
    "minio_extra_vars",
    "minio_buckets",
    "minio_users",
)


# -- MinIO's ellipsis notation ----------------------------------------------------------------------


def ellipsis_problem(pattern: str) -> str | None:
    """Why `pattern` is not well-formed `{x...y}` notation (None when it is)."""
    rest = ELLIPSIS.sub("", pattern)
    if "{" in rest or "}" in rest:
        return "braces must enclose a range written {x...y} with integers x <= y, e.g. /data{1...4}"
    for m in ELLIPSIS.finditer(pattern):
        if int(m.group(1)) > int(m.group(2)):
            return f"the range {m.group(0)} is descending; write {{x...y}} with x <= y"
    return None


def expand(pattern: str) -> list[str]:
    """`/data{1...4}` -> `/data1` ... `/data4` (every range, cartesian; zero padding kept)."""
    pieces = ELLIPSIS.split(pattern)
    texts, ranges = pieces[0::3], []
    for lo, hi in zip(pieces[1::3], pieces[2::3], strict=True):
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        ranges.append([str(n).zfill(width) for n in range(int(lo), int(hi) + 1)])
    out = []
    for combo in itertools.product(*ranges):
        out.append("".join(t + c for t, c in zip(texts, [*combo, ""], strict=True)))
    return out


def volume_problem(volumes: str) -> str | None:
    """Problems of a MINIO_VOLUMES value: pools separated by spaces, each a path or a URL, all one kind."""
    words = volumes.split()
    if not words:
        return "MINIO_VOLUMES is empty"
    kinds = set()
    for word in words:
        if VOLUME_CHARS.search(word):
            return f"'{word}' may only contain letters, digits and _.:/{{}}@+=,-"
        problem = ellipsis_problem(word)
        if problem:
            return f"'{word}': {problem}"
        m = VOLUME_URL.match(word)
        if m:
            kinds.add(m.group(1))
            if m.group(3) and not 0 < int(m.group(3)[1:]) < 65536:
                return f"'{word}': port {m.group(3)[1:]} is outside 1-65535"
            if not m.group(4).startswith("/") or len(m.group(4)) < 2:
                return f"'{word}': the drive path after the host must be absolute"
        elif word.startswith("/"):
            kinds.add("path")
        else:
            return f"'{word}' is neither an absolute path nor an http(s):// URL"
    if len(kinds) > 1:
        return "all pools must be local paths or all URLs of one scheme, not a mix"
    return None


def shell_word(value: Any) -> str:
    """A value as one shell word (single-quoted when needed); refuses line breaks."""
    return shlex.quote(one_line(value))


def env_value(value: Any) -> str:
    """A value for the environment file, as text (minio.env.j2 quotes it with `env_quote`, the one env quoting,
    which also escapes the secrets substituted at apply time): refused only if it breaks its line."""
    text = str(value)
    if any(c in text for c in "\n\r\x00"):
        raise RenderError(f"value {text[:40]!r} contains a line break, which an environment file cannot carry")
    return text


def extra_vars(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """`minio_extra_vars` as (name, value) pairs, and the problems of its lines."""
    pairs, problems = [], []
    for n, line in enumerate(str(text or "").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].strip()
        m = ENV_LINE.match(line)
        if not m:
            problems.append(f"line {n} '{line[:40]}' is not NAME=value")
            continue
        name, value = m.group(1), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        bad = sorted(ENV_VALUE_FORBIDDEN & set(value))
        if bad:
            problems.append(f"the value of {name} may not contain {' '.join(repr(c) for c in bad)}")
            continue
        pairs.append((name, value))
    return pairs, problems


# -- the model ----------------------------------------------------------------------------------------


@dataclass
class MinioMember:
    host: Host
    seq: int
    nodename: str
    drives: list[str]


@dataclass
class MinioCluster:
    name: str
    members: list[MinioMember] = field(default_factory=list)
    volumes: str = ""

    @property
    def first(self) -> MinioMember:
        return self.members[0]


@dataclass
class MinioModel:
    clusters: dict[str, MinioCluster]
    member_of: dict[str, MinioMember]  # host ip -> member
    cluster_of: dict[str, MinioCluster]  # host ip -> cluster


def minio_model(fleet: Fleet) -> MinioModel:
    return fleet.derived["minio"]


def scheme(p) -> str:
    return "https" if p.get("minio_https") else "http"


def generated_volumes(cluster: MinioCluster) -> str:
    """Pigsty's MINIO_VOLUMES: the data pattern alone on one node, else `<scheme>://<node pattern with
    ${minio_seq} as {first...last}>:<port><data>`."""
    p = cluster.first.host.params
    data = str(p["minio_data"])
    if len(cluster.members) == 1:
        return data
    seqs = f"{{{cluster.members[0].seq}...{cluster.members[-1].seq}}}"
    pattern = p.substitute(str(p.raw("minio_node")).replace("${minio_seq}", seqs))
    return f"{scheme(p)}://{pattern}:{p['minio_port']}{data}"


class MinioModule(FleetModule):
    name = "minio"
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
            if "minio" not in host.modules:
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
                self._check_params(host, report)
            data = str(p["minio_data"])
            if data not in valid_data:
                valid_data[data] = self._check_data(p, report)
            drives = expand(data) if valid_data[data] else []
            cluster.members.append(MinioMember(host, int(seq), str(p["minio_node"]), drives))

        model = MinioModel(clusters, {}, {})
        fleet.derived["minio"] = model
        for cluster in clusters.values():
            cluster.members.sort(key=lambda m: m.seq)
            for m in cluster.members:
                model.member_of[m.host.ip] = m
                model.cluster_of[m.host.ip] = cluster
            self._check_cluster(cluster, report)
            self._check_ports(cluster, report)
        self._publish(fleet, model)

    def _check_data(self, p, report: Report) -> bool:
        data = str(p["minio_data"])
        where = p.source("minio_data")
        problem = ellipsis_problem(data)
        if problem:
            report.error(where, f"minio_data '{data}': {problem}")
            return False
        if not DATA_PATH.match(data) or ".." in data.split("/"):
            report.error(where, f"minio_data '{data}' must be an absolute path of letters, digits and _.-/")
            return False
        return True

    def _check_params(self, host: Host, report: Report) -> None:
        p = host.params
        if p.get("minio_volumes"):
            problem = volume_problem(str(p["minio_volumes"]))
            if problem:
                report.error(p.source("minio_volumes"), f"minio_volumes: {problem}")
        domain = str(p["minio_domain"])
        if not HOSTNAME.match(domain):
            report.error(p.source("minio_domain"), f"minio_domain '{domain}' is not a valid DNS name")
        if p.get("minio_endpoint") and not URL.match(str(p["minio_endpoint"])):
            report.error(
                p.source("minio_endpoint"),
                f"minio_endpoint '{p['minio_endpoint']}' must be a URL such as https://sss.pigsty:9000",
            )
        if not ALIAS.match(str(p["minio_alias"])):
            report.error(p.source("minio_alias"), f"minio_alias '{p['minio_alias']}' may only use letters, digits, _ -")
        if not OS_USER.match(str(p["minio_user"])):
            report.error(p.source("minio_user"), f"minio_user '{p['minio_user']}' is not a valid OS user name")
        access = str(p["minio_access_key"])
        if not ACCESS_KEY.match(access):
            report.error(
                p.source("minio_access_key"),
                "minio_access_key must be at least 3 characters of letters, digits and _.@+- (MinIO's root user)",
            )
        _, problems = extra_vars(p.get("minio_extra_vars") or "")
        for problem in problems:
            report.error(p.source("minio_extra_vars"), f"minio_extra_vars: {problem}")
        buckets: set[str] = set()
        for i, bucket in enumerate(p.get("minio_buckets") or []):
            if not isinstance(bucket, dict):
                continue
            where = join_path(p.source("minio_buckets"), i)
            name = str(bucket.get("name"))
            if not BUCKET.match(name) or ".." in name:
                report.error(
                    join_path(where, "name"),
                    f"bucket name '{name}' must be 3-63 lowercase letters, digits, '.' or '-' (S3 naming rules)",
                )
            elif name in buckets:
                report.error(join_path(where, "name"), f"bucket '{name}' is listed twice")
            elif name in BUILTIN_POLICIES:
                report.error(join_path(where, "name"), f"bucket '{name}' would shadow MinIO's built-in policy")
            buckets.add(name)
            anonymous = bucket.get("policy")
            if anonymous is not None and anonymous not in ANONYMOUS:
                report.error(
                    join_path(where, "policy"),
                    f"anonymous access policy '{anonymous}' must be one of {', '.join(ANONYMOUS)}",
                )
        users: set[str] = set()
        for i, user in enumerate(p.get("minio_users") or []):
            if not isinstance(user, dict):
                continue
            where = join_path(p.source("minio_users"), i)
            access = str(user.get("access_key"))
            if not ACCESS_KEY.match(access):
                report.error(
                    join_path(where, "access_key"),
                    f"access_key '{access}' must be at least 3 characters of letters, digits and _.@+-",
                )
            elif access in users or access == str(p["minio_access_key"]):
                report.error(join_path(where, "access_key"), f"access_key '{access}' is already used")
            users.add(access)
            policy = user.get("policy", "readwrite")
            if not POLICY.match(str(policy)) or (policy not in buckets and policy not in BUILTIN_POLICIES):
                report.error(
                    join_path(where, "policy"),
                    f"policy '{policy}' is neither a bucket of minio_buckets (whose policy sty creates) nor one of "
                    f"MinIO's built-in policies {', '.join(BUILTIN_POLICIES)}",
                )

    def _check_cluster(self, cluster: MinioCluster, report: Report) -> None:
        if not cluster.members:
            return
        first = cluster.first
        fp = first.host.params
        names: dict[str, MinioMember] = {}
        for m in cluster.members:
            where = m.host.pp("minio_node")
            if not HOSTNAME.match(m.nodename):
                report.error(where, f"minio_node resolves to '{m.nodename}' on {m.host.ip}, not a valid DNS name")
            elif m.nodename in names:
                report.error(
                    where,
                    f"minio_node '{m.nodename}' of {m.host.ip} is also the node name of {names[m.nodename].host.ip}; "
                    "the pattern needs ${minio_seq}",
                )
            names[m.nodename] = m
        if len(cluster.members) == 1:
            cluster.volumes = str(fp.get("minio_volumes") or generated_volumes(cluster))
            return
        explicit = fp.get("minio_volumes")
        for m in cluster.members[1:]:
            p = m.host.params
            if p["minio_port"] != fp["minio_port"]:
                report.error(
                    m.host.pp("minio_port"),
                    f"minio_port {p['minio_port']} differs from {fp['minio_port']} of {first.host.ip}: "
                    "every server of a MinIO cluster listens on the same port",
                )
            if str(p.get("minio_volumes") or "") != str(explicit or ""):
                report.error(m.host.pp("minio_volumes"), f"minio_volumes differs from that of {first.host.ip}")
            if first.drives and m.drives and len(m.drives) != len(first.drives):
                report.error(
                    m.host.pp("minio_data"),
                    f"{m.host.ip} has {len(m.drives)} drive(s) but {first.host.ip} has {len(first.drives)}: every "
                    f"node of multi-node cluster {cluster.name} needs the same number of drives",
                )
            elif not explicit and str(p["minio_data"]) != str(fp["minio_data"]):
                report.error(
                    m.host.pp("minio_data"),
                    f"minio_data '{p['minio_data']}' differs from '{fp['minio_data']}' of {first.host.ip}; "
                    "MINIO_VOLUMES names the same drives on every node (set minio_volumes otherwise)",
                )
        if explicit:
            cluster.volumes = str(explicit)
            return
        if "${minio_seq}" not in str(fp.raw("minio_node")):
            report.error(
                fp.source("minio_node"),
                f"minio_node must contain ${{minio_seq}} for multi-node cluster {cluster.name}; "
                "MINIO_VOLUMES spans the nodes with it",
            )
            return
        seqs = [m.seq for m in cluster.members]
        if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            report.error(
                cluster.members[-1].host.pp("minio_seq"),
                f"minio_seq of {cluster.name} must be consecutive ({', '.join(map(str, seqs))} is not): "
                "MINIO_VOLUMES names the nodes as one range {x...y}; set minio_volumes otherwise",
            )
            return
        cluster.volumes = generated_volumes(cluster)

    def _check_ports(self, cluster: MinioCluster, report: Report) -> None:
        """The console's port against the API's (the core's rule compares both with other modules' ports)."""
        for m in cluster.members:
            port = m.host.params["minio_admin_port"]
            if port == m.host.params["minio_port"]:
                report.error(
                    m.host.pp("minio_admin_port"), f"minio_admin_port {port} clashes with minio on {m.host.ip}"
                )

    def _publish(self, fleet: Fleet, model: MinioModel) -> None:
        """Per member (in address order) its ports and scrape target; per cluster its DNS records, with the
        names the members register and the problems of those names (reported where the records are served)."""
        once, dns = Once(), {}
        for m in sorted(model.member_of.values(), key=lambda m: ip_key(m.host.ip)):
            p, ip, cls = m.host.params, m.host.ip, model.cluster_of[m.host.ip].name
            ins, name = f"{cls}-{m.seq}", str(p.get("minio_node"))
            scheme = {"__scheme__": "https"} if p.get("minio_https") else {}
            group = TargetGroup((addr(ip, p["minio_port"]),), labels_of(cls, ins, ip, **scheme))
            ports = listeners(ip, self.name, p, (("minio_port", "minio"), ("minio_admin_port", "minio console")))
            fleet.board.publish(self.name, ScrapeTarget("minio", ins, (group,), ip), *ports)
            lines, names, problems = dns.setdefault(cls, ([], [], []))
            lines.append(f"{ip} {p.get('minio_node') or ins}")
            names.append(DnsName(name, f"MinIO node {ins}", m.host.path, ip))
            if once(p, "minio_node") and not is_hostname(name):
                problems.append(
                    Problem(p.source("minio_node"), f"the MinIO node name '{name}' is not a valid host name")
                )
        for cls, (lines, names, problems) in sorted(dns.items()):
            fleet.board.publish(self.name, DnsRecords(f"minio-{cls}", tuple(lines), tuple(names), tuple(problems)))

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
        certs = f"{home}/.minio/certs"
        https = bool(p["minio_https"])
        url_scheme = scheme(p)
        port, admin_port = p["minio_port"], p["minio_admin_port"]
        domain = str(p["minio_domain"])
        first = cluster.first is me
        endpoint = str(p.get("minio_endpoint") or f"{url_scheme}://{domain}:{port}")

        self._env(host, cluster, me, b, certs if https else "")
        unit = render("minio/minio.service.j2", nodename=me.nodename, bin=MINIO_BIN, user=user, home=home, env=ENV_FILE)
        b.add(FileSpec(UNIT_FILE, self.name, unit, "systemd", actions=[DAEMON_RELOAD, restart(UNIT)]))
        if first and p.get("minio_provision"):
            self._provision(host, cluster, me, b, endpoint)
        if p.get("node_write_etc_hosts"):  # NODE owns /etc/hosts; every member resolves every node name
            for m in cluster.members:
                b.contribute("/etc/hosts", self.name, f"minio:{m.seq:08d}", f"{m.host.ip} {m.nodename}")
        if https:
            b.certificates.add(
                Certificate(
                    name="minio-server",
                    common_name=me.nodename,
                    sans=tuple(dict.fromkeys((me.nodename, domain, "localhost", host.ip, "127.0.0.1"))),
                    cert=f"{certs}/public.crt",
                    key=f"{certs}/private.key",
                    owner=user,
                    usage="both",
                )
            )
        b.units.add(Unit(UNIT, self.name, f"{url_scheme}://{host.ip}:{port}/minio/health/live"))
        b.ports.update({Port(port, "minio", self.name), Port(admin_port, "minio-console", self.name)})
        b.packages.update(PACKAGES)
        b.users.add(OsUser(user, home=home))
        dirs = {Directory(d, user, user, "0750") for d in me.drives}
        dirs |= {Directory(home, user, user, "0750"), Directory(f"{home}/.minio", user, user, "0750")}
        if https:
            dirs.add(Directory(certs, user, user, "0750"))
        b.directories.update(dirs)
        b.check("systemd", UNIT_FILE)
        b.info["minio"] = {
            "cluster": cluster.name,
            "seq": me.seq,
            "node": me.nodename,
            "members": {m.nodename: m.host.ip for m in cluster.members},
            "volumes": cluster.volumes,
            "endpoint": endpoint,
            "provision_on": cluster.first.host.ip if p.get("minio_provision") else None,
        }

    def _env(self, host: Host, cluster: MinioCluster, me: MinioMember, b: HostBundle, certs: str) -> None:
        p = host.params
        url_scheme = scheme(p)
        port, admin_port = p["minio_port"], p["minio_admin_port"]
        opts = f"--address :{port} --console-address :{admin_port}" + (f" --certs-dir {certs}" if certs else "")
        portal = (p.get("infra_portal") or {}).get("minio") or {}
        if isinstance(portal, dict) and portal.get("domain"):  # the console behind INFRA's nginx portal
            redirect = f"{portal.get('scheme') or 'https'}://{portal['domain']}"
        else:
            redirect = f"{url_scheme}://{me.nodename}:{admin_port}"
        secret = b.secret(f"{cluster.name}/minio_secret_key", p["minio_secret_key"])
        variables = [
            ("MINIO_VOLUMES", cluster.volumes),
            ("MINIO_OPTS", opts),
            ("MINIO_ROOT_USER", p["minio_access_key"]),
            ("MINIO_ROOT_PASSWORD", secret),
            ("MINIO_SERVER_URL", f"{url_scheme}://{p['minio_domain']}:{port}"),
            ("MINIO_BROWSER_REDIRECT_URL", redirect),
            ("MINIO_DOMAIN", p["minio_domain"]),
            ("MINIO_PROMETHEUS_AUTH_TYPE", "public"),
        ]
        extra, _ = extra_vars(p.get("minio_extra_vars") or "")
        text = render(
            "minio/minio.env.j2",
            cluster=cluster.name,
            nodename=me.nodename,
            variables=[(k, env_value(v)) for k, v in variables],
            extra=[(k, env_value(v)) for k, v in extra],
        )
        b.add(
            FileSpec(
                ENV_FILE,
                self.name,
                text,
                "env",
                owner="root",
                group=str(p["minio_user"]),
                mode="0640",
                actions=[restart(UNIT)],
            )
        )
        b.check("minio_env", ENV_FILE, where="both")

    def _provision(self, host: Host, cluster: MinioCluster, me: MinioMember, b: HostBundle, endpoint: str) -> None:
        p = host.params
        buckets = []
        for bucket in p.get("minio_buckets") or []:
            name = str(bucket["name"])
            policy = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:*"],
                        "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
                    }
                ],
            }
            buckets.append(
                {
                    "name": name,
                    "target": shell_word(f"{p['minio_alias']}/{name}"),
                    "policy_name": shell_word(name),
                    "policy_json": to_json(policy).rstrip("\n"),
                    "versioning": bool(bucket.get("versioning")),
                    "lock": bool(bucket.get("lock")),
                    "anonymous": shell_word(bucket["policy"]) if bucket.get("policy") else "",
                }
            )
        users = []
        for user in p.get("minio_users") or []:
            access = str(user["access_key"])
            users.append(
                {
                    "name": access,
                    "access_key": shell_word(access),
                    "secret": b.secret(f"{cluster.name}/minio_users/{access}/secret_key", user.get("secret_key")),
                    "policy": shell_word(user.get("policy", "readwrite")),
                }
            )
        text = render(
            "minio/provision.sh.j2",
            cluster=cluster.name,
            nodename=me.nodename,
            env=shell_word(ENV_FILE),
            alias=shell_word(p["minio_alias"]),
            endpoint=shell_word(endpoint),
            buckets=buckets,
            users=users,
        )
        b.add(FileSpec(PROVISION_FILE, self.name, text, "shell", mode="0700", actions=[PROVISION]))
        b.directories.add(Directory("/etc/minio", "root", "root", "0700"))
        b.check("shell", PROVISION_FILE, where="both")
