"""pgBackRest: the instance's `/etc/pgbackrest/pgbackrest.conf` and what Patroni needs to archive through it.

With `pgbackrest_enabled` the stanza is the cluster name, with `pg1-path`, `pg1-port`, `pg1-socket-path` and
`pg1-user`; the repository `pgbackrest_repo[pgbackrest_method]` becomes `repo1-*` options, its secret fields
placeholders `<cluster>/pgbackrest_repo/<method>/<field>`. Patroni gets `archive_mode`, `archive_command`
(archive-push) and `archive_timeout`, a `recovery_conf.restore_command` (archive-get) and, for non-local
repositories, the `pgbackrest` replica creation method. Creating the stanza and the first backup are apply-time
operations, so nothing here needs the repository to exist.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ...bundle import Action, Directory, FileSpec, HostBundle
from ...errors import Report, join_path
from ...model import Host
from ...render import RenderError, render
from ...secrets import LINE_BREAK_RULE, line_break_free
from .model import MODULE, PgCluster, PgInstance

PGBACKREST_SETTINGS = ("archive_mode", "archive_command", "archive_timeout")
# secret fields of a pgbackrest_repo entry (schemas/pgsql.json x-secret-fields of pgbackrest_repo)
PGBACKREST_SECRET_FIELDS = ("azure_key", "cipher_pass", "s3_key_secret", "s3_token", "sftp_private_key_passphrase")
PGBACKREST_OPTION = re.compile(r"^[a-z][a-z0-9_]*$")
S3_REQUIRED = ("s3_bucket", "s3_endpoint", "s3_region", "s3_key", "s3_key_secret")


def check_pgbackrest(p, report: Report, platform: str) -> None:
    """The chosen repository exists and its options are names with one-line values pgBackRest will accept."""
    method = str(p.get("pgbackrest_method"))
    repos = p.get("pgbackrest_repo") or {}
    if method not in repos:
        known = ", ".join(sorted(repos)) or "none"
        report.error(
            p.source("pgbackrest_method"), f"pgbackrest_method '{method}' is not a key of pgbackrest_repo ({known})"
        )
        return
    repo = repos[method]
    where = join_path(p.source("pgbackrest_repo"), method)
    if not isinstance(repo, dict):
        report.error(where, "a pgbackrest_repo entry maps repository options to values")
        return
    for key, value in repo.items():
        if not PGBACKREST_OPTION.match(str(key)):
            report.error(join_path(where, key), f"'{key}' is not a pgBackRest repository option name")
        elif isinstance(value, (dict, list)) or value is None or any(c in str(value) for c in "\n\r\x00"):
            report.error(join_path(where, key), "a repository option value is one line of text")
    kind = str(repo.get("type", "posix"))
    if kind == "s3":
        for key in S3_REQUIRED:
            if not repo.get(key):
                report.error(join_path(where, key), f"an s3 repository needs {key}")
    if str(repo.get("cipher_type", "none")) != "none" and not repo.get("cipher_pass"):
        report.error(join_path(where, "cipher_pass"), "an encrypted repository (cipher_type) needs cipher_pass")
    if platform == "debian12" and repo.get("block") in (True, "y"):
        report.note(
            join_path(where, "block"),
            "Debian 12's pgBackRest 2.45 accepts block incremental backup only as a beta feature: sty adds beta=y",
        )


def archive_parameters(cluster: PgCluster) -> dict[str, str]:
    """The postgresql.conf settings that ship WAL to the repository."""
    return {
        "archive_mode": "on",
        "archive_timeout": "300",
        "archive_command": f"pgbackrest --stanza={cluster.name} archive-push %p",
    }


def patroni_pgbackrest(p, cluster: PgCluster) -> dict[str, Any]:
    """Patroni's restore_command and, for a shared (non-local) repository, replicas made by pgBackRest."""
    if not p["pgbackrest_enabled"]:
        return {}
    stanza = cluster.name
    out: dict[str, Any] = {
        "recovery_conf": {"restore_command": f'pgbackrest --stanza={stanza} archive-get %f "%p"'},
    }
    if p["pgbackrest_method"] != "local":
        out["create_replica_methods"] = ["basebackup", "pgbackrest"]  # Pigsty's order: the primary first
        out["pgbackrest"] = {
            "command": f"/usr/bin/pgbackrest --stanza={stanza} --delta restore",
            "keep_data": True,
            "no_params": True,
            "no_leader": True,
        }
    return out


def _repo_options(host: Host, cluster: PgCluster, b: HostBundle, method: str, repo: dict) -> list[tuple[str, str]]:
    """`repo1-*` options in file order (type first), secret fields as placeholders."""
    options: list[tuple[str, str]] = []
    for key in sorted(repo, key=lambda k: (k != "type", k)):
        value = repo[key]
        if key in PGBACKREST_SECRET_FIELDS:
            name = f"{cluster.name}/pgbackrest_repo/{method}/{key}"
            if not line_break_free(b.secret_value(name, value)):  # named: the filter's words would not say which
                raise RenderError(f"the secret {name}: {LINE_BREAK_RULE}")
            value = b.secret(name, value)
        elif isinstance(value, bool):
            value = "y" if value else "n"
        options.append((f"repo1-{key.replace('_', '-')}", str(value)))
    if host.platform.pgbackrest_block_is_beta and ("repo1-block", "y") in options:
        options.append(("beta", "y"))
    return options


def render_pgbackrest(host: Host, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
    p = host.params
    dbsu = p["pg_dbsu"]
    method = str(p["pgbackrest_method"])
    repo = dict((p["pgbackrest_repo"] or {})[method])
    cpu = host.facts.cpu
    spool = "/pg/spool"
    text = render(
        "pgsql/pgbackrest.conf.j2",
        p=p,
        dbsu=dbsu,
        stanza=cluster.name,
        inst_name=inst.name,
        method=method,
        spool=spool,
        repo=_repo_options(host, cluster, b, method, repo),
        # as Pigsty: a quarter of the cores (2 to 4) to back up and move WAL, up to 8 to restore
        workers=min(max(math.ceil(cpu / 4), 2), 4),
        restore=min(cpu, 8),
    )
    path = "/etc/pgbackrest/pgbackrest.conf"
    b.add(
        FileSpec(
            path,
            MODULE,
            text,
            "pgbackrest",
            owner=dbsu,
            group=dbsu,
            mode="0600",
            actions=[Action("pgbackrest-stanza")],
        )
    )
    b.packages.add("pgbackrest")
    for d in ("/etc/pgbackrest", p["pgbackrest_log_dir"], spool):
        b.directories.add(Directory(d, dbsu, dbsu, "0750"))
    if str(repo.get("type", "posix")) == "posix":
        b.directories.add(Directory(str(repo.get("path") or "/var/lib/pgbackrest"), dbsu, dbsu, "0750"))
    b.check("pgbackrest", path, where="build")
