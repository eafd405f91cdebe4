"""The database superuser's admin scripts in `/pg/bin`, which `pg_crontab` entries and operators call.

Pigsty installs its own scripts there; sty writes its own, for the same jobs and with compatible arguments,
rendered per instance so that each knows its cluster, stanza, data directory, bin dir, socket and port
(`templates/pgsql/bin/*.j2`, sharing `_common.j2`). They hold no secret: they run as the database superuser,
who logs in over the local socket (peer authentication), and root switches to it.

- `pg-role`: prints primary, replica or unknown (asks the server, else reads the data directory's signal files).
- `pg-backup [full|diff|incr]`: a pgBackRest backup of the stanza (= the cluster) on the primary only, unless
  `--force`; a replica exits 0, so every member may schedule it and the schedule survives a failover.
- `pg-vacuum`: VACUUM (FREEZE, ANALYZE) of the tables whose XIDs are old, per database; primary only.
- `pg-repack`: pg_repack of named tables/indexes, or of those Pigsty's bloat views flag (when a database has them);
  shipped when `pg_repack` is among the extensions.
- `pg-heartbeat`: a line a second with the role, WAL position and replay delay; on the primary it commits a
  transactional logical message, so replicas have a fresh commit to measure their delay by (no table needed).
- `pg-tune-hugepage`: PostgreSQL's huge page need against vm.nr_hugepages and the `node_hugepage_count` to set;
  it changes nothing, since the node's sysctl settings are NODE's.
- `supa-kick` (only when `pg_crontab` schedules it, as Pigsty's supabase.yml does): on the primary, rewrites
  Supabase's `_analytics.users` row to itself so its analytics service keeps moving.
- `pg-pitr`: point-in-time restore of the instance's data with pgBackRest, WAL replay to the target, then the
  hand-back to Patroni (`--finish` on the primary, `--rejoin` on each replica); its `--help` is the procedure.

Pigsty's other scripts are not shipped:
- `pg-failover-callback`: sty's Patroni configuration declares no callbacks.
- `pg-drop-role`, `pgb-user`, `pg-pass-add`: roles, pgbouncer's userlist and passwords come from the inventory
  (`state: absent`, `userlist.txt`, the secret store); a hand edit would drift from the bundle, and `.pgpass`
  files would put secrets outside the store.
- `pg-basebackup` (deprecated by Pigsty for pgBackRest), `pg-fork` (makes instances the inventory does not know,
  on ports and directories sty does not manage), `pg-badger` (pgbadger is not a package sty installs),
  `pg-cluster` (`SHOW cluster_name`, or the manifest's identity), and `pg-init` (sty provisions with its own
  SQL).
"""

from __future__ import annotations

import posixpath
from typing import Any

from ...bundle import Directory, FileSpec, HostBundle
from ...model import Host
from ...render import render
from ...resolve import Params
from .model import MODULE, PgCluster, PgInstance

SCRIPTS_DIR = "/pg/bin"
ALWAYS = ("pg-role", "pg-backup", "pg-vacuum", "pg-heartbeat", "pg-tune-hugepage", "pg-pitr")
PGBACKREST = "/usr/bin/pgbackrest"  # where both platforms' packages put it (Patroni's replica method says so too)


def wants_repack(p: Params) -> bool:
    """Whether the pg_repack extension is asked for in any database: only then is `pg-repack` any use."""
    extensions = list(p.get("pg_default_extensions") or [])
    for db in p.get("pg_databases") or []:
        if isinstance(db, dict):
            extensions += db.get("extensions") or []
    return any((e.get("name") if isinstance(e, dict) else e) == "pg_repack" for e in extensions)


def script_names(p: Params) -> list[str]:
    names = [*ALWAYS, "pg-repack"] if wants_repack(p) else list(ALWAYS)
    if any("/supa-kick" in str(line) for line in p.get("pg_crontab") or []):  # Pigsty's supabase.yml schedules it
        names.append("supa-kick")
    return names


def script_context(host: Host, inst: PgInstance, cluster: PgCluster) -> dict[str, Any]:
    """What the scripts know of their instance (tests render them with some of it pointed at stubs)."""
    p = host.params
    version = int(p["pg_version"])
    bin_dir = p["pg_bin_dir"] if p.is_set("pg_bin_dir") else host.platform.pg_bin_dir.format(version=version)
    return {
        "dbsu": p["pg_dbsu"],
        "cluster": cluster.name,
        "instance": inst.name,
        "data": p["pg_data"],
        "bin_dir": bin_dir,
        "socket_dir": p["pg_localhost"],
        "port": p["pg_port"],
        "scripts_dir": SCRIPTS_DIR,
        "tmp_dir": "/pg/tmp",
        "log_dir": p["pg_log_dir"],
        "version": version,
        "stanza": cluster.name,  # as backup.py names it
        "backup_enabled": bool(p.get("pgbackrest_enabled")),
        "pgbackrest": PGBACKREST,
        "patronictl": posixpath.join(posixpath.dirname(host.platform.patroni_bin), "patronictl"),
        "patroni_conf": "/etc/patroni/patroni.yml",
        "patroni_unit": "patroni.service",
    }


def render_script(name: str, context: dict[str, Any]) -> str:
    return render(f"pgsql/bin/{name}.j2", **context)


def render_scripts(host: Host, inst: PgInstance, cluster: PgCluster, b: HostBundle) -> None:
    """One executable per script in /pg/bin, owned by the database superuser, and shellcheck to judge them."""
    dbsu = host.params["pg_dbsu"]
    context = script_context(host, inst, cluster)
    paths = []
    for name in script_names(host.params):
        path = f"{SCRIPTS_DIR}/{name}"
        b.add(FileSpec(path, MODULE, render_script(name, context), "shell", owner=dbsu, group=dbsu, mode="0755"))
        paths.append(path)
    b.directories.add(Directory(SCRIPTS_DIR, dbsu, dbsu, "0755"))
    b.check("shellcheck", *paths, where="build")
