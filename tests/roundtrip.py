"""The real programs reading a secret back (test_secret_roundtrip.py): each helper writes the given real line
into the smallest file its program accepts, starts or runs the program, and returns what it read or whether
the value opened the door.

Network safety: servers listen on 127.0.0.1 at free ports or on a unix socket (PostgreSQL); keepalived runs
in a private network namespace with a veth pair. Every process started here is stopped by its own handle.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sty.apply.checks.util import AS_POSTGRES, chown_tree, free_port, netns, stop, tcp_open, tmpdir, wait_for


@dataclass
class RoundTrip:
    """What one format's prover read back: every check counts, every mismatch is kept."""

    fmt: str
    proven: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, what: str, got: object, expected: object) -> None:
        self.proven += 1
        if got != expected:
            self.failures.append(f"{what}: read {got!r}, expected {expected!r}")

    @staticmethod
    def md5(password: str, role: str) -> str:
        """PostgreSQL's md5 verifier: what `ALTER ROLE ... PASSWORD` stores with password_encryption = md5."""
        return "md5" + hashlib.md5((password + role).encode()).hexdigest()


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace", timeout=60, **kw)


def _wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    if not wait_for(lambda: tcp_open("127.0.0.1", port), timeout=15, alive=proc):
        raise AssertionError(f"{what} did not listen on 127.0.0.1:{port}")


def _basic(port: int, user: str, password: str) -> int:
    """The status of GET / with HTTP basic auth (the credentials as UTF-8, as browsers and curl send them)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


# --------------------------------------------------------------------------------------------------
# shells
# --------------------------------------------------------------------------------------------------


def bash_env(text: str, names: list[str]) -> dict[str, str]:
    """The variables as bash has them after `set -a; . FILE` (a clean environment)."""
    with tmpdir("rt-env") as tmp:
        (tmp / "env").write_text(text, encoding="utf-8")
        script = 'set -a; . "$1"; shift; for n; do printf "%s\\0" "${!n}"; done'
        proc = _run(["env", "-i", "bash", "-c", script, "_", str(tmp / "env"), *names])
    assert proc.returncode == 0, proc.stderr
    return dict(zip(names, proc.stdout.split("\0")[: len(names)], strict=True))


def bash_heredoc(block: str, var: str) -> str:
    """What bash reads into `var` from the here-document `block` (then printed verbatim)."""
    with tmpdir("rt-sh") as tmp:
        (tmp / "s.sh").write_text(f'{block}\nprintf "%s" "${var}"\n', encoding="utf-8")
        proc = _run(["bash", str(tmp / "s.sh")])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# --------------------------------------------------------------------------------------------------
# PostgreSQL: a copy of the checkers' template cluster on a unix socket
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_session() -> Iterator[Callable[[str], str]]:
    """A throwaway PostgreSQL (15 if installed) as the postgres user on a unix socket; yields `session(sql)`,
    which runs a script through psql (ON_ERROR_STOP, md5 password encryption) and returns its output."""
    from sty.apply.checks.postgres import PgTemplate, postmaster, template
    from sty.apply.checks.util import pg_installed

    versions = pg_installed()
    tpl = template(15 if 15 in versions else max(versions))
    with tmpdir("rt-pg", owner="postgres") as root:
        _run(["cp", "-a", f"{tpl.root}/.", f"{root}/"]).check_returncode()  # the template stays untouched
        mine = PgTemplate(root, tpl.bin)
        sock = root / "sock"
        sock.mkdir()
        chown_tree(root)
        with postmaster(mine, sock) as (proc, log):
            assert proc is not None, f"postgres did not start:\n{log}"

            def session(sql: str) -> str:
                script = root / "q.sql"
                script.write_text("SET standard_conforming_strings = on;\n" + sql + "\n", encoding="utf-8")
                os.chmod(script, 0o644)
                env = {**os.environ, "PGOPTIONS": "-c password_encryption=md5", "PGCLIENTENCODING": "UTF8"}
                psql = [str(mine.bin / "psql"), "-h", str(sock), "-U", "postgres", "-d", "postgres", "-XAtq"]
                out = _run([*AS_POSTGRES, *psql, "-v", "ON_ERROR_STOP=1", "-f", str(script)], env=env)
                assert out.returncode == 0, out.stdout + out.stderr
                return out.stdout.removesuffix("\n")

            yield session


# --------------------------------------------------------------------------------------------------
# servers with a password: haproxy, nginx, redis, pgbouncer
# --------------------------------------------------------------------------------------------------


def haproxy_auth(lines: dict[str, str], user: str, values: dict[str, str]) -> dict[str, tuple[int, int]]:
    """One haproxy with a stats page per case (its `stats auth` line): the status for the value and for
    another one."""
    ports = {key: free_port() for key in lines}
    sections = "".join(
        f"listen s{i}\n    bind 127.0.0.1:{ports[key]}\n    stats enable\n    stats uri /\n    {line}\n"
        for i, (key, line) in enumerate(lines.items())
    )
    head = "global\n    maxconn 100\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 5s\n"
    with tmpdir("rt-haproxy") as tmp:
        (tmp / "h.cfg").write_text(head + "    timeout server 5s\n" + sections, encoding="utf-8")
        check = _run(["haproxy", "-c", "-q", "-f", str(tmp / "h.cfg")])
        assert check.returncode == 0, check.stdout + check.stderr
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(tmp / "h.cfg")], stdout=subprocess.DEVNULL)
        try:
            for port in ports.values():
                _wait_port(port, proc, "haproxy")
            return {k: (_basic(ports[k], user, v), _basic(ports[k], user, v + "x")) for k, v in values.items()}
        finally:
            stop(proc)


NGINX_CONF = """daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp}/t1; proxy_temp_path {tmp}/t2; fastcgi_temp_path {tmp}/t3;
    uwsgi_temp_path {tmp}/t4; scgi_temp_path {tmp}/t5;
    server {{
        listen 127.0.0.1:{port};
        location / {{ auth_basic "sty"; auth_basic_user_file {tmp}/htpasswd; root {tmp}/www; }}
    }}
}}
"""


def nginx_auth(lines: dict[str, str], user: str, values: dict[str, str]) -> dict[str, tuple[int, int]]:
    """nginx reads its auth_basic_user_file on every request: per case, the file holds the case's line; the
    status for the value and for another one."""
    port = free_port()
    with tmpdir("rt-nginx") as tmp:
        (tmp / "www").mkdir()
        (tmp / "www" / "index.html").write_text("ok\n")
        (tmp / "htpasswd").write_text("\n")
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=port))
        proc = subprocess.Popen(["nginx", "-p", f"{tmp}/", "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")])
        try:
            _wait_port(port, proc, "nginx")
            codes = {}
            for key, line in lines.items():
                (tmp / "htpasswd").write_text(line + "\n", encoding="utf-8")
                codes[key] = (_basic(port, user, values[key]), _basic(port, user, values[key] + "x"))
            return codes
        finally:
            stop(proc)


def redis_config(lines: list[str], value: str) -> dict[str, str]:
    """redis-server with the given lines: CONFIG GET of requirepass and masterauth after AUTH with the value,
    and whether another value is refused."""
    port = free_port()
    with tmpdir("rt-redis") as tmp:
        conf = [f"port {port}", "bind 127.0.0.1", "daemonize no", 'save ""', "appendonly no", f'dir "{tmp}"']
        (tmp / "r.conf").write_text("\n".join([*conf, 'logfile ""', *lines]) + "\n", encoding="utf-8")
        proc = subprocess.Popen(["redis-server", str(tmp / "r.conf")], stdout=subprocess.DEVNULL)
        try:
            _wait_port(port, proc, "redis-server")
            cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--no-auth-warning", "--raw"]
            got = {}
            for name in ("requirepass", "masterauth"):
                out = _run([*cli, "-a", value, "CONFIG", "GET", name]).stdout
                got[name] = out.split("\n", 1)[1].removesuffix("\n") if out.startswith(f"{name}\n") else out
            wrong = _run([*cli, "-a", value + "x", "PING"])
            got["wrong"] = "accepted" if "PONG" in wrong.stdout else "refused"
            return got
        finally:
            stop(proc)


def pgbouncer_auth(line: str, user: str, value: str) -> tuple[str, str]:
    """pgbouncer (scram-sha-256, auth_file = the line) on a loopback port: whether psql logs in to its admin
    console with the value, and with another one."""
    import shutil

    port = free_port()
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    with tmpdir("rt-pgbouncer", owner="postgres") as tmp:
        (tmp / "userlist.txt").write_text(line + "\n", encoding="utf-8")
        admin = user.replace('"', "")
        (tmp / "pgbouncer.ini").write_text(
            f"[databases]\npostgres = host=127.0.0.1 port=9\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
            f"listen_port = {port}\nunix_socket_dir =\nauth_type = scram-sha-256\nauth_file = {tmp}/userlist.txt\n"
            f"admin_users = {admin}\nlogfile = {tmp}/pgbouncer.log\npidfile = {tmp}/pgbouncer.pid\n"
        )
        chown_tree(tmp)
        proc = subprocess.Popen(["pgbouncer", "-q", "-u", "postgres", str(tmp / "pgbouncer.ini")])
        try:
            _wait_port(port, proc, "pgbouncer")

            def login(password: str) -> bool:
                dsn = f"host=127.0.0.1 port={port} dbname=pgbouncer user={admin} sslmode=disable"
                env = {**os.environ, "PGPASSWORD": password, "PGPASSFILE": "/dev/null"}
                return _run([psql, dsn, "-XAtqc", "SHOW VERSION"], env=env).returncode == 0

            return ("ok" if login(value) else "failed"), ("accepted" if login(value + "x") else "refused")
        finally:
            stop(proc)


# --------------------------------------------------------------------------------------------------
# programs that read a password without a server: pgbackrest, keepalived
# --------------------------------------------------------------------------------------------------


def pgbackrest_cipher(line: str, value: str) -> tuple[str, str]:
    """pgbackrest `repo-get` of a repository file encrypted by openssl with the value (pgBackRest's format:
    aes-256-cbc, salted, sha1 key derivation), with the line as repo1-cipher-pass; then with a file encrypted
    with another value."""
    with tmpdir("rt-pgbackrest") as tmp:
        info = tmp / "repo" / "backup" / "demo" / "backup.info"
        info.parent.mkdir(parents=True)
        plain = "[backup:current]\n"
        (tmp / "plain").write_text(plain)
        (tmp / "pgbackrest.conf").write_text(
            f"[demo]\npg1-path={tmp}/pg\n\n[global]\nrepo1-path={tmp}/repo\nrepo1-cipher-type=aes-256-cbc\n"
            f"{line}\nlog-level-file=off\nlock-path={tmp}/lock\n",
            encoding="utf-8",
        )

        def decrypts(password: str) -> bool:
            enc = ["openssl", "enc", "-aes-256-cbc", "-md", "sha1", "-salt", "-pass", "env:STY_PASS"]
            made = _run([*enc, "-in", str(tmp / "plain"), "-out", str(info)], env={**os.environ, "STY_PASS": password})
            assert made.returncode == 0, made.stderr
            cmd = ["pgbackrest", f"--config={tmp}/pgbackrest.conf", "--stanza=demo", "--log-level-console=warn"]
            got = _run([*cmd, "repo-get", str(info)])
            return got.returncode == 0 and got.stdout == plain

        return ("decrypted" if decrypts(value) else "failed"), ("accepted" if decrypts(value + "x") else "refused")


KEEPALIVED_CONF = """global_defs {{
    router_id sty
}}
vrrp_instance sty {{
    state BACKUP
    interface eth1
    virtual_router_id 51
    priority 100
    advert_int 1
    authentication {{
        auth_type PASS
        {line}
    }}
    virtual_ipaddress {{
        192.0.2.10 dev eth1
    }}
}}
"""


def keepalived_password(line: str) -> str | None:
    """The password keepalived read from the `auth_pass` line, from its configuration dump (`-d`), run in a
    private network namespace with a veth interface (keepalived needs the interface)."""
    with tmpdir("rt-keepalived") as tmp, netns([]) as ns:
        ns.run(["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"]).check_returncode()
        (tmp / "k.conf").write_text(KEEPALIVED_CONF.format(line=line), encoding="utf-8")
        cmd = ["keepalived", "-n", "-l", "-D", "-d", "-f", str(tmp / "k.conf"), "-p", str(tmp / "k.pid")]
        proc = ns.popen([*cmd, "-r", str(tmp / "v.pid")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        timer = threading.Timer(20, lambda: stop(proc))
        timer.start()
        try:
            for raw in iter(proc.stdout.readline, b""):  # type: ignore[union-attr]
                m = re.search(rb"  Password = (.*)$", raw.rstrip(b"\n"))
                if m:
                    return m.group(1).decode("utf-8", "replace")
            return None
        finally:
            timer.cancel()
            stop(proc)


# --------------------------------------------------------------------------------------------------
# grafana.ini: a model only (no Grafana on this machine)
# --------------------------------------------------------------------------------------------------

GRAFANA_EXPANSION = re.compile(r"\$(|__\w+)\{([^}]+)\}")  # Grafana's expander pattern (pkg/setting/expanders.go)


def grafana_ini_model(line: str) -> str:
    """`key = value` as go-ini's readValue takes it (a value opening with \"\"\" ends at the LAST \"\"\" of the
    line) and as Grafana then leaves it (any ${...} / $__name{...} would be expanded: marked as changed).
    UNPROVEN: a reading of their sources, not the programs."""
    value = line.split("=", 1)[1].lstrip()
    if len(value) > 3 and value.startswith('"""'):
        rest = value[3:]
        value = rest[: rest.rindex('"""')]
    else:
        raise AssertionError('the model covers """-quoted values only')
    return "<expanded by Grafana>" if GRAFANA_EXPANSION.search(value) else value
