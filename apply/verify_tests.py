"""pytest-testinfra checks generated from the manifests: run by `sty verify`, one set per host.

The testinfra plugin gives each test a `host` (paramiko, host keys checked); what to expect of it comes
from its manifest in STY_VERIFY_OUTDIR and the record the apply left on it.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import time
from functools import cache
from pathlib import Path

import pytest
import yaml

from sty.contract.manifest import discover, read_manifest
from sty.contract.store import read_store

OUTDIR = Path(os.environ.get("STY_VERIFY_OUTDIR", "outputs"))


@cache
def manifest_of(address: str) -> dict:
    return read_manifest(OUTDIR / f"{address}.yml")[0].to_dict()


@cache
def store() -> dict[str, str]:
    return read_store(OUTDIR)


@pytest.fixture(autouse=True)
def strict_host_keys(host):
    """testinfra's paramiko backend only warns on unknown host keys: hand it sty's own client, which
    loads the configured known hosts and rejects anything else."""
    from sty.apply.remote import Remote, SshOptions

    backend = host.backend
    if "client" not in backend.__dict__:
        remote = Remote.from_manifest(read_manifest(OUTDIR / f"{host.backend.hostname}.yml")[0], SshOptions.from_env())
        conn = remote.connection()
        conn.open()
        backend.__dict__["client"] = conn.client


def me(host) -> dict:
    return manifest_of(host.backend.hostname)


def has(host, module: str) -> bool:
    return module in me(host)["modules"]


def test_files_match_what_was_applied(host):
    record = json.loads(host.file("/var/lib/sty/applied.json").content_string)
    problems = []
    for entry in me(host)["files"]:
        path = entry["path"]
        applied = record["files"].get(path)
        if applied is None:
            problems.append(f"{path}: not in the apply record")
            continue
        f = host.file(path)
        if not f.exists:
            problems.append(f"{path}: missing")
            continue
        if entry.get("kind", "file") == "file":
            if f.sha256sum != applied["sha256"]:
                problems.append(f"{path}: content differs from what was applied")
            if (f.user, f.group, format(f.mode, "04o")) != (entry["owner"], entry["group"], entry["mode"]):
                problems.append(f"{path}: {f.user}:{f.group} {f.mode:04o}, want {entry['owner']}:{entry['group']} "
                                f"{entry['mode']}")  # fmt: skip
    assert not problems, "\n".join(problems)


def test_units_enabled_and_active(host):
    bad = [
        u["name"]
        for u in me(host)["units"]
        if not (host.service(u["name"]).is_running and host.service(u["name"]).is_enabled)
    ]
    assert not bad, f"not enabled and active: {', '.join(bad)}"


def test_ports_listening(host):
    listening = host.run("ss -Hltn").stdout
    ports = {int(line.split()[3].rsplit(":", 1)[1]) for line in listening.splitlines() if line.strip()}
    missing = [f"{p['port']} ({p['component']})" for p in me(host)["ports"] if p["port"] not in ports]
    assert not missing, f"not listening: {', '.join(missing)}"


def test_etcd_endpoint_health(host):
    if not has(host, "etcd"):
        pytest.skip("not an etcd member")
    port = next(p["port"] for p in me(host)["ports"] if p["component"] == "etcd")
    tls = "--cacert /etc/etcd/ca.crt --cert /etc/etcd/server.crt --key /etc/etcd/server.key"  # the member's own
    url = f"https://{host.backend.hostname}:{port}"
    anonymous = host.run(f"etcdctl {tls} --endpoints {url} endpoint health")
    assert anonymous.rc != 0 and "user name is empty" in anonymous.stderr, "etcd answers without authentication"
    cluster = me(host)["identity"]["etcd"]["cluster"]
    root = shlex.quote(f"root:{store().get(f'{cluster}/etcd_root_password', '')}")
    out = host.run(f"etcdctl {tls} --user {root} --endpoints {url} endpoint health")
    assert out.rc == 0 and "is healthy" in out.stdout + out.stderr, out.stdout + out.stderr


def test_each_postgres_cluster_reaches_only_its_own_etcd_keys(host):
    """Pigsty's RBAC: a cluster's etcd user reads and writes `<namespace>/<scope>/`, nothing else. Asked the way
    Patroni asks, through etcd's JSON gateway with the credentials and certificate of patroni.yml."""
    if not has(host, "pgsql") or "pgsql" not in me(host)["identity"]:
        pytest.skip("not a PostgreSQL instance")
    conf = yaml.safe_load(host.file("/etc/patroni/patroni.yml").content_string)
    dcs = conf["etcd3"]
    curl = f"curl -sS --max-time 5 --cacert {dcs['cacert']} --cert {dcs['cert']} --key {dcs['key']}"
    url = f"https://{dcs['hosts'][0]}"

    def post(path: str, body: dict, token: str = "") -> dict:
        header = f"-H {shlex.quote('Authorization: ' + token)} " if token else ""
        out = host.run(f"{curl} {header}-X POST {url}{path} -d {shlex.quote(json.dumps(body))}")
        assert out.rc == 0, out.stderr
        return json.loads(out.stdout)

    token = post("/v3/auth/authenticate", {"name": dcs["username"], "password": dcs["password"]}).get("token")
    assert token, f"etcd refused the credentials of {dcs['username']}"

    def keys(prefix: bytes) -> dict:
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        return post("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end), "keys_only": True}, token)

    prefix = f"{conf['namespace'].rstrip('/')}/{conf['scope']}/".encode()
    mine = keys(prefix)
    assert any(base64.b64decode(kv["key"]).endswith(b"/leader") for kv in mine.get("kvs", [])), mine
    other = keys(b"/")
    assert "permission denied" in str(other.get("error", other.get("message", ""))), other


def test_patroni_health_and_one_leader(host):
    if not has(host, "pgsql") or "pgsql" not in me(host)["identity"]:
        pytest.skip("not a PostgreSQL instance")
    port = next(p["port"] for p in me(host)["ports"] if p["component"] == "patroni")
    health = host.run(f"curl -fsS http://{host.backend.hostname}:{port}/health")
    assert health.rc == 0, health.stderr
    cluster = json.loads(host.run(f"curl -fsS http://{host.backend.hostname}:{port}/cluster").stdout)
    leaders = [m["name"] for m in cluster["members"] if m["role"] == "leader"]
    assert len(leaders) == 1, f"leaders: {leaders}"
    members = me(host)["identity"]["pgsql"]["members"]
    assert sorted(m["name"] for m in cluster["members"]) == sorted(members)


def _psql(host, port: int, user: str, password: str, sql: str, db: str = "postgres"):
    env = f"PGPASSWORD={shlex.quote(password)} PGCONNECT_TIMEOUT=5"
    return host.run(
        f"{env} psql -X -At -h {host.backend.hostname} -p {port} -U {shlex.quote(user)} -d {shlex.quote(db)} "
        f"-c {shlex.quote(sql)}"
    )


def _admin(host) -> tuple[str, str]:
    cluster = me(host)["identity"]["pgsql"]["cluster"]
    return "dbuser_dba", store().get(f"{cluster}/pg_admin_password", "")


def _pooled_databases(host) -> list[str]:
    text = host.file("/etc/pgbouncer/database.txt").content_string
    return [line.split("=", 1)[0].strip() for line in text.splitlines() if line.strip() and not line.startswith(";")]


def test_haproxy_services_route_by_role(host):
    if "pgsql" not in me(host).get("identity", {}):
        pytest.skip("not a PostgreSQL instance")
    user, password = _admin(host)
    if not password:
        pytest.skip("the secret store has no admin password")
    ports = {p["component"]: p["port"] for p in me(host)["ports"]}
    cluster = me(host)["identity"]["pgsql"]["cluster"]
    db = (_pooled_databases(host) or ["postgres"])[0]  # 5433/5434 lead to pgbouncer: a pooled database
    primary = _psql(host, ports[f"haproxy:{cluster}-primary"], user, password, "select pg_is_in_recovery()", db)
    assert primary.stdout.strip() == "f", primary.stdout + primary.stderr
    if len(me(host)["identity"]["pgsql"]["members"]) > 1:
        sql = "select pg_is_in_recovery()"
        replica = _psql(host, ports[f"haproxy:{cluster}-replica"], user, password, sql, db)
        assert replica.stdout.strip() == "t", replica.stdout + replica.stderr


def test_pgbouncer_login_and_databases(host):
    if "pgsql" not in me(host).get("identity", {}) or not any(p["component"] == "pgbouncer" for p in me(host)["ports"]):
        pytest.skip("no pgbouncer here")
    cluster = me(host)["identity"]["pgsql"]["cluster"]
    values = store()
    users = [
        name.split("/")[2]
        for name in values
        if name.startswith(f"{cluster}/pg_users/") and name.endswith("/password") and values[name]
    ]
    if not users:
        pytest.skip("the secret store has no pg_users password")
    port = next(p["port"] for p in me(host)["ports"] if p["component"] == "pgbouncer")
    names = _pooled_databases(host)
    assert names, "pgbouncer lists no database"
    for db in names:
        out = _psql(host, port, users[0], values[f"{cluster}/pg_users/{users[0]}/password"], "select 1", db)
        assert out.stdout.strip() == "1", f"{users[0]}@{db} via pgbouncer: {out.stderr}"


# a DNS query with the standard library (the hosts need no dig): A record of NAME from SERVER:PORT
DNS_QUERY = r"""
import socket, struct, sys
name, server, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
q = struct.pack(">HHHHHH", 0x5354, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.sendto(q, (server, port))
r = s.recv(512); n = struct.unpack(">H", r[6:8])[0]; i = len(q)
for _ in range(n):
    i += 2 if r[i] & 0xC0 == 0xC0 else r.index(b"\0", i) + 1 - i
    t, _, _, ln = struct.unpack(">HHIH", r[i:i + 10]); i += 10
    if t == 1: print(socket.inet_ntoa(r[i:i + 4]))
    i += ln
"""


def test_dnsmasq_resolves_instances(host):
    """The infra node's dnsmasq answers for every PostgreSQL instance of the fleet (from its record files)."""
    ports = {p["component"]: p["port"] for p in me(host)["ports"]}
    if "dnsmasq" not in ports:
        pytest.skip("no dnsmasq here")
    instances = {}
    for ip in discover(OUTDIR):
        pg = manifest_of(ip)["identity"].get("pgsql")
        if pg:
            instances[pg["instance"]] = ip
    assert instances, "no PostgreSQL instance in the bundles"
    for name, ip in sorted(instances.items()):
        out = host.run(f"python3 -c {shlex.quote(DNS_QUERY)} {name} {host.backend.hostname} {ports['dnsmasq']}")
        assert out.stdout.split() == [ip], f"dnsmasq answers {out.stdout.split()} for {name}: {out.stderr}"


def test_vmetrics_scrapes_node_exporters(host):
    """VictoriaMetrics on the infra node scrapes every node's node_exporter and every etcd member (over TLS, with
    its client certificate from the fleet CA), and finds them up."""
    ports = {p["component"]: p["port"] for p in me(host)["ports"]}
    if "vmetrics" not in ports:
        pytest.skip("no VictoriaMetrics here")
    want = set()
    for ip in discover(OUTDIR):
        for p in manifest_of(ip)["ports"]:
            if p["component"] in ("node_exporter", "etcd"):
                want.add(f"{ip}:{p['port']}")
    query = shlex.quote(f"http://{host.backend.hostname}:{ports['vmetrics']}/api/v1/query?query=up")
    up: dict[str, str] = {}
    deadline = time.monotonic() + 90  # the first scrapes follow start-up by a scrape interval or two
    while time.monotonic() < deadline:
        answer = host.run(f"curl -fsS {query}")
        if answer.rc == 0:
            result = json.loads(answer.stdout)["data"]["result"]
            up = {r["metric"].get("instance", ""): r["value"][1] for r in result}
            if all(up.get(t) == "1" for t in want):
                return
        time.sleep(3)
    assert all(up.get(t) == "1" for t in want), (
        f"node_exporter or etcd targets not up: { {t: up.get(t) for t in want} }"
    )
