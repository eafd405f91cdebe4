"""Issue 10, item 4: etcd authentication as Pigsty enables it. The member started last carries `auth.sh`
(action etcd-auth): the root user, authentication on, one user per PostgreSQL cluster (a Citus shard group
shares one) with read-write on its own prefix. The script is run against a real etcd over TLS, twice."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import render_fleet, shipped_inventory
from test_pgsql_fidelity import citus_inventory

from sty.apply.checks.util import StandinPki
from sty.compiler.errors import InventoryError
from sty.contract.formats import substitute

AUTH = "/etc/etcd/auth.sh"


def test_the_last_member_carries_the_users_of_every_cluster(tmp_path: Path) -> None:
    data = shipped_inventory()
    data["all"]["children"]["etcd"]["hosts"]["10.10.10.11"] = {"etcd_seq": 2}
    fleet = render_fleet(data, tmp_path)
    assert AUTH not in fleet.files["10.10.10.10"] and AUTH in fleet.files["10.10.10.11"]
    text = fleet.files["10.10.10.11"][AUTH]
    for name in ("pg-meta", "pg-test"):
        assert f"readwrite /pg/{name}/" in text and f"<<secret:{name}/pg_etcd_password>>" in text
    assert "<<secret:etcd/etcd_root_password>>" in text
    entry = next(f for f in fleet.manifest("10.10.10.11")["files"] if f["path"] == AUTH)
    assert entry["mode"] == "0700" and entry["actions"] == [{"action": "etcd-auth"}]
    assert {"checker": "shellcheck", "files": [AUTH], "where": "build"} in fleet.manifest("10.10.10.11")["checks"]


def test_a_citus_shard_group_has_one_user(tmp_path: Path) -> None:
    text = render_fleet(citus_inventory(), tmp_path).files["10.10.10.10"][AUTH]
    assert text.count("role grant-permission pg-citus --prefix=true readwrite /pg/pg-citus/") == 1
    assert "pg-citus0" not in text.replace("pg-citus0/pg_etcd_password", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_script_enables_authentication_against_a_real_etcd(tmp_path: Path) -> None:
    if not (shutil.which("etcd") and shutil.which("etcdctl")):
        pytest.skip("etcd is not installed")
    fleet = render_fleet(shipped_inventory(), tmp_path / "inv")
    pki = StandinPki(tmp_path / "pki")
    cert, key = pki.issue("etcd-1", ["127.0.0.1", "localhost"])
    port, peer = _free_port(), _free_port()
    conf = {
        "name": "etcd-1",
        "data-dir": str(tmp_path / "data"),
        "listen-client-urls": f"https://127.0.0.1:{port}",
        "advertise-client-urls": f"https://127.0.0.1:{port}",
        "listen-peer-urls": f"https://127.0.0.1:{peer}",
        "initial-advertise-peer-urls": f"https://127.0.0.1:{peer}",
        "initial-cluster": f"etcd-1=https://127.0.0.1:{peer}",
    }
    tls = {"cert-file": str(cert), "key-file": str(key), "trusted-ca-file": str(pki.ca)}
    conf.update({"client-transport-security": tls, "peer-transport-security": tls})
    (tmp_path / "etcd.yml").write_text(yaml.safe_dump(conf))
    root = "r00t'pw$(x)\\"  # quotes, a substitution and a backslash reach etcd as written
    values = {
        "etcd/etcd_root_password": root,
        "pg-meta/pg_etcd_password": "meta",
        "pg-test/pg_etcd_password": "t",
    }
    script = substitute(fleet.files["10.10.10.10"][AUTH], "shell", values)
    for host_path, local in (
        ("/etc/etcd/ca.crt", pki.ca),
        ("/etc/etcd/server.crt", cert),
        ("/etc/etcd/server.key", key),
    ):
        script = script.replace(host_path, str(local))
    script = script.replace("https://127.0.0.1:2379", f"https://127.0.0.1:{port}")
    (tmp_path / "auth.sh").write_text(script)
    log = open(tmp_path / "etcd.log", "wb")
    proc = subprocess.Popen(["etcd", "--config-file", str(tmp_path / "etcd.yml")], stdout=log, stderr=log)
    try:
        ctl = ["etcdctl", "--cacert", str(pki.ca), "--cert", str(cert), "--key", str(key)]
        ctl += ["--endpoints", f"https://127.0.0.1:{port}"]
        env = dict(os.environ, ETCDCTL_API="3")
        for _ in range(2):  # a second run changes nothing and succeeds
            run = subprocess.run(["bash", str(tmp_path / "auth.sh")], capture_output=True, text=True, timeout=150)
            assert run.returncode == 0, run.stderr
            assert "root and 2 cluster user(s) in place" in run.stdout

        def as_user(user: str, *args: str) -> subprocess.CompletedProcess:
            return subprocess.run([*ctl, "--user", user, *args], capture_output=True, text=True, env=env, timeout=20)

        anonymous = subprocess.run([*ctl, "get", "/x"], capture_output=True, text=True, env=env, timeout=20)
        assert anonymous.returncode != 0 and "user name is empty" in anonymous.stderr
        assert as_user("pg-test:t", "put", "/pg/pg-test/leader", "pg-test-1").returncode == 0
        denied = as_user("pg-test:t", "put", "/pg/pg-meta/leader", "x")
        assert denied.returncode != 0 and "permission denied" in denied.stderr
        assert as_user(f"root:{root}", "get", "/pg/pg-test/leader").stdout.splitlines()[-1] == "pg-test-1"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_a_password_etcdctl_cannot_read_is_refused(tmp_path: Path) -> None:
    """etcdctl reads a password from stdin up to the first blank: such a password would be cut, so build says so."""
    data = shipped_inventory()
    data["all"]["children"]["pg-test"]["vars"]["pg_etcd_password"] = "two words"
    with pytest.raises(InventoryError) as caught:
        render_fleet(data, tmp_path)
    (problem,) = caught.value.report.errors
    assert "pg-test/pg_etcd_password: etcdctl reads a password up to its first blank" in problem.message
    assert "two words" not in problem.message
