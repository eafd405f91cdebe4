"""The validated inputs of the `pg_conf` formulas: the four profiles' numbers, the host's resources and the
inventory's tuning knobs. Everything is checked here once, so that the formulas in `tuning_formulas` can be
plain arithmetic over trusted values, and a bad knob fails the build with a sentence instead of a setting
PostgreSQL or Patroni would refuse at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

PROFILES = ("oltp", "olap", "crit", "tiny")

MIN_PG_VERSION = 13
MAX_PG_VERSION = 19  # 19 is a beta in Pigsty 4.5: build warns

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

PATRONI_MIN_CONNECTIONS = 25  # Patroni rejects max_connections below this
PG_MAX_BACKENDS = 0x3FFFF  # PostgreSQL's MAX_BACKENDS
PATRONI_WAL_KEEP_SIZE = "128MB"  # Patroni's default for wal_keep_size
MAX_WAL_SENDERS = 50
MAX_REPLICATION_SLOTS = 50
IO_METHODS = ("sync", "worker", "io_uring")


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
class Profile:
    """The numbers that differ between Pigsty's four templates."""

    default_max_conn: int
    work_mem_mb: tuple[int, int]  # clamp range for shared_buffers / max_connections
    maintenance_ratio: Fraction  # of shared_buffers
    locks_factor: int  # max_locks_per_transaction = factor x max_connections
    worker_budget: tuple[int, int]  # max(cpu + a, b)
    io_workers: tuple[Fraction, int, int] | None  # ceil(cpu x f) clamped to lo..hi; None = fixed 3
    temp_file_twentieths: int  # temp_file_limit in units of the disk's twentieth


SPECS: dict[str, Profile] = {
    "oltp": Profile(500, (64, 1024), Fraction(1, 4), 1, (8, 16), (Fraction(1, 4), 4, 16), 1),
    "olap": Profile(500, (64, 8192), Fraction(1, 2), 2, (12, 20), (Fraction(1, 2), 4, 32), 4),
    "crit": Profile(500, (64, 1024), Fraction(1, 4), 1, (8, 16), (Fraction(1, 4), 4, 8), 1),
    "tiny": Profile(250, (16, 256), Fraction(1, 4), 1, (4, 12), None, 1),
}


def ceil_int(x: Fraction | int) -> int:
    return -(-Fraction(x).numerator // Fraction(x).denominator)


def floor_int(x: Fraction | int) -> int:
    return Fraction(x).numerator // Fraction(x).denominator


def clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(value, hi))


def autovacuum_max_workers(profile: str) -> int:
    return 2 if profile == "tiny" else 3


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
class Inputs:
    profile: str
    spec: Profile
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
        return ceil_int(self.res.mem_mb * self.shared_buffer_ratio)

    @property
    def worker_budget(self) -> int:
        add, floor = self.spec.worker_budget
        return max(self.res.cpu + add, floor)

    @property
    def disk_twentieth_gb(self) -> int:
        return clamp(ceil_int(Fraction(self.res.disk_gb, 20)), 1, 100)


# -- one validator per knob (called in the order the knobs are listed, so the first problem is reported) --
def _check_version(pg_version: int) -> None:
    if isinstance(pg_version, bool) or not isinstance(pg_version, int):
        raise ValueError(f"pg_version must be an integer major version, got {pg_version!r}.")
    if not MIN_PG_VERSION <= pg_version <= MAX_PG_VERSION:
        raise ValueError(
            f"pg_version {pg_version} is not supported; sty tunes PostgreSQL {MIN_PG_VERSION} to {MAX_PG_VERSION}."
        )


def _connections(max_conn: int | str, spec: Profile) -> int:
    if max_conn == "auto":
        return spec.default_max_conn
    if isinstance(max_conn, bool) or (isinstance(max_conn, float) and not max_conn.is_integer()):
        raise ValueError(f"max_conn must be 'auto' or an integer, got {max_conn!r}.")
    try:
        conn = int(max_conn)
    except (TypeError, ValueError):
        raise ValueError(f"max_conn must be 'auto' or an integer, got {max_conn!r}.") from None
    if conn < PATRONI_MIN_CONNECTIONS:
        raise ValueError(
            f"max_conn {conn} is below {PATRONI_MIN_CONNECTIONS}, the minimum Patroni accepts for max_connections."
        )
    return conn


def _ratio(shared_buffer_ratio: float) -> Fraction:
    if isinstance(shared_buffer_ratio, bool) or not isinstance(shared_buffer_ratio, int | float):
        raise ValueError(f"shared_buffer_ratio must be a number, got {shared_buffer_ratio!r}.")
    ratio = Fraction(repr(float(shared_buffer_ratio)))  # the decimal the user wrote, exactly
    if not Fraction(0) < ratio <= Fraction(9, 10):
        raise ValueError(
            f"shared_buffer_ratio {shared_buffer_ratio} is out of range; it must be above 0 and at "
            "most 0.9 (Pigsty recommends 0.1 to 0.4)."
        )
    return ratio


def _storage(storage_type: str) -> str:
    storage = str(storage_type).strip().upper()
    if storage not in ("SSD", "HDD"):
        raise ValueError(f"storage_type must be 'SSD' or 'HDD', got {storage_type!r}.")
    return storage


def _check_paths(libs: str, log_dir: str) -> None:
    if not isinstance(libs, str):
        raise ValueError(f"libs must be a comma-separated string of library names, got {libs!r}.")
    if not isinstance(log_dir, str) or not log_dir.strip():
        raise ValueError(f"log_dir must be a non-empty path, got {log_dir!r}.")


def _io_method(io_method: str) -> str:
    method = "worker" if io_method == "auto" else io_method
    if method not in IO_METHODS:
        raise ValueError(f"io_method must be one of auto, {', '.join(IO_METHODS)}; got {io_method!r}.")
    return method


def _check_flags(rpo_bytes: int, checksum: bool) -> None:
    if isinstance(rpo_bytes, bool) or not isinstance(rpo_bytes, int) or rpo_bytes < 0:
        raise ValueError(f"rpo_bytes must be a non-negative integer, got {rpo_bytes!r}.")
    if not isinstance(checksum, bool):
        raise ValueError(f"checksum must be true or false, got {checksum!r}.")


def _check_backends(i: Inputs) -> None:
    """PostgreSQL refuses to start when the backend slots add up past MAX_BACKENDS."""
    backends = i.max_conn + autovacuum_max_workers(i.profile) + 1 + i.worker_budget + 8 + MAX_WAL_SENDERS
    if backends > PG_MAX_BACKENDS:
        raise ValueError(
            f"max_conn {i.max_conn} with {i.res.cpu} CPUs needs {backends} backend slots, more than "
            f"PostgreSQL's limit of {PG_MAX_BACKENDS}."
        )


def read_inputs(
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
) -> Inputs:
    """The formulas' inputs, or ValueError naming the first knob that is out of range."""
    name = profile_name(profile)
    spec = SPECS[name]
    if not isinstance(res, HostResources):
        raise ValueError(f"res must be a HostResources, got {type(res).__name__}.")
    _check_version(pg_version)
    conn = _connections(max_conn, spec)
    ratio = _ratio(shared_buffer_ratio)
    storage = _storage(storage_type)
    _check_paths(libs, log_dir)
    method = _io_method(io_method)
    _check_flags(rpo_bytes, checksum)
    inputs = Inputs(
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
    _check_backends(inputs)
    return inputs
