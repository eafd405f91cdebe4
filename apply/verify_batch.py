"""`sty verify`'s facts, gathered by one script per host, and the checks judged on them in Python.

Asked one testinfra call at a time, the checks cost a few hundred SSH round trips per host (host.file alone
makes several), and verifying four hosts took about a minute. The manifest says beforehand everything the
checks will ask, so `HostChecks.script()` asks it all at once: one bash script, sent on the standard input of
one SSH exec, prints one record per fact (`@file …`, `@cmd NAME RC STDOUT STDERR` in base64, `@end`), and
`parse_snapshot` reads them back. The judges are pure functions of the manifest, the secret store and the
snapshot: tests/test_verify_batch.py runs them without a host.
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from .verify_script import DATABASES, DNS_QUERY, ETCD_RBAC, SCRIPT_HEAD, SCRIPT_TAIL

RECORD = "/var/lib/sty/applied.json"
PATRONI_CONF = "/etc/patroni/patroni.yml"
ETCD_TLS = "--cacert /etc/etcd/ca.crt --cert /etc/etcd/server.crt --key /etc/etcd/server.key"  # the member's own
ACTIVE = ("active", "reloading", "refreshing")  # `systemctl is-active` exits 0 for these
ENABLED = ("enabled", "enabled-runtime", "static", "alias", "indirect", "generated", "transient")  # is-enabled: 0


@dataclass(frozen=True)
class Captured:
    """A command the script ran: its exit code and output."""

    rc: int
    stdout: str
    stderr: str

    def said(self) -> str:
        return (self.stdout + self.stderr).strip() or f"exit {self.rc}, no output"


@dataclass(frozen=True)
class FileFacts:
    exists: bool
    sha256: str  # "-" when not asked (a marked block) or unreadable
    user: str
    group: str
    mode: str  # as `stat -c %a` prints it


@dataclass
class Snapshot:
    """Every fact gathered on one host; `error` when the gathering itself failed."""

    address: str
    files: dict[str, FileFacts] = field(default_factory=dict)
    out: dict[str, Captured] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""

    def cmd(self, name: str) -> Captured:
        """A command's result; a missing one reads as a failure saying so (the script never ran it)."""
        return self.out.get(name) or Captured(-1, "", f"`{name}` was not gathered")


@dataclass
class Verdict:
    """What one check found: how many facts it judged, the problems (empty: passed), or why it does not apply."""

    checks: int = 0
    problems: list[str] = field(default_factory=list)
    skipped: str = ""
    retry: bool = False  # the fact may still change (a first scrape): worth asking again live


def parse_snapshot(address: str, text: str, stderr: str = "", seconds: float = 0.0) -> Snapshot:
    """Read the script's records; a missing `@end` (the script died half-way) is an error naming its stderr."""
    snap = Snapshot(address, seconds=seconds)
    complete = False
    for line in text.splitlines():
        if line.startswith("@file "):
            parts = line.split(" ", 6)
            if len(parts) == 7:
                _, exists, sha, user, group, mode, path = parts
                snap.files[path] = FileFacts(exists == "1", sha, user, group, mode)
        elif line.startswith("@cmd "):
            parts = line.split(" ")
            if len(parts) == 5:
                try:
                    out, err = (base64.b64decode(p).decode(errors="replace") for p in parts[3:])
                    snap.out[parts[1]] = Captured(int(parts[2]), out, err)
                except (ValueError, binascii.Error):
                    snap.error = f"unreadable record for `{parts[1]}`"
        elif line == "@end":
            complete = True
    if not complete and not snap.error:
        snap.error = f"the gathering script stopped early: {stderr.strip() or 'no message'}"
    return snap


def pooled_databases(text: str) -> list[str]:
    """The databases of pgbouncer's database.txt (the script's `pooled` function reads them the same way)."""
    return [line.split("=", 1)[0].strip() for line in text.splitlines() if line.strip() and not line.startswith(";")]


def listening_ports(ss_output: str) -> set[int]:
    """The local ports of `ss -Hltn` lines."""
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in ss_output.splitlines() if line.strip()}


def unit_states(show_output: str) -> list[dict[str, str]]:
    """`systemctl show` of several units: one property block per unit, in the order asked."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in [*show_output.splitlines(), ""]:
        if not line.strip():
            if current:
                blocks.append(current)
            current = {}
        elif "=" in line:
            key, value = line.split("=", 1)
            current[key] = value
    return blocks


def _psql(address: str, port: int, user: str, password: str, sql: str, db: str) -> str:
    env = f"PGPASSWORD={shlex.quote(password)} PGCONNECT_TIMEOUT=5"
    return f"{env} psql -X -At -h {address} -p {port} -U {shlex.quote(user)} -d {db} -c {shlex.quote(sql)}"


@dataclass
class HostChecks:
    """The checks of one host: what the script must ask, and the judges of its answers."""

    address: str
    me: dict[str, Any]  # the host's manifest (Manifest.to_dict())
    fleet: dict[str, dict[str, Any]]  # every manifest of the output directory: dnsmasq and VictoriaMetrics judge all
    secrets: dict[str, str]

    # -- what applies here ------------------------------------------------------------------------------------
    @property
    def ports(self) -> dict[str, int]:
        return {p["component"]: p["port"] for p in self.me["ports"]}

    @property
    def pg(self) -> dict[str, Any] | None:
        return self.me.get("identity", {}).get("pgsql")

    def _pg_instance(self) -> bool:
        return "pgsql" in self.me["modules"] and self.pg is not None

    def _admin(self) -> tuple[str, str]:
        assert self.pg is not None
        return "dbuser_dba", self.secrets.get(f"{self.pg['cluster']}/pg_admin_password", "")

    def _pool_user(self) -> str | None:
        """The first pg_users member with a password in the store: who logs in through pgbouncer."""
        assert self.pg is not None
        prefix = f"{self.pg['cluster']}/pg_users/"
        users = [
            n.split("/")[2] for n, v in self.secrets.items() if n.startswith(prefix) and n.endswith("/password") and v
        ]
        return users[0] if users else None

    def _instances(self) -> dict[str, str]:
        return {m["identity"]["pgsql"]["instance"]: ip for ip, m in self.fleet.items() if m["identity"].get("pgsql")}

    def _scrape_targets(self) -> set[str]:
        return {
            f"{ip}:{p['port']}"
            for ip, m in self.fleet.items()
            for p in m["ports"]
            if p["component"] in ("node_exporter", "etcd")
        }

    def vmetrics_query(self) -> str:
        url = f"http://{self.address}:{self.ports['vmetrics']}/api/v1/query?query=up"
        return f"curl -fsS --max-time 10 {shlex.quote(url)}"

    # -- the script -------------------------------------------------------------------------------------------
    def commands(self) -> dict[str, str]:
        """Every command the checks need, by record name; only those of the checks that apply here."""
        cmds = {"record": f'cat "$R"{RECORD}', "listening": "ss -Hltn"}
        units = [u["name"] for u in self.me["units"]]
        if units:
            names = " ".join(shlex.quote(u) for u in units)
            cmds["units"] = f"systemctl show --property=Id,LoadState,ActiveState,UnitFileState -- {names}"
        ports = self.ports
        if "etcd" in self.me["modules"] and "etcd" in ports:
            url = f"https://{self.address}:{ports['etcd']}"
            cluster = self.me["identity"]["etcd"]["cluster"]
            root = shlex.quote(f"root:{self.secrets.get(f'{cluster}/etcd_root_password', '')}")
            cmds["etcd/anonymous"] = f"etcdctl {ETCD_TLS} --endpoints {url} endpoint health"
            cmds["etcd/root"] = f"etcdctl {ETCD_TLS} --user {root} --endpoints {url} endpoint health"
        if self._pg_instance():
            cmds["etcd/rbac"] = f'python3 -c {shlex.quote(ETCD_RBAC)} "$R"{PATRONI_CONF}'
            if "patroni" in ports:
                base = f"http://{self.address}:{ports['patroni']}"
                cmds["patroni/health"] = f"curl -fsS --max-time 10 {base}/health"
                cmds["patroni/cluster"] = f"curl -fsS --max-time 10 {base}/cluster"
        if self.pg is not None:
            cmds["pgbouncer/databases"] = f'cat "$R"{DATABASES}'
            user, password = self._admin()
            cluster = self.pg["cluster"]
            sql = "select pg_is_in_recovery()"
            roles = ("primary", "replica") if len(self.pg["members"]) > 1 else ("primary",)
            for role in roles:  # 5433/5434 lead to pgbouncer: ask in the first pooled database
                port = ports.get(f"haproxy:{cluster}-{role}")
                if password and port:
                    psql = _psql(self.address, port, user, password, sql, '"$db"')
                    cmds[f"haproxy/{role}"] = f"db=$(pooled | head -n 1); db=${{db:-postgres}}; {psql}"
            pool_user = self._pool_user()
            if "pgbouncer" in ports and pool_user:
                pw = self.secrets[f"{cluster}/pg_users/{pool_user}/password"]
                psql = _psql(self.address, ports["pgbouncer"], pool_user, pw, "select 1", '"$d"')
                cmds["pgbouncer/logins"] = (
                    f'pooled | while IFS= read -r d; do e=$(mktemp); o=$({psql} 2>"$e" </dev/null); '
                    'printf "%s %s %s\\n" "$(printf %s "$d" | base64 -w0)" "$(printf %s "$o" | base64 -w0)" '
                    '"$(base64 -w0 <"$e")"; rm -f "$e"; done'
                )
        if "dnsmasq" in ports:
            names = " ".join(shlex.quote(n) for n in sorted(self._instances()))
            cmds["dnsmasq"] = f"python3 -c {shlex.quote(DNS_QUERY)} {self.address} {ports['dnsmasq']} {names}"
        if "vmetrics" in ports:
            cmds["vmetrics/up"] = self.vmetrics_query()
        return cmds

    def script(self) -> str:
        """The bash script that gathers this host's facts (its standard input is the script itself: every command
        in it reads /dev/null)."""
        lines = []
        for entry in self.me["files"]:
            path = entry["path"]
            if "\n" in path or not path.startswith("/"):
                raise ValueError(f"{self.address}: cannot verify the path {path!r}")
            lines.append(f"{'F' if entry.get('kind', 'file') == 'file' else 'B'} {path}")
        body = [SCRIPT_HEAD]
        body += [f"cap {name} {shlex.quote(cmd)}" for name, cmd in self.commands().items()]
        body.append("{ files >\"$T/files.r\" <<'STY_FILES'\n" + "\n".join(lines) + "\nSTY_FILES\n} &")
        body.append(SCRIPT_TAIL)
        return "\n".join(body)

    # -- the judges ---------------------------------------------------------------------------------------------
    def files(self, snap: Snapshot) -> Verdict:
        """Every managed file exists as applied: digest (whole files), owner, group and mode."""
        out = snap.cmd("record")
        try:
            record = json.loads(out.stdout)["files"] if out.rc == 0 else None
        except (ValueError, KeyError, TypeError):
            record = None
        if record is None:
            return Verdict(1, [f"{self.address}: cannot read the apply record {RECORD}: {out.said()}"])
        v = Verdict()
        for entry in self.me["files"]:
            v.checks += 1
            path = entry["path"]
            applied, found = record.get(path), snap.files.get(path)
            if applied is None:
                v.problems.append(f"{self.address}: {path}: not in the apply record")
            elif found is None:
                v.problems.append(f"{self.address}: {path}: nothing gathered")
            elif not found.exists:
                v.problems.append(f"{self.address}: {path}: missing")
            elif entry.get("kind", "file") == "file":
                if found.sha256 != applied["sha256"]:
                    v.problems.append(f"{self.address}: {path}: content differs from what was applied (sha256 "
                                      f"{found.sha256[:12]}, applied {applied['sha256'][:12]})")  # fmt: skip
                mode = format(int(found.mode, 8), "04o") if found.mode.isdigit() else found.mode
                want = (entry["owner"], entry["group"], entry["mode"])
                if (found.user, found.group, mode) != want:
                    v.problems.append(f"{self.address}: {path}: {found.user}:{found.group} {mode}, want "
                                      f"{want[0]}:{want[1]} {want[2]}")  # fmt: skip
        return v

    def units(self, snap: Snapshot) -> Verdict:
        """Every unit of the manifest is enabled and active (one `systemctl show` for all)."""
        names = [u["name"] for u in self.me["units"]]
        if not names:
            return Verdict(skipped="no units")
        out = snap.cmd("units")
        states = unit_states(out.stdout) if out.rc == 0 else []
        if len(states) != len(names):
            return Verdict(len(names), [f"{self.address}: systemctl show answered {len(states)} of {len(names)} "
                                        f"units: {out.said()}"])  # fmt: skip
        bad = [
            f"{name} ({s.get('ActiveState', '?')}, {s.get('UnitFileState') or s.get('LoadState', '?')})"
            for name, s in zip(names, states, strict=True)
            if s.get("ActiveState") not in ACTIVE or s.get("UnitFileState") not in ENABLED
        ]
        return Verdict(len(names), [f"{self.address}: not enabled and active: {', '.join(bad)}"] if bad else [])

    def listening(self, snap: Snapshot) -> Verdict:
        """Every port of the manifest has a TCP listener."""
        out = snap.cmd("listening")
        if out.rc != 0:
            return Verdict(1, [f"{self.address}: ss -Hltn failed: {out.said()}"])
        ports = listening_ports(out.stdout)
        missing = [f"{p['port']} ({p['component']})" for p in self.me["ports"] if p["port"] not in ports]
        return Verdict(
            len(self.me["ports"]), [f"{self.address}: not listening: {', '.join(missing)}"] if missing else []
        )

    def etcd_health(self, snap: Snapshot) -> Verdict:
        """The member refuses anonymous clients and answers healthy to root."""
        if "etcd" not in self.me["modules"]:
            return Verdict(skipped="not an etcd member")
        v = Verdict(2)
        anonymous, root = snap.cmd("etcd/anonymous"), snap.cmd("etcd/root")
        if not (anonymous.rc != 0 and "user name is empty" in anonymous.stderr):
            v.problems.append(f"{self.address}: etcd answers without authentication: {anonymous.said()}")
        if not (root.rc == 0 and "is healthy" in root.stdout + root.stderr):
            v.problems.append(f"{self.address}: etcd endpoint health as root: {root.said()}")
        return v

    def etcd_rbac(self, snap: Snapshot) -> Verdict:
        """Pigsty's RBAC: a cluster's etcd user reads and writes `<namespace>/<scope>/`, nothing else."""
        if not self._pg_instance():
            return Verdict(skipped="not a PostgreSQL instance")
        out = snap.cmd("etcd/rbac")
        try:
            found = json.loads(out.stdout) if out.rc == 0 else None
        except ValueError:
            found = None
        if found is None:
            return Verdict(1, [f"{self.address}: the etcd RBAC probe failed: {out.said()}"])
        if "unavailable" in found:
            return Verdict(retry=True, skipped=found["unavailable"])  # the caller asks live, one call at a time
        v, auth = Verdict(3), found["auth"]
        token = None
        if auth["rc"] != 0:
            v.problems.append(f"{self.address}: etcd authenticate: {auth['stderr'].strip()}")
        else:
            token = _json(auth["stdout"]).get("token")
            if not token:
                v.problems.append(f"{self.address}: etcd refused the credentials of {found['user']}")
        if token:
            mine, other = _json(found["mine"]["stdout"]), _json(found["other"]["stdout"])
            leader = any(base64.b64decode(kv["key"]).endswith(b"/leader") for kv in mine.get("kvs", []))
            if not leader:
                v.problems.append(f"{self.address}: {found['user']} sees no leader key under {found['prefix']}: {mine}")
            if "permission denied" not in str(other.get("error", other.get("message", ""))):
                v.problems.append(f"{self.address}: {found['user']} may read outside {found['prefix']}: {other}")
        return v

    def patroni(self, snap: Snapshot) -> Verdict:
        """Patroni is healthy, its cluster has one leader and exactly the manifest's members."""
        if not self._pg_instance():
            return Verdict(skipped="not a PostgreSQL instance")
        v = Verdict(3)
        health, cluster = snap.cmd("patroni/health"), snap.cmd("patroni/cluster")
        if health.rc != 0:
            v.problems.append(f"{self.address}: patroni /health: {health.said()}")
        members = _json(cluster.stdout).get("members") if cluster.rc == 0 else None
        if not isinstance(members, list):
            v.problems.append(f"{self.address}: patroni /cluster: {cluster.said()}")
            return v
        leaders = [m["name"] for m in members if m["role"] == "leader"]
        if len(leaders) != 1:
            v.problems.append(f"{self.address}: patroni reports leaders {leaders}, want exactly one")
        want = sorted(self.pg["members"]) if self.pg else []
        if sorted(m["name"] for m in members) != want:
            v.problems.append(f"{self.address}: patroni members {sorted(m['name'] for m in members)}, want {want}")
        return v

    def haproxy_routes(self, snap: Snapshot, live: dict[str, Captured] | None = None) -> Verdict:
        """The primary service leads to the primary, the replica service (several members) to a replica. `live`:
        answers asked again since the snapshot (`route_query`), by role. A wrong answer is worth asking again
        (`retry`): right after an apply HAProxy sends the replica service to its backup, the primary, until the
        replicas' health checks pass."""
        if self.pg is None:
            return Verdict(skipped="not a PostgreSQL instance")
        if not self._admin()[1]:
            return Verdict(skipped="the secret store has no admin password")
        cluster, v = self.pg["cluster"], Verdict()
        roles = [("primary", "f")] + ([("replica", "t")] if len(self.pg["members"]) > 1 else [])
        for role, want in roles:
            v.checks += 1
            component = f"haproxy:{cluster}-{role}"
            if component not in self.ports:
                v.problems.append(f"{self.address}: no {component} port in the manifest")
                continue
            out = (live or {}).get(role) or snap.cmd(f"haproxy/{role}")
            if out.stdout.strip() != want:
                v.problems.append(f"{self.address}: {component} (port {self.ports[component]}): pg_is_in_recovery "
                                  f"answered {out.stdout.strip()!r}, want {want!r}: {out.stderr.strip()}")  # fmt: skip
        v.retry = bool(v.problems)
        return v

    def route_query(self, role: str, snap: Snapshot) -> str | None:
        """The snapshot's `haproxy/<role>` question as one command, to ask it again live (None: not asked)."""
        user, password = self._admin()
        port = self.ports.get(f"haproxy:{self.pg['cluster']}-{role}") if self.pg else None
        if not (password and port):
            return None
        listed = snap.cmd("pgbouncer/databases")
        names = pooled_databases(listed.stdout) if listed.rc == 0 else []
        db = shlex.quote(names[0] if names else "postgres")
        return _psql(self.address, port, user, password, "select pg_is_in_recovery()", db)

    def pgbouncer(self, snap: Snapshot) -> Verdict:
        """A pg_users member logs in through pgbouncer to every database it pools."""
        if self.pg is None or "pgbouncer" not in self.ports:
            return Verdict(skipped="no pgbouncer here")
        user = self._pool_user()
        if not user:
            return Verdict(skipped="the secret store has no pg_users password")
        listed = snap.cmd("pgbouncer/databases")
        names = pooled_databases(listed.stdout) if listed.rc == 0 else []
        if not names:
            return Verdict(1, [f"{self.address}: pgbouncer lists no database in {DATABASES}: {listed.said()}"])
        answers: dict[str, tuple[str, str]] = {}
        for line in snap.cmd("pgbouncer/logins").stdout.splitlines():
            db, out, err = (base64.b64decode(p).decode(errors="replace") for p in (line.split(" ") + ["", ""])[:3])
            answers[db] = (out, err)
        v = Verdict(len(names))
        for db in names:
            out, err = answers.get(db, ("", "not asked"))
            if out.strip() != "1":
                v.problems.append(f"{self.address}: {user}@{db} via pgbouncer (port {self.ports['pgbouncer']}): "
                                  f"{err.strip() or repr(out)}")  # fmt: skip
        return v

    def dnsmasq(self, snap: Snapshot) -> Verdict:
        """The infra node's dnsmasq answers for every PostgreSQL instance of the fleet."""
        if "dnsmasq" not in self.ports:
            return Verdict(skipped="no dnsmasq here")
        instances = self._instances()
        if not instances:
            return Verdict(1, [f"{self.address}: no PostgreSQL instance in the bundles"])
        out = snap.cmd("dnsmasq")
        answers = {line.split(" ", 1)[0]: line.split()[1:] for line in out.stdout.splitlines() if line.strip()}
        v = Verdict(len(instances))
        for name, ip in sorted(instances.items()):
            if answers.get(name) != [ip]:
                v.problems.append(f"{self.address}: dnsmasq answers {answers.get(name)} for {name}, want [{ip!r}]: "
                                  f"{out.stderr.strip()}")  # fmt: skip
        return v

    def vmetrics(self, snap: Snapshot | Captured) -> Verdict:
        """VictoriaMetrics finds every node_exporter and etcd member up (`retry`: a first scrape may be pending)."""
        if "vmetrics" not in self.ports:
            return Verdict(skipped="no VictoriaMetrics here")
        out = snap.cmd("vmetrics/up") if isinstance(snap, Snapshot) else snap
        want = self._scrape_targets()
        up: dict[str, str] = {}
        if out.rc == 0:
            result = _json(out.stdout).get("data", {}).get("result", [])
            up = {r["metric"].get("instance", ""): r["value"][1] for r in result}
        if all(up.get(t) == "1" for t in want):
            return Verdict(len(want))
        down = {t: up.get(t) for t in sorted(want) if up.get(t) != "1"}
        detail = "" if out.rc == 0 else f": {out.said()}"
        return Verdict(len(want), [f"{self.address}: node_exporter or etcd targets not up: {down}{detail}"], retry=True)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def run_script(client: Any, script: str, timeout: float = 300, sudo: bool = False) -> tuple[int, str, str]:
    """One exec of `bash -s` on a paramiko client, the script on its standard input (no length limit of a command
    line, and no secret in the host's process list but the commands that take one). `sudo`: as apply does for a
    user other than root (the apply record is root's alone)."""
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise ConnectionError("the SSH connection is closed")
    chan = transport.open_session()
    try:
        chan.settimeout(timeout)
        chan.exec_command("sudo -n bash -s" if sudo else "bash -s")
        chan.sendall(script.encode())
        chan.shutdown_write()
        stdout = chan.makefile("rb").read()
        stderr = chan.makefile_stderr("rb").read()
        return chan.recv_exit_status(), stdout.decode(errors="replace"), stderr.decode(errors="replace")
    finally:
        chan.close()


def gather(client: Any, checks: HostChecks) -> Snapshot:
    """Run the host's script once and parse what it printed; a failure becomes the snapshot's `error`."""
    started = time.monotonic()
    try:
        sudo = checks.me.get("ssh", {}).get("user", "root") != "root"
        rc, out, err = run_script(client, checks.script(), sudo=sudo)
    except Exception as exc:  # socket and paramiko errors: the host's checks fail with it
        return Snapshot(checks.address, seconds=time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
    snap = parse_snapshot(checks.address, out, err, time.monotonic() - started)
    if rc != 0 and not snap.error:
        snap.error = f"the gathering script exited {rc}: {err.strip()}"
    return snap
