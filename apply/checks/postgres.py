"""PostgreSQL judges the settings Patroni will write and the rendered pg_hba.conf.

- `postgres-settings` (patroni.yml): `postgres -C` with the host's parameters as config_file (unknown names
  and bad values), then a start of the postmaster with them on a unix socket only, so that
  shared_preload_libraries are loaded and any WARNING/ERROR/FATAL in its log or pg_file_settings fails.
- `postgres-hba` (pg_hba.conf): a postmaster with `hba_file` = the rendered file (ssl on); every row of
  `pg_hba_file_rules` must be free of errors, and PostgreSQL must read as many records as the file has.

Both run on a throwaway cluster (`initdb -A trust --no-sync`, made once per process and version) as the
`postgres` user, listening on a unix socket only. A bundle for a PostgreSQL major version this machine
cannot install is skipped for settings (they are version-specific) and checked with an installed version for
pg_hba.conf (its syntax is shared), which the result says.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import (
    AS_POSTGRES,
    NotInstalled,
    Unavailable,
    chown_tree,
    joined,
    pg_bin,
    pg_installed,
    pg_version,
    postgres_user,
    provided_files,
    require,
    run,
    stop,
    substitute,
    tmpdir,
    wait_for,
)

PATRONI = "/etc/patroni/patroni.yml"
HBA = "/pg/conf/pg_hba.conf"

# shared_preload_libraries: Debian 12 packages that provide them (for PostgreSQL {v}) ...
DEBIAN_EXTENSIONS = {
    "pg_wait_sampling": "postgresql-{v}-pg-wait-sampling",
    "plpgsql_check": "postgresql-{v}-plpgsql-check",
    "pg_cron": "postgresql-{v}-cron",
    "pgaudit": "postgresql-{v}-pgaudit",
    "pg_stat_kcache": "postgresql-{v}-pg-stat-kcache",
    "pg_qualstats": "postgresql-{v}-pg-qualstats",
    "pglogical": "postgresql-{v}-pglogical",
    "powa": "postgresql-{v}-powa",
    "set_user": "postgresql-{v}-set-user",
    "pg_squeeze": "postgresql-{v}-squeeze",
}
# ... and Pigsty extensions no package source of this machine has (Pigsty ships them from its own repo)
UNAVAILABLE_EXTENSIONS = {
    "timescaledb", "pgsodium", "passwordcheck_cracklib", "pg_net", "pg_tle", "plan_filter", "supautils",
    "citus", "pg_search", "pg_duckdb", "pg_hint_plan", "vchord", "pg_documentdb_core", "pg_documentdb",
    "pg_mooncake", "pgml", "pg_partman_bgw", "pg_stat_monitor", "pg_store_plans", "pg_later", "pgsentinel",
    "timescaledb_toolkit", "babelfishpg_tds", "age", "pg_anon", "anon", "credcheck", "pg_show_plans",
}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# the throwaway cluster
# --------------------------------------------------------------------------------------------------


@dataclass
class PgTemplate:
    """A throwaway cluster (`initdb -A trust --no-sync`) with a self-signed certificate, owned by postgres."""

    root: Path
    bin: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def key(self) -> Path:
        return self.root / "server.key"

    @property
    def libdir(self) -> Path:
        return self.bin.parent / "lib"


def make_pg_template(root: Path, bin_dir: Path) -> PgTemplate:
    tpl = PgTemplate(Path(root), Path(bin_dir))
    chown_tree(tpl.root)
    initdb = [*AS_POSTGRES, str(tpl.bin / "initdb"), "-D", str(tpl.data), "-A", "trust", "--no-sync", "-U", "postgres"]
    proc = run(initdb, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"initdb failed: {joined(proc)}")
    openssl = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost -days 2"
    run([*openssl.split(), "-keyout", str(tpl.key), "-out", str(tpl.cert)]).check_returncode()
    chown_tree(tpl.root)
    os.chmod(tpl.key, 0o600)
    return tpl


TEMPLATES_ENV = "STY_PG_TEMPLATES"
_TEMPLATES: dict[int, PgTemplate] = {}
_CLEANUP: list[contextlib.ExitStack] = []


def _cleanup() -> None:
    for stack in _CLEANUP:
        stack.close()


def template(version: int) -> PgTemplate:
    """This process's template cluster of PostgreSQL `version` (made on first use, removed at exit)."""
    if version not in _TEMPLATES:
        require("setpriv", package="util-linux")
        require("openssl", package="openssl")
        try:
            postgres_user()
        except KeyError:
            raise NotInstalled("postgres (the OS user)", "postgresql-common") from None
        stack = contextlib.ExitStack()
        if not _CLEANUP:
            atexit.register(_cleanup)
        _CLEANUP.append(stack)
        root = stack.enter_context(tmpdir("pgtemplate", owner="postgres"))
        shared = json.loads(os.environ.get(TEMPLATES_ENV) or "{}").get(str(version))
        if shared and Path(shared, "data", "PG_VERSION").exists():  # a copy is faster than initdb
            run(["cp", "-a", f"{shared}/.", f"{root}/"]).check_returncode()
            _TEMPLATES[version] = PgTemplate(root, pg_bin(version))
        else:
            _TEMPLATES[version] = make_pg_template(root, pg_bin(version))
    return _TEMPLATES[version]


@contextlib.contextmanager
def shared_templates() -> Iterator[None]:
    """For a caller that starts many checker processes (sty lint): one template per installed version, made
    here and copied by each process instead of running initdb (the variable STY_PG_TEMPLATES)."""
    with contextlib.ExitStack() as stack:
        paths = {}
        for version, bin_dir in pg_installed().items():
            try:
                root = stack.enter_context(tmpdir("pgtemplate-shared", owner="postgres"))
                make_pg_template(root, bin_dir)
            except Exception:  # each checker process then reports what is missing itself
                continue
            paths[str(version)] = str(root)
        old = os.environ.get(TEMPLATES_ENV)
        os.environ[TEMPLATES_ENV] = json.dumps(paths)
        try:
            yield
        finally:
            if old is None:
                os.environ.pop(TEMPLATES_ENV, None)
            else:
                os.environ[TEMPLATES_ENV] = old


def use_template(tpl: PgTemplate) -> None:
    """Make `tpl` this process's template for its version (tests share one across checkers)."""
    version = int(tpl.bin.parent.name) if tpl.bin.parent.name.isdigit() else 0
    _TEMPLATES[version] = tpl


# --------------------------------------------------------------------------------------------------
# parameters Patroni would write
# --------------------------------------------------------------------------------------------------


def pg_value(value) -> str:
    if isinstance(value, bool):
        value = "on" if value else "off"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


def patroni_conf(ctx: CheckContext, path: str = PATRONI) -> dict:
    return yaml.safe_load(substitute(ctx.path(path).read_text(), ctx.secret)) or {}


def patroni_parameters(conf: dict) -> dict:
    """What Patroni would write into postgresql.conf: the DCS parameters, then the local ones."""
    dcs = (((conf.get("bootstrap") or {}).get("dcs") or {}).get("postgresql") or {}).get("parameters") or {}
    local = (conf.get("postgresql") or {}).get("parameters") or {}
    return {**dcs, **local}


def target_version(ctx: CheckContext, conf: dict | None = None) -> int:
    bin_dir = str(((conf or {}).get("postgresql") or {}).get("bin_dir") or "")
    version = pg_version(ctx.manifest, bin_dir)
    if version is None:
        raise Unavailable("the bundle does not say which PostgreSQL major version it targets")
    return version


# --------------------------------------------------------------------------------------------------
# the postmaster
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def postmaster(tpl: PgTemplate, sockdir: Path, *options: str) -> Iterator[tuple[subprocess.Popen | None, str]]:
    """The template's postmaster on a unix socket only; yields (process or None if it died, its log)."""
    log = sockdir / "postgres.log"
    cmd = [
        *AS_POSTGRES, str(tpl.bin / "postgres"), "-D", str(tpl.data), "-c", "listen_addresses=",
        "-c", f"unix_socket_directories={sockdir}", "-c", "ssl=on", "-c", f"ssl_cert_file={tpl.cert}",
        "-c", f"ssl_key_file={tpl.key}", "-c", "logging_collector=off", *options,
    ]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        ready = wait_for(
            lambda: run([*AS_POSTGRES, str(tpl.bin / "pg_isready"), "-q", "-h", str(sockdir)]).returncode == 0,
            timeout=20,
            alive=proc,
        )
        yield (proc if ready else None), log.read_text(errors="replace")
    finally:
        stop(proc, signal.SIGINT)  # setpriv execs postgres, so the postmaster gets it: fast shutdown


def psql(tpl: PgTemplate, sockdir: Path, sql: str) -> subprocess.CompletedProcess:
    """One query as postgres over the unix socket in `sockdir`; rows '|'-separated."""
    opts = ["-h", str(sockdir), "-U", "postgres", "-d", "postgres", "-XAtq", "-F", "|", "-c", sql]
    return run([*AS_POSTGRES, str(tpl.bin / "psql"), *opts])


def _write_conf(tmp: Path, params: dict) -> Path:
    conf = tmp / "postgresql.conf"
    conf.write_text("".join(f"{k} = {pg_value(v)}\n" for k, v in params.items()))
    return conf


def _line(conf: Path, n: str) -> str:
    lines = conf.read_text().splitlines()
    return lines[int(n) - 1] if n.isdigit() and 0 < int(n) <= len(lines) else ""


# --------------------------------------------------------------------------------------------------
# postgres-settings
# --------------------------------------------------------------------------------------------------


def settings_dry_run(params: dict, hba_text: str, tpl: PgTemplate, show: str = "shared_buffers") -> tuple[bool, str]:
    """`postgres -C` with `params` as config_file: unknown names and bad values are errors."""
    with tmpdir("pgconf", owner="postgres") as tmp:
        (tmp / "pg_hba.conf").write_text(hba_text)
        conf = _write_conf(tmp, {**params, "hba_file": str(tmp / "pg_hba.conf"), "unix_socket_directories": str(tmp)})
        chown_tree(tmp)
        proc = run(
            [*AS_POSTGRES, str(tpl.bin / "postgres"), "-D", str(tpl.data), "-c", f"config_file={conf}", "-C", show]
        )
        out = joined(proc)
        if proc.returncode != 0:  # show which parameter the reported line holds
            for n in re.findall(r"postgresql\.conf\" line (\d+)", out):
                out += f"\n[line {n}] {_line(conf, n)}"
        out = out.replace(str(tmp), "<tmp>")
    return proc.returncode == 0 and not re.search(r"\b(WARNING|ERROR|FATAL)\b", proc.stderr), out


def settings_start(params: dict, hba_text: str, tpl: PgTemplate) -> tuple[bool, str]:
    """Start the postmaster with `params` (shared_preload_libraries loaded): any WARNING/ERROR/FATAL in the
    log or an error row of pg_file_settings fails."""
    with tmpdir("pgstart", owner="postgres") as tmp:
        (tmp / "pg_hba.conf").write_text(hba_text)
        conf = _write_conf(
            tmp,
            {
                **params,
                "hba_file": str(tmp / "pg_hba.conf"),
                "unix_socket_directories": str(tmp),
                "listen_addresses": "",
                "logging_collector": "off",
                "log_destination": "stderr",
            },
        )
        chown_tree(tmp)
        # archive_mode off: the archiver would run the host's archive_command (pgbackrest) on the template's WAL
        with postmaster(tpl, tmp, "-c", f"config_file={conf}", "-c", "archive_mode=off") as (proc, log):
            if proc is None:
                return False, "postgres did not start:\n" + log.replace(str(tmp), "<tmp>")
            q = psql(tpl, tmp, "select sourceline, name, error from pg_file_settings where error is not null")
            log = (tmp / "postgres.log").read_text(errors="replace")
        bad = [
            line
            for line in log.splitlines()
            if re.search(r"\b(WARNING|ERROR|FATAL|PANIC):", line)
            and "the database system is starting up" not in line  # the harness's pg_isready probes
        ]
        if q.returncode != 0:
            bad.append("psql failed: " + joined(q))
        for row in q.stdout.splitlines():
            n, name, error = row.split("|", 2)
            if error != "setting could not be applied":  # a -c override of the harness wins over the file
                bad.append(f"{name}: {error}: {_line(conf, n)}")
        return not bad, ("\n".join(bad) or log).replace(str(tmp), "<tmp>")


def preload_libraries(params: dict) -> list[str]:
    value = str(params.get("shared_preload_libraries") or "")
    return [re.sub(r"^\$libdir/", "", x.strip().strip('"')) for x in value.split(",") if x.strip()]


def check_extensions(libs: list[str], tpl: PgTemplate, version: int) -> None:
    """Unavailable/NotInstalled for a preloaded library that is missing here and cannot be / could be
    installed; other missing libraries are left for PostgreSQL to report."""
    for lib in libs:
        if "/" in lib or (tpl.libdir / f"{lib}.so").exists():
            continue
        if lib in UNAVAILABLE_EXTENSIONS:
            raise Unavailable(
                f"extension {lib} (shared_preload_libraries) cannot be installed for PostgreSQL {version} here: "
                "no package source of this machine provides it"
            )
        if lib in DEBIAN_EXTENSIONS:
            raise NotInstalled(str(tpl.libdir / f"{lib}.so"), DEBIAN_EXTENSIONS[lib].format(v=version))


def hba_text_for(ctx: CheckContext, conf: dict) -> str:
    hba = str(((conf.get("postgresql") or {}).get("parameters") or {}).get("hba_file") or HBA)
    path = ctx.path(hba)
    return path.read_text() if path.exists() else "local all all trust\n"


@register("postgres-settings")
def check_settings(ctx: CheckContext) -> CheckResult:
    conf = patroni_conf(ctx, ctx.files[0] if ctx.files else PATRONI)
    version = target_version(ctx, conf)
    pg_bin(version)  # Unavailable / NotInstalled before anything else
    tpl = template(version)
    params, notes = standin_tls(ctx, patroni_parameters(conf), tpl)
    hba = hba_text_for(ctx, conf)
    ok, out = settings_dry_run(params, hba, tpl)
    if not ok:
        return CheckResult("postgres-settings", ctx.files, FAIL, out)
    check_extensions(preload_libraries(params), tpl, version)
    ok, out2 = settings_start(params, hba, tpl)
    out2 = "\n".join([*notes, out2]) if notes else out2
    return CheckResult("postgres-settings", ctx.files, PASS if ok else FAIL, out2 if not ok else out + out2)


TLS_FILES = {"ssl_cert_file": "cert", "ssl_key_file": "key", "ssl_ca_file": "cert"}


def standin_tls(ctx: CheckContext, params: dict, tpl: PgTemplate) -> tuple[dict, list[str]]:
    """The TLS files the apply stage provides (the instance's certificate and key, the fleet CA) are not in the
    bundle: PostgreSQL reads the template's self-signed pair in their place. Any other path stays as written,
    so a file that nobody delivers still fails the start."""
    provided = set(provided_files(ctx.manifest))
    out, notes = dict(params), []
    for name, kind in TLS_FILES.items():
        value = str(params.get(name) or "")
        if value in provided:
            out[name] = str(tpl.cert if kind == "cert" else tpl.key)
            notes.append(f"{name} {value} is provided by the apply stage: checked with a stand-in")
    return out, notes


# --------------------------------------------------------------------------------------------------
# postgres-hba
# --------------------------------------------------------------------------------------------------


def _records(text: str) -> list[int]:
    """Line numbers of the enabled records of an hba file (continuation lines not handled: sty emits none)."""
    return [i for i, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")]


def hba_check(text: str, tpl: PgTemplate) -> tuple[bool, str]:
    with tmpdir("pghba", owner="postgres") as tmp:
        hba = tmp / "pg_hba.conf"
        hba.write_text(text)
        chown_tree(tmp)
        with postmaster(tpl, tmp, "-c", f"hba_file={hba}") as (proc, log):
            if proc is None:
                return False, "postgres did not start:\n" + log.replace(str(tmp), "<tmp>")
            q = psql(tpl, tmp, "select line_number, coalesce(error, '') from pg_hba_file_rules order by 1")
            if q.returncode != 0:
                return False, "psql failed: " + joined(q) + log
    rows = [line.split("|", 1) for line in q.stdout.splitlines() if line]
    lines = text.splitlines()
    errors = [
        f"pg_hba.conf line {n}: {e}\n    {lines[int(n) - 1] if 0 < int(n) <= len(lines) else ''}" for n, e in rows if e
    ]
    read = sorted(int(n) for n, _ in rows)
    if not errors and read != _records(text):
        errors.append(f"PostgreSQL read records at lines {read}, the file has records at {_records(text)}")
    return not errors, "\n".join(errors) or f"{len(rows)} records, no errors"


@register("postgres-hba")
def check_hba(ctx: CheckContext) -> CheckResult:
    path = ctx.files[0] if ctx.files else HBA
    text = substitute(ctx.path(path).read_text(), ctx.secret)
    version = pg_version(ctx.manifest) or 0
    note = ""
    try:
        pg_bin(version)
    except Unavailable as exc:
        have = pg_installed()
        if not have:
            raise
        fallback = max(have)
        note = f"checked with PostgreSQL {fallback}: {exc}"
        version = fallback
    ok, out = hba_check(text, template(version))
    return CheckResult("postgres-hba", ctx.files, PASS if ok else FAIL, out.replace("pg_hba.conf", path), note)
