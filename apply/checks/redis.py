"""`redis`: start redis-server on a copy of each config (sentinel configs with `--sentinel`) and PING it.

Redis has no check mode, so the program itself judges the file: a config error makes redis-server print
`*** FATAL CONFIG FILE ERROR ***` and exit. The copy has `dir` pointed at a temporary directory (redis applies
it while parsing, before command-line overrides), logs to stdout, does not daemonize, and runs inside a
private network namespace holding the host's address and the config's `bind` addresses on `lo`: replicas
(`replicaof`) and sentinels (`sentinel monitor`) connect to other hosts' addresses, which must never leave
this machine. The instance keeps its configured bind address and port inside the namespace. Once it answers
PING (with the `requirepass` of the file, secrets substituted), a sentinel is also asked for its masters.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import Unavailable, joined, netns, require, stop, substitute, tmpdir, wait_for

READY_TIMEOUT = 10.0


def split_args(line: str) -> list[str] | None:
    """Redis' own tokenizer (sdssplitargs): words, "double quoted" with backslash escapes, 'single quoted'.
    None when the quotes are unbalanced (redis reports that itself)."""
    out: list[str] = []
    i, n = 0, len(line)
    escapes = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "a": "\a"}
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return out
        word, quote = "", None
        while i < n:
            c = line[i]
            if quote == '"':
                if (
                    c == "\\"
                    and i + 3 < n
                    and line[i + 1] == "x"
                    and all(ch in "0123456789abcdefABCDEF" for ch in line[i + 2 : i + 4])
                ):
                    word += chr(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == "\\" and i + 1 < n:
                    i += 1
                    word += escapes.get(line[i], line[i])
                elif c == '"':
                    if i + 1 < n and not line[i + 1].isspace():
                        return None
                    quote = None
                    i += 1
                    break
                else:
                    word += c
            elif quote == "'":
                if c == "\\" and i + 1 < n and line[i + 1] == "'":
                    i += 1
                    word += "'"
                elif c == "'":
                    if i + 1 < n and not line[i + 1].isspace():
                        return None
                    quote = None
                    i += 1
                    break
                else:
                    word += c
            elif c.isspace():
                break
            elif c in "\"'" and not word:
                quote = c
            else:
                word += c
            i += 1
        if quote:
            return None
        out.append(word)


def directives(text: str) -> list[list[str]]:
    """The config's directives as argument lists (comments and blank lines skipped)."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        args = split_args(stripped)
        if args:
            out.append(args)
    return out


def _last(found: list[list[str]], name: str) -> list[str] | None:
    hits = [d for d in found if d[0].lower() == name]
    return hits[-1] if hits else None


def _probe_address(bind: list[str]) -> str:
    for word in bind:
        addr = word.lstrip("-")
        if addr in ("*", "0.0.0.0", "::", "::*"):
            return "127.0.0.1"
        try:
            if ipaddress.ip_address(addr).version == 4:
                return addr
        except ValueError:
            continue
    return "127.0.0.1"


def _namespace_addresses(host: str, bind: list[str]) -> list[str]:
    out = [host]
    for word in bind:
        addr = word.lstrip("-")
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            continue
        if ip.version == 4 and not ip.is_unspecified and not ip.is_loopback:
            out.append(addr)
    return out


def _rewrite_dir(text: str, new_dir: str) -> str:
    """Point every `dir` directive at `new_dir` (redis chdirs while parsing, so the path must exist)."""
    lines = []
    for line in text.splitlines():
        args = split_args(line.strip()) if line.strip() and not line.strip().startswith("#") else None
        if args and args[0].lower() == "dir":
            line = f'dir "{new_dir}"'
        lines.append(line)
    return "\n".join(lines) + "\n"


def server_binary(manifest: dict) -> str:
    """redis-server (valkey-server for a valkey bundle when it is installed: both read this config)."""
    if "valkey-server" in (manifest.get("packages") or []) and shutil.which("valkey-server"):
        return "valkey-server"
    require("redis-server", package="redis-server")
    return "redis-server"


def check_file(ctx: CheckContext, path: str, server: str) -> tuple[bool, str]:
    text = substitute(ctx.path(path).read_text(), ctx.secret)
    found = directives(text)
    sentinel = any(d[0].lower() == "sentinel" for d in found)
    port = (_last(found, "port") or ["port", "6379"])[1]
    bind = (_last(found, "bind") or ["bind", "127.0.0.1"])[1:]
    password = (_last(found, "requirepass") or [None, ""])[1]
    probe = _probe_address(bind)
    with tmpdir("redis") as tmp, netns(_namespace_addresses(ctx.host, bind)) as ns:
        data = tmp / "data"
        data.mkdir()
        conf = tmp / Path(path).name
        conf.write_text(_rewrite_dir(text, str(data)))
        log = tmp / "server.log"
        cmd = [server, str(conf)]
        if sentinel:
            cmd.append("--sentinel")
        cmd += ["--daemonize", "no", "--supervised", "no", "--logfile", "", "--pidfile", str(tmp / "redis.pid")]
        env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
        if password:
            env["REDISCLI_AUTH"] = password
        cli = ["redis-cli", "-h", probe, "-p", str(port)]

        def ask(*words: str) -> str:
            return joined(ns.run([*cli, *words], timeout=10, env=env)).strip()

        with open(log, "wb") as fh:
            proc = ns.popen(cmd, stdout=fh, stderr=fh)
        answered = wait_for(lambda: ask("ping") == "PONG", READY_TIMEOUT, alive=proc)
        notes = []
        ok = answered
        if answered and sentinel:
            masters = ask("sentinel", "masters")
            for d in found:
                if d[0].lower() == "sentinel" and len(d) > 2 and d[1].lower() == "monitor" and d[2] not in masters:
                    ok = False
                    notes.append(f"sentinel does not report the master {d[2]}: {masters}")
        elif not answered and proc.poll() is None:
            notes.append(f"no PONG from {probe}:{port} within {READY_TIMEOUT:.0f}s: {ask('ping')}")
        stop(proc)
        out = log.read_text(errors="replace").replace(str(conf), path).replace(str(tmp), "<tmp>")
        if ok:
            mode = "sentinel" if sentinel else "redis"
            return True, f"{path}: {mode} on {probe}:{port} answered PONG"
        return False, f"{path}:\n{out}" + ("\n".join(notes) + "\n" if notes else "")


@register("redis")
def check(ctx: CheckContext) -> CheckResult:
    server = server_binary(ctx.manifest)
    require("redis-cli", package="redis-tools")
    require("ip", package="iproute2")
    if os.geteuid() != 0:
        raise Unavailable("the redis check needs root for its private network namespace")
    results = [check_file(ctx, f, server) for f in ctx.files]
    status = PASS if all(ok for ok, _ in results) else FAIL
    return CheckResult("redis", ctx.files, status, "\n".join(out for _, out in results))
