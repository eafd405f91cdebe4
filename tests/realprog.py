"""Real programs judging the files sty emits: a small harness shared by the slow tests.

Every `check_*` function takes a bundle directory (`outputs/<ip>/`, the host's filesystem as sty renders
it, or a modified copy of it) and the host's address, runs one program on a temporary copy of the files
and returns `(ok, output)`: `ok` is the program's verdict as read by the harness, `output` what the
program said (plus a line or two of context from the harness).

Network safety: programs that could open connections to the addresses written in the files (etcd,
Patroni) run inside a private network namespace made here, in which the host's own addresses (and those
of its etcd) sit on `lo`; nothing can leave it. The others only parse (haproxy, postgres -C, chronyd -p,
systemd-analyze) and run under `unshare -n` anyway, or listen on loopback (pgbouncer, postgres on a unix
socket). Never run these functions against files of a real fleet from a machine that can reach it
without reading them first.

Needs root (namespaces, `setpriv` to the `postgres` user) and the Debian packages haproxy, pgbouncer,
etcd-server, etcd-client, patroni (+ python3-etcd, python3-psycopg2), chrony, postgresql-15, systemd,
iproute2, util-linux, openssl; prometheus-node-exporter optionally (its unit's program is stubbed if the
caller allows it).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from apply.checks.util import (  # noqa: F401 - re-exported for the tests
    AS_POSTGRES,
    DUMMY_SECRET,
    SECRET,
    Netns,
    chown_tree,
    free_port,
    netns,
    postgres_user,
    run,
    stop,
    substitute,
    tcp_open,
    tmpdir,
    wait_for,
)
from apply.checks.util import (
    joined as _joined,
)
from compiler.secrets import scram_verifier

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ROOT / "outputs"
PG_BIN = Path("/usr/lib/postgresql/15/bin")

Result = tuple[bool, str]


# --------------------------------------------------------------------------------------------------
# bundles and manifests
# --------------------------------------------------------------------------------------------------


def host_addresses(outputs: Path = OUTPUTS) -> list[str]:
    """Hosts with a bundle and a manifest, in address order."""
    found = [p.stem for p in outputs.glob("*.yml") if (outputs / p.stem).is_dir()]
    return sorted(found, key=lambda ip: tuple(int(x) if x.isdigit() else 0 for x in ip.split(".")))


def manifest(host: str, outputs: Path = OUTPUTS) -> dict:
    return yaml.safe_load((outputs / f"{host}.yml").read_text())


def checks(host: str, checker: str, outputs: Path = OUTPUTS) -> list[list[str]]:
    """The file lists of the manifest's checks of this checker (one list per check entry)."""
    return [c["files"] for c in manifest(host, outputs).get("checks", []) if c["checker"] == checker]


def hosts_with(checker: str, outputs: Path = OUTPUTS) -> list[str]:
    return [h for h in host_addresses(outputs) if checks(h, checker, outputs)]


def bundle_file(bundle: Path, path: str) -> Path:
    """The bundle's copy of the host path `path` (`/etc/x` -> `bundle/etc/x`)."""
    return Path(bundle) / path.lstrip("/")


# --------------------------------------------------------------------------------------------------
# 1. haproxy
# --------------------------------------------------------------------------------------------------


def check_haproxy(bundle: Path, host: str) -> Result:
    """`haproxy -c` on haproxy.cfg plus conf.d/, secrets replaced by dummies. Zero-warning mode (-dW):
    haproxy's `-q` would hide the messages, and its warnings alone leave the exit code 0."""
    src = bundle_file(bundle, "/etc/haproxy")
    with tmpdir("haproxy") as tmp:
        cfg, confd = tmp / "haproxy.cfg", tmp / "conf.d"
        cfg.write_text(substitute((src / "haproxy.cfg").read_text()))
        confd.mkdir()
        for f in sorted((src / "conf.d").glob("*")) if (src / "conf.d").is_dir() else []:
            (confd / f.name).write_text(substitute(f.read_text()))
        proc = run(["unshare", "-n", "haproxy", "-c", "-dW", "-f", str(cfg), "-f", f"{confd}/"])
        out = _joined(proc).replace(str(tmp), "/etc/haproxy")
        return proc.returncode == 0 and "[ALERT]" not in out and "[WARNING]" not in out, out


# --------------------------------------------------------------------------------------------------
# 2./3. PostgreSQL: a template cluster, settings (-C) and pg_hba.conf (pg_hba_file_rules)
# --------------------------------------------------------------------------------------------------


@dataclass
class PgTemplate:
    """A throwaway cluster (`initdb -A trust --no-sync`) with a self-signed certificate, owned by postgres."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def key(self) -> Path:
        return self.root / "server.key"


def make_pg_template(root: Path) -> PgTemplate:
    tpl = PgTemplate(Path(root))
    chown_tree(tpl.root)
    run(
        [*AS_POSTGRES, str(PG_BIN / "initdb"), "-D", str(tpl.data), "-A", "trust", "--no-sync", "-U", "postgres"],
        timeout=120,
    ).check_returncode()
    openssl = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost -days 2"
    run([*openssl.split(), "-keyout", str(tpl.key), "-out", str(tpl.cert)]).check_returncode()
    chown_tree(tpl.root)
    os.chmod(tpl.key, 0o600)
    return tpl


def _pg_value(value) -> str:
    if isinstance(value, bool):
        value = "on" if value else "off"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


def patroni_parameters(bundle: Path) -> dict:
    """What Patroni would write into postgresql.conf: the DCS parameters, then the local ones."""
    conf = yaml.safe_load(substitute(bundle_file(bundle, "/etc/patroni/patroni.yml").read_text()))
    dcs = (((conf.get("bootstrap") or {}).get("dcs") or {}).get("postgresql") or {}).get("parameters") or {}
    local = (conf.get("postgresql") or {}).get("parameters") or {}
    return {**dcs, **local}


def check_pg_settings(bundle: Path, host: str, template: PgTemplate, show: str = "shared_buffers") -> Result:
    """`postgres -C` with the host's parameters as config_file: unknown names and bad values are errors.
    hba_file points at a copy of the rendered pg_hba.conf, unix_socket_directories at a temp dir."""
    params = patroni_parameters(bundle)
    with tmpdir("pgconf", owner="postgres") as tmp:
        hba = tmp / "pg_hba.conf"
        shutil.copyfile(bundle_file(bundle, "/pg/conf/pg_hba.conf"), hba)
        params.update(hba_file=str(hba), unix_socket_directories=str(tmp))
        conf = tmp / "postgresql.conf"
        conf.write_text("".join(f"{k} = {_pg_value(v)}\n" for k, v in params.items()))
        chown_tree(tmp)
        proc = run(
            [*AS_POSTGRES, str(PG_BIN / "postgres"), "-D", str(template.data), "-c", f"config_file={conf}", "-C", show]
        )
        out = _joined(proc)
        if proc.returncode != 0:  # show which parameter the reported line holds
            for n in re.findall(r"postgresql\.conf\" line (\d+)", out):
                out += f"\n[line {n}] {conf.read_text().splitlines()[int(n) - 1]}"
        return proc.returncode == 0 and not re.search(r"\b(WARNING|ERROR|FATAL)\b", proc.stderr), out


@contextlib.contextmanager
def postmaster(template: PgTemplate, sockdir: Path, *options: str) -> Iterator[tuple[subprocess.Popen | None, str]]:
    """The template's postmaster on a unix socket only; yields (process or None if it died, its log)."""
    log = sockdir / "postgres.log"
    cmd = [
        *AS_POSTGRES, str(PG_BIN / "postgres"), "-D", str(template.data), "-c", "listen_addresses=",
        "-c", f"unix_socket_directories={sockdir}", "-c", "ssl=on", "-c", f"ssl_cert_file={template.cert}",
        "-c", f"ssl_key_file={template.key}", "-c", "logging_collector=off", *options,
    ]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        ready = wait_for(
            lambda: run([*AS_POSTGRES, str(PG_BIN / "pg_isready"), "-q", "-h", str(sockdir)]).returncode == 0,
            timeout=20,
            alive=proc,
        )
        yield (proc if ready else None), log.read_text(errors="replace")
    finally:
        stop(proc, signal.SIGINT)  # setpriv execs postgres, so the postmaster gets it: fast shutdown


def psql(sockdir: Path, sql: str) -> subprocess.CompletedProcess:
    """One query as postgres over the unix socket in `sockdir`; rows '|'-separated."""
    opts = ["-h", str(sockdir), "-U", "postgres", "-d", "postgres", "-XAtq", "-F", "|", "-c", sql]
    return run([*AS_POSTGRES, str(PG_BIN / "psql"), *opts])


def _records(text: str) -> list[int]:
    """Line numbers of the enabled records of an hba file (continuation lines not handled: sty emits none)."""
    return [i for i, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")]


def check_pg_hba(bundle: Path, host: str, template: PgTemplate) -> Result:
    """Start PostgreSQL 15 with hba_file = the rendered pg_hba.conf (ssl on) and read pg_hba_file_rules:
    any row with an error, or a record count that differs from the file's, fails."""
    text = bundle_file(bundle, "/pg/conf/pg_hba.conf").read_text()
    with tmpdir("pghba", owner="postgres") as tmp:
        hba = tmp / "pg_hba.conf"
        hba.write_text(text)
        chown_tree(tmp)
        with postmaster(template, tmp, "-c", f"hba_file={hba}") as (proc, log):
            if proc is None:
                return False, "postgres did not start:\n" + log
            q = psql(tmp, "select line_number, coalesce(error, '') from pg_hba_file_rules order by 1")
            if q.returncode != 0:
                return False, "psql failed: " + _joined(q) + log
        rows = [line.split("|", 1) for line in q.stdout.splitlines() if line]
        lines = text.splitlines()
        errors = [
            f"pg_hba.conf line {n}: {e}\n    {lines[int(n) - 1] if 0 < int(n) <= len(lines) else ''}"
            for n, e in rows
            if e
        ]
        read = sorted(int(n) for n, _ in rows)
        if not errors and read != _records(text):
            errors.append(f"PostgreSQL read records at lines {read}, the file has records at {_records(text)}")
        return not errors, "\n".join(errors) or f"{len(rows)} records, no errors"


def check_pg_start(bundle: Path, host: str, template: PgTemplate) -> Result:
    """Start PostgreSQL 15 on the template with the host's parameters (as `check_pg_settings`, plus logging
    to stderr and a unix socket only): shared_preload_libraries are loaded, so a missing library or an
    unknown parameter of a loaded extension's namespace shows up. Any WARNING/ERROR/FATAL in the log or an
    error in pg_file_settings fails."""
    params = patroni_parameters(bundle)
    with tmpdir("pgstart", owner="postgres") as tmp:
        shutil.copyfile(bundle_file(bundle, "/pg/conf/pg_hba.conf"), tmp / "pg_hba.conf")
        params.update(
            hba_file=str(tmp / "pg_hba.conf"),
            unix_socket_directories=str(tmp),
            listen_addresses="",
            logging_collector="off",
            log_destination="stderr",
        )
        conf = tmp / "postgresql.conf"
        conf.write_text("".join(f"{k} = {_pg_value(v)}\n" for k, v in params.items()))
        chown_tree(tmp)
        with postmaster(template, tmp, "-c", f"config_file={conf}") as (proc, log):
            if proc is None:
                return False, "postgres did not start:\n" + log
            q = psql(tmp, "select sourceline, name, error from pg_file_settings where error is not null")
            log = (tmp / "postgres.log").read_text(errors="replace")
        lines = conf.read_text().splitlines()
        bad = [
            line
            for line in log.splitlines()
            if re.search(r"\b(WARNING|ERROR|FATAL|PANIC):", line)
            and "the database system is starting up" not in line  # the harness's pg_isready probes
        ]
        if q.returncode != 0:
            bad.append("psql failed: " + _joined(q))
        for row in q.stdout.splitlines():
            n, name, error = row.split("|", 2)
            if error != "setting could not be applied":  # a -c override of the harness wins over the file
                bad.append(f"{name}: {error}: {lines[int(n) - 1] if n.isdigit() else ''}")
        return not bad, "\n".join(bad) or log


# --------------------------------------------------------------------------------------------------
# 4. pgbouncer
# --------------------------------------------------------------------------------------------------


def _set_ini(text: str, section: str, key: str, value: str) -> str:
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


def check_pgbouncer(bundle: Path, host: str, timeout: float = 10) -> Result:
    """Run `pgbouncer -u postgres` on a copy of /etc/pgbouncer/ (paths moved to a temp dir, 127.0.0.1 on a
    free port, secrets replaced by a SCRAM verifier) until it accepts connections; any ERROR or WARNING
    it logs fails."""
    src = bundle_file(bundle, "/etc/pgbouncer")
    with tmpdir("pgbouncer", owner="postgres") as tmp:
        for f in sorted(src.iterdir()):
            text = substitute(f.read_text(), scram_verifier(DUMMY_SECRET, "sty-test"))
            (tmp / f.name).write_text(text.replace("/etc/pgbouncer/", f"{tmp}/"))
        ini = tmp / "pgbouncer.ini"
        port = free_port()
        text = ini.read_text()
        for key, value in {
            "listen_addr": "127.0.0.1",
            "listen_port": str(port),
            "unix_socket_dir": str(tmp),
            "logfile": str(tmp / "pgbouncer.log"),
            "pidfile": str(tmp / "pgbouncer.pid"),
        }.items():
            text = _set_ini(text, "pgbouncer", key, value)
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
        out = out.replace(f"{tmp}/", "/etc/pgbouncer/")
        bad = [line for line in out.splitlines() if re.search(r"\b(ERROR|WARNING|FATAL)\b", line)]
        if not up:
            why = f"exited with code {exited}" if exited is not None else f"still not listening after {timeout}s"
            bad.append(f"pgbouncer did not accept connections on 127.0.0.1:{port}: {why}")
        return up and not bad, "\n".join(bad) if bad else out


# --------------------------------------------------------------------------------------------------
# 5. etcd, in a private network namespace
# --------------------------------------------------------------------------------------------------


def _etcd_copy(conf: Path, tmp: Path) -> tuple[Path, list[str]]:
    """A copy of etcd.conf with data-dir (and wal-dir) moved into `tmp`; also its client URLs."""
    text = conf.read_text()
    for key in ("data-dir", "wal-dir"):
        pattern = re.compile(rf"^{key}:.*$", re.M)
        if pattern.search(text):
            text = pattern.sub(f"{key}: {tmp / key}", text)
        elif key == "data-dir":
            text += f"\n{key}: {tmp / key}\n"
    out = tmp / "etcd.conf"
    out.write_text(text)
    urls = str((yaml.safe_load(text) or {}).get("advertise-client-urls") or "")
    return out, [u.strip() for u in urls.split(",") if u.strip()]


def _etcd_host(url: str) -> str:
    return re.sub(r"^\w+://", "", url).rsplit(":", 1)[0].strip("[]")


@contextlib.contextmanager
def running_etcd(ns: Netns, conf: Path, timeout: float = 15) -> Iterator[tuple[bool, str]]:
    """etcd with a copy of `conf` in `ns`, until `etcdctl endpoint health` on its advertised client URLs
    succeeds; yields (healthy, output)."""
    with tmpdir("etcd") as tmp:
        copy, urls = _etcd_copy(conf, tmp)
        log = tmp / "etcd.log"
        with open(log, "wb") as fh:
            proc = ns.popen(["etcd", "--config-file", str(copy)], stdout=fh, stderr=subprocess.STDOUT)
        last: list[subprocess.CompletedProcess] = []

        host, _, port = re.sub(r"^\w+://", "", urls[0] if urls else "").rpartition(":")

        def healthy() -> bool:  # etcdctl only once the port is open: it waits out its timeouts otherwise
            if not ns.tcp_open(host.strip("[]"), int(port or 2379)):
                return False
            health = ["etcdctl", "--endpoints", ",".join(urls), "--dial-timeout=1s", "--command-timeout=2s"]
            r = ns.run([*health, "endpoint", "health"], env={**os.environ, "ETCDCTL_API": "3"})
            last[:] = [r]
            return r.returncode == 0

        try:
            ok = bool(urls) and wait_for(healthy, timeout, alive=proc)
            out = (_joined(last[0]) if last else "no advertise-client-urls\n") + log.read_text(errors="replace")
            yield ok, out.replace(str(tmp), "<tmp>")
        finally:
            stop(proc)


def etcd_addresses(conf: Path) -> list[str]:
    """Every host address etcd.conf binds or advertises (they must exist in the namespace)."""
    data = yaml.safe_load(conf.read_text()) or {}
    keys = ("listen-client-urls", "listen-peer-urls", "advertise-client-urls", "initial-advertise-peer-urls")
    hosts = {_etcd_host(u) for k in keys for u in str(data.get(k) or "").split(",") if u.strip()}
    return sorted(h for h in hosts if h and not h.startswith("127.") and h not in ("0.0.0.0", "localhost", "::"))


def check_etcd(bundle: Path, host: str) -> Result:
    """etcd on the rendered etcd.conf (data-dir moved to a temp dir) in a private network namespace that
    holds the host's address; healthy per etcdctl = ok."""
    conf = bundle_file(bundle, "/etc/etcd/etcd.conf")
    with netns([host, *etcd_addresses(conf)]) as ns, running_etcd(ns, conf) as (ok, out):
        return ok, out


# --------------------------------------------------------------------------------------------------
# 6. patroni --validate-config, in a private network namespace with etcd
# --------------------------------------------------------------------------------------------------

_LISTENER = """
import socket, sys, time
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
while True:
    c, _ = s.accept(); c.close()
"""


def _dcs_endpoints(conf: dict) -> list[tuple[str, int]]:
    for key in ("etcd3", "etcd"):
        dcs = conf.get(key) or {}
        hosts = dcs.get("hosts") or dcs.get("host") or []
        if isinstance(hosts, str):
            hosts = hosts.split(",")
        out = []
        for h in hosts:
            addr, _, port = str(h).strip().rpartition(":")
            out.append((addr.strip("[]"), int(port or 2379)))
        if out:
            return out
    return []


def check_patroni(bundle: Path, host: str, etcd_confs: list[Path] = ()) -> Result:
    """`patroni --validate-config` (secrets replaced by dummies) in a private network namespace holding the
    host's address and its etcd endpoints' addresses. An endpoint advertised by one of `etcd_confs` is a
    real etcd started from that file; any other endpoint gets a stand-in TCP listener."""
    text = substitute(bundle_file(bundle, "/etc/patroni/patroni.yml").read_text())
    conf = yaml.safe_load(text)
    endpoints = _dcs_endpoints(conf)
    etcds: dict[Path, list[str]] = {}
    for c in etcd_confs:
        with tmpdir("etcd-urls") as t:
            etcds[Path(c)] = _etcd_copy(Path(c), t)[1]
    real = {c for c, urls in etcds.items() for h, p in endpoints if any(u.endswith(f"{h}:{p}") for u in urls)}
    addresses = [host, *(h for h, _ in endpoints), *(a for c in real for a in etcd_addresses(c))]
    with tmpdir("patroni") as tmp, netns(addresses) as ns, contextlib.ExitStack() as stack:
        (tmp / "patroni.yml").write_text(text)
        notes = []
        served = set()
        for c in sorted(real):
            ok, out = stack.enter_context(running_etcd(ns, c))
            if not ok:
                return False, f"the etcd of {c} did not become healthy:\n{out}"
            served |= {(h, p) for h, p in endpoints if any(u.endswith(f"{h}:{p}") for u in etcds[c])}
            notes.append(f"# real etcd from {c}")
        for h, p in endpoints:
            if (h, p) in served:
                continue
            ns.popen([sys.executable, "-c", _LISTENER, h, str(p)])
            if not wait_for(lambda h=h, p=p: ns.tcp_open(h, p), 10):
                return False, f"stand-in listener on {h}:{p} did not start"
            notes.append(f"# stand-in TCP listener on {h}:{p}")
        proc = ns.run(["patroni", "--validate-config", str(tmp / "patroni.yml")], timeout=60)
        out = _joined(proc).replace(str(tmp), "/etc/patroni")
        return proc.returncode == 0, out + ("\n" if out and not out.endswith("\n") else "") + "\n".join(notes)


# --------------------------------------------------------------------------------------------------
# 7. systemd units
# --------------------------------------------------------------------------------------------------

STUB = "#!/bin/sh\nexit 0\n"


def unit_binaries(text: str) -> list[str]:
    """Absolute program paths of the Exec*= lines (prefixes @ - : + ! stripped)."""
    out = []
    for line in text.splitlines():
        m = re.match(r"\s*Exec[A-Za-z]+\s*=\s*(.*)", line)
        if m:
            prog = m.group(1).split()[0].lstrip("@-:+!") if m.group(1).split() else ""
            if prog.startswith("/"):
                out.append(prog)
    return list(dict.fromkeys(out))


def check_systemd(bundle: Path, host: str, unit: str, stubs: set[str] | frozenset[str] = frozenset()) -> Result:
    """`systemd-analyze verify --man=no` on one unit in a staged root (systemd's own units copied in, the
    unit in /etc/systemd/system). Programs the unit runs are present in the stage as stubs when they are
    installed on this machine (or listed in `stubs`); any other is absent, so systemd-analyze reports it.
    systemd-analyze exits 0 on parse warnings: any stderr line naming the unit fails."""
    src = bundle_file(bundle, unit if unit.startswith("/") else f"/etc/systemd/system/{unit}")
    name = src.name
    text = src.read_text()
    with tmpdir("systemd") as stage:
        (stage / "usr/lib/systemd").mkdir(parents=True)
        shutil.copytree("/usr/lib/systemd/system", stage / "usr/lib/systemd/system", symlinks=True)
        for d in ("bin", "sbin", "lib"):
            (stage / "usr" / d).mkdir(exist_ok=True)
            if Path(f"/{d}").is_symlink():  # Debian 12 is usr-merged: /bin -> usr/bin
                (stage / d).symlink_to(f"usr/{d}")
            else:
                (stage / d).mkdir()
        (stage / "etc/systemd/system").mkdir(parents=True)
        (stage / "etc/systemd/system" / name).write_text(text)
        notes = []
        for prog in unit_binaries(text):
            if os.access(prog, os.X_OK) or prog in stubs:
                stub = stage / prog.lstrip("/")
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text(STUB)
                stub.chmod(0o755)
                if not os.access(prog, os.X_OK):
                    notes.append(f"# {prog} is not installed here: stubbed")
        proc = run(["systemd-analyze", "verify", "--man=no", f"--root={stage}", f"/etc/systemd/system/{name}"])
        complaints = [line for line in proc.stderr.splitlines() if name in line]
        out = _joined(proc).replace(str(stage), "")
        ok = proc.returncode == 0 and not complaints
        return ok, out + "\n".join(notes)


# --------------------------------------------------------------------------------------------------
# 8. chrony
# --------------------------------------------------------------------------------------------------


def check_chrony(bundle: Path, host: str) -> Result:
    """`chronyd -p -f FILE`: parse and print the configuration (never -q/-Q, which contact the servers)."""
    conf = bundle_file(bundle, "/etc/chrony/chrony.conf")
    proc = run(["unshare", "-n", "chronyd", "-p", "-f", str(conf)])
    return proc.returncode == 0 and not proc.stderr.strip(), _joined(proc)
