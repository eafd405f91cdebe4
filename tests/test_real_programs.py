"""The real programs judge the shipped inventory's bundles (outputs/<ip>/) through the registered checkers
(apply/checks/): haproxy, PostgreSQL 15 (settings and pg_hba.conf), pgbouncer, etcd, Patroni,
systemd-analyze, chronyd and dnsmasq (/etc/hosts); see tests/realprog.py.

Each checker also gets a deliberately broken copy to reject, with the program's own message, so that a
checker which silently passes anything is caught. Everything that could open a connection runs in a
private network namespace made by the checker, or on loopback only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import realprog as rp
import yaml

from sty.apply.checks import CHECKERS, FAIL, PASS, SKIP, load_all
from sty.apply.checks.runner import run_host_checks

pytestmark = pytest.mark.slow

HOSTS = rp.host_addresses()


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, setpriv to the postgres user)")


def bundle(host: str) -> Path:
    return rp.OUTPUTS / host


def run(b: Path, host: str, checker: str, files=None, peers=None):
    need_root()
    return rp.run(b, host, checker, files, peers)


@pytest.fixture
def broken(tmp_path):
    """`broken(host)` -> a copy of the host's bundle to spoil; `edit(copy, path, fn)` rewrites one file."""

    def copy(host: str, tag: str = "") -> Path:
        dst = tmp_path / f"{host}{tag}"
        shutil.copytree(bundle(host), dst)
        return dst

    return copy


def edit(root: Path, path: str, fn) -> None:
    f = rp.bundle_file(root, path)
    f.write_text(fn(f.read_text()))


def edit_yaml(root: Path, path: str, fn) -> None:
    f = rp.bundle_file(root, path)
    data = yaml.safe_load(f.read_text())
    fn(data)
    f.write_text(yaml.safe_dump(data, sort_keys=False))


def assert_ok(result) -> None:
    """Passed. A missing program is a skip here (the runner already turned it into a failure under CI);
    any other skip of a shipped bundle is a failure: outputs/ must be fully checkable."""
    if result.status == SKIP and "is not installed" in result.reason:
        pytest.skip(result.reason)
    assert result.status == PASS, f"{result.status}: {result.reason}\n{result.output}"


def assert_rejected(result, *messages: str) -> None:
    if result.status == SKIP and "is not installed" in result.reason:
        pytest.skip(result.reason)
    assert result.status == FAIL, f"the checker accepted a broken file ({result.status}):\n{result.output}"
    for m in messages:
        assert m in result.output, f"expected {m!r} in:\n{result.output}"


def test_every_manifest_checker_is_registered_and_its_files_exist():
    assert HOSTS, "no bundles in outputs/: run make build"
    load_all()
    for host in HOSTS:
        for check in rp.manifest(host).get("checks", []):
            assert check["checker"] in CHECKERS, f"{host}: no checker registered as {check['checker']}"
            for f in check["files"]:
                assert rp.bundle_file(bundle(host), f).exists(), f"{host}: {f} listed for {check['checker']}"


@pytest.mark.parametrize("host", HOSTS)
def test_runner_passes_every_build_check_of_the_host(host):
    """The runner over the whole manifest (what `sty lint` does inside its namespace): nothing skipped."""
    need_root()
    results = run_host_checks(bundle(host), rp.manifest(host), {"build", "both"}, peers=rp.peers_of(host))
    assert results
    for r in results:
        assert_ok(r)


# --------------------------------------------------------------------------------------------------
# 1. haproxy
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", rp.hosts_with("haproxy"))
def test_haproxy(host):
    assert_ok(run(bundle(host), host, "haproxy"))


def test_haproxy_rejects_broken_copy(broken):
    host = rp.hosts_with("haproxy")[0]
    b = broken(host)
    first = sorted(rp.bundle_file(b, "/etc/haproxy/conf.d").glob("*.cfg"))[0]
    edit(b, f"/etc/haproxy/conf.d/{first.name}", lambda t: t.replace("option httpchk", "option httpchekk", 1))
    assert_rejected(run(b, host, "haproxy"), "unknown option 'httpchekk'", f"/etc/haproxy/conf.d/{first.name}")


def test_haproxy_warnings_fail(broken):
    host = rp.hosts_with("haproxy")[0]
    b = broken(host)
    # a warning only (exit code 0 without -dW): 'option httplog' in a tcp proxy
    edit(b, "/etc/haproxy/haproxy.cfg", lambda t: t + "\nlisten extra\n    bind 127.0.0.1:1\n    option httplog\n")
    assert_rejected(run(b, host, "haproxy"), "[WARNING]", "'option httplog' not usable")


def test_haproxy_gets_a_standin_for_the_fleet_ca(broken):
    """/etc/pki/ca.crt comes with the apply stage: the check supplies a stand-in and says so."""
    host = rp.hosts_with("haproxy")[0]
    b = broken(host)
    server = "    server s1 10.10.10.11:9000 check-ssl ca-file /etc/pki/ca.crt check port 9000\n"
    rp.bundle_file(b, "/etc/haproxy/conf.d/sty-ca.cfg").write_text(
        "listen sty-ca\n    bind *:19002\n    mode tcp\n    option httpchk\n" + server
    )
    r = run(b, host, "haproxy")
    assert_ok(r)
    assert "/etc/pki/ca.crt is provided by the apply stage" in r.reason
    edit(b, "/etc/haproxy/conf.d/sty-ca.cfg", lambda t: t.replace("/etc/pki/ca.crt", "/etc/pki/sty-none.crt"))
    assert_rejected(run(b, host, "haproxy"), "/etc/pki/sty-none.crt")


# --------------------------------------------------------------------------------------------------
# 2./3. PostgreSQL 15: settings (postgres -C, then a start that loads shared_preload_libraries) and pg_hba
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", rp.hosts_with("postgres-settings"))
def test_postgres_settings(host):
    assert_ok(run(bundle(host), host, "postgres-settings"))


def test_postgres_settings_reject_broken_copy(broken):
    host = rp.hosts_with("postgres-settings")[0]
    b = broken(host)

    dcs = lambda c: c["bootstrap"]["dcs"]["postgresql"]["parameters"]  # noqa: E731
    edit_yaml(b, "/etc/patroni/patroni.yml", lambda c: dcs(c).update(wal_level="logicall"))
    assert_rejected(run(b, host, "postgres-settings"), 'invalid value for parameter "wal_level": "logicall"')
    edit_yaml(b, "/etc/patroni/patroni.yml", lambda c: dcs(c).update(wal_level="logical"))
    edit_yaml(b, "/etc/patroni/patroni.yml", lambda c: c["postgresql"]["parameters"].update(shared_bufers="1GB"))
    assert_rejected(run(b, host, "postgres-settings"), 'unrecognized configuration parameter "shared_bufers"')


def test_postgres_start_rejects_broken_copy(broken):
    """What only a start shows: names in a loaded extension's namespace, libraries that do not exist."""
    host = rp.hosts_with("postgres-settings")[0]
    b = broken(host)
    params = lambda c: c["postgresql"]["parameters"]  # noqa: E731
    edit_yaml(b, "/etc/patroni/patroni.yml", lambda c: params(c).update({"auto_explain.log_analyz": "on"}))
    assert_rejected(run(b, host, "postgres-settings"), 'invalid configuration parameter name "auto_explain.log_analyz"')

    def spoil(c):
        params(c).pop("auto_explain.log_analyz")
        params(c)["shared_preload_libraries"] = "pg_stat_statements, sty_no_such_lib"

    edit_yaml(b, "/etc/patroni/patroni.yml", spoil)
    assert_rejected(run(b, host, "postgres-settings"), 'could not access file "sty_no_such_lib"')


def test_postgres_settings_skip_an_extension_this_machine_cannot_install(broken):
    host = rp.hosts_with("postgres-settings")[0]
    b = broken(host)
    edit_yaml(
        b,
        "/etc/patroni/patroni.yml",
        lambda c: c["postgresql"]["parameters"].update(shared_preload_libraries="timescaledb, pg_stat_statements"),
    )
    r = run(b, host, "postgres-settings")
    assert r.status == SKIP and "extension timescaledb" in r.reason and "cannot be installed" in r.reason, r


@pytest.mark.parametrize("host", rp.hosts_with("postgres-hba"))
def test_pg_hba(host):
    assert_ok(run(bundle(host), host, "postgres-hba"))


def test_pg_hba_rejects_broken_copy(broken):
    host = rp.hosts_with("postgres-hba")[0]
    b = broken(host)
    edit(b, "/pg/conf/pg_hba.conf", lambda t: t + "host all all 127.0.0.1/33 scram-sha-256\n")
    assert_rejected(run(b, host, "postgres-hba"), 'invalid CIDR mask in address "127.0.0.1/33"', "/pg/conf/pg_hba.conf")


# --------------------------------------------------------------------------------------------------
# 4. pgbouncer
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", rp.hosts_with("pgbouncer"))
def test_pgbouncer(host):
    assert_ok(run(bundle(host), host, "pgbouncer"))


def test_pgbouncer_rejects_broken_copy(broken):
    host = rp.hosts_with("pgbouncer")[0]
    b = broken(host)
    edit(b, "/etc/pgbouncer/pgbouncer.ini", lambda t: t.replace("pool_mode = transaction", "pool_mode = transactional"))
    assert_rejected(run(b, host, "pgbouncer"), 'invalid value "transactional" for parameter pool_mode')
    b = broken(host, "-hba")
    edit(b, "/etc/pgbouncer/pgb_hba.conf", lambda t: t + "host replication all 10.0.0.0/8 md5\n")
    assert_rejected(run(b, host, "pgbouncer"), "could not parse hba config line")
    # the %include files are read from the copy too
    b = broken(host, "-include")
    edit(b, "/etc/pgbouncer/database.txt", lambda t: t + "sty_bad = host=/tmp bogus=1\n")
    assert_rejected(run(b, host, "pgbouncer"), "unrecognized connection parameter: bogus", "database.txt")


# --------------------------------------------------------------------------------------------------
# 5. etcd (private network namespace, the cluster's other members started from their bundles)
# --------------------------------------------------------------------------------------------------


def _no_namespace_left() -> None:
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "sty-test-" not in left, left


@pytest.mark.parametrize("host", rp.hosts_with("etcd"))
def test_etcd(host):
    assert_ok(run(bundle(host), host, "etcd", peers=rp.peers_of(host)))
    _no_namespace_left()


def test_etcd_rejects_broken_copy(broken):
    host = rp.hosts_with("etcd")[0]
    b = broken(host)
    edit(b, "/etc/etcd/etcd.conf", lambda t: t.replace("quota-backend-bytes: ", "quota-backend-bytes: lots", 1))
    assert_rejected(run(b, host, "etcd"), "cannot unmarshal string into Go struct field")
    _no_namespace_left()


def test_etcd_three_members_need_their_peers(tmp_path):
    """A member of a 3-node cluster is healthy only with its peers, which the check starts from their
    bundles; without them it is started alone and the result says health was not checked."""
    need_root()
    host = rp.hosts_with("etcd")[0]
    text = rp.bundle_file(bundle(host), "/etc/etcd/etcd.conf").read_text()
    ips = ["10.10.10.10", "10.10.10.11", "10.10.10.12"]
    cluster = ",".join(f"etcd-{i + 1}=https://{ip}:2380" for i, ip in enumerate(ips))
    roots = {}
    for i, ip in enumerate(ips):
        conf = text.replace("10.10.10.10", ip).replace("name: etcd-1", f"name: etcd-{i + 1}")
        conf = "\n".join(
            f"initial-cluster: {cluster}" if line.startswith("initial-cluster:") else line for line in conf.splitlines()
        )
        f = tmp_path / ip / "etc/etcd/etcd.conf"
        f.parent.mkdir(parents=True)
        f.write_text(conf + "\n")
        roots[ip] = tmp_path / ip
    peers = {ip: r for ip, r in roots.items() if ip != ips[1]}
    r = run(roots[ips[1]], ips[1], "etcd", ["/etc/etcd/etcd.conf"], peers)
    assert r.status == PASS and "2 peer(s)" in r.reason, f"{r.reason}\n{r.output}"
    r = run(roots[ips[1]], ips[1], "etcd", ["/etc/etcd/etcd.conf"], {})
    assert r.status == PASS and "etcd-1, etcd-3 have no bundle here" in r.reason, f"{r.reason}\n{r.output}"
    _no_namespace_left()


# --------------------------------------------------------------------------------------------------
# 6. patroni --validate-config (private network namespace with the shipped etcd running)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", rp.hosts_with("patroni"))
def test_patroni_validate_config(host):
    r = run(bundle(host), host, "patroni", peers=rp.peers_of(host))
    assert_ok(r)
    assert "a real etcd cluster started from the bundles of" in r.reason


def test_patroni_with_standin_listener():
    """Without the etcd member's bundle the DCS endpoint is a stand-in TCP listener."""
    host = next(h for h in rp.hosts_with("patroni") if not rp.hosts_with("etcd") or h not in rp.hosts_with("etcd"))
    r = run(bundle(host), host, "patroni", peers={})
    assert_ok(r)
    assert "stand-in TCP listener" in r.reason


def test_patroni_rejects_broken_copy(broken):
    host = rp.hosts_with("patroni")[0]
    b = broken(host)
    edit(b, "/etc/patroni/patroni.yml", lambda t: t.replace("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/99/bin"))
    assert_rejected(
        run(b, host, "patroni"), "postgresql.bin_dir  Directory '/usr/lib/postgresql/99/bin' does not exist."
    )


# --------------------------------------------------------------------------------------------------
# 7. systemd units
# --------------------------------------------------------------------------------------------------

UNITS = [(h, files[0]) for h in rp.hosts_with("systemd") for files in rp.checks(h, "systemd")]


@pytest.mark.parametrize("host,unit", UNITS)
def test_systemd_unit(host, unit):
    assert_ok(run(bundle(host), host, "systemd", [unit]))


def test_systemd_rejects_broken_copy(broken):
    host, unit = UNITS[0]
    b = broken(host)
    edit(b, unit, lambda t: t.replace("[Service]\n", "[Service]\nKilMode=mixed\n", 1))
    assert_rejected(run(b, host, "systemd", [unit]), "Unknown key 'KilMode' in section [Service]")
    edit(
        b,
        unit,
        lambda t: t.replace("KilMode=mixed\n", "").replace("ExecStart=", "ExecStart=/usr/bin/sty-no-such-program ", 1),
    )
    assert_rejected(run(b, host, "systemd", [unit]), "Command /usr/bin/sty-no-such-program is not executable")


# --------------------------------------------------------------------------------------------------
# 8. chrony
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", rp.hosts_with("chrony"))
def test_chrony(host):
    assert_ok(run(bundle(host), host, "chrony"))


def test_chrony_rejects_broken_copy(broken):
    host = rp.hosts_with("chrony")[0]
    b = broken(host)
    edit(b, "/etc/chrony/chrony.conf", lambda t: t + "makestep 1.0 x\n")
    assert_rejected(run(b, host, "chrony"), "Could not parse makestep directive")


# --------------------------------------------------------------------------------------------------
# 9. /etc/hosts (dnsmasq reads it as an additional hosts file)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", rp.hosts_with("hosts"))
def test_hosts(host):
    assert_ok(run(bundle(host), host, "hosts"))


def test_hosts_rejects_broken_copy(broken):
    host = rp.hosts_with("hosts")[0]
    b = broken(host)
    edit(b, "/etc/hosts", lambda t: t.replace("# END", "10.10.10.300 sty-bad\n# END"))
    assert_rejected(run(b, host, "hosts"), "bad address at /etc/hosts line")
