"""The fleet CA: a self-signed CA kept beside the secret store, and the host certificates it signs.

Layout of the CA directory (`ca_dir(outdir)`: `.sty/ca/` next to the bundle tree, git-ignored; mode 0700):

    ca.crt, ca.key                      the CA (key 0600); bring your own CA by placing these two files
    issued/<host>/<name>.crt, .key      one certificate per (host, certificate name) of the manifests

Nothing here enters `outputs/`: bundles only list the certificates a host needs (`certificates` in the
manifest) and the apply stage calls `sign_for_bundle` to get the files. Work is done only when needed: a
certificate is (re)issued when it is missing, expires within `RENEW_BEFORE`, was signed by another CA, or no
longer matches its request (common name, SANs, usage, key); otherwise no file is touched, so reruns change
nothing. Keys are EC P-256, written 0600 with atomic renames.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
import re
import secrets as _random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sty.contract.manifest import Certificate, Manifest

from .bundle import CA_CERT_PATH
from .secrets import store_dir

DEFAULT_CN = "pigsty-ca"  # Pigsty's ca_cn
DEFAULT_VALIDITY = "7300d"  # Pigsty's cert_validity
RENEW_BEFORE = dt.timedelta(days=30)
USAGES = {
    "server": (ExtendedKeyUsageOID.SERVER_AUTH,),
    "client": (ExtendedKeyUsageOID.CLIENT_AUTH,),
    "both": (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
}
_DNS = re.compile(
    r"^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_SAFE = re.compile(r"^[A-Za-z0-9_.@:-]+$")


def ca_dir(outdir: Path) -> Path:
    """The CA directory of a bundle tree: `ca/` beside its secret store (`.sty/ca/` for `outputs/`)."""
    return store_dir(Path(outdir)).parent / "ca"


def parse_validity(text: str | int) -> dt.timedelta:
    """Pigsty's validity notation: `7300d`, `397d`, `48h`, or a number of days."""
    m = re.fullmatch(r"\s*(\d+)\s*([dh]?)\s*", str(text))
    if not m:
        raise ValueError(f"validity {text!r} is not a number of days (7300d) or hours (48h)")
    n = int(m.group(1))
    delta = dt.timedelta(hours=n) if m.group(2) == "h" else dt.timedelta(days=n)
    if delta <= RENEW_BEFORE:
        raise ValueError(f"validity {text!r} must exceed {RENEW_BEFORE.days} days, or every run would reissue")
    return delta


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomic write with `mode` from creation on (a key is never readable by others, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_random.token_hex(4)}.tmp")  # parallel applies, one name each
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _public_der(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _not_after(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc


@dataclass
class CA:
    dir: Path
    cert: x509.Certificate
    key: Any
    created: bool = False  # made by this call of ensure_ca

    @property
    def cert_pem(self) -> bytes:
        return _cert_pem(self.cert)

    @property
    def expires(self) -> dt.datetime:
        return _not_after(self.cert)

    @property
    def expires_soon(self) -> bool:
        return self.expires - _now() < RENEW_BEFORE

    def issued_paths(self, host: str, name: str) -> tuple[Path, Path]:
        for part in (host, name):
            if not _SAFE.match(part) or part in (".", ".."):
                raise ValueError(f"{part!r} cannot name a file of the CA directory")
        base = self.dir / "issued" / host
        return base / f"{name}.crt", base / f"{name}.key"


_CA_LOCK = threading.Lock()


def ensure_ca(directory: Path, cn: str = DEFAULT_CN, validity: str | int = DEFAULT_VALIDITY) -> CA:
    """Load the CA of `directory`, or create it (EC P-256 key, self-signed, `cn`, valid for `validity`). Hosts
    applied in parallel all ask for it: one thread (and one process, by a lock file) creates it, the rest load it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _CA_LOCK, open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_ca(directory, cn, validity)


def _ensure_ca(directory: Path, cn: str, validity: str | int) -> CA:
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if _public_der(key) != cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise ValueError(f"{key_path} is not the key of {cert_path}")
        return CA(directory, cert, key)
    if cert_path.exists() or key_path.exists():
        present = cert_path if cert_path.exists() else key_path
        raise ValueError(f"{present} exists without its pair; restore it or remove it to create a new CA")
    lifetime = parse_validity(validity)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, _cert_pem(cert), 0o644)
    return CA(directory, cert, key, created=True)


def _san(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _DNS.match(value) or len(value) > 253:
        raise ValueError(f"SAN {value!r} is neither an IP address nor a DNS name")
    return x509.DNSName(value.lower())


def _sans_of(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.IPAddress)} | {
        v.lower() for v in ext.get_values_for_type(x509.DNSName)
    }


def _wanted_sans(request: Certificate) -> set[str]:
    out = set()
    for value in request.sans:
        general = _san(str(value))
        out.add(str(general.value) if isinstance(general, x509.IPAddress) else general.value)
    return out


def _usage_of(cert: x509.Certificate) -> set:
    try:
        return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return set()


def _signed_by(cert: x509.Certificate, ca: CA) -> bool:
    if cert.issuer != ca.cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca.cert)
    except Exception:  # InvalidSignature, or a key type that cannot verify
        return False
    return True


def reissue_reason(ca: CA, request: Certificate, host: str) -> str | None:
    """Why the stored certificate of (host, request.name) must be (re)issued; None when it is fine."""
    cert_path, key_path = ca.issued_paths(host, request.name)
    if not cert_path.exists() or not key_path.exists():
        return "missing"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError:
        return "unreadable"
    if _public_der(key) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return "key does not match"
    if not _signed_by(cert, ca):
        return "signed by another CA"
    left = _not_after(cert) - _now()
    if left < RENEW_BEFORE:
        return f"expires {_not_after(cert):%Y-%m-%d}"
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cn or cn[0].value != request.common_name:
        return "common name changed"
    if _sans_of(cert) != _wanted_sans(request):
        return "SANs changed"
    if _usage_of(cert) != set(USAGES[request.usage]):
        return "usage changed"
    return None


class Issued(tuple):
    """`(cert_pem, key_pem)` with what happened: `status` created | reissued | unchanged, and `reason`."""

    status: str
    reason: str

    def __new__(cls, cert_pem: bytes, key_pem: bytes, status: str, reason: str = ""):
        obj = super().__new__(cls, (cert_pem, key_pem))
        obj.status, obj.reason = status, reason
        return obj


def issue(ca: CA, request: Certificate, host: str, validity: str | int = DEFAULT_VALIDITY) -> Issued:
    """The certificate and key of `request` for `host`, signed by `ca`; issued only when needed."""
    if request.usage not in USAGES:
        raise ValueError(f"certificate {request.name}: usage {request.usage!r} is not one of {', '.join(USAGES)}")
    sans = [_san(str(s)) for s in request.sans]
    cert_path, key_path = ca.issued_paths(host, request.name)
    reason = reissue_reason(ca, request, host)
    if reason is None:
        return Issued(cert_path.read_bytes(), key_path.read_bytes(), "unchanged")
    lifetime = parse_validity(validity)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = min(now + lifetime, _not_after(ca.cert))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, request.common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(USAGES[request.usage])), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.cert.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    cert_pem, key_pem = _cert_pem(cert), _key_pem(key)
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert_pem, 0o644)
    return Issued(cert_pem, key_pem, "created" if reason == "missing" else "reissued", reason)


def sign_for_bundle(
    outdir: Path,
    manifest: Manifest,
    cn: str = DEFAULT_CN,
    validity: str | int = DEFAULT_VALIDITY,
    results: list[tuple[str, str, Issued]] | None = None,
) -> dict[str, bytes]:
    """Host path -> bytes of every certificate and key a host's manifest lists, plus the CA certificate at
    CA_CERT_PATH. The CA is created on first use (`cn`, `validity` only matter then). `results`, when given,
    receives (host, name, Issued) for reporting."""
    ca = ensure_ca(ca_dir(outdir), cn, validity)
    host = manifest.address
    files: dict[str, bytes] = {CA_CERT_PATH: ca.cert_pem}
    for request in manifest.certificates:
        issued = issue(ca, request, host, validity)
        files[request.cert], files[request.key] = issued
        if results is not None:
            results.append((host, request.name, issued))
    return files
