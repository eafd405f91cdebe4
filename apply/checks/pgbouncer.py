"""pgbouncer has no check mode: run `pgbouncer -u postgres` on a copy of /etc/pgbouncer/ until it accepts
connections. Paths are moved into a temp dir, it listens on 127.0.0.1 on a free port (never on the
addresses in the file), and secrets are replaced (SCRAM verifiers for `…/scram` names). Any ERROR, WARNING
or FATAL it logs fails, as does not listening within the timeout."""

from __future__ import annotations

import re
import subprocess
from pathlib import PurePosixPath

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import (
    chown_tree,
    free_port,
    replace_paths,
    require,
    standin_certificates,
    stop,
    substitute,
    tcp_open,
    tmpdir,
    wait_for,
)


def set_ini(text: str, section: str, key: str, value: str) -> str:
    """Set `key = value` in [section] (replacing the existing line, or adding one after the header)."""
    out, current, done = [], None, False
    for line in text.splitlines():
        m = re.match(r"\s*\[([^\]]+)\]", line)
        if m:
            if current == section and not done:
                out.append(f"{key} = {value}")
                done = True
            current = m.group(1).strip()
        elif current == section and re.match(rf"\s*{re.escape(key)}\s*=", line):
            if not done:
                out.append(f"{key} = {value}")
                done = True
            continue
        out.append(line)
    if not done:
        if current != section:
            out.append(f"[{section}]")
        out.append(f"{key} = {value}")
    return "\n".join(out) + "\n"


def secret_for_pgbouncer(ctx: CheckContext):
    """ctx.secret, with `…/scram` names turned into SCRAM verifiers when the value is not one already."""

    def value(name: str) -> str:
        v = ctx.secret(name)
        if name.endswith("/scram") and not v.startswith(("SCRAM-SHA-256$", "md5")):
            from sty.contract.store import scram_verifier

            v = scram_verifier(v, "sty-check")
        return v

    return value


@register("pgbouncer")
def check(ctx: CheckContext, timeout: float = 10) -> CheckResult:
    require("pgbouncer", package="pgbouncer")
    ini_path = next((f for f in ctx.files if f.endswith(".ini")), "/etc/pgbouncer/pgbouncer.ini")
    etc = str(PurePosixPath(ini_path).parent) + "/"
    secret = secret_for_pgbouncer(ctx)
    with tmpdir("pgbouncer", owner="postgres") as tmp:
        src = ctx.path(etc)
        texts = {f.name: substitute(f.read_text(), secret) for f in sorted(src.iterdir()) if f.is_file()}
        standins, notes = standin_certificates(ctx.manifest, list(texts.values()), tmp)
        for name, text in texts.items():
            (tmp / name).write_text(replace_paths(text, standins).replace(etc, f"{tmp}/"))
        ini = tmp / PurePosixPath(ini_path).name
        port = free_port()
        text = ini.read_text()
        for key, value in {
            "listen_addr": "127.0.0.1",
            "listen_port": str(port),
            "unix_socket_dir": str(tmp),
            "logfile": str(tmp / "pgbouncer.log"),
            "pidfile": str(tmp / "pgbouncer.pid"),
        }.items():
            text = set_ini(text, "pgbouncer", key, value)
        ini.write_text(text)
        chown_tree(tmp)
        out_path = tmp / "stdout.log"
        with open(out_path, "wb") as fh:
            proc = subprocess.Popen(["pgbouncer", "-u", "postgres", str(ini)], stdout=fh, stderr=subprocess.STDOUT)
        try:
            up = wait_for(lambda: tcp_open("127.0.0.1", port), timeout, alive=proc)
            exited = proc.poll()
        finally:
            stop(proc)  # SIGTERM: immediate shutdown (SIGINT waits for clients)
        out = out_path.read_text(errors="replace")
        logfile = tmp / "pgbouncer.log"
        if logfile.exists() and logfile.read_text(errors="replace") not in out:
            out += logfile.read_text(errors="replace")
        for host_path, standin in standins.items():
            out = out.replace(standin, host_path)
        out = out.replace(f"{tmp}/", etc)
    bad = [line for line in out.splitlines() if re.search(r"\b(ERROR|WARNING|FATAL)\b", line)]
    if not up:
        why = f"exited with code {exited}" if exited is not None else f"still not listening after {timeout}s"
        bad.append(f"pgbouncer did not accept connections on 127.0.0.1:{port}: {why}")
    ok = up and not bad
    return CheckResult("pgbouncer", ctx.files, PASS if ok else FAIL, "\n".join(bad) if bad else out, "; ".join(notes))
