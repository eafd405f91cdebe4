"""The per-host manifest (`outputs/<host>.yml`): everything the apply stage needs without the inventory."""

from __future__ import annotations

import hashlib
from typing import Any

from .bundle import HostBundle
from .model import Host
from .render import HEADER, to_yaml

MANIFEST_VERSION = 1


def manifest(host: Host, bundle: HostBundle) -> dict[str, Any]:
    p = host.params
    files = []
    for path in sorted(bundle.files):
        spec = bundle.files[path]
        entry: dict[str, Any] = {
            "path": path,
            "module": spec.module,
            "format": spec.format,
            "kind": spec.kind,
            "owner": spec.owner,
            "group": spec.group,
            "mode": spec.mode,
            "sha256": hashlib.sha256((spec.content or "").encode()).hexdigest(),
            "actions": [a.as_dict() for a in sorted(set(spec.actions))] or [{"action": "none"}],
        }
        if spec.secrets:
            entry["secrets"] = spec.secrets
        if spec.kind == "block":
            entry["marker"] = "sty"
        files.append(entry)
    return {
        "sty_manifest": MANIFEST_VERSION,
        "address": host.ip,
        "nodename": host.nodename,
        "ssh": {
            "host": str(p.raw("ansible_host") or host.ip),
            "port": int(p.raw("ansible_port") or 22),
            "user": str(p.raw("ansible_user") or p.raw("node_ssh_user") or "root"),
        },
        "platform": host.platform.name,
        "package_manager": host.platform.package_manager,
        "modules": host.modules,
        "groups": host.groups,
        "identity": bundle.info,
        "facts": {
            "cpu": host.facts.cpu,
            "mem_mb": host.facts.mem_mb,
            "disk_gb": host.facts.disk_gb,
            "source": dict(sorted(host.facts.source.items())),
            "assumed": host.facts.assumed,
        },
        "ports": [
            {"port": x.port, "component": x.component, "module": x.module, "address": x.address}
            for x in sorted(bundle.ports)
        ],
        "units": [{"name": u.name, "module": u.module, "health": u.health} for u in sorted(bundle.units)],
        "packages": sorted(bundle.packages),
        "users": [
            {
                k: v
                for k, v in {"name": u.name, "uid": u.uid, "home": u.home, "system": u.system}.items()
                if v is not None
            }
            for u in sorted(bundle.users)
        ],
        "directories": [
            {"path": d.path, "owner": d.owner, "group": d.group, "mode": d.mode} for d in sorted(bundle.directories)
        ],
        "files": files,
        "checks": [{"checker": c.checker, "files": list(c.files), "where": c.where} for c in sorted(bundle.checks)],
        "certificates": [
            {
                "name": c.name,
                "common_name": c.common_name,
                "sans": list(c.sans),
                "cert": c.cert,
                "key": c.key,
                "owner": c.owner,
                "usage": c.usage,
            }
            for c in sorted(bundle.certificates)
        ],
        "secrets": sorted({s for f in files for s in f.get("secrets", [])}),
    }


def manifest_text(host: Host, bundle: HostBundle) -> str:
    return to_yaml(manifest(host, bundle), header=HEADER)
