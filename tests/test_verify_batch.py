"""`sty verify`'s batched gathering without a network: the script generated for a testbed manifest runs under bash
against a fake root (stub systemctl, ss, etcdctl, curl, psql on PATH), through the same paramiko-shaped exec as on
a host; the judges pass on the applied state and name host, file, unit or port when a fact is wrong. The judges of
answers that need a live service (etcd's gateway, Patroni, VictoriaMetrics) are fed answers recorded on the testbed.
"""

from __future__ import annotations

import copy
import grp
import hashlib
import io
import json
import os
import pwd
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sty.apply.verify import Progress
from sty.apply.verify_batch import RECORD, Captured, HostChecks, Snapshot, gather, parse_snapshot, unit_states
from sty.apply.verify_script import DNS_QUERY
from sty.contract.manifest import discover, read_manifest
from sty.contract.store import read_store

ROOT = Path(__file__).resolve().parents[1]
HOST = "10.10.10.11"  # pg-test-1: node, etcd, pgsql

STUBS = {
    "systemctl": r"""
first=1
for u in "$@"; do
  case $u in show|--property=*|--) continue ;; esac
  [ $first = 1 ] || echo
  first=0
  active=active; [ -e "$STUB/down.$u" ] && active=inactive
  printf 'Id=%s\nLoadState=loaded\nActiveState=%s\nUnitFileState=enabled\n' "$u" "$active"
done
""",
    "ss": 'cat >/dev/null; cat "$STUB/listening"\n',  # reads its stdin: must not eat the script
    "etcdctl": r"""
healthy="https://10.10.10.11:2379 is healthy: successfully committed proposal"
case " $* " in *" --user "*) echo "$healthy"; exit 0 ;; esac
if [ -e "$STUB/etcd-open" ]; then echo "$healthy"; exit 0; fi
echo '{"level":"warn","error":"rpc error: code = InvalidArgument desc = etcdserver: user name is empty"}' >&2
echo "https://10.10.10.11:2379 is unhealthy: failed to commit proposal: etcdserver: user name is empty" >&2
exit 1
""",
    "curl": r"""
for url; do :; done
case $url in */health) echo '{"state": "running"}' ;; */cluster) cat "$STUB/cluster.json" ;; *) exit 7 ;; esac
""",
    "psql": r"""
while [ $# -gt 0 ]; do case $1 in -p) port=$2; shift ;; -d) db=$2; shift ;; esac; shift; done
if [ -e "$STUB/down.$port" ]; then echo "psql: error: port $port failed: Connection refused" >&2; exit 2; fi
if [ -e "$STUB/backup.$port" ]; then echo f; exit 0; fi  # the replica service on its backup, the primary
case $port in 5433) echo f ;; 5434) echo t ;; 6432) echo 1; echo "$db" >>"$STUB/pooled-logins" ;; esac
""",
    "python3": 'echo \'{"unavailable": "the stub has no PyYAML"}\'\n',  # no etcd, no dnsmasq here
}

# recorded on the testbed (10.10.10.11): Patroni's /cluster and the etcd RBAC probe's answer
CLUSTER = {
    "members": [
        {"name": "pg-test-1", "role": "leader", "state": "running", "host": "10.10.10.11"},
        {"name": "pg-test-2", "role": "replica", "state": "streaming", "host": "10.10.10.12"},
        {"name": "pg-test-3", "role": "replica", "state": "streaming", "host": "10.10.10.13"},
    ],
    "scope": "pg-test",
}
HEADER = '"header":{"cluster_id":"3071483199444821755","revision":"117"}'
RBAC = {
    "user": "pg-test",
    "prefix": "/pg/pg-test/",
    "auth": {"rc": 0, "stdout": '{' + HEADER + ',"token":"KANdcnmNpfDCaJad.251"}', "stderr": ""},
    "mine": {"rc": 0, "stdout": '{' + HEADER + ',"kvs":[{"key":"L3BnL3BnLXRlc3QvY29uZmln"},'
             '{"key":"L3BnL3BnLXRlc3QvbGVhZGVy"}],"count":"2"}', "stderr": ""},  # /pg/pg-test/{config,leader}
    "other": {"rc": 0, "stdout": '{"error":"etcdserver: permission denied","message":"etcdserver: permission '
              'denied","code":7}', "stderr": ""},
}  # fmt: skip


@pytest.fixture(scope="module")
def outdir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verify") / "outputs"
    built = subprocess.run(
        [ROOT / ".venv/bin/sty", "build", "-q", "-i", ROOT / "conf/testbed.yml", "-o", out],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    return out


def host_checks(outdir: Path, address: str) -> HostChecks:
    fleet = {ip: read_manifest(outdir / f"{ip}.yml")[0].to_dict() for ip in discover(outdir)}
    return HostChecks(address, copy.deepcopy(fleet[address]), fleet, read_store(outdir))


class FakeChannel:
    """A paramiko channel whose remote end is a local `bash` in an environment of stubs."""

    def __init__(self, env: dict[str, str], execs: list[str]) -> None:
        self.env, self.execs, self.stdin = env, execs, b""

    def settimeout(self, timeout: float) -> None:
        pass

    def exec_command(self, command: str) -> None:
        self.execs.append(command)

    def sendall(self, data: bytes) -> None:
        self.stdin += data

    def shutdown_write(self) -> None:
        self.proc = subprocess.run(["bash", "-c", self.execs[-1]], input=self.stdin, capture_output=True, env=self.env)

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.proc.stdout)

    def makefile_stderr(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.proc.stderr)

    def recv_exit_status(self) -> int:
        return self.proc.returncode

    def close(self) -> None:
        pass


class FakeClient:
    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.execs = env, []

    def get_transport(self) -> Any:
        return SimpleNamespace(is_active=lambda: True, open_session=lambda: FakeChannel(self.env, self.execs))


class FakeHost:
    """HOST's bundle installed under a fake root as the apply would leave it, and stubs for the programs."""

    def __init__(self, base: Path, outdir: Path) -> None:
        self.root, self.stub = base / "root", base / "stub"
        self.checks = host_checks(outdir, HOST)
        me, record = self.checks.me, {}
        user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        for entry in me["files"]:
            target = self.root / entry["path"].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(outdir / HOST / entry["path"].lstrip("/"), target)
            target.chmod(int(entry["mode"], 8))
            entry["owner"], entry["group"] = user, group  # who this test can own files as
            record[entry["path"]] = {"sha256": hashlib.sha256(target.read_bytes()).hexdigest()}
        (self.root / "var/lib/sty").mkdir(parents=True)
        self.file(RECORD).write_text(json.dumps({"files": record}))
        self.stub.mkdir()
        for name, body in STUBS.items():
            (self.stub / name).write_text("#!/bin/bash\n" + body)
            (self.stub / name).chmod(0o755)
        self.listen(*[p["port"] for p in me["ports"]])
        (self.stub / "cluster.json").write_text(json.dumps(CLUSTER))
        self.client = FakeClient(
            {"PATH": f"{self.stub}:/usr/bin:/bin", "STUB": str(self.stub), "STY_VERIFY_ROOT": str(self.root)}
        )

    def listen(self, *ports: int) -> None:
        lines = [f"LISTEN 0      4096       0.0.0.0:{p} 0.0.0.0:*" for p in ports]
        (self.stub / "listening").write_text("\n".join(lines) + "\n")

    def file(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def reapply(self, path: str, text: str) -> None:
        """A new content, recorded as applied."""
        self.file(path).write_text(text)
        record = json.loads(self.file(RECORD).read_text())
        record["files"][path]["sha256"] = hashlib.sha256(text.encode()).hexdigest()
        self.file(RECORD).write_text(json.dumps(record))

    def snapshot(self) -> Snapshot:
        snap = gather(self.client, self.checks)
        assert not snap.error, snap.error
        return snap


@pytest.fixture
def fake(tmp_path, outdir) -> FakeHost:
    return FakeHost(tmp_path, outdir)


def test_one_exec_gathers_every_fact_and_the_applied_state_passes(fake):
    databases = "/etc/pgbouncer/database.txt"  # a second database, indented, after a blank line
    fake.reapply(databases, fake.file(databases).read_text() + "\n  meta = host=/var/run/postgresql dbname=meta\n")
    snap = fake.snapshot()
    assert fake.client.execs == ["bash -s"]  # one round trip for the whole host
    me = fake.checks.me
    assert set(snap.files) == {f["path"] for f in me["files"]}
    for judge, checks in [
        (fake.checks.files, len(me["files"])),
        (fake.checks.units, len(me["units"])),
        (fake.checks.listening, len(me["ports"])),
        (fake.checks.etcd_health, 2),
        (fake.checks.patroni, 3),
        (fake.checks.haproxy_routes, 2),  # primary and replica: pg-test has three members
    ]:
        verdict = judge(snap)
        assert (verdict.checks, verdict.problems, verdict.skipped) == (checks, [], ""), judge.__name__
    listed = fake.file(databases).read_text().splitlines()
    pooled = [line.split("=")[0].strip() for line in listed if line.strip() and not line.startswith(";")]
    assert len(pooled) == 2
    verdict = fake.checks.pgbouncer(snap)
    assert (verdict.checks, verdict.problems) == (2, [])
    assert (fake.stub / "pooled-logins").read_text().split() == pooled  # one login per pooled database


def test_a_changed_digest_mode_or_missing_file_fails_naming_host_and_file(fake):
    fake.file("/etc/haproxy/haproxy.cfg").write_text("# hand edit\n")
    fake.file("/etc/patroni/patroni.yml").chmod(0o644)
    fake.file("/etc/pgbouncer/pgbouncer.ini").unlink()
    problems = fake.checks.files(fake.snapshot()).problems
    assert len(problems) == 3, problems
    changed, mode, missing = sorted(problems)
    assert changed.startswith(f"{HOST}: /etc/haproxy/haproxy.cfg: content differs from what was applied")
    assert mode.startswith(f"{HOST}: /etc/patroni/patroni.yml: ") and " 0644, want " in mode and mode.endswith(" 0600")
    assert missing == f"{HOST}: /etc/pgbouncer/pgbouncer.ini: missing"


def test_a_file_missing_from_the_apply_record_fails(fake):
    record = fake.file("/var/lib/sty/applied.json")
    data = json.loads(record.read_text())
    del data["files"]["/etc/haproxy/haproxy.cfg"]
    record.write_text(json.dumps(data))
    assert fake.checks.files(fake.snapshot()).problems == [f"{HOST}: /etc/haproxy/haproxy.cfg: not in the apply record"]
    record.unlink()
    assert "cannot read the apply record" in fake.checks.files(fake.snapshot()).problems[0]


def test_an_inactive_unit_fails_with_its_state(fake):
    (fake.stub / "down.patroni.service").touch()
    assert fake.checks.units(fake.snapshot()).problems == [
        f"{HOST}: not enabled and active: patroni.service (inactive, enabled)"
    ]


def test_a_missing_port_fails_naming_port_and_component(fake):
    fake.listen(*[p["port"] for p in fake.checks.me["ports"] if p["component"] != "pgbouncer"])
    assert fake.checks.listening(fake.snapshot()).problems == [f"{HOST}: not listening: 6432 (pgbouncer)"]


def test_etcd_without_authentication_and_a_dead_pgbouncer_fail(fake):
    (fake.stub / "etcd-open").touch()
    (fake.stub / "down.6432").touch()
    (fake.stub / "down.5434").touch()
    snap = fake.snapshot()
    assert "etcd answers without authentication" in fake.checks.etcd_health(snap).problems[0]
    pgbouncer = fake.checks.pgbouncer(snap).problems
    assert pgbouncer and all("via pgbouncer (port 6432)" in p and "Connection refused" in p for p in pgbouncer)
    routes = fake.checks.haproxy_routes(snap).problems
    assert len(routes) == 1 and routes[0].startswith(f"{HOST}: haproxy:pg-test-replica (port 5434): ")


def test_units_parse_real_systemctl_show_output_in_order():
    recorded = (
        "Id=patroni.service\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n\n"
        "Id=nosuch.service\nLoadState=not-found\nActiveState=inactive\nUnitFileState=\n"
    )
    assert [(s["Id"], s["ActiveState"], s["UnitFileState"]) for s in unit_states(recorded)] == [
        ("patroni.service", "active", "enabled"),
        ("nosuch.service", "inactive", ""),
    ]


def test_a_script_that_died_half_way_is_an_error_not_a_pass(fake):
    text = f"@file 1 {'0' * 64} root root 644 /etc/hosts\n@cmd listening 0 {'TElTVEVO'} \n"  # no @end
    snap = parse_snapshot(HOST, text, "bash: line 9: killed")
    assert snap.error == "the gathering script stopped early: bash: line 9: killed"
    assert fake.checks.units(snap).problems  # a fact never gathered fails its check
    assert "`units` was not gathered" in fake.checks.units(snap).problems[0]


def snapshot_with(**outputs: Captured) -> Snapshot:
    return Snapshot(HOST, out={k.replace("_", "/"): v for k, v in outputs.items()})


def test_patroni_judge_wants_one_leader_and_exactly_the_members(outdir):
    checks = host_checks(outdir, HOST)

    def judge(cluster: dict) -> list[str]:
        answers = {
            "patroni_health": Captured(0, '{"state": "running"}', ""),
            "patroni_cluster": Captured(0, json.dumps(cluster), ""),
        }
        return checks.patroni(snapshot_with(**answers)).problems

    assert judge(CLUSTER) == []
    two = copy.deepcopy(CLUSTER)
    two["members"][1]["role"] = "leader"
    assert judge(two) == [f"{HOST}: patroni reports leaders ['pg-test-1', 'pg-test-2'], want exactly one"]
    fewer = copy.deepcopy(CLUSTER)
    fewer["members"].pop()
    assert "want ['pg-test-1', 'pg-test-2', 'pg-test-3']" in judge(fewer)[0]


def test_etcd_rbac_judge_on_the_recorded_answers(outdir):
    checks = host_checks(outdir, HOST)

    def judge(answer: dict) -> list[str]:
        return checks.etcd_rbac(snapshot_with(etcd_rbac=Captured(0, json.dumps(answer), ""))).problems

    assert judge(RBAC) == []
    leaky = copy.deepcopy(RBAC)
    leaky["other"]["stdout"] = '{"kvs": []}'
    assert judge(leaky) and "may read outside /pg/pg-test/" in judge(leaky)[0]
    refused = {**RBAC, "auth": {"rc": 0, "stdout": '{"error":"authentication failed"}', "stderr": ""}}
    assert judge(refused) == [f"{HOST}: etcd refused the credentials of pg-test"]
    no_leader = copy.deepcopy(RBAC)
    no_leader["mine"]["stdout"] = '{"kvs":[{"key":"L3BnL3BnLXRlc3QvY29uZmln"}]}'
    assert "sees no leader key under /pg/pg-test/" in judge(no_leader)[0]
    unavailable = checks.etcd_rbac(snapshot_with(etcd_rbac=Captured(0, '{"unavailable": "No module named yaml"}', "")))
    assert unavailable.retry  # the test then asks live, as before


def test_vmetrics_judge_names_the_targets_not_up(outdir):
    checks = host_checks(outdir, "10.10.10.10")
    want = sorted(checks._scrape_targets())
    result = [{"metric": {"instance": t}, "value": [0, "1"]} for t in want]
    up = Captured(0, json.dumps({"data": {"result": result}}), "")
    assert checks.vmetrics(snapshot_with(vmetrics_up=up)).problems == []
    result[0]["value"][1] = "0"
    down = checks.vmetrics(Captured(0, json.dumps({"data": {"result": result}}), ""))
    assert down.retry and f"'{want[0]}': '0'" in down.problems[0]


def dns_server(records: dict[str, str]) -> tuple[socket.socket, int]:
    """A one-thread UDP DNS server answering A records (enough for DNS_QUERY)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                query, peer = sock.recvfrom(512)
            except OSError:
                return
            i, labels = 12, []
            while query[i]:
                labels.append(query[i + 1 : i + 1 + query[i]].decode())
                i += query[i] + 1
            ip = records.get(".".join(labels))
            head = query[:2] + struct.pack(">HHHHH", 0x8180, 1, 1 if ip else 0, 0, 0)
            answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ip) if ip else b""
            sock.sendto(head + query[12 : i + 5] + answer, peer)

    threading.Thread(target=serve, daemon=True).start()
    return sock, sock.getsockname()[1]


def test_dns_query_program_and_judge(outdir):
    checks = host_checks(outdir, "10.10.10.10")
    instances = checks._instances()
    records = dict(instances)
    wrong = sorted(instances)[-1]
    records[wrong] = "10.9.9.9"
    sock, port = dns_server(records)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", DNS_QUERY, "127.0.0.1", str(port), *sorted(instances)],
            capture_output=True,
            text=True,
        )
    finally:
        sock.close()
    problems = checks.dnsmasq(snapshot_with(dnsmasq=Captured(proc.returncode, proc.stdout, proc.stderr))).problems
    assert problems == [f"10.10.10.10: dnsmasq answers ['10.9.9.9'] for {wrong}, want ['{instances[wrong]}']: "]


def test_progress_prints_one_line_per_host_instead_of_dots(tmp_path, monkeypatch, capsys):
    (tmp_path / "test_fake.py").write_text(
        "import pytest\nfrom types import SimpleNamespace as NS\n"
        "HOSTS = [NS(backend=NS(hostname=h)) for h in ('10.0.0.1', '10.0.0.2')]\n"
        "@pytest.fixture(params=HOSTS, ids=['a', 'b'])\n"
        "def _testinfra_host(request):\n    return request.param\n"
        "def test_ok(request, _testinfra_host):\n    request.node.user_properties.append(('sty_checks', (3, 0)))\n"
        "def test_bad(request, _testinfra_host):\n"
        "    bad = _testinfra_host.backend.hostname == '10.0.0.2'\n"
        "    request.node.user_properties.append(('sty_checks', (4, 2 if bad else 0)))\n"
        "    if bad:\n        pytest.fail('two problems', pytrace=False)\n"
        "def test_skip(_testinfra_host):\n    pytest.skip('not here')\n"
    )
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    args = [
        str(tmp_path),
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(tmp_path),
        "-o",
        "console_output_style=classic",
    ]
    assert pytest.main(args, plugins=[Progress()]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "verify 10.0.0.1: 7 checks passed (2 tests, 1 not applicable)"
    assert lines[1] == "verify 10.0.0.2: 2 of 7 checks failed (test_bad)"
    assert not any(set(line) <= set(".sF") and line for line in lines)  # no line of dots


def test_a_replica_service_still_on_its_backup_is_asked_again_live(fake):
    """Right after an apply HAProxy sends the replica service to the primary until the replicas' health checks
    pass: the verdict says it is worth asking again, and the live answer (the same question as one command,
    here run through the stubs as `sty verify` runs it on the host) decides."""
    (fake.stub / "backup.5434").touch()
    snap = fake.snapshot()
    first = fake.checks.haproxy_routes(snap)
    assert first.retry and first.problems == [
        f"{HOST}: haproxy:pg-test-replica (port 5434): pg_is_in_recovery answered 'f', want 't': "
    ]
    query = fake.checks.route_query("replica", snap)
    assert query is not None and "-p 5434" in query and "select pg_is_in_recovery()" in query

    def ask() -> Captured:
        env = {**os.environ, "PATH": f"{fake.stub}:/usr/bin:/bin", "STUB": str(fake.stub)}
        done = subprocess.run(["bash", "-c", query], env=env, capture_output=True, text=True)
        return Captured(done.returncode, done.stdout, done.stderr)

    assert fake.checks.haproxy_routes(snap, {"replica": ask()}).problems  # still on the backup
    (fake.stub / "backup.5434").unlink()
    settled = fake.checks.haproxy_routes(snap, {"replica": ask()})
    assert settled.problems == [] and not settled.retry and settled.checks == 2
