"""The `pg_conf` formulas proper, one function per group of settings (see `tuning` for where each number
comes from and how it departs from Pigsty). Each takes the validated `Inputs` and returns the settings of its
group as strings; `tuning` checks that no two groups set the same name, so a group can be read on its own.
"""

from __future__ import annotations

from fractions import Fraction

from .tuning_inputs import (
    DCS_PARAMETER_NAMES,
    MAX_REPLICATION_SLOTS,
    MAX_WAL_SENDERS,
    PATRONI_WAL_KEEP_SIZE,
    Inputs,
    autovacuum_max_workers,
    ceil_int,
    clamp,
    floor_int,
)


def dcs(i: Inputs) -> dict[str, str]:
    conn = i.max_conn
    extended = bool(i.lib_names & {"citus", "timescaledb"})
    locks = conn * i.spec.locks_factor * (2 if extended else 1)
    params = {
        "max_connections": str(conn),
        "max_locks_per_transaction": str(locks),
        "max_prepared_transactions": str(conn if "citus" in i.lib_names else 0),
        "max_replication_slots": str(MAX_REPLICATION_SLOTS),
        "max_wal_senders": str(MAX_WAL_SENDERS),
        "max_worker_processes": str(i.worker_budget + 8),
        "track_commit_timestamp": "on",
        "wal_keep_size": PATRONI_WAL_KEEP_SIZE,
        "wal_level": "logical",
        "wal_log_hints": "on",
    }
    assert set(params) == DCS_PARAMETER_NAMES
    return params


def memory(i: Inputs) -> dict[str, str]:
    sb = i.shared_buffers_mb
    lo, hi = i.spec.work_mem_mb
    return {
        "shared_buffers": f"{sb}MB",
        "maintenance_work_mem": f"{ceil_int(sb * i.spec.maintenance_ratio)}MB",
        "effective_cache_size": f"{i.res.mem_mb - sb}MB",
        "work_mem": f"{clamp(sb // i.max_conn, lo, hi)}MB",
        "hash_mem_multiplier": "8.0",
        "huge_pages": "try",
    }


def parallel(i: Inputs) -> dict[str, str]:
    c = i.res.cpu
    third = Fraction(33, 100)
    if i.profile == "tiny":
        workers = max(floor_int(Fraction(c, 2)), 1)
        maintenance = max(floor_int(c * third), 1)
    else:
        workers = max(ceil_int(c * (Fraction(4, 5) if i.profile == "olap" else Fraction(1, 2))), 2)
        maintenance = max(ceil_int(c * third), 2)
    if i.profile == "oltp":
        gather = min(max(floor_int(Fraction(c, 5)), 2), 8)
    elif i.profile == "olap":
        gather = max(floor_int(Fraction(c, 2)), 2)
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


def storage_io(i: Inputs) -> dict[str, str]:
    params: dict[str, str] = {}
    if i.pg_version >= 18:
        params["io_method"] = i.io_method
        if i.spec.io_workers is None:
            workers = 3
        else:
            fraction, lo, hi = i.spec.io_workers
            workers = clamp(ceil_int(i.res.cpu * fraction), lo, hi)
        if i.pg_version == 18:  # as Pigsty 4.5: PostgreSQL 19 sizes its I/O workers itself
            params["io_workers"] = str(workers)
        params["file_copy_method"] = "clone"
    if i.storage_type == "SSD":
        params["random_page_cost"] = "1.1"
        params["effective_io_concurrency"] = "200"
        params["maintenance_io_concurrency"] = "100"  # exists from PostgreSQL 13
    else:
        params["random_page_cost"] = "4"
    return params


def disk(i: Inputs) -> dict[str, str]:
    t = i.disk_twentieth_gb
    return {
        "min_wal_size": f"{t}GB",
        "max_wal_size": f"{4 * t}GB",
        "max_slot_wal_keep_size": f"{6 * t}GB",
        "temp_file_limit": f"{i.spec.temp_file_twentieths * t}GB",
    }


def wal_and_replication(i: Inputs) -> dict[str, str]:
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


def log_settings(i: Inputs) -> dict[str, str]:
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


def vacuum_and_clients(i: Inputs) -> dict[str, str]:
    olap = i.profile == "olap"
    params = {
        "vacuum_cost_delay": "10ms" if olap else "20ms",
        "vacuum_cost_limit": "10000" if olap else "2000",
        "log_autovacuum_min_duration": "1s",
        "autovacuum_max_workers": str(autovacuum_max_workers(i.profile)),
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


def library_settings(i: Inputs) -> dict[str, str]:
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
