"""PostgreSQL settings for a host, computed the way Pigsty's `pg_conf` templates compute them.

Pigsty renders one of four Patroni templates (`pg_conf`: oltp.yml, olap.yml, crit.yml,
tiny.yml) with Jinja arithmetic over the node's CPU count, memory and data-disk size. This
module is a plain-Python re-derivation of those formulas, so that sty can fill Patroni's
`postgresql.parameters` without Jinja and without a live node. This module is the entry point;
the knobs are validated in `tuning_inputs` and the formulas live in `tuning_formulas`.

Where the numbers come from
---------------------------
* `roles/pgsql/templates/oltp.yml`, `olap.yml`, `crit.yml`, `tiny.yml` in the Pigsty
  repository (`pgsty/pigsty`, formerly `Vonng/pigsty`): the formulas at the top of each
  template (connections, shared buffers, work_mem, worker counts, the "size twentieth"
  of the disk) and the fixed values in `bootstrap.dcs.postgresql.parameters`.
* The newer template revisions published with the documentation (pigsty.io,
  `docs/pgsql/template/{tune,oltp,olap,crit,tiny}` and `docs/pgsql/template/patroni/*.yml`):
  these corrected the version gates (io_method, io_workers and idle_replication_slot_timeout
  only from PostgreSQL 18; maintenance_io_concurrency from 13), added `wal_compression =
  lz4` from 15, `file_copy_method = clone` from 18, autovacuum thresholds 500/250,
  `checkpoint_completion_target = 0.95`, and 32MB/2MB minimum parallel scan sizes.

The formulas (c = CPU cores, m = memory MiB, d = disk GiB, n = max_connections)
-------------------------------------------------------------------------------
* n: explicit `max_conn`, else oltp/crit 500 (Pigsty's default service destination is
  pgbouncer), olap 500, tiny 250.
* shared_buffers = ceil(m x shared_buffer_ratio) MB; effective_cache_size = m - shared_buffers.
* maintenance_work_mem = ceil(shared_buffers x 1/4) MB (olap: x 1/2).
* work_mem = floor(shared_buffers / n) MB clamped to 64..1024 (olap 64..8192, tiny 16..256).
* worker budget w = max(c + 8, 16) (olap max(c + 12, 20), tiny max(c + 4, 12));
  max_worker_processes = w + 8.
* max_parallel_workers = max(ceil(c/2), 2) (olap max(ceil(0.8c), 2), tiny max(floor(c/2), 1)).
* max_parallel_maintenance_workers = max(ceil(0.33c), 2) (tiny max(floor(0.33c), 1)).
* max_parallel_workers_per_gather = min(max(floor(c/5), 2), 8) (olap max(floor(c/2), 2);
  crit and tiny 0).
* t = ceil(d / 20) clamped to 1..100 (GiB); min_wal_size = t GB, max_wal_size = 4t GB,
  max_slot_wal_keep_size = 6t GB, temp_file_limit = t GB (olap 4t GB).
* io_workers (PG18) = ceil(c/4) clamped 4..16 (olap ceil(c/2) in 4..32, crit ceil(c/4) in 4..8,
  tiny 3).
* max_locks_per_transaction = n (olap 2n), doubled when citus or timescaledb is preloaded;
  max_prepared_transactions = n with citus, else 0.

What differs from Pigsty
------------------------
* Arithmetic is exact (integers and decimal fractions) instead of Jinja floats. For every
  CPU count up to 1024 the results are identical; only a shared_buffer_ratio whose binary
  float product lands just above an integer could round differently.
* `max_conn` below Patroni's minimum of 25 raises ValueError (Pigsty silently falls back to
  the profile default below 20), as does a combination that exceeds PostgreSQL's backend limit.
* Settings that depend on things outside this module are left to their owners: ssl_* and
  password_encryption (certificates/auth), archive_* (pgBackRest), cron.database_name,
  unix_socket_directories, and everything Patroni sets itself (PATRONI_OWNED).
  `output_plugin_libraries`, which the newest templates list, is omitted: released
  PostgreSQL does not know it.
* Extension settings (auto_explain.*, pg_stat_statements.*, pg_wait_sampling.*, timescaledb.*)
  are emitted only when that library is in `libs`; Pigsty writes the first three always.
* `io_method='auto'` means 'worker' here (Pigsty picks io_uring by OS, which sty cannot see).
* With pg_storage_type HDD Pigsty writes nothing; here random_page_cost is set to '4' explicitly.
* `synchronous_commit = on` is written for crit and whenever rpo_bytes == 0 (the cases in
  which Pigsty turns Patroni's synchronous_mode on); Patroni itself manages
  synchronous_standby_names. `checksum` does not change any setting: data_checksums is fixed
  by initdb, and wal_log_hints (what pg_rewind needs when checksums are off) is always on.
* `wal_keep_size` is written explicitly as Patroni's default, 128MB (Pigsty leaves it to Patroni).
"""

from __future__ import annotations

from . import tuning_formulas as formulas
from .tuning_inputs import (
    DCS_PARAMETER_NAMES,
    PATRONI_OWNED,
    PROFILES,
    HostResources,
    profile_name,
    read_inputs,
)

__all__ = [
    "DCS_PARAMETER_NAMES",
    "PATRONI_OWNED",
    "PROFILES",
    "HostResources",
    "dcs_parameters",
    "postgres_parameters",
    "profile_name",
]


def dcs_parameters(
    profile: str,
    res: HostResources,
    *,
    pg_version: int,
    max_conn: int | str = "auto",
    shared_buffer_ratio: float = 0.25,
    storage_type: str = "SSD",
    libs: str = "pg_stat_statements, auto_explain",
    log_dir: str = "/pg/log/postgres",
    io_method: str = "worker",
    rpo_bytes: int = 1048576,
    checksum: bool = True,
) -> dict[str, str]:
    """Settings Patroni requires to be identical on every member (kept in the DCS)."""
    i = read_inputs(
        profile,
        res,
        pg_version,
        max_conn,
        shared_buffer_ratio,
        storage_type,
        libs,
        log_dir,
        io_method,
        rpo_bytes,
        checksum,
    )
    return dict(sorted(formulas.dcs(i).items()))


def postgres_parameters(
    profile: str,
    res: HostResources,
    *,
    pg_version: int,
    max_conn: int | str = "auto",
    shared_buffer_ratio: float = 0.25,
    storage_type: str = "SSD",
    libs: str = "pg_stat_statements, auto_explain",
    log_dir: str = "/pg/log/postgres",
    io_method: str = "worker",
    rpo_bytes: int = 1048576,
    checksum: bool = True,
) -> dict[str, str]:
    """PostgreSQL settings (name -> value as string, with units like '1024MB') for the profile.

    Everything except the DCS-level settings of `dcs_parameters` and what Patroni sets itself.
    """
    i = read_inputs(
        profile,
        res,
        pg_version,
        max_conn,
        shared_buffer_ratio,
        storage_type,
        libs,
        log_dir,
        io_method,
        rpo_bytes,
        checksum,
    )
    params: dict[str, str] = {}
    for part in (
        formulas.memory,
        formulas.parallel,
        formulas.storage_io,
        formulas.disk,
        formulas.wal_and_replication,
        formulas.log_settings,
        formulas.vacuum_and_clients,
        formulas.library_settings,
    ):
        chunk = part(i)
        overlap = params.keys() & chunk.keys()
        assert not overlap, overlap
        params.update(chunk)
    assert not params.keys() & (DCS_PARAMETER_NAMES | PATRONI_OWNED)
    return dict(sorted(params.items()))
