"""The per-host manifest (`outputs/<host>.yml`), built from a host's bundle with the contract's one writer."""

from __future__ import annotations

from sty.contract.manifest import Facts, Manifest, Ssh

from .bundle import HostBundle
from .model import Host
from .modules import module_order
from .render import HEADER, to_yaml


def manifest(host: Host, bundle: HostBundle) -> Manifest:
    p = host.params
    files = [spec.entry() for spec in bundle.files.values()]
    return Manifest(
        address=host.ip,
        nodename=host.nodename,
        ssh=Ssh(
            host=str(p.raw("ansible_host") or host.ip),
            port=int(p.raw("ansible_port") or 22),
            user=str(p.raw("ansible_user") or p.raw("node_ssh_user") or "root"),
        ),
        platform=host.platform.name,
        package_manager=host.platform.package_manager,
        modules=list(host.modules),
        groups=list(host.groups),
        identity=bundle.info,
        facts=Facts(host.facts.cpu, host.facts.mem_mb, host.facts.disk_gb, host.facts.source, host.facts.assumed),
        ports=list(bundle.ports),
        units=list(bundle.units),
        packages=list(bundle.packages),
        users=list(bundle.users),
        directories=list(bundle.directories),
        files=files,
        checks=list(bundle.checks),
        certificates=list(bundle.certificates),
        phases=list(module_order()),
        trust=sorted(bundle.trust),
    )


def manifest_text(host: Host, bundle: HostBundle) -> str:
    # each file's entry as laid out once (the entries of a file shared between hosts are written once)
    listed = {spec.path: spec.listed for spec in bundle.files.values()}
    return to_yaml(manifest(host, bundle).to_dict(lambda entry: listed[entry.path]()), header=HEADER)
