"""The per-major table of PostgreSQL setting contexts (compiler/modules/pgsql/pg_settings.py and its JSON):
restart detection, unknown names and did-you-mean, the version differences the compiler relies on, and (slow)
the PostgreSQL 15 entry against the installed postgres-15 binary."""

from __future__ import annotations

import os
import shutil

import pytest
from capture_pg_settings import CaptureError, binary_major, capture_binary, describe_config, dumps

from sty.compiler.modules.pgsql import pg_settings as pgs
from sty.compiler.modules.pgsql.pg_settings import SUPPORTED_MAJORS, closest, context, known, needs_restart

ALL = (13, 14, 15, 16, 17, 18, 19)
CONTEXTS = {"postmaster", "sighup", "superuser", "user", "backend", "superuser-backend", "internal"}
INSTALLED_15 = "/usr/lib/postgresql/15/bin/postgres"

ALWAYS_POSTMASTER = (
    "max_connections",
    "shared_buffers",
    "shared_preload_libraries",
    "wal_level",
    "max_wal_senders",
    "max_replication_slots",
    "max_worker_processes",
    "max_locks_per_transaction",
    "max_prepared_transactions",
    "listen_addresses",
    "port",
    "archive_mode",
    "hot_standby",
    "track_commit_timestamp",
    "wal_log_hints",
    "huge_pages",
    "wal_buffers",
    "autovacuum_freeze_max_age",
)


def _table(major: int) -> dict[str, str]:
    return pgs._tables()[major]


def test_supported_majors() -> None:
    assert SUPPORTED_MAJORS == ALL


def test_file_is_what_the_capture_script_writes() -> None:
    text = pgs.DATA.read_text(encoding="utf-8")
    assert text == dumps({str(m): _table(m) for m in ALL})
    assert text.endswith("}\n")


@pytest.mark.parametrize("major", ALL)
def test_contexts_are_the_seven_of_postgresql(major: int) -> None:
    table = _table(major)
    assert set(table.values()) <= CONTEXTS
    assert not [name for name in table if "." in name], "extension settings do not belong in the core table"
    assert len(table) > 300


@pytest.mark.parametrize("major", ALL)
def test_restart_settings_in_every_major(major: int) -> None:
    for name in ALWAYS_POSTMASTER:
        assert context(major, name) == "postmaster", name
        assert needs_restart(major, name), name


@pytest.mark.parametrize("major", ALL)
def test_reloadable_and_session_settings_in_every_major(major: int) -> None:
    assert context(major, "work_mem") == "user"
    assert context(major, "maintenance_work_mem") == "user"
    assert context(major, "checkpoint_timeout") == "sighup"
    assert context(major, "max_wal_size") == "sighup"
    assert context(major, "log_min_duration_statement") == "superuser"
    assert context(major, "log_connections") == "superuser-backend"
    assert context(major, "ignore_system_indexes") == "backend"
    assert context(major, "server_version") == "internal"
    for name in ("work_mem", "checkpoint_timeout", "log_connections", "ignore_system_indexes", "block_size"):
        assert not needs_restart(major, name), name


@pytest.mark.parametrize("major", ALL)
def test_settings_describe_config_leaves_out_are_known(major: int) -> None:
    # GUC_NOT_IN_SAMPLE settings: absent from --describe-config, present in pg_settings
    assert context(major, "application_name") == "user"
    assert context(major, "transaction_isolation") == "user"
    assert context(major, "zero_damaged_pages") == "superuser"
    assert context(major, "config_file") == "postmaster"
    assert context(major, "data_checksums") == "internal"
    # Debian's own patch, on every major it packages
    assert context(major, "extension_destdir") == "superuser"


def test_io_method_from_18() -> None:
    for major in ALL:
        expected = "postmaster" if major >= 18 else None
        assert context(major, "io_method") == expected, major
        assert needs_restart(major, "io_method") is (major >= 18)
    assert context(18, "io_workers") == "sighup"
    assert context(19, "io_workers") is None  # replaced by io_min_workers / io_max_workers
    assert context(19, "io_min_workers") == context(19, "io_max_workers") == "sighup"


def test_autovacuum_max_workers_reloadable_from_18() -> None:
    for major in ALL:
        assert context(major, "autovacuum_max_workers") == ("sighup" if major >= 18 else "postmaster"), major
    assert needs_restart(17, "autovacuum_max_workers")
    assert not needs_restart(18, "autovacuum_max_workers")
    assert context(17, "autovacuum_worker_slots") is None
    assert context(18, "autovacuum_worker_slots") == "postmaster"


def test_settings_removed_in_16() -> None:
    for name in ("promote_trigger_file", "vacuum_defer_cleanup_age", "force_parallel_mode", "lc_collate"):
        assert all(known(m, name) for m in (13, 14, 15)), name
        assert not any(known(m, name) for m in (16, 17, 18, 19)), name
    assert context(15, "promote_trigger_file") == "sighup"
    assert context(16, "debug_parallel_query") == "user"
    assert closest(16, "force_parallel_mode") is None  # renamed, not misspelt


def test_added_in_14_and_13() -> None:
    assert context(13, "wal_keep_size") == "sighup"
    assert context(13, "wal_keep_segments") is None
    added_14 = {
        "vacuum_failsafe_age": "user",
        "client_connection_check_interval": "user",
        "compute_query_id": "superuser",
        "enable_memoize": "user",
        "huge_page_size": "postmaster",
        "min_dynamic_shared_memory": "postmaster",
        "idle_session_timeout": "user",
    }
    for name, ctx in added_14.items():
        assert context(13, name) is None, name
        assert context(14, name) == ctx, name
    assert context(13, "restore_command") == "postmaster"
    assert context(14, "restore_command") == "sighup"


def test_added_in_16() -> None:
    added = {
        "reserved_connections": "postmaster",
        "debug_io_direct": "postmaster",
        "scram_iterations": "user",
        "icu_validation_level": "user",
        "send_abort_for_crash": "sighup",
        "send_abort_for_kill": "sighup",
        "vacuum_buffer_usage_limit": "user",
        "createrole_self_grant": "user",
        "gss_accept_delegation": "sighup",
        "debug_logical_replication_streaming": "user",
    }
    _added_in(16, added)


def _added_in(major: int, added: dict[str, str]) -> None:
    """Each setting is unknown to the major before and has its context from `major` on."""
    for name, ctx in added.items():
        assert context(major - 1, name) is None, name
        assert context(major, name) == ctx, name


def test_added_in_17() -> None:
    slru = ("transaction", "commit_timestamp", "multixact_member", "multixact_offset", "notify", "serializable")
    added = {f"{kind}_buffers": "postmaster" for kind in (*slru, "subtransaction")}
    added |= {
        "summarize_wal": "sighup",
        "wal_summary_keep_time": "sighup",
        "io_combine_limit": "user",
        "sync_replication_slots": "sighup",
        "allow_alter_system": "sighup",
        "event_triggers": "superuser",
        "huge_pages_status": "internal",
        "trace_connection_negotiation": "postmaster",
        "transaction_timeout": "user",
        "enable_group_by_reordering": "user",
    }
    _added_in(17, added)
    assert context(17, "old_snapshot_threshold") is None
    assert context(16, "old_snapshot_threshold") == "postmaster"


def test_added_in_18() -> None:
    added = {
        "io_max_concurrency": "postmaster",
        "max_active_replication_origins": "postmaster",
        "io_workers": "sighup",
        "file_copy_method": "user",
        "extension_control_path": "superuser",
        "md5_password_warnings": "user",
        "oauth_validator_libraries": "sighup",
        "ssl_tls13_ciphers": "sighup",
        "track_cost_delay_timing": "superuser",
        "log_lock_failures": "superuser",
        "vacuum_truncate": "user",
        "num_os_semaphores": "internal",
        "idle_replication_slot_timeout": "sighup",
        "autovacuum_vacuum_max_threshold": "sighup",
    }
    _added_in(18, added)


def test_19_beta() -> None:
    assert context(18, "wal_receiver_timeout") == "sighup"
    assert context(19, "wal_receiver_timeout") == "user"
    assert context(19, "escape_string_warning") is None
    assert context(19, "max_repack_replication_slots") == "postmaster"
    assert context(19, "autovacuum_max_parallel_workers") == "sighup"


def test_unknown_names() -> None:
    for name in ("no_such_setting", "pg_stat_statements.max", "citus.max_worker_nodes", ""):
        assert context(15, name) is None, name
        assert not known(15, name), name
        assert not needs_restart(15, name), name
        assert closest(15, name) is None, name
    assert closest(15, "pg_stat_statement.max") is None  # extension settings are never suggested


def test_names_are_case_insensitive() -> None:
    assert context(15, "timezone") == context(15, "TimeZone") == "user"
    assert needs_restart(15, "Shared_Buffers")
    assert known(17, "DATESTYLE")
    assert closest(17, "datestyle") is None


def test_did_you_mean() -> None:
    assert closest(15, "shared_bufers") == "shared_buffers"
    assert closest(15, "max_conections") == "max_connections"
    assert closest(18, "io_methd") == "io_method"
    assert closest(15, "timezon") == "TimeZone"
    assert closest(15, "shared_buffers") is None
    assert closest(15, "completely_unrelated") is None


def test_majors_outside_the_table_use_the_nearest() -> None:
    assert context(12, "max_connections") == "postmaster"
    assert context(12, "io_method") is None
    assert context(20, "io_method") == "postmaster"


def _cannot_run_postgres() -> str | None:
    if not os.access(INSTALLED_15, os.X_OK):
        return f"{INSTALLED_15} is not installed (Debian package postgresql-15)"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root and runuser(1) is missing: postgres refuses to run as root"
    return None


@pytest.mark.slow
def test_15_equals_the_installed_binary() -> None:
    reason = _cannot_run_postgres()
    if reason:
        pytest.skip(reason)
    try:
        assert binary_major(INSTALLED_15) == 15
    except (CaptureError, OSError) as exc:
        pytest.skip(f"cannot run {INSTALLED_15} as a non-root user here: {exc}")
    described = describe_config(INSTALLED_15)
    captured = capture_binary(INSTALLED_15)  # initdb + single-user pg_settings, checked against describe
    table = _table(15)
    assert {n: c for n, c in described.items() if "." not in n}.items() <= table.items()
    missing, extra = captured.keys() - table.keys(), table.keys() - captured.keys()
    changed = {n: (table[n], captured[n]) for n in captured.keys() & table.keys() if table[n] != captured[n]}
    assert (missing, extra, changed) == (set(), set(), {}), "run: python tests/capture_pg_settings.py"
    assert captured == table
