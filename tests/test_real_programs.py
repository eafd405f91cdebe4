"""The real programs judge the shipped inventory's bundles (outputs/<ip>/): haproxy, PostgreSQL 15 (settings
and pg_hba.conf), pgbouncer, etcd, Patroni, systemd-analyze and chronyd; see tests/realprog.py.

Each checker also gets a deliberately broken copy to reject, with the program's own message, so that a
checker which silently passes anything is caught. Everything that could open a connection runs in a
private network namespace made by the harness or on loopback only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import realprog as rp
import yaml

pytestmark = pytest.mark.slow

HOSTS = rp.host_addresses()
# checkers the manifests name that are not wired here yet
NOT_WIRED = {"hosts"}
WIRED = {"haproxy", "postgres-settings", "postgres-hba", "pgbouncer", "etcd", "patroni", "systemd", "chrony"}
# programs a unit may run that need not be installed on the test machine: staged as stubs when absent
ALLOWED_STUBS = frozenset({"/usr/bin/prometheus-node-exporter"})


def need(*programs: str) -> None:
    """Skip when not root or a program is missing; under CI a missing program is a failure, not a skip."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, setpriv to the postgres user)")
    for prog in programs:
        if not (shutil.which(prog) or Path(prog).exists()):
            msg = f"{prog} is not installed (see .ci/run PACKAGES)"
            if os.environ.get("CI"):
                pytest.fail(msg)
            pytest.skip(msg)


def bundle(host: str) -> Path:
    return rp.OUTPUTS / host


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


def assert_ok(result: rp.Result) -> None:
    ok, out = result
    assert ok, out


def assert_rejected(result: rp.Result, *messages: str) -> None:
    ok, out = result
    assert not ok, f"the checker accepted a broken file:\n{out}"
    for m in messages:
        assert m in out, f"expected {m!r} in:\n{out}"


def test_every_manifest_checker_is_wired_and_its_files_exist():
    assert HOSTS, "no bundles in outputs/: run make build"
    for host in HOSTS:
        for check in rp.manifest(host).get("checks", []):
            assert check["checker"] in WIRED | NOT_WIRED, f"{host}: checker {check['checker']} has no test"
            for f in check["files"]:
                assert rp.bundle_file(bundle(host), f).exists(), f"{host}: {f} listed for {check['checker']}"


# --------------------------------------------------------------------------------------------------
# 1. haproxy
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", rp.hosts_with("haproxy"))
def test_haproxy(host):
    need("haproxy", "unshare")
    assert_ok(rp.check_haproxy(bundle(host), host))


def test_haproxy_rejects_broken_copy(broken):
    need("haproxy", "unshare")
    host = rp.hosts_with("haproxy")[0]
    b = broken(host)
    first = sorted(rp.bundle_file(b, "/etc/haproxy/conf.d").glob("*.cfg"))[0]
    edit(b, f"/etc/haproxy/conf.d/{first.name}", lambda t: t.replace("option httpchk", "option httpchekk", 1))
    assert_rejected(rp.check_haproxy(b, host), "unknown option 'httpchekk'", first.name)


def test_haproxy_warnings_fail(broken):
    need("haproxy", "unshare")
    host = rp.hosts_with("haproxy")[0]
    b = broken(host)
    # a warning only (exit code 0 without -dW): 'option httplog' in a tcp proxy
    edit(b, "/etc/haproxy/haproxy.cfg", lambda t: t + "\nlisten extra\n    bind 127.0.0.1:1\n    option httplog\n")
    assert_rejected(rp.check_haproxy(b, host), "[WARNING]", "'option httplog' not usable")


# --------------------------------------------------------------------------------------------------
# 2./3. PostgreSQL 15: settings and pg_hba.conf
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_template():
    need("setpriv", "openssl", str(rp.PG_BIN / "postgres"))
    try:
        rp.postgres_user()
    except KeyError:
        pytest.skip("no 'postgres' OS user")
    with rp.tmpdir("pgtemplate", owner="postgres") as root:
        yield rp.make_pg_template(root)


@pytest.mark.parametrize("host", rp.hosts_with("postgres-settings"))
def test_postgres_settings(host, pg_template):
    assert_ok(rp.check_pg_settings(bundle(host), host, pg_template))


def test_postgres_settings_reject_broken_copy(broken, pg_template):
    host = rp.hosts_with("postgres-settings")[0]
    b = broken(host)

    dcs = lambda c: c["bootstrap"]["dcs"]["postgresql"]["parameters"]  # noqa: E731
    edit_yaml(b, "/etc/patroni/patroni.yml", lambda c: dcs(c).update(wal_level="logicall"))
    assert_rejected(rp.check_pg_settings(b, host, pg_template), 'invalid value for parameter "wal_level": "logicall"')
    edit_yaml(b, "/etc/patroni/patroni.yml", lambda c: dcs(c).update(wal_level="logical"))
    edit_yaml(b, "/etc/patroni/patroni.yml", lambda c: c["postgresql"]["parameters"].update(shared_bufers="1GB"))
    assert_rejected(rp.check_pg_settings(b, host, pg_template), 'unrecognized configuration parameter "shared_bufers"')


@pytest.mark.parametrize("host", rp.hosts_with("postgres-settings"))
def test_postgres_starts_with_host_settings(host, pg_template):
    assert_ok(rp.check_pg_start(bundle(host), host, pg_template))


def test_postgres_start_rejects_broken_copy(broken, pg_template):
    host = rp.hosts_with("postgres-settings")[0]
    b = broken(host)
    params = lambda c: c["postgresql"]["parameters"]  # noqa: E731
    edit_yaml(b, "/etc/patroni/patroni.yml", lambda c: params(c).update({"auto_explain.log_analyz": "on"}))
    assert_rejected(
        rp.check_pg_start(b, host, pg_template), 'invalid configuration parameter name "auto_explain.log_analyz"'
    )
    edit_yaml(
        b,
        "/etc/patroni/patroni.yml",
        lambda c: params(c).update(shared_preload_libraries="pg_stat_statements, sty_no_such_lib"),
    )
    assert_rejected(rp.check_pg_start(b, host, pg_template), 'could not access file "sty_no_such_lib"')


@pytest.mark.parametrize("host", rp.hosts_with("postgres-hba"))
def test_pg_hba(host, pg_template):
    assert_ok(rp.check_pg_hba(bundle(host), host, pg_template))


def test_pg_hba_rejects_broken_copy(broken, pg_template):
    host = rp.hosts_with("postgres-hba")[0]
    b = broken(host)
    edit(b, "/pg/conf/pg_hba.conf", lambda t: t + "host all all 127.0.0.1/33 scram-sha-256\n")
    assert_rejected(rp.check_pg_hba(b, host, pg_template), 'invalid CIDR mask in address "127.0.0.1/33"')


# --------------------------------------------------------------------------------------------------
# 4. pgbouncer
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", rp.hosts_with("pgbouncer"))
def test_pgbouncer(host):
    need("pgbouncer")
    assert_ok(rp.check_pgbouncer(bundle(host), host))


def test_pgbouncer_rejects_broken_copy(broken):
    need("pgbouncer")
    host = rp.hosts_with("pgbouncer")[0]
    b = broken(host)
    edit(b, "/etc/pgbouncer/pgbouncer.ini", lambda t: t.replace("pool_mode = transaction", "pool_mode = transactional"))
    assert_rejected(rp.check_pgbouncer(b, host), 'invalid value "transactional" for parameter pool_mode')
    b = broken(host, "-hba")
    edit(b, "/etc/pgbouncer/pgb_hba.conf", lambda t: t + "host replication all 10.0.0.0/8 md5\n")
    assert_rejected(rp.check_pgbouncer(b, host), "could not parse hba config line")
    # the %include files are read from the copy too
    b = broken(host, "-include")
    edit(b, "/etc/pgbouncer/database.txt", lambda t: t + "sty_bad = host=/tmp bogus=1\n")
    assert_rejected(rp.check_pgbouncer(b, host), "unrecognized connection parameter: bogus", "database.txt")


# --------------------------------------------------------------------------------------------------
# 5. etcd (private network namespace)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", rp.hosts_with("etcd"))
def test_etcd(host):
    need("etcd", "etcdctl", "ip")
    assert_ok(rp.check_etcd(bundle(host), host))
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "sty-test-" not in left, left


def test_etcd_rejects_broken_copy(broken):
    need("etcd", "etcdctl", "ip")
    host = rp.hosts_with("etcd")[0]
    b = broken(host)
    edit(b, "/etc/etcd/etcd.conf", lambda t: t.replace("quota-backend-bytes: ", "quota-backend-bytes: lots", 1))
    assert_rejected(rp.check_etcd(b, host), "cannot unmarshal string into Go struct field")


# --------------------------------------------------------------------------------------------------
# 6. patroni --validate-config (private network namespace with the shipped etcd running)
# --------------------------------------------------------------------------------------------------

ETCD_CONFS = [rp.bundle_file(bundle(h), "/etc/etcd/etcd.conf") for h in rp.hosts_with("etcd")]


@pytest.mark.parametrize("host", rp.hosts_with("patroni"))
def test_patroni_validate_config(host):
    need("patroni", "etcd", "etcdctl", "ip", str(rp.PG_BIN / "postgres"))
    assert_ok(rp.check_patroni(bundle(host), host, ETCD_CONFS))


def test_patroni_rejects_broken_copy(broken):
    need("patroni", "ip")
    host = rp.hosts_with("patroni")[0]
    b = broken(host)
    edit(b, "/etc/patroni/patroni.yml", lambda t: t.replace("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/99/bin"))
    # no etcd_confs: a stand-in listener serves the DCS endpoint
    assert_rejected(
        rp.check_patroni(b, host), "postgresql.bin_dir  Directory '/usr/lib/postgresql/99/bin' does not exist."
    )


# --------------------------------------------------------------------------------------------------
# 7. systemd units
# --------------------------------------------------------------------------------------------------

UNITS = [(h, Path(files[0]).name) for h in rp.hosts_with("systemd") for files in rp.checks(h, "systemd")]


@pytest.mark.parametrize("host,unit", UNITS)
def test_systemd_unit(host, unit):
    need("systemd-analyze")
    assert_ok(rp.check_systemd(bundle(host), host, unit, ALLOWED_STUBS))


def test_systemd_rejects_broken_copy(broken):
    need("systemd-analyze")
    host, unit = UNITS[0]
    b = broken(host)
    edit(b, f"/etc/systemd/system/{unit}", lambda t: t.replace("[Service]\n", "[Service]\nKilMode=mixed\n", 1))
    assert_rejected(rp.check_systemd(b, host, unit), "Unknown key 'KilMode' in section [Service]")
    edit(
        b,
        f"/etc/systemd/system/{unit}",
        lambda t: t.replace("KilMode=mixed\n", "").replace("ExecStart=", "ExecStart=/usr/bin/sty-no-such-program ", 1),
    )
    assert_rejected(rp.check_systemd(b, host, unit), "Command /usr/bin/sty-no-such-program is not executable")


# --------------------------------------------------------------------------------------------------
# 8. chrony
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", rp.hosts_with("chrony"))
def test_chrony(host):
    need("chronyd", "unshare")
    assert_ok(rp.check_chrony(bundle(host), host))


def test_chrony_rejects_broken_copy(broken):
    need("chronyd", "unshare")
    host = rp.hosts_with("chrony")[0]
    b = broken(host)
    edit(b, "/etc/chrony/chrony.conf", lambda t: t + "makestep 1.0 x\n")
    assert_rejected(rp.check_chrony(b, host), "Could not parse makestep directive")
