"""Tests for compiler.tuning: Pigsty's pg_conf formulas, checked by hand and by PostgreSQL itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from sty.compiler.modules.pgsql.tuning import (
    DCS_PARAMETER_NAMES,
    PATRONI_OWNED,
    PROFILES,
    HostResources,
    dcs_parameters,
    postgres_parameters,
    profile_name,
)

SMALL = HostResources(cpu=2, mem_mb=4096, disk_gb=100)
BIG = HostResources(cpu=32, mem_mb=131072, disk_gb=2000)
TINY_HOST = HostResources(cpu=1, mem_mb=1024, disk_gb=20)
HUGE_HOST = HostResources(cpu=128, mem_mb=1048576, disk_gb=10240)


def merged(profile: str, res: HostResources, **kw) -> dict[str, str]:
    return dcs_parameters(profile, res, **kw) | postgres_parameters(profile, res, **kw)


# --------------------------------------------------------------------------------------------
# profile names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("conf", ["oltp.yml", "olap.yml", "crit.yml", "tiny.yml"])
def test_profile_name_strips_the_template_suffix(conf):
    assert profile_name(conf) == conf.removesuffix(".yml")
    assert profile_name(conf.removesuffix(".yml")) in PROFILES


@pytest.mark.parametrize("conf", ["mysite.yml", "", "OLTP.yml", "oltp.json"])
def test_unknown_pg_conf_is_a_clear_error(conf):
    with pytest.raises(ValueError, match="not a template sty knows; use one of oltp.yml"):
        profile_name(conf)


# --------------------------------------------------------------------------------------------
# reference machines, computed by hand from Pigsty's template formulas
# --------------------------------------------------------------------------------------------


def test_oltp_small_reference_machine():
    # 2C / 4 GiB / 100 GiB, max_conn auto = 500 (pgbouncer is Pigsty's default service dest)
    p = merged("oltp", SMALL, pg_version=15)
    assert p["shared_buffers"] == "1024MB"  # 4096 x 0.25
    assert p["maintenance_work_mem"] == "256MB"  # 1024 x 1/4
    assert p["effective_cache_size"] == "3072MB"  # 4096 - 1024
    assert p["max_connections"] == "500"
    assert p["work_mem"] == "64MB"  # floor(1024/500) = 2, raised to the 64MB floor
    assert p["max_worker_processes"] == "24"  # max(2+8, 16) + 8
    assert p["max_parallel_workers"] == "2"  # max(ceil(1), 2)
    assert p["max_parallel_maintenance_workers"] == "2"  # max(ceil(0.66), 2)
    assert p["max_parallel_workers_per_gather"] == "2"  # min(max(0, 2), 8)
    # disk twentieth = ceil(100/20) = 5 GiB
    assert p["min_wal_size"] == "5GB"
    assert p["max_wal_size"] == "20GB"
    assert p["max_slot_wal_keep_size"] == "30GB"
    assert p["temp_file_limit"] == "5GB"
    assert p["max_locks_per_transaction"] == "500"
    assert p["max_prepared_transactions"] == "0"
    assert p["random_page_cost"] == "1.1"
    assert p["effective_io_concurrency"] == "200"


def test_oltp_big_reference_machine():
    # 32C / 128 GiB / 2000 GiB
    p = merged("oltp", BIG, pg_version=18)
    assert p["shared_buffers"] == "32768MB"
    assert p["maintenance_work_mem"] == "8192MB"
    assert p["effective_cache_size"] == "98304MB"
    assert p["work_mem"] == "65MB"  # floor(32768/500)
    assert p["max_worker_processes"] == "48"  # max(40, 16) + 8
    assert p["max_parallel_workers"] == "16"
    assert p["max_parallel_maintenance_workers"] == "11"  # ceil(32 x 0.33 = 10.56)
    assert p["max_parallel_workers_per_gather"] == "6"  # floor(6.4)
    # twentieth = ceil(2000/20) = 100, which is also the cap
    assert (p["min_wal_size"], p["max_wal_size"], p["max_slot_wal_keep_size"]) == ("100GB", "400GB", "600GB")
    assert p["temp_file_limit"] == "100GB"
    assert p["io_method"] == "worker"
    assert p["io_workers"] == "8"  # ceil(32/4) within 4..16


def test_olap_reference_machines():
    p = merged("olap", BIG, pg_version=15)
    assert p["shared_buffers"] == "32768MB"
    assert p["maintenance_work_mem"] == "16384MB"  # half of shared_buffers
    assert p["max_connections"] == "500"
    assert p["max_locks_per_transaction"] == "1000"  # 2 x max_connections
    assert p["max_worker_processes"] == "52"  # max(32+12, 20) + 8
    assert p["max_parallel_workers"] == "26"  # ceil(25.6)
    assert p["max_parallel_workers_per_gather"] == "16"  # floor(32/2), no cap of 8
    assert p["temp_file_limit"] == "400GB"  # 4 twentieths
    assert p["default_statistics_target"] == "1000"
    assert p["idle_in_transaction_session_timeout"] == "0"

    s = merged("olap", SMALL, pg_version=15)
    assert s["max_worker_processes"] == "28"  # max(14, 20) + 8
    assert s["max_parallel_workers"] == "2"  # max(ceil(1.6), 2)
    assert s["maintenance_work_mem"] == "512MB"


def test_crit_reference_machine():
    res = HostResources(cpu=8, mem_mb=32768, disk_gb=500)
    p = merged("crit", res, pg_version=15)
    assert p["shared_buffers"] == "8192MB"
    assert p["maintenance_work_mem"] == "2048MB"
    assert p["effective_cache_size"] == "24576MB"
    assert p["work_mem"] == "64MB"  # floor(8192/500) = 16 -> 64
    assert p["max_worker_processes"] == "24"
    assert p["max_parallel_workers"] == "4"
    assert p["max_parallel_maintenance_workers"] == "3"  # ceil(2.64)
    assert p["max_parallel_workers_per_gather"] == "0"
    assert (p["min_wal_size"], p["max_wal_size"], p["max_slot_wal_keep_size"]) == ("25GB", "100GB", "150GB")
    assert p["temp_file_limit"] == "25GB"


def test_tiny_reference_machine():
    p = merged("tiny", TINY_HOST, pg_version=15)
    assert p["max_connections"] == "250"
    assert p["shared_buffers"] == "256MB"
    assert p["maintenance_work_mem"] == "64MB"
    assert p["effective_cache_size"] == "768MB"
    assert p["work_mem"] == "16MB"  # floor(256/250) = 1 -> 16MB floor
    assert p["max_worker_processes"] == "20"  # max(1+4, 12) + 8
    assert p["max_parallel_workers"] == "1"
    assert p["max_parallel_maintenance_workers"] == "1"
    assert p["max_parallel_workers_per_gather"] == "0"
    assert (p["min_wal_size"], p["max_wal_size"], p["max_slot_wal_keep_size"]) == ("1GB", "4GB", "6GB")
    assert p["autovacuum_max_workers"] == "2"
    assert p["pg_stat_statements.max"] == "2500"
    assert p["default_statistics_target"] == "200"
    assert "autovacuum_vacuum_scale_factor" not in p


def test_shared_buffer_ratio_and_explicit_max_conn():
    p = merged("oltp", SMALL, pg_version=15, shared_buffer_ratio=0.3, max_conn=100)
    assert p["shared_buffers"] == "1229MB"  # ceil(1228.8)
    assert p["effective_cache_size"] == "2867MB"
    assert p["maintenance_work_mem"] == "308MB"  # ceil(307.25)
    assert p["max_connections"] == "100"
    assert p["work_mem"] == "64MB"  # floor(12.29) -> 64
    assert merged("oltp", SMALL, pg_version=15, max_conn="300")["max_connections"] == "300"


def test_work_mem_caps_per_profile():
    # 1 TiB with 100 connections: shared_buffers/conn = 2621MB, above the oltp cap
    kw = dict(pg_version=15, max_conn=100)
    assert postgres_parameters("oltp", HUGE_HOST, **kw)["work_mem"] == "1024MB"
    assert postgres_parameters("crit", HUGE_HOST, **kw)["work_mem"] == "1024MB"
    assert postgres_parameters("olap", HUGE_HOST, **kw)["work_mem"] == "2621MB"
    assert postgres_parameters("tiny", HUGE_HOST, **kw)["work_mem"] == "256MB"


def test_citus_and_timescaledb_raise_locks_and_prepared_transactions():
    citus = merged("oltp", SMALL, pg_version=16, libs="citus, pg_stat_statements")
    assert citus["max_prepared_transactions"] == "500"
    assert citus["max_locks_per_transaction"] == "1000"
    ts = merged("olap", SMALL, pg_version=16, libs="timescaledb, pg_stat_statements")
    assert ts["max_prepared_transactions"] == "0"
    assert ts["max_locks_per_transaction"] == "2000"  # 4 x 500
    assert ts["timescaledb.max_background_workers"] == "20"  # the worker budget before +8
    assert "auto_explain.log_analyze" not in ts


# --------------------------------------------------------------------------------------------
# profiles differ the way Pigsty intends
# --------------------------------------------------------------------------------------------


def test_profiles_differ_as_intended():
    oltp, olap, crit, tiny = (merged(p, BIG, pg_version=17) for p in PROFILES)
    mb = lambda v: int(v.removesuffix("MB"))  # noqa: E731
    gb = lambda v: int(v.removesuffix("GB"))  # noqa: E731

    # OLAP: more memory for maintenance, more parallelism, bigger temp files, relaxed timeouts
    assert mb(olap["maintenance_work_mem"]) == 2 * mb(oltp["maintenance_work_mem"])
    assert int(olap["max_parallel_workers"]) > int(oltp["max_parallel_workers"])
    assert int(olap["max_parallel_workers_per_gather"]) > int(oltp["max_parallel_workers_per_gather"])
    assert gb(olap["temp_file_limit"]) == 4 * gb(oltp["temp_file_limit"])
    assert int(olap["default_statistics_target"]) > int(oltp["default_statistics_target"])
    assert olap["enable_partitionwise_join"] == "on" and "enable_partitionwise_join" not in oltp
    assert "parallel_setup_cost" not in olap and oltp["parallel_setup_cost"] == "2000"
    assert int(olap["vacuum_cost_limit"]) > int(oltp["vacuum_cost_limit"])

    # CRIT: synchronous commit, no WAL writer batching, no parallel gather, audit logging
    assert crit["synchronous_commit"] == "on"
    assert crit["wal_writer_flush_after"] == "0" and oltp["wal_writer_flush_after"] == "1MB"
    assert crit["wal_writer_delay"] == "10ms"
    assert crit["max_parallel_workers_per_gather"] == "0"
    assert crit["log_connections"] == "on" and crit["log_disconnections"] == "on"
    assert "log_connections" not in oltp  # before 18 only crit logs connections
    assert crit["idle_in_transaction_session_timeout"] == "1min"
    assert crit["track_activity_query_size"] == "32768"
    assert "synchronous_commit" not in oltp

    # TINY: smaller everything
    assert int(tiny["max_connections"]) < int(oltp["max_connections"])
    assert int(tiny["max_worker_processes"]) < int(oltp["max_worker_processes"])
    assert int(tiny["autovacuum_max_workers"]) < int(oltp["autovacuum_max_workers"])
    assert tiny["max_parallel_workers_per_gather"] == "0"


def test_olap_work_mem_exceeds_oltp_when_memory_allows():
    kw = dict(pg_version=15, max_conn=200)
    olap = postgres_parameters("olap", HUGE_HOST, **kw)["work_mem"]
    oltp = postgres_parameters("oltp", HUGE_HOST, **kw)["work_mem"]
    assert int(olap.removesuffix("MB")) > int(oltp.removesuffix("MB"))


def test_rpo_zero_asks_for_synchronous_commit_in_every_profile():
    for profile in PROFILES:
        assert postgres_parameters(profile, SMALL, pg_version=15, rpo_bytes=0)["synchronous_commit"] == "on"


def test_hdd_storage():
    p = postgres_parameters("oltp", SMALL, pg_version=15, storage_type="HDD")
    assert p["random_page_cost"] == "4"
    assert "effective_io_concurrency" not in p and "maintenance_io_concurrency" not in p


# --------------------------------------------------------------------------------------------
# PostgreSQL versions
# --------------------------------------------------------------------------------------------


def test_settings_follow_the_postgres_version():
    def keys(profile, v, **kw):
        return set(postgres_parameters(profile, SMALL, pg_version=v, **kw))

    for v in range(13, 19):
        k = keys("crit", v)
        assert ("io_method" in k) == (v >= 18)
        assert ("io_workers" in k) == (v >= 18)
        assert ("idle_replication_slot_timeout" in k) == (v >= 18)
        assert ("file_copy_method" in k) == (v >= 18)
        assert ("log_lock_failures" in k) == (v >= 18)
        assert ("track_cost_delay_timing" in k) == (v >= 18)
        assert ("sync_replication_slots" in k) == (v >= 17)
        assert ("wal_compression" in k) == (v >= 15)
        assert ("vacuum_defer_cleanup_age" in k) == (v <= 15)
        assert {"hash_mem_multiplier", "maintenance_io_concurrency", "max_slot_wal_keep_size"} <= k
        assert "wal_keep_size" in dcs_parameters("crit", SMALL, pg_version=v)
        assert "wal_keep_segments" not in dcs_parameters("crit", SMALL, pg_version=v)
    assert "vacuum_defer_cleanup_age" not in keys("oltp", 15)
    p18 = postgres_parameters("crit", SMALL, pg_version=18, io_method="io_uring")
    assert p18["io_method"] == "io_uring"
    assert p18["io_workers"] == "4"
    assert p18["log_connections"] == "receipt,authentication,authorization"
    assert p18["idle_replication_slot_timeout"] == "3d"
    assert postgres_parameters("oltp", SMALL, pg_version=18)["log_connections"] == "authorization"
    assert postgres_parameters("tiny", SMALL, pg_version=18)["io_workers"] == "3"
    assert postgres_parameters("olap", HUGE_HOST, pg_version=18)["io_workers"] == "32"


@pytest.mark.parametrize("version", [12, 20, "15", True])
def test_unsupported_versions_are_rejected(version):
    with pytest.raises(ValueError, match="pg_version"):
        postgres_parameters("oltp", SMALL, pg_version=version)


# --------------------------------------------------------------------------------------------
# shape of the output and the DCS split
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_dcs_and_local_settings_are_disjoint_and_sorted(profile):
    dcs = dcs_parameters(profile, SMALL, pg_version=16)
    local = postgres_parameters(profile, SMALL, pg_version=16)
    assert set(dcs) == DCS_PARAMETER_NAMES
    assert not set(local) & set(dcs)
    assert not set(local) & PATRONI_OWNED and not set(dcs) & PATRONI_OWNED
    assert list(dcs) == sorted(dcs) and list(local) == sorted(local)
    assert all(isinstance(v, str) for v in (dcs | local).values())
    assert local["shared_preload_libraries"] == "pg_stat_statements, auto_explain"
    assert local["log_directory"] == "/pg/log/postgres"


def test_libs_and_log_dir_pass_through():
    libs = "$libdir/passwordcheck, pg_stat_statements, auto_explain, pg_wait_sampling"
    p = postgres_parameters("crit", SMALL, pg_version=15, libs=libs, log_dir="/data/log/pg")
    assert p["shared_preload_libraries"] == libs
    assert p["log_directory"] == "/data/log/pg"
    assert p["pg_wait_sampling.history_size"] == "100000"
    bare = postgres_parameters("oltp", SMALL, pg_version=15, libs="")
    assert not [k for k in bare if "." in k]


INT_RE = re.compile(r"^-?\d+$")
MEM_RE = re.compile(r"^\d+(kB|MB|GB)$")
INTEGER_SETTINGS = {
    "max_connections",
    "max_locks_per_transaction",
    "max_prepared_transactions",
    "max_worker_processes",
    "max_parallel_workers",
    "max_parallel_maintenance_workers",
    "max_parallel_workers_per_gather",
    "io_workers",
    "autovacuum_max_workers",
    "superuser_reserved_connections",
    "default_statistics_target",
}
MEMORY_SETTINGS = {
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "min_wal_size",
    "max_wal_size",
    "max_slot_wal_keep_size",
    "temp_file_limit",
}
_UNIT_KB = {"kB": 1, "MB": 1024, "GB": 1024 * 1024}


def _kb(value: str) -> int:
    m = MEM_RE.match(value)
    assert m, value
    return int(value[: -len(m.group(1))]) * _UNIT_KB[m.group(1)]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("version", [13, 15, 18])
def test_values_stay_within_postgres_limits_at_the_edges(profile, version):
    hosts = [
        TINY_HOST,
        HostResources(1, 128, 1),
        HostResources(3, 1536, 7),
        SMALL,
        BIG,
        HUGE_HOST,
        HostResources(256, 4 * 1048576, 100000),
    ]
    for res in hosts:
        for ratio in (0.1, 0.25, 0.4):
            p = merged(profile, res, pg_version=version, shared_buffer_ratio=ratio)
            for k in INTEGER_SETTINGS & p.keys():
                assert INT_RE.match(p[k]), (k, p[k])
            for k in MEMORY_SETTINGS:
                assert MEM_RE.match(p[k]), (k, p[k])
            kb = {k: _kb(p[k]) for k in MEMORY_SETTINGS}
            int_max = 2**31 - 1
            assert kb["shared_buffers"] >= 128  # 16 buffers
            assert kb["shared_buffers"] // 8 <= int_max // 2
            assert 64 <= kb["work_mem"] <= int_max and 1024 <= kb["maintenance_work_mem"] <= int_max
            assert kb["temp_file_limit"] <= int_max
            assert kb["effective_cache_size"] // 8 >= 1
            assert kb["max_wal_size"] >= 2 * kb["min_wal_size"]
            assert kb["min_wal_size"] >= 2 * 16 * 1024  # two WAL segments
            workers = int(p["max_worker_processes"])
            assert int(p["max_parallel_workers"]) <= workers
            assert int(p["max_parallel_workers_per_gather"]) <= max(int(p["max_parallel_workers"]), 0)
            assert int(p["max_parallel_maintenance_workers"]) <= 1024
            if "io_workers" in p:
                assert 1 <= int(p["io_workers"]) <= 32
            assert int(p["superuser_reserved_connections"]) < int(p["max_connections"])


def test_host_resources_and_arguments_are_validated():
    with pytest.raises(ValueError, match="cpu"):
        HostResources(0, 1024, 10)
    with pytest.raises(ValueError, match="mem_mb"):
        HostResources(1, 64, 10)
    with pytest.raises(ValueError, match="disk_gb"):
        HostResources(1, 1024, 1.5)
    with pytest.raises(ValueError, match="max_conn 10 is below 25"):
        postgres_parameters("oltp", SMALL, pg_version=15, max_conn=10)
    with pytest.raises(ValueError, match="max_conn"):
        postgres_parameters("oltp", SMALL, pg_version=15, max_conn="lots")
    with pytest.raises(ValueError, match="max_conn"):
        postgres_parameters("oltp", SMALL, pg_version=15, max_conn=250.5)
    with pytest.raises(ValueError, match="backend slots"):
        dcs_parameters("oltp", SMALL, pg_version=15, max_conn=300000)
    with pytest.raises(ValueError, match="shared_buffer_ratio"):
        postgres_parameters("oltp", SMALL, pg_version=15, shared_buffer_ratio=1.5)
    with pytest.raises(ValueError, match="storage_type"):
        postgres_parameters("oltp", SMALL, pg_version=15, storage_type="NVME")
    with pytest.raises(ValueError, match="io_method"):
        postgres_parameters("oltp", SMALL, pg_version=18, io_method="posix_aio")
    with pytest.raises(ValueError, match="rpo_bytes"):
        postgres_parameters("oltp", SMALL, pg_version=15, rpo_bytes=-1)
    with pytest.raises(ValueError, match="not a template"):
        postgres_parameters("warehouse.yml", SMALL, pg_version=15)
    assert postgres_parameters("oltp", SMALL, pg_version=18, io_method="auto")["io_method"] == "worker"
    assert postgres_parameters("oltp", SMALL, pg_version=15, storage_type="ssd")["random_page_cost"] == "1.1"


# --------------------------------------------------------------------------------------------
# PostgreSQL 15 judges the generated configuration
# --------------------------------------------------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SETPRIV = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]


def _as_postgres(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}
    return subprocess.run([*SETPRIV, *argv], capture_output=True, text=True, timeout=60, env=env, check=False, cwd="/")


def _installed(libs: str) -> str:
    """Keep only the shared_preload_libraries entries present in this PostgreSQL's $libdir."""
    libdir = Path(
        subprocess.run([PG_BIN / "pg_config", "--pkglibdir"], capture_output=True, text=True, check=True).stdout.strip()
    )
    kept = []
    for entry in (e.strip() for e in libs.split(",")):
        name = entry.removeprefix("$libdir/")
        if name and (libdir / f"{name}.so").exists():
            kept.append(entry)
    return ", ".join(kept)


def _conf_line(name: str, value: str) -> str:
    return f"{name} = '{value.replace(chr(39), chr(39) * 2)}'\n"


@pytest.fixture(scope="module")
def pg_template():
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root to run initdb/postgres as the postgres user via setpriv")
    for tool in ("initdb", "postgres", "pg_config"):
        if not (PG_BIN / tool).exists():
            pytest.skip(f"PostgreSQL 15 {tool} is not installed at {PG_BIN}")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    try:
        import pwd

        pw = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("there is no postgres user")
    root = Path(tempfile.mkdtemp(prefix="sty-tuning-"))
    try:
        os.chown(root, pw.pw_uid, pw.pw_gid)
        tmpl = root / "TMPL"
        r = _as_postgres(
            str(PG_BIN / "initdb"), "-D", str(tmpl), "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"
        )
        assert r.returncode == 0, r.stderr
        yield root, tmpl, pw
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("res", [TINY_HOST, HUGE_HOST], ids=["tiny-host", "huge-host"])
def test_postgres_15_accepts_the_generated_configuration(pg_template, profile, res):
    root, tmpl, pw = pg_template
    libs = (
        "$libdir/passwordcheck, pg_stat_statements, auto_explain"
        if profile == "crit"
        else ("pg_stat_statements, auto_explain")
    )
    params = merged(profile, res, pg_version=15, libs=libs)
    params["shared_preload_libraries"] = _installed(params["shared_preload_libraries"])
    assert params["shared_preload_libraries"] == libs  # all of these ship with PostgreSQL itself

    conf = root / f"{profile}-{res.cpu}.conf"
    conf.write_text("".join(_conf_line(k, v) for k, v in params.items()))
    os.chown(conf, pw.pw_uid, pw.pw_gid)

    base = [str(PG_BIN / "postgres"), "-D", str(tmpl), "-c", f"config_file={conf}", "-c", "listen_addresses="]
    # -C shared_buffers: every name and value in the file is parsed and checked.
    r = _as_postgres(*base, "-C", "shared_buffers")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert int(r.stdout) * 8 == _kb(params["shared_buffers"])  # reported in 8kB buffers
    # -C shared_memory_size additionally loads shared_preload_libraries (re-checking their
    # settings) and sizes shared memory for the backend counts, without allocating it.
    r = _as_postgres(*base, "-C", "shared_memory_size")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert int(r.stdout) > _kb(params["shared_buffers"]) // 1024


@pytest.mark.slow
def test_postgres_15_rejects_a_broken_value(pg_template):
    """The judge is not blind: a value PostgreSQL cannot take fails the same check."""
    root, tmpl, pw = pg_template
    params = merged("oltp", SMALL, pg_version=15)
    params["work_mem"] = "64XB"
    conf = root / "broken.conf"
    conf.write_text("".join(_conf_line(k, v) for k, v in params.items()))
    os.chown(conf, pw.pw_uid, pw.pw_gid)
    r = _as_postgres(str(PG_BIN / "postgres"), "-D", str(tmpl), "-c", f"config_file={conf}", "-C", "shared_buffers")
    assert r.returncode != 0 and "work_mem" in r.stderr
