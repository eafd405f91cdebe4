"""A real PostgreSQL runs the provisioning SQL (`/pg/conf/sql/*.sql`) twice.

A throwaway cluster of the bundle's major version (`initdb` in a temporary directory as `postgres`, a unix
socket only, `listen_addresses = ''`) runs every file in path order with `psql -X -v ON_ERROR_STOP=1`, then
all of them again: both rounds must succeed and the second must not raise a WARNING or an ERROR, so the SQL
is valid and idempotent. Placeholders are replaced by `ctx.secret(name)`. A server of that major version
that is not installed is "not installed" (a skip, a failure under CI) when this machine's packages have it,
and unavailable (a skip) when they cannot (PostgreSQL 18 on Debian 12).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import (
    AS_POSTGRES,
    DUMMY_SECRET,
    chown_tree,
    joined,
    pg_bin,
    pg_version,
    require,
    run,
    stop,
    substitute,
    tmpdir,
    wait_for,
)


@dataclass
class Server:
    """A running throwaway PostgreSQL reachable on the unix socket in `sockdir` as `postgres`."""

    bin: Path
    sockdir: Path
    log: Path

    def psql(self, *args: str, db: str = "postgres", user: str = "postgres", env: dict | None = None, timeout=120):
        cmd = [str(self.bin / "psql"), "-X", "-h", str(self.sockdir), "-U", user, "-d", db, *args]
        return run([*AS_POSTGRES, *cmd], timeout=timeout, env=env)

    def query(self, sql: str, db: str = "postgres") -> list[list[str]]:
        """Rows of one query, fields split at '|' (fails loudly)."""
        proc = self.psql("-Atq", "-F", "|", "-v", "ON_ERROR_STOP=1", "-c", sql, db=db)
        if proc.returncode != 0:
            raise RuntimeError(f"query failed: {sql}\n{joined(proc)}")
        return [line.split("|") for line in proc.stdout.splitlines() if line]

    def run_file(self, path: Path) -> subprocess.CompletedProcess:
        return self.psql("-q", "-v", "ON_ERROR_STOP=1", "-f", str(path))


@contextlib.contextmanager
def server(version: int | str, hba: str | None = None) -> Iterator[Server]:
    """initdb + postmaster on a unix socket in a temporary directory; stopped and removed afterwards.
    `hba` replaces the trust-everything pg_hba.conf of initdb."""
    require("setpriv", package="util-linux")
    bindir = pg_bin(int(version))
    with tmpdir("pgsql", owner="postgres") as root:
        data, log = root / "data", root / "postgres.log"
        proc = run(
            [*AS_POSTGRES, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "--no-sync", "-U", "postgres",
             "-E", "UTF8", "--locale=C"],
            timeout=120,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError("initdb failed: " + joined(proc))
        if hba is not None:
            (data / "pg_hba.conf").write_text(hba)
        chown_tree(root)
        cmd = [
            *AS_POSTGRES, str(bindir / "postgres"), "-D", str(data), "-c", "listen_addresses=",
            "-c", f"unix_socket_directories={root}", "-c", "logging_collector=off", "-c", "fsync=off",
        ]  # fmt: skip
        with open(log, "wb") as fh:
            pm = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        srv = Server(bindir, root, log)
        try:
            ready = wait_for(
                lambda: run([*AS_POSTGRES, str(bindir / "pg_isready"), "-q", "-h", str(root)]).returncode == 0,
                timeout=30,
                alive=pm,
            )
            if not ready:
                raise RuntimeError("postgres did not start:\n" + log.read_text(errors="replace"))
            yield srv
        finally:
            stop(pm, signal.SIGINT)


def run_rounds(srv: Server, texts: dict[str, str], rounds: int = 2) -> tuple[bool, str]:
    """Run the files (host path -> text, secrets substituted) in path order, `rounds` times; the first round
    must succeed, later ones must also be free of WARNING and ERROR."""
    work = srv.sockdir / "sql"
    work.mkdir(exist_ok=True)
    copies = []
    for i, (path, text) in enumerate(sorted(texts.items())):
        copy = work / f"{i:02d}-{Path(path).name}"
        copy.write_text(text)
        copies.append((path, copy))
    chown_tree(work)
    out, ok = [], True
    for n in range(1, rounds + 1):
        for path, copy in copies:
            proc = srv.run_file(copy)
            said = joined(proc).replace(str(copy), path)
            out.append(f"# round {n}: {path}: exit code {proc.returncode}\n{said}")
            if proc.returncode != 0 or (n > 1 and re.search(r"\b(WARNING|ERROR):", said)):
                return False, "\n".join(out)
    return ok, "\n".join(out)


@register("postgres_sql")
def check(ctx: CheckContext) -> CheckResult:
    version = ((ctx.manifest.get("identity") or {}).get("pgsql") or {}).get("version") or pg_version(ctx.manifest)
    if not version:
        return CheckResult("postgres_sql", ctx.files, FAIL, "the manifest does not say which PostgreSQL it targets")
    secret: Callable[[str], str] = ctx.secret or (lambda name: DUMMY_SECRET)
    texts = {f: substitute(ctx.path(f).read_text(), secret) for f in ctx.files}
    with server(version) as srv:
        ok, out = run_rounds(srv, texts)
    return CheckResult("postgres_sql", ctx.files, PASS if ok else FAIL, out)
