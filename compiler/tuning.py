"""PostgreSQL settings for a host, computed the way Pigsty's `pg_conf` templates compute them.

Pigsty renders one of four Patroni templates (`pg_conf`: oltp.yml, olap.yml, crit.yml,
tiny.yml) with Jinja arithmetic over the node's CPU count, memory and data-disk size. This
module is a plain-Python re-derivation of those formulas, so that sty can fill Patroni's
`postgresql.parameters` without Jinja and without a live node.

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

from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "DCS_PARAMETER_NAMES",
    "PATRONI_OWNED",
    "PROFILES",
    "HostResources",
    "dcs_parameters",
    "postgres_parameters",
    "profile_name",
]

PROFILES = ("oltp", "olap", "crit", "tiny")

MIN_PG_VERSION = 13
MAX_PG_VERSION = 18

# Parameters Patroni passes on the postmaster command line and therefore keeps identical on
# every member (Patroni's ConfigHandler.CMDLINE_OPTIONS minus the ones it owns outright).
DCS_PARAMETER_NAMES = frozenset(
    {
        "max_connections",
        "max_locks_per_transaction",
        "max_prepared_transactions",
        "max_replication_slots",
        "max_wal_senders",
        "max_worker_processes",
        "track_commit_timestamp",
        "wal_keep_size",
        "wal_level",
        "wal_log_hints",
    }
)

# Settings Patroni writes itself (per node or from its own configuration); never emitted here.
PATRONI_OWNED = frozenset(
    {
        "cluster_name",
        "config_file",
        "data_directory",
        "hba_file",
        "hot_standby",
        "ident_file",
        "listen_addresses",
        "port",
        "primary_conninfo",
        "primary_slot_name",
        "recovery_target_timeline",
        "restore_command",
        "synchronous_standby_names",
    }
)

_PATRONI_MIN_CONNECTIONS = 25  # Patroni rejects max_connections below this
_PG_MAX_BACKENDS = 0x3FFFF  # PostgreSQL's MAX_BACKENDS
_PATRONI_WAL_KEEP_SIZE = "128MB"  # Patroni's default for wal_keep_size
_MAX_WAL_SENDERS = 50
_MAX_REPLICATION_SLOTS = 50
_IO_METHODS = ("sync", "worker", "io_uring")


@dataclass(frozen=True)
class HostResources:
    cpu: int  # CPU cores
    mem_mb: int  # memory in MiB
    disk_gb: int  # size of the data disk in GiB

    def __post_init__(self) -> None:
        for name, minimum in (("cpu", 1), ("mem_mb", 128), ("disk_gb", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"HostResources.{name} must be an integer, got {value!r}.")
            if value < minimum:
                raise ValueError(f"HostResources.{name} must be at least {minimum}, got {value}.")


@dataclass(frozen=True)
class _Profile:
    """The numbers that differ between Pigsty's four templates."""

    default_max_conn: int
    work_mem_mb: tuple[int, int]  # clamp range for shared_buffers / max_connections
    maintenance_ratio: Fraction  # of shared_buffers
    locks_factor: int  # max_locks_per_transaction = factor x max_connections
    worker_budget: tuple[int, int]  # max(cpu + a, b)
    io_workers: tuple[Fraction, int, int] | None  # ceil(cpu x f) clamped to lo..hi; None = fixed 3
    temp_file_twentieths: int  # temp_file_limit in units of the disk's twentieth


_PROFILES: dict[str, _Profile] = {
    "oltp": _Profile(500, (64, 1024), Fraction(1, 4), 1, (8, 16), (Fraction(1, 4), 4, 16), 1),
    "olap": _Profile(500, (64, 8192), Fraction(1, 2), 2, (12, 20), (Fraction(1, 2), 4, 32), 4),
    "crit": _Profile(500, (64, 1024), Fraction(1, 4), 1, (8, 16), (Fraction(1, 4), 4, 8), 1),
    "tiny": _Profile(250, (16, 256), Fraction(1, 4), 1, (4, 12), None, 1),
}


def _ceil(x: Fraction | int) -> int:
    return -(-Fraction(x).numerator // Fraction(x).denominator)


def _floor(x: Fraction | int) -> int:
    return Fraction(x).numerator // Fraction(x).denominator


def _clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(value, hi))


def profile_name(pg_conf: str) -> str:
    """Map a `pg_conf` value ("oltp.yml", or a bare "oltp") to one of PROFILES."""
    if not isinstance(pg_conf, str):
        raise ValueError(f"pg_conf must be a template file name such as 'oltp.yml', got {pg_conf!r}.")
    name = pg_conf.strip().rsplit("/", 1)[-1]
    for suffix in (".yml", ".yaml"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name not in PROFILES:
        known = ", ".join(f"{p}.yml" for p in PROFILES)
        raise ValueError(f"pg_conf {pg_conf!r} is not a template sty knows; use one of {known}.")
    return name


def _library_names(libs: str) -> set[str]:
    names = set()
    for item in libs.split(","):
        item = item.strip().strip('"').strip()
        if item.startswith("$libdir/"):
            item = item[len("$libdir/") :]
        if item:
            names.add(item)
    return names


@dataclass(frozen=True)
class _Inputs:
    profile: str
    spec: _Profile
    res: HostResources
    pg_version: int
    max_conn: int
    shared_buffer_ratio: Fraction
    storage_type: str
    libs: str
    lib_names: frozenset[str]
    log_dir: str
    io_method: str
    rpo_bytes: int

    @property
    def shared_buffers_mb(self) -> int:
        return _ceil(self.res.mem_mb * self.shared_buffer_ratio)

    @property
    def worker_budget(self) -> int:
        add, floor = self.spec.worker_budget
        return max(self.res.cpu + add, floor)

    @property
    def disk_twentieth_gb(self) -> int:
        return _clamp(_ceil(Fraction(self.res.disk_gb, 20)), 1, 100)


def _inputs(
    profile: str,
    res: HostResources,
    pg_version: int,
    max_conn: int | str,
    shared_buffer_ratio: float,
    storage_type: str,
    libs: str,
    log_dir: str,
    io_method: str,
    rpo_bytes: int,
    checksum: bool,
) -> _Inputs:
    name = profile_name(profile)
    spec = _PROFILES[name]
    if not isinstance(res, HostResources):
        raise ValueError(f"res must be a HostResources, got {type(res).__name__}.")
    if isinstance(pg_version, bool) or not isinstance(pg_version, int):
        raise ValueError(f"pg_version must be an integer major version, got {pg_version!r}.")
    if not MIN_PG_VERSION <= pg_version <= MAX_PG_VERSION:
        raise ValueError(
            f"pg_version {pg_version} is not supported; sty tunes PostgreSQL {MIN_PG_VERSION} to {MAX_PG_VERSION}."
        )

    if max_conn == "auto":
        conn = spec.default_max_conn
    else:
        if isinstance(max_conn, bool) or (isinstance(max_conn, float) and not max_conn.is_integer()):
            raise ValueError(f"max_conn must be 'auto' or an integer, got {max_conn!r}.")
        try:
            conn = int(max_conn)
        except (TypeError, ValueError):
            raise ValueError(f"max_conn must be 'auto' or an integer, got {max_conn!r}.") from None
        if conn < _PATRONI_MIN_CONNECTIONS:
            raise ValueError(
                f"max_conn {conn} is below {_PATRONI_MIN_CONNECTIONS}, the minimum Patroni accepts for max_connections."
            )

    if isinstance(shared_buffer_ratio, bool) or not isinstance(shared_buffer_ratio, int | float):
        raise ValueError(f"shared_buffer_ratio must be a number, got {shared_buffer_ratio!r}.")
    ratio = Fraction(repr(float(shared_buffer_ratio)))  # the decimal the user wrote, exactly
    if not Fraction(0) < ratio <= Fraction(9, 10):
        raise ValueError(
            f"shared_buffer_ratio {shared_buffer_ratio} is out of range; it must be above 0 and at "
            "most 0.9 (Pigsty recommends 0.1 to 0.4)."
        )

    storage = str(storage_type).strip().upper()
    if storage not in ("SSD", "HDD"):
        raise ValueError(f"storage_type must be 'SSD' or 'HDD', got {storage_type!r}.")

    if not isinstance(libs, str):
        raise ValueError(f"libs must be a comma-separated string of library names, got {libs!r}.")
    if not isinstance(log_dir, str) or not log_dir.strip():
        raise ValueError(f"log_dir must be a non-empty path, got {log_dir!r}.")

    method = "worker" if io_method == "auto" else io_method
    if method not in _IO_METHODS:
        raise ValueError(f"io_method must be one of auto, {', '.join(_IO_METHODS)}; got {io_method!r}.")

    if isinstance(rpo_bytes, bool) or not isinstance(rpo_bytes, int) or rpo_bytes < 0:
        raise ValueError(f"rpo_bytes must be a non-negative integer, got {rpo_bytes!r}.")
    if not isinstance(checksum, bool):
        raise ValueError(f"checksum must be true or false, got {checksum!r}.")

    inputs = _Inputs(
        profile=name,
        spec=spec,
        res=res,
        pg_version=pg_version,
        max_conn=conn,
        shared_buffer_ratio=ratio,
        storage_type=storage,
        libs=libs,
        lib_names=frozenset(_library_names(libs)),
        log_dir=log_dir,
        io_method=method,
        rpo_bytes=rpo_bytes,
    )
    # PostgreSQL refuses to start when the backend slots add up past MAX_BACKENDS.
    backends = conn + _autovacuum_max_workers(name) + 1 + inputs.worker_budget + 8 + _MAX_WAL_SENDERS
    if backends > _PG_MAX_BACKENDS:
        raise ValueError(
            f"max_conn {conn} with {res.cpu} CPUs needs {backends} backend slots, more than "
            f"PostgreSQL's limit of {_PG_MAX_BACKENDS}."
        )
    return inputs


def _autovacuum_max_workers(profile: str) -> int:
    return 2 if profile == "tiny" else 3


def _dcs(i: _Inputs) -> dict[str, str]:
    conn = i.max_conn
    extended = bool(i.lib_names & {"citus", "timescaledb"})
    locks = conn * i.spec.locks_factor * (2 if extended else 1)
    params = {
        "max_connections": str(conn),
        "max_locks_per_transaction": str(locks),
        "max_prepared_transactions": str(conn if "citus" in i.lib_names else 0),
        "max_replication_slots": str(_MAX_REPLICATION_SLOTS),
        "max_wal_senders": str(_MAX_WAL_SENDERS),
        "max_worker_processes": str(i.worker_budget + 8),
        "track_commit_timestamp": "on",
        "wal_keep_size": _PATRONI_WAL_KEEP_SIZE,
        "wal_level": "logical",
        "wal_log_hints": "on",
    }
    assert set(params) == DCS_PARAMETER_NAMES
    return params


def _memory(i: _Inputs) -> dict[str, str]:
    sb = i.shared_buffers_mb
    lo, hi = i.spec.work_mem_mb
    return {
        "shared_buffers": f"{sb}MB",
        "maintenance_work_mem": f"{_ceil(sb * i.spec.maintenance_ratio)}MB",
        "effective_cache_size": f"{i.res.mem_mb - sb}MB",
        "work_mem": f"{_clamp(sb // i.max_conn, lo, hi)}MB",
        "hash_mem_multiplier": "8.0",
        "huge_pages": "try",
    }


def _parallel(i: _Inputs) -> dict[str, str]:
    c = i.res.cpu
    third = Fraction(33, 100)
    if i.profile == "tiny":
        workers = max(_floor(Fraction(c, 2)), 1)
        maintenance = max(_floor(c * third), 1)
    else:
        workers = max(_ceil(c * (Fraction(4, 5) if i.profile == "olap" else Fraction(1, 2))), 2)
        maintenance = max(_ceil(c * third), 2)
    if i.profile == "oltp":
        gather = min(max(_floor(Fraction(c, 5)), 2), 8)
    elif i.profile == "olap":
        gather = max(_floor(Fraction(c, 2)), 2)
    else:  # crit and tiny keep queries serial unless a user opts in
        gather = 0
    params = {
        "max_parallel_workers": str(workers),
        "max_parallel_maintenance_workers": str(maintenance),
        "max_parallel_workers_per_gather": str(gather),
    }
    if i.profile in ("oltp", "crit"):  # discourage parallel plans for short transactions
        params.update(
            {
                "parallel_setup_cost": "2000",
                "parallel_tuple_cost": "0.2",
                "min_parallel_table_scan_size": "32MB",
                "min_parallel_index_scan_size": "2MB",
            }
        )
    if i.profile == "olap":
        params.update({"enable_partitionwise_join": "on", "enable_partitionwise_aggregate": "on"})
    return params


def _io(i: _Inputs) -> dict[str, str]:
    params: dict[str, str] = {}
    if i.pg_version >= 18:
        params["io_method"] = i.io_method
        if i.spec.io_workers is None:
            workers = 3
        else:
            fraction, lo, hi = i.spec.io_workers
            workers = _clamp(_ceil(i.res.cpu * fraction), lo, hi)
        params["io_workers"] = str(workers)
        params["file_copy_method"] = "clone"
    if i.storage_type == "SSD":
        params["random_page_cost"] = "1.1"
        params["effective_io_concurrency"] = "200"
        params["maintenance_io_concurrency"] = "100"  # exists from PostgreSQL 13
    else:
        params["random_page_cost"] = "4"
    return params


def _disk(i: _Inputs) -> dict[str, str]:
    t = i.disk_twentieth_gb
    return {
        "min_wal_size": f"{t}GB",
        "max_wal_size": f"{4 * t}GB",
        "max_slot_wal_keep_size": f"{6 * t}GB",
        "temp_file_limit": f"{i.spec.temp_file_twentieths * t}GB",
    }


def _wal_and_replication(i: _Inputs) -> dict[str, str]:
    crit = i.profile == "crit"
    params = {
        "wal_buffers": "16MB",
        "wal_writer_delay": "10ms" if crit else "20ms",
        "wal_writer_flush_after": "0" if crit else "1MB",
        "commit_delay": "20",
        "commit_siblings": "10",
        "checkpoint_timeout": "15min",
        "checkpoint_completion_target": "0.95",
        "max_standby_archive_delay": "10min",
        "max_standby_streaming_delay": "3min",
        "wal_receiver_status_interval": "1s",
        "hot_standby_feedback": "on",
        "wal_receiver_timeout": "60s",
        "max_logical_replication_workers": "8",
        "max_sync_workers_per_subscription": "6",
        "bgwriter_delay": "10ms",
        "bgwriter_lru_maxpages": "800",
        "bgwriter_lru_multiplier": "5.0",
    }
    if i.pg_version >= 15:
        params["wal_compression"] = "lz4"
    if i.pg_version >= 17:
        params["sync_replication_slots"] = "on"
    if i.pg_version >= 18:
        params["idle_replication_slot_timeout"] = "3d" if crit else "7d"
    if crit and i.pg_version <= 15:  # removed in PostgreSQL 16
        params["vacuum_defer_cleanup_age"] = "500000"
    if crit or i.rpo_bytes == 0:
        params["synchronous_commit"] = "on"
    return params


def _logging(i: _Inputs) -> dict[str, str]:
    params = {
        "log_destination": "csvlog",
        "logging_collector": "on",
        "log_directory": i.log_dir,
        "log_timezone": "UTC",
        "log_filename": "postgresql-%a.log",
        "log_file_mode": "0640",
        "log_rotation_age": "1d",
        "log_rotation_size": "0",
        "log_truncate_on_rotation": "on",
        "log_checkpoints": "on",
        "log_lock_waits": "on",
        "log_temp_files": "1024",
        "log_replication_commands": "on",
        "log_statement": "ddl",
        "log_min_duration_statement": "1000" if i.profile == "olap" else "100",
        "track_io_timing": "on",
        "track_functions": "all",
        "track_activity_query_size": "32768" if i.profile == "crit" else "8192",
    }
    v18 = i.pg_version >= 18
    if i.profile == "crit":
        params["log_connections"] = "receipt,authentication,authorization" if v18 else "on"
        params["log_disconnections"] = "on"
    elif i.profile in ("oltp", "olap") and v18:
        params["log_connections"] = "authorization"
    if v18 and i.profile in ("oltp", "crit"):
        params["log_lock_failures"] = "on"
    if v18 and i.profile in ("olap", "crit"):
        params["track_cost_delay_timing"] = "on"
    return params


def _vacuum_and_clients(i: _Inputs) -> dict[str, str]:
    olap = i.profile == "olap"
    params = {
        "vacuum_cost_delay": "10ms" if olap else "20ms",
        "vacuum_cost_limit": "10000" if olap else "2000",
        "log_autovacuum_min_duration": "1s",
        "autovacuum_max_workers": str(_autovacuum_max_workers(i.profile)),
        "autovacuum_naptime": "1min",
        "autovacuum_vacuum_cost_delay": "-1",
        "autovacuum_vacuum_cost_limit": "-1",
        "autovacuum_freeze_max_age": "1000000000",
        "default_statistics_target": {"olap": "1000", "tiny": "200"}.get(i.profile, "400"),
        "deadlock_timeout": "50ms",
        "idle_in_transaction_session_timeout": {"olap": "0", "crit": "1min"}.get(i.profile, "10min"),
        "superuser_reserved_connections": "10",
    }
    if i.profile != "tiny":  # tiny keeps PostgreSQL's 20% / 10% scale factors
        params["autovacuum_vacuum_scale_factor"] = "0.08"
        params["autovacuum_analyze_scale_factor"] = "0.04"
    if i.profile != "olap":
        params["autovacuum_vacuum_threshold"] = "500"
        params["autovacuum_analyze_threshold"] = "250"
    return params


def _extensions(i: _Inputs) -> dict[str, str]:
    params = {"shared_preload_libraries": i.libs}
    libs = i.lib_names
    if "auto_explain" in libs:
        params.update(
            {
                "auto_explain.log_min_duration": "1s",
                "auto_explain.log_analyze": "on",
                "auto_explain.log_verbose": "on",
                "auto_explain.log_timing": "on",
                "auto_explain.log_nested_statements": "on",
            }
        )
    if "pg_stat_statements" in libs:
        params.update(
            {
                "pg_stat_statements.max": "2500" if i.profile == "tiny" else "10000",
                "pg_stat_statements.track": "all",
                "pg_stat_statements.track_utility": "off",
                "pg_stat_statements.track_planning": "off",
            }
        )
    if "pg_wait_sampling" in libs:
        params.update(
            {
                "pg_wait_sampling.profile_pid": "false",
                "pg_wait_sampling.profile_queries": "all",
                "pg_wait_sampling.history_size": "100000",
            }
        )
    if "timescaledb" in libs:
        params.update(
            {
                "timescaledb.telemetry_level": "off",
                "timescaledb.max_background_workers": str(i.worker_budget),
            }
        )
    return params


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
    i = _inputs(
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
    return dict(sorted(_dcs(i).items()))


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
    i = _inputs(
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
        _memory,
        _parallel,
        _io,
        _disk,
        _wal_and_replication,
        _logging,
        _vacuum_and_clients,
        _extensions,
    ):
        chunk = part(i)
        overlap = params.keys() & chunk.keys()
        assert not overlap, overlap
        params.update(chunk)
    assert not params.keys() & (DCS_PARAMETER_NAMES | PATRONI_OWNED)
    return dict(sorted(params.items()))
