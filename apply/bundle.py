"""One host's bundle as the apply stage sees it: the typed manifest, the files, and the secrets put in.

Reads only the bundle directory and the secret store; never the inventory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Container
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from sty.contract.exits import UsageError
from sty.contract.formats import SecretError, substitute
from sty.contract.manifest import FileEntry, Manifest, ManifestError, discover, read_manifest
from sty.contract.targets import select

CA_PATH = "/etc/pki/ca.crt"

# Signs the certificates a bundle lists: (outdir, manifest) -> {host path: PEM bytes}, CA included.
# The command line wires in the fleet CA; without one, a bundle that needs certificates cannot be applied.
Signer = Callable[[Path, Manifest], dict[str, bytes]]


class ApplyError(Exception):
    """An apply step failed on a host; the message names host, step and the program's own words."""


@dataclass
class Bundle:
    outdir: Path
    ip: str
    manifest: Manifest
    text: str  # the manifest as written (its digest identifies the bundle)

    @classmethod
    def load(cls, outdir: Path, ip: str) -> Bundle:
        try:
            manifest, text = read_manifest(outdir / f"{ip}.yml")
        except ManifestError as exc:
            raise ApplyError(str(exc)) from None
        return cls(outdir, ip, manifest, text)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @cached_property
    def host_dir(self) -> Path:
        return (self.outdir / self.ip).resolve()

    def raw(self, path: str) -> str:
        host_dir = self.host_dir
        target = (host_dir / path.lstrip("/")).resolve()
        if not target.is_relative_to(host_dir):
            raise ApplyError(f"{self.ip}: {path} leaves the bundle directory; refusing it")
        try:
            return target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ApplyError(f"{self.ip}: {path}: cannot be read from the bundle: {exc}") from None

    def desired(self, values: dict[str, str], skip: Container[str] = ()) -> dict[str, bytes]:
        """Every file as it must be on the host: secrets substituted with the format's escaping."""
        out = {}
        for entry in self.manifest.files:
            if entry.path in skip:
                continue
            try:
                out[entry.path] = substitute(self.raw(entry.path), entry.format, values).encode()
            except SecretError as exc:
                raise ApplyError(f"{self.ip}: {entry.path}: {exc}") from None
        return out

    def certificates(self, sign: Signer | None) -> dict[str, bytes]:
        """The signed certificates, keys and CA; their entries join the manifest so they install like files."""
        certs, trust = self.manifest.certificates, self.manifest.trust
        if not certs and not trust:
            return {}
        if sign is None:
            raise ApplyError(f"{self.ip}: the bundle needs the fleet CA but no CA was given")
        files = sign(self.outdir, self.manifest)
        if trust and CA_PATH not in files:
            raise ApplyError(f"{self.ip}: the signer gave no CA certificate for {', '.join(trust)}")
        for path in trust:
            files[path] = files[CA_PATH]
        pem = FileEntry(path="", module="node", format="pem", sha256="")
        entries = [replace(pem, path=path) for path in trust]
        if CA_PATH in files and CA_PATH not in trust:  # manifests from before `trust`: the CA comes with certificates
            entries.append(replace(pem, path=CA_PATH))
        for cert in certs:
            entries.append(replace(pem, path=cert.cert, owner=cert.owner, group=cert.owner))
            entries.append(replace(pem, path=cert.key, owner=cert.owner, group=cert.owner, mode="0600"))
        known = {f.path for f in self.manifest.files}
        self.manifest.files.extend(e for e in entries if e.path not in known)
        return {e.path: files[e.path] for e in entries}  # what the manifest now lists, nothing more


def bundle_hosts(outdir: Path, retired: bool = False) -> list[str]:
    return discover(outdir, retired=retired)


def load_bundles(outdir: Path, target: str | None, retired: bool = False) -> dict[str, Bundle]:
    """The bundles of TARGET (as `select_hosts` chooses them), each manifest read and parsed once."""
    read = {}
    for ip in bundle_hosts(outdir, retired):
        try:
            read[ip] = read_manifest(outdir / f"{ip}.yml")
        except ManifestError as exc:  # invalid input, like a bad inventory: exit 2
            raise UsageError(str(exc)) from None
    if not read:
        raise UsageError(f"{outdir}: no host bundles (<ip>.yml beside <ip>/); run sty build first")
    chosen = select({ip: m.target_names() for ip, (m, _) in read.items()}, target, f"the bundles in {outdir}")
    return {ip: Bundle(outdir, ip, *read[ip]) for ip in chosen}


def select_hosts(outdir: Path, target: str | None, retired: bool = False) -> list[str]:
    """TARGET from the manifests alone: addresses, groups, cluster names, or all (comma-separated). With
    `retired`, hosts that left the inventory answer to their address and former groups (apply cleans them)."""
    index = {}
    for ip in bundle_hosts(outdir, retired):
        try:
            index[ip] = read_manifest(outdir / f"{ip}.yml")[0].target_names()
        except ManifestError as exc:  # invalid input, like a bad inventory: exit 2
            raise UsageError(str(exc)) from None
    if not index:
        raise UsageError(f"{outdir}: no host bundles (<ip>.yml beside <ip>/); run sty build first")
    return select(index, target, f"the bundles in {outdir}")
