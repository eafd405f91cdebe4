"""pytest-testinfra checks generated from the manifests: run by `sty verify`, one set per host.

The testinfra plugin gives each test a `host` (paramiko, host keys checked by sty's own client). Asking each fact
with its own round trip made verify slow, so before the first test the `snapshots` fixture runs one gathering
script per host, all hosts at once (apply/verify_batch.py), and each test judges its host's snapshot. What to
expect comes from the manifests in STY_VERIFY_OUTDIR, the secret store and the record the apply left on the host.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from sty.apply.verify_batch import Captured, HostChecks, Snapshot, Verdict, gather
from sty.contract.manifest import discover, read_manifest
from sty.contract.store import read_store

OUTDIR = Path(os.environ.get("STY_VERIFY_OUTDIR", "outputs"))
JOBS = int(os.environ.get("STY_VERIFY_JOBS", "0"))  # 0: min(16, hosts)


@cache
def manifest_of(address: str) -> dict[str, Any]:
    return read_manifest(OUTDIR / f"{address}.yml")[0].to_dict()


@cache
def store() -> dict[str, str]:
    return read_store(OUTDIR)


@cache
def checks_of(address: str) -> HostChecks:
    fleet = {ip: manifest_of(ip) for ip in discover(OUTDIR)}
    return HostChecks(address, manifest_of(address), fleet, store())


def strict_client(backend: Any) -> Any:
    """testinfra's paramiko backend only warns on unknown host keys: hand it sty's own client, which loads the
    configured known hosts and rejects anything else."""
    from sty.apply.remote import Remote, SshOptions

    if "client" not in backend.__dict__:
        remote = Remote.from_manifest(read_manifest(OUTDIR / f"{backend.hostname}.yml")[0], SshOptions.from_env())
        conn = remote.connection()
        conn.open()
        backend.__dict__["client"] = conn.client
    return backend.__dict__["client"]


@pytest.fixture(autouse=True)
def strict_host_keys(host):
    strict_client(host.backend)


def _say(config: pytest.Config, line: str) -> None:
    """A progress line on the terminal, past pytest's capture of the running test."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    else:
        reporter.write_line(line)


def _gather(host: Any) -> Snapshot:
    address = host.backend.hostname
    started = time.monotonic()
    try:
        client = strict_client(host.backend)  # the handshakes too run in parallel
    except Exception as exc:  # unreachable, host key rejected …: every check of the host fails with it
        return Snapshot(address, seconds=time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
    snap = gather(client, checks_of(address))
    snap.seconds = time.monotonic() - started
    return snap


@pytest.fixture(scope="session")
def snapshots(request: pytest.FixtureRequest) -> dict[str, Snapshot]:
    """Every selected host's facts, gathered concurrently once per session (the same Host objects as the tests'
    `host`: testinfra caches them by these arguments)."""
    import testinfra

    opt = request.config.option
    hosts = testinfra.get_hosts(
        opt.hosts.split(",") if opt.hosts else [None],
        connection=opt.connection,
        ssh_config=opt.ssh_config,
        ssh_identity_file=opt.ssh_identity_file,
        sudo=opt.sudo,
        sudo_user=opt.sudo_user,
        ansible_inventory=opt.ansible_inventory,
        force_ansible=opt.force_ansible,
    )
    jobs = JOBS or min(16, len(hosts))
    started, found = time.monotonic(), {}
    for h in hosts:  # manifests and the store read once, here, not by racing threads
        checks_of(h.backend.hostname)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for done in as_completed([pool.submit(_gather, h) for h in hosts]):
            snap = done.result()
            found[snap.address] = snap
            what = f"could not gather: {snap.error}" if snap.error else f"{len(snap.files) + len(snap.out)} facts"
            _say(request.config, f"verify {snap.address}: {what} in {snap.seconds:.2f}s")
    _say(request.config, f"verify: gathered {len(hosts)} host(s) in {time.monotonic() - started:.2f}s, {jobs} at once")
    return found


@pytest.fixture
def facts(host, snapshots: dict[str, Snapshot]) -> tuple[HostChecks, Snapshot]:
    address = host.backend.hostname
    snap = snapshots.get(address) or Snapshot(address, error="not gathered")
    if snap.error:
        pytest.fail(f"{address}: could not gather the facts: {snap.error}", pytrace=False)
    return checks_of(address), snap


def settle(request: pytest.FixtureRequest, verdict: Verdict) -> None:
    """Report how many facts the check judged (the per-host progress line counts them), then pass, skip or fail
    with every problem found."""
    request.node.user_properties.append(("sty_checks", (verdict.checks, len(verdict.problems))))
    if verdict.skipped:
        pytest.skip(verdict.skipped)
    if verdict.problems:
        pytest.fail("\n".join(verdict.problems), pytrace=False)


def test_files_match_what_was_applied(request, facts):
    checks, snap = facts
    settle(request, checks.files(snap))


def test_units_enabled_and_active(request, facts):
    checks, snap = facts
    settle(request, checks.units(snap))


def test_ports_listening(request, facts):
    checks, snap = facts
    settle(request, checks.listening(snap))


def test_etcd_endpoint_health(request, facts):
    checks, snap = facts
    settle(request, checks.etcd_health(snap))


def test_each_postgres_cluster_reaches_only_its_own_etcd_keys(request, host, facts):
    """Pigsty's RBAC: a cluster's etcd user reads and writes `<namespace>/<scope>/`, nothing else. Asked the way
    Patroni asks, through etcd's JSON gateway with the credentials and certificate of patroni.yml."""
    checks, snap = facts
    verdict = checks.etcd_rbac(snap)
    if verdict.retry:  # no PyYAML on the host to read patroni.yml there: read it here, one round trip a request
        _etcd_rbac_live(host)
        verdict = Verdict(3)
    settle(request, verdict)


def _etcd_rbac_live(host) -> None:
    conf = yaml.safe_load(host.file("/etc/patroni/patroni.yml").content_string)
    dcs = conf["etcd3"]
    curl = f"curl -sS --max-time 5 --cacert {dcs['cacert']} --cert {dcs['cert']} --key {dcs['key']}"
    url = f"https://{dcs['hosts'][0]}"

    def post(path: str, body: dict, token: str = "") -> dict:
        header = f"-H {shlex.quote('Authorization: ' + token)} " if token else ""
        out = host.run(f"{curl} {header}-X POST {url}{path} -d {shlex.quote(json.dumps(body))}")
        assert out.rc == 0, f"{host.backend.hostname}: {out.stderr}"
        return json.loads(out.stdout)

    token = post("/v3/auth/authenticate", {"name": dcs["username"], "password": dcs["password"]}).get("token")
    assert token, f"{host.backend.hostname}: etcd refused the credentials of {dcs['username']}"

    def keys(prefix: bytes) -> dict:
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        return post("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end), "keys_only": True}, token)

    mine = keys(f"{conf['namespace'].rstrip('/')}/{conf['scope']}/".encode())
    assert any(base64.b64decode(kv["key"]).endswith(b"/leader") for kv in mine.get("kvs", [])), mine
    other = keys(b"/")
    assert "permission denied" in str(other.get("error", other.get("message", ""))), other


def test_patroni_health_and_one_leader(request, facts):
    checks, snap = facts
    settle(request, checks.patroni(snap))


def test_haproxy_services_route_by_role(request, host, facts):
    """Each service of the cluster leads to the role it names. Right after an apply the replica service may
    still lead to its backup, the primary, until the replicas' health checks pass (a few check intervals): then
    it asks again, live, for up to 90 s."""
    checks, snap = facts
    verdict = checks.haproxy_routes(snap)
    deadline = time.monotonic() + 90
    while verdict.retry and verdict.problems and time.monotonic() < deadline:
        time.sleep(3)
        live = {}
        for role in ("primary", "replica"):
            query = checks.route_query(role, snap)
            if query:
                answer = host.run(query)
                live[role] = Captured(answer.rc, answer.stdout, answer.stderr)
        verdict = checks.haproxy_routes(snap, live)
    settle(request, verdict)


def test_pgbouncer_login_and_databases(request, facts):
    checks, snap = facts
    settle(request, checks.pgbouncer(snap))


def test_dnsmasq_resolves_instances(request, facts):
    """The infra node's dnsmasq answers for every PostgreSQL instance of the fleet (from its record files)."""
    checks, snap = facts
    settle(request, checks.dnsmasq(snap))


def test_vmetrics_scrapes_node_exporters(request, host, facts):
    """VictoriaMetrics on the infra node scrapes every node's node_exporter and every etcd member (over TLS, with
    its client certificate from the fleet CA), and finds them up. Right after an apply the first scrapes may still
    be pending (a scrape interval or two): then it asks again, live, for up to 90 s."""
    checks, snap = facts
    verdict = checks.vmetrics(snap)
    deadline = time.monotonic() + 90
    while verdict.retry and verdict.problems and time.monotonic() < deadline:
        time.sleep(3)
        answer = host.run(checks.vmetrics_query())
        verdict = checks.vmetrics(Captured(answer.rc, answer.stdout, answer.stderr))
    settle(request, verdict)
