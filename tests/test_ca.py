"""The fleet CA (compiler/ca.py): created on first use beside the secret store, host certificates signed for
the manifests' `certificates` entries, reissued only when missing, expiring, or no longer matching; keys 0600
and never in outputs/. `openssl` judges the certificates."""

from __future__ import annotations

import datetime as dt
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sty.compiler.ca import (
    CA_CERT_PATH,
    ca_dir,
    ensure_ca,
    issue,
    parse_validity,
    reissue_reason,
    sign_for_bundle,
)
from sty.contract.manifest import Certificate, Facts, Manifest, Ssh

HOST = "10.10.10.11"
ENTRY = {
    "name": "patroni",
    "common_name": "pg-test-1",
    "sans": ["pg-test-1", "10.10.10.11", "localhost", "127.0.0.1"],
    "cert": "/pg/cert/server.crt",
    "key": "/pg/cert/server.key",
    "owner": "postgres",
    "usage": "both",
}
CLIENT = {
    "name": "etcd-client",
    "common_name": "pg-test",
    "sans": [],
    "cert": "/pg/cert/etcd.crt",
    "key": "/pg/cert/etcd.key",
    "owner": "postgres",
    "usage": "client",
}


def manifest_of(address: str, *entries: dict) -> Manifest:
    """A bundle manifest that lists these certificate requests (the rest of the manifest does not matter here)."""
    certificates = [Certificate(**{**e, "sans": tuple(e["sans"])}) for e in entries]
    return Manifest(address, "", Ssh(address), "debian12", "apt", [], [], {}, Facts(1, 1, 1), certificates=certificates)


MANIFEST = manifest_of(HOST, ENTRY, CLIENT)


def need_openssl() -> None:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns, stat.S_IMODE(p.stat().st_mode))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    return tmp_path / "outputs"


def test_ca_lives_beside_the_secret_store(outdir, tmp_path):
    assert ca_dir(outdir) == tmp_path / ".sty" / "ca"
    assert ca_dir(tmp_path / "elsewhere" / "out") == tmp_path / "elsewhere" / ".sty" / "ca"


def test_ca_is_created_on_first_use_then_loaded(outdir):
    d = ca_dir(outdir)
    assert not d.exists()
    ca = ensure_ca(d, "sty-test-ca", "3650d")
    assert ca.created and (d / "ca.crt").exists() and (d / "ca.key").exists()
    assert stat.S_IMODE((d / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "sty-test-ca"
    assert dt.timedelta(days=3649) < ca.expires - dt.datetime.now(dt.UTC) <= dt.timedelta(days=3650)
    before = snapshot(d)
    again = ensure_ca(d, "other-cn", "10d")  # settings only matter on creation
    assert not again.created and again.cert == ca.cert
    assert snapshot(d) == before


def test_signed_files_verify_against_the_ca_with_their_sans(outdir, tmp_path):
    need_openssl()
    files = sign_for_bundle(outdir, MANIFEST)
    assert set(files) == {CA_CERT_PATH, ENTRY["cert"], ENTRY["key"], CLIENT["cert"], CLIENT["key"]}
    d = ca_dir(outdir)
    assert files[CA_CERT_PATH] == (d / "ca.crt").read_bytes()
    for entry in (ENTRY, CLIENT):
        cert, key = d / "issued" / HOST / f"{entry['name']}.crt", d / "issued" / HOST / f"{entry['name']}.key"
        assert files[entry["cert"]] == cert.read_bytes() and files[entry["key"]] == key.read_bytes()
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        proc = openssl("verify", "-CAfile", str(d / "ca.crt"), str(cert))
        assert proc.returncode == 0 and proc.stdout.strip().endswith(": OK"), proc.stdout + proc.stderr
    text = openssl("x509", "-noout", "-text", "-in", str(d / "issued" / HOST / "patroni.crt")).stdout
    assert "Subject: CN = pg-test-1" in text
    for san in ("DNS:pg-test-1", "IP Address:10.10.10.11", "DNS:localhost", "IP Address:127.0.0.1"):
        assert san in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "CA:FALSE" in text
    # the key matches its certificate
    pub_cert = openssl("x509", "-noout", "-pubkey", "-in", str(d / "issued" / HOST / "patroni.crt")).stdout
    pub_key = openssl("pkey", "-pubout", "-in", str(d / "issued" / HOST / "patroni.key")).stdout
    assert pub_cert == pub_key
    # usage is enforced: a client-only certificate is no server certificate
    client = str(d / "issued" / HOST / "etcd-client.crt")
    assert openssl("verify", "-CAfile", str(d / "ca.crt"), "-purpose", "sslclient", client).returncode == 0
    assert openssl("verify", "-CAfile", str(d / "ca.crt"), "-purpose", "sslserver", client).returncode != 0
    assert not list(outdir.parent.glob("outputs/**/*.key"))  # nothing lands in the bundle tree


def test_rerun_changes_no_file(outdir):
    results: list = []
    first = sign_for_bundle(outdir, MANIFEST, results=results)
    assert [r.status for _, _, r in results] == ["created", "created"]
    before = snapshot(ca_dir(outdir))
    results.clear()
    second = sign_for_bundle(outdir, MANIFEST, results=results)
    assert second == first
    assert [r.status for _, _, r in results] == ["unchanged", "unchanged"]
    assert snapshot(ca_dir(outdir)) == before


def _plant_expiring(ca, host: str, entry: dict, days: int) -> None:
    """Write a certificate for (host, entry) signed by `ca` that expires in `days` days."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, entry["common_name"])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(ca.key, hashes.SHA256())
    )
    crt, k = ca.issued_paths(host, entry["name"])
    crt.parent.mkdir(parents=True, exist_ok=True)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    k.chmod(0o600)


def test_expiring_certificate_is_reissued_and_the_other_kept(outdir):
    need_openssl()
    sign_for_bundle(outdir, MANIFEST)
    d = ca_dir(outdir)
    ca = ensure_ca(d)
    _plant_expiring(ca, HOST, ENTRY, days=10)
    kept = snapshot(d / "issued" / HOST)["etcd-client.crt"]
    results: list = []
    files = sign_for_bundle(outdir, MANIFEST, results=results)
    status = {name: r for _, name, r in results}
    assert status["patroni"].status == "reissued" and status["patroni"].reason.startswith("expires ")
    assert status["etcd-client"].status == "unchanged"
    assert snapshot(d / "issued" / HOST)["etcd-client.crt"] == kept
    cert = x509.load_pem_x509_certificate(files[ENTRY["cert"]])
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=7000)
    assert openssl("verify", "-CAfile", str(d / "ca.crt"), str(d / "issued" / HOST / "patroni.crt")).returncode == 0


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"sans": ["pg-test-1", "10.10.10.11"]}, "SANs changed"),
        ({"common_name": "pg-test-9"}, "common name changed"),
        ({"usage": "server"}, "usage changed"),
    ],
)
def test_changed_request_is_reissued(outdir, change, reason):
    sign_for_bundle(outdir, MANIFEST)
    results: list = []
    sign_for_bundle(outdir, manifest_of(HOST, {**ENTRY, **change}), results=results)
    (_, _, issued) = results[0]
    assert (issued.status, issued.reason) == ("reissued", reason)


def test_certificates_of_a_replaced_ca_are_reissued(outdir):
    sign_for_bundle(outdir, MANIFEST)
    d = ca_dir(outdir)
    (d / "ca.crt").unlink()
    (d / "ca.key").unlink()
    results: list = []
    sign_for_bundle(outdir, MANIFEST, results=results)
    assert {r.reason for _, _, r in results} == {"signed by another CA"}


def test_same_name_on_two_hosts_is_two_certificates(outdir):
    a = sign_for_bundle(outdir, manifest_of("10.10.10.11", ENTRY))
    b = sign_for_bundle(outdir, manifest_of("10.10.10.12", ENTRY))
    assert a[ENTRY["key"]] != b[ENTRY["key"]]


def test_issued_validity_never_exceeds_the_ca(outdir):
    ca = ensure_ca(ca_dir(outdir), validity="100d")
    request = Certificate("x", "x", ("x",), "/x.crt", "/x.key")
    cert = x509.load_pem_x509_certificate(issue(ca, request, HOST, "7300d")[0])
    assert cert.not_valid_after_utc <= ca.expires
    assert reissue_reason(ca, request, HOST) is None


@pytest.mark.parametrize("value", ["20d", "abc", "10y", ""])
def test_bad_validity_is_refused(value):
    with pytest.raises(ValueError):
        parse_validity(value)


def test_validity_notation():
    assert parse_validity("7300d") == dt.timedelta(days=7300)
    assert parse_validity("800h") == dt.timedelta(hours=800)
    assert parse_validity(397) == dt.timedelta(days=397)


def test_bad_requests_are_refused(outdir):
    ca = ensure_ca(ca_dir(outdir))
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        issue(ca, Certificate("x", "x", ("bad name!",), "/x.crt", "/x.key"), HOST)
    with pytest.raises(ValueError, match="usage"):
        issue(ca, Certificate("x", "x", (), "/x.crt", "/x.key", usage="peer"), HOST)
    with pytest.raises(ValueError, match="cannot name a file"):
        issue(ca, Certificate("../x", "x", (), "/x.crt", "/x.key"), HOST)


def test_half_a_ca_is_an_error(outdir):
    d = ca_dir(outdir)
    ensure_ca(d)
    (d / "ca.key").unlink()
    with pytest.raises(ValueError, match="exists without its pair"):
        ensure_ca(d)


def test_bring_your_own_ca(outdir, tmp_path):
    """A CA made elsewhere (here: the openssl CLI, RSA) placed as ca.crt/ca.key is used as is."""
    need_openssl()
    d = ca_dir(outdir)
    d.mkdir(parents=True)
    proc = openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "400", "-subj", "/CN=own-ca",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    files = sign_for_bundle(outdir, manifest_of(HOST, ENTRY))
    cert = d / "issued" / HOST / "patroni.crt"
    assert openssl("verify", "-CAfile", str(d / "ca.crt"), str(cert)).returncode == 0
    assert files[CA_CERT_PATH] == (d / "ca.crt").read_bytes()
