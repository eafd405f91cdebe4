"""MINIO's rules: each parameter's value (once per definition), and what the members of a cluster must agree on."""

from __future__ import annotations

from typing import Any

from ...errors import Report, join_path
from ...model import Host
from .model import (
    ACCESS_KEY,
    ALIAS,
    ANONYMOUS,
    BUCKET,
    BUILTIN_POLICIES,
    DATA_PATH,
    HOSTNAME,
    OS_USER,
    POLICY,
    URL,
    MinioCluster,
    MinioMember,
    ellipsis_problem,
    extra_vars,
    generated_volumes,
    volume_problem,
)

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


def check_data(p: Any, report: Report) -> bool:
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


def check_params(host: Host, report: Report) -> None:
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
    if not ACCESS_KEY.match(str(p["minio_access_key"])):
        report.error(
            p.source("minio_access_key"),
            "minio_access_key must be at least 3 characters of letters, digits and _.@+- (MinIO's root user)",
        )
    _, problems = extra_vars(p.get("minio_extra_vars") or "")
    for problem in problems:
        report.error(p.source("minio_extra_vars"), f"minio_extra_vars: {problem}")
    buckets = _check_buckets(p, report)
    _check_users(p, buckets, report)


def _check_buckets(p: Any, report: Report) -> set[str]:
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
            report.error(
                join_path(where, "name"),
                f"bucket '{name}' would replace MinIO's built-in policy of that name with its bucket policy",
            )
        buckets.add(name)
        anonymous = bucket.get("policy")
        if anonymous is not None and anonymous not in ANONYMOUS:
            report.error(
                join_path(where, "policy"),
                f"anonymous access policy '{anonymous}' must be one of {', '.join(ANONYMOUS)}",
            )
    return buckets


def _check_users(p: Any, buckets: set[str], report: Report) -> None:
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
        policy = user.get("policy")
        if policy is None or policy == "":  # as Pigsty: a user without a policy gets none attached
            continue
        if not POLICY.match(str(policy)):
            report.error(
                join_path(where, "policy"),
                f"policy '{policy}' must be one policy name of letters, digits and _.-",
            )
        elif policy not in buckets and policy not in BUILTIN_POLICIES:
            report.warning(
                join_path(where, "policy"),
                f"policy '{policy}' is neither a bucket of minio_buckets (whose policy is created) nor one of "
                f"MinIO's built-in policies {', '.join(BUILTIN_POLICIES)}: it must exist on the server, else "
                "attaching it fails",
            )


def check_cluster(cluster: MinioCluster, report: Report) -> None:
    """The node names, what every member must share, and MINIO_VOLUMES (explicit, or generated as Pigsty does)."""
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
        _check_member(cluster, m, explicit, report)
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


def _check_member(cluster: MinioCluster, m: MinioMember, explicit: Any, report: Report) -> None:
    first = cluster.first
    p, fp = m.host.params, first.host.params
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


def check_ports(cluster: MinioCluster, report: Report) -> None:
    """The console's port against the API's (the core's rule compares both with other modules' ports)."""
    for m in cluster.members:
        port = m.host.params["minio_admin_port"]
        if port == m.host.params["minio_port"]:
            report.error(m.host.pp("minio_admin_port"), f"minio_admin_port {port} clashes with minio on {m.host.ip}")
