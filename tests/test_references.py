"""Issue 10, item 1: a bundle never names a file that neither it nor the apply stage delivers. The fleet CA is
delivered where the manifest's `trust` says (NODE puts it on every node, as Pigsty does), certificates where
`certificates` says; the `references` check fails a bundle that names one of sty's paths nobody delivers."""

from __future__ import annotations

from pathlib import Path

import yaml

from sty.apply.bundle import Bundle
from sty.apply.checks import FAIL, PASS, CheckContext
from sty.apply.checks.references import check, references
from sty.compiler.build import render_targets
from sty.compiler.pipeline import compile_fleet, resolve_target
from sty.contract.manifest import Manifest

HAPROXY = "/etc/haproxy/haproxy.cfg"


def context(tmp_path: Path, text: str, trust: list[str], certs: list[dict] | None = None) -> CheckContext:
    (tmp_path / "etc/haproxy").mkdir(parents=True)
    (tmp_path / "etc/haproxy/haproxy.cfg").write_text(text)
    manifest = {"files": [{"path": HAPROXY}], "trust": trust, "certificates": certs or []}
    return CheckContext(root=tmp_path, host="10.10.10.11", manifest=manifest, files=())


def test_a_referenced_ca_must_be_delivered(tmp_path: Path) -> None:
    text = "server pg 10.10.10.11:5432 check-ssl ca-file /etc/pki/ca.crt\n"
    missing = check(context(tmp_path / "a", text, trust=[]))
    assert missing.status == FAIL
    assert "/etc/haproxy/haproxy.cfg names /etc/pki/ca.crt, which neither this bundle nor the apply stage delivers" in (
        missing.output
    )
    assert check(context(tmp_path / "b", text, trust=["/etc/pki/ca.crt"])).status == PASS


def test_scripts_and_certificates_must_be_delivered(tmp_path: Path) -> None:
    text = "x /pg/bin/pg-backup full\ny /pg/cert/server.crt\n"
    result = check(context(tmp_path / "a", text, trust=[]))
    assert result.status == FAIL and "/pg/bin/pg-backup" in result.output and "/pg/cert/server.crt" in result.output
    cert = {"cert": "/pg/cert/server.crt", "key": "/pg/cert/server.key"}
    still = check(context(tmp_path / "b", text, trust=[], certs=[cert]))
    assert still.status == FAIL and "/pg/bin/pg-backup" in still.output and "server.crt" not in still.output


def test_only_sty_paths_are_judged() -> None:
    text = "ssl_certificate /etc/pki/site.crt; /etc/pki/ca.crt.bak /x/pg/bin/y /etc/pki/ca.crt /pg/bin/pg-role"
    assert references(text) == {"/etc/pki/ca.crt", "/pg/bin/pg-role"}


def test_every_node_trusts_the_fleet_ca_and_apply_delivers_it(tmp_path: Path) -> None:
    compiled = compile_fleet(Path(__file__).parent.parent / "pigsty.yml")
    rendered = render_targets(compiled, resolve_target(compiled.fleet, "all"))
    for ip, tree in rendered.trees.items():
        assert "/etc/pki/ca.crt" in yaml.safe_load(tree[f"{ip}.yml"])["trust"], ip
    out = tmp_path / "out"
    for tree in rendered.trees.values():
        for rel, content in tree.items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(content)
    bundle = Bundle.load(out, "10.10.10.12")
    assert isinstance(bundle.manifest, Manifest)

    def sign(outdir: Path, manifest: Manifest) -> dict[str, bytes]:
        files = {"/etc/pki/ca.crt": b"CA"}
        for c in manifest.certificates:
            files[c.cert], files[c.key] = b"CERT", b"KEY"
        return files

    files = bundle.certificates(sign)
    assert files["/etc/pki/ca.crt"] == files["/pg/cert/ca.crt"] == b"CA"
    assert files["/pg/cert/server.key"] == b"KEY"
    entries = {f.path: f for f in bundle.manifest.files}
    assert entries["/pg/cert/server.key"].mode == "0600" and entries["/etc/pki/ca.crt"].mode == "0644"
