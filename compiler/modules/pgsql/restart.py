"""Which changes PostgreSQL takes only at a restart, made visible as a file of their own.

Patroni reloads PostgreSQL when its file or the DCS configuration changes, and a setting of the
`postmaster` context (max_connections, shared_buffers, shared_preload_libraries ...) then waits with
`pending_restart` until someone restarts the instance. So that no such change is shipped as a mere reload,
each member's bundle carries `/etc/patroni/restart.yml`: every postmaster-context setting the member runs
with, and nothing else. Patroni does not read it; its only job is to change exactly when a restart is due,
which puts the `pg-rolling-restart` action in the plan (replicas first, then a switchover and the old
primary) and names the settings in `sty diff`'s impact line.

The contexts come from `pg_settings` of each supported major (`pg_settings.json`, see pg_settings.py); settings of
extensions are not in it, so the ones whose context is postmaster are listed here.
"""

from __future__ import annotations

from typing import Any

from ...bundle import Action, FileSpec, HostBundle
from ...render import HEADER, to_yaml
from .model import MODULE
from .pg_settings import needs_restart

RESTART_FILE = "/etc/patroni/restart.yml"
ROLLING_RESTART = Action("pg-rolling-restart")

# extension settings PostgreSQL reads only when the library loads at start (postmaster context)
EXTENSION_POSTMASTER = frozenset(
    {
        "citus.max_worker_nodes",
        "cron.database_name",
        "cron.host",
        "cron.max_running_jobs",
        "cron.use_background_workers",
        "pg_stat_statements.max",
        "pg_wait_sampling.history_size",
        "pg_wait_sampling.profile_queries",
        "pgaudit.log_catalog",
        "pglogical.batch_inserts",
        "timescaledb.max_background_workers",
        "timescaledb.max_cached_chunks_per_hypertable",
    }
)


def _restarts(version: int, name: str) -> bool:
    return name in EXTENSION_POSTMASTER or needs_restart(version, name)


def postmaster_settings(doc: dict[str, Any], version: int) -> dict[str, str]:
    """The settings of a patroni.yml document that PostgreSQL reads only at start, with their values.

    The DCS section's parameters are the cluster's (Patroni applies them on every member), the `postgresql`
    section's the member's own; Patroni's `listen` becomes listen_addresses and port."""
    pg = doc["postgresql"]
    merged = {**doc["bootstrap"]["dcs"]["postgresql"]["parameters"], **pg["parameters"]}
    out = {str(k): str(v) for k, v in merged.items() if _restarts(version, str(k))}
    address, _, port = str(pg["listen"]).rpartition(":")
    out["listen_addresses"], out["port"] = address, port
    return dict(sorted(out.items()))


def render_restart_record(settings: dict[str, str], dbsu: str, b: HostBundle) -> None:
    """The record of `postmaster_settings`, which the plan compares to decide on a rolling restart."""
    note = (
        f"{HEADER}"
        "# PostgreSQL settings of this member that take effect only at a restart (postmaster context).\n"
        "# Patroni does not read this file: sty writes it so that changing one of them is planned and applied\n"
        "# as a rolling restart of the cluster (replicas first, then a switchover and the old primary).\n"
    )
    b.add(
        FileSpec(
            RESTART_FILE,
            MODULE,
            to_yaml(settings, note),
            "yaml",
            owner=dbsu,
            group=dbsu,
            mode="0640",
            actions=[ROLLING_RESTART],
        )
    )
