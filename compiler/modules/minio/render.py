"""MINIO's files on a member: the server's environment and unit, its certificate, the provisioning script."""

from __future__ import annotations

import shlex
from typing import Any

from ...bundle import CA_CERT_PATH, DAEMON_RELOAD, Action, Certificate, Directory, FileSpec, HostBundle, restart
from ...model import Host
from ...render import RenderError, one_line, render, to_json
from .model import (
    ENV_FILE,
    LEGACY_ENV_FILE,
    LEGACY_UNIT,
    MCLI_CA,
    MCLI_DIR,
    METRICS_JOB,
    MODULE,
    PROVISION_DIR,
    PROVISION_FILE,
    SERVER_BIN,
    UNIT,
    UNIT_FILE,
    MinioCluster,
    MinioMember,
    endpoint,
    extra_vars,
    instance,
    scheme,
)

PROVISION = Action("minio-provision")
HEALTH_TRIES = 60  # the provisioning script waits up to 5 minutes for the cluster's write quorum


def shell_word(value: Any) -> str:
    """A value as one shell word (single-quoted when needed); refuses line breaks."""
    return shlex.quote(one_line(value))


def env_value(value: Any) -> str:
    """A value for the environment file, as text (silo.env.j2 quotes it with `env_quote`, the one env quoting,
    which also escapes the secrets substituted at apply time): refused only if it breaks its line."""
    text = str(value)
    if any(c in text for c in "\n\r\x00"):
        raise RenderError(f"value {text[:40]!r} contains a line break, which an environment file cannot carry")
    return text


def certs_dir(p: Any) -> str:
    """Where the server finds its certificate: `~/.minio/certs` of `minio_user`, Pigsty's place."""
    return f"/home/{p['minio_user']}/.minio/certs"


def server_options(p: Any) -> str:
    opts = f"--address :{p['minio_port']} --console-address :{p['minio_admin_port']}"
    return opts + (f" --certs-dir {certs_dir(p)}" if p.get("minio_https") else "")


def environment(host: Host, cluster: MinioCluster, me: MinioMember, b: HostBundle) -> None:
    """/etc/default/silo: Pigsty's variables in Pigsty's order, then those of `minio_extra_vars`."""
    p = host.params
    secret = b.secret(f"{cluster.name}/minio_secret_key", p["minio_secret_key"])
    variables = [
        ("MINIO_OPTS", server_options(p)),
        ("MINIO_VOLUMES", cluster.volumes),
        ("MINIO_ROOT_USER", p["minio_access_key"]),
        ("MINIO_ROOT_PASSWORD", secret),
        ("MINIO_PROMETHEUS_AUTH_TYPE", "public"),  # the scrapers read the metrics without a token
        ("MINIO_PROMETHEUS_JOB_ID", METRICS_JOB),
        ("MINIO_PROMETHEUS_URL", f"http://{p['admin_ip']}:{p['vmetrics_port']}"),  # the console's charts
    ]
    extra, _ = extra_vars(p.get("minio_extra_vars") or "")
    text = render(
        "minio/silo.env.j2",
        unit=UNIT,
        cluster=cluster.name,
        nodename=me.nodename,
        variables=[(k, env_value(v)) for k, v in variables],
        extra=[(k, env_value(v)) for k, v in extra],
    )
    user = str(p["minio_user"])
    b.add(FileSpec(ENV_FILE, MODULE, text, "env", group=user, mode="0640", actions=[restart(UNIT)]))
    b.check("minio_env", ENV_FILE, where="both")


def unit(host: Host, me: MinioMember, b: HostBundle) -> None:
    user = str(host.params["minio_user"])
    text = render(
        "minio/silo.service.j2",
        nodename=me.nodename,
        bin=SERVER_BIN,
        user=user,
        group=user,
        workdir="/usr/bin",
        legacy_env=LEGACY_ENV_FILE,
        legacy_unit=LEGACY_UNIT,
        env=ENV_FILE,
    )
    b.add(FileSpec(UNIT_FILE, MODULE, text, "systemd", actions=[DAEMON_RELOAD, restart(UNIT)]))
    b.check("systemd", UNIT_FILE)


def tls(host: Host, cluster: MinioCluster, me: MinioMember, b: HostBundle) -> None:
    """The server's certificate and key, signed by the fleet CA at apply time (keys never enter outputs/), and
    the CA in `certs/CAs`, which the members trust when they talk to each other."""
    p, user, certs = host.params, str(host.params["minio_user"]), certs_dir(host.params)
    names = (
        "localhost",
        me.nodename,
        cluster.name,
        instance(cluster.name, me.seq),
        str(p["minio_domain"]),
        "127.0.0.1",
        host.ip,
    )
    b.certificates.add(
        Certificate(
            name="minio-server",
            common_name=me.nodename,
            sans=tuple(dict.fromkeys(names)),
            cert=f"{certs}/public.crt",
            key=f"{certs}/private.key",
            owner=user,
            usage="both",  # the members are each other's clients
        )
    )
    b.trust.add(f"{certs}/CAs/ca.crt")
    b.directories.update({Directory(certs, user, user, "0750"), Directory(f"{certs}/CAs", user, user, "0750")})


def provision(host: Host, cluster: MinioCluster, me: MinioMember, b: HostBundle) -> None:
    """/etc/minio/provision.sh on every member: root's mcli alias; on the first member also the buckets, their
    policies and the users, once the cluster is healthy."""
    p = host.params
    first = cluster.first is me
    buckets, users = (_buckets(p), _users(cluster, p, b)) if first else ([], [])
    url = endpoint(p)
    https = bool(p.get("minio_https"))
    text = render(
        "minio/provision.sh.j2",
        first=first,
        cluster=cluster.name,
        nodename=me.nodename,
        env=shell_word(ENV_FILE),
        config_dir=shell_word(MCLI_DIR),
        alias=shell_word(p["minio_alias"]),
        endpoint=shell_word(url),
        health=shell_word(f"{scheme(p)}://127.0.0.1:{p['minio_port']}/minio/health/cluster"),
        cacert=shell_word(CA_CERT_PATH) if https else "",
        tries=HEALTH_TRIES,
        wait=HEALTH_TRIES * 5,
        buckets=buckets,
        users=users,
    )
    b.add(FileSpec(PROVISION_FILE, MODULE, text, "shell", mode="0700", actions=[PROVISION]))
    b.directories.add(Directory(PROVISION_DIR, "root", "root", "0700"))
    b.check("shell", PROVISION_FILE, where="both")
    if url.startswith("https:"):
        b.trust.add(MCLI_CA)
        b.directories.update(Directory(d, "root", "root", "0700") for d in (MCLI_DIR, f"{MCLI_DIR}/certs"))
        b.directories.add(Directory(f"{MCLI_DIR}/certs/CAs", "root", "root", "0700"))


def bucket_policy(name: str) -> dict[str, Any]:
    """The policy named after a bucket: every S3 action on the bucket and its objects, as Pigsty's."""
    resources = [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": resources}]}


def _buckets(p: Any) -> list[dict[str, Any]]:
    out = []
    for bucket in p.get("minio_buckets") or []:
        name = str(bucket["name"])
        out.append(
            {
                "name": name,
                "target": shell_word(f"{p['minio_alias']}/{name}"),
                "policy_name": shell_word(name),
                "policy_json": to_json(bucket_policy(name)).rstrip("\n"),
                "versioning": bool(bucket.get("versioning")),
                "lock": bool(bucket.get("lock")),
                "anonymous": shell_word(bucket["policy"]) if bucket.get("policy") else "",
            }
        )
    return out


def _users(cluster: MinioCluster, p: Any, b: HostBundle) -> list[dict[str, Any]]:
    out = []
    for user in p.get("minio_users") or []:
        access = str(user["access_key"])
        policy = user.get("policy")
        out.append(
            {
                "name": access,
                "access_key": shell_word(access),
                "secret": b.secret(f"{cluster.name}/minio_users/{access}/secret_key", user.get("secret_key")),
                "policy": shell_word(policy) if policy else "",
            }
        )
    return out
