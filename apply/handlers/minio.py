"""MINIO: the provisioning script of a member (`minio-provision`), run when it changed.

The compiler decides what each member's script does: every member sets root's mcli alias, the cluster's first
member (`identity.minio.provision_on`) also waits for the cluster's health and creates its buckets, policies and
users. The script is idempotent, so running it again after any change is safe.
"""

from __future__ import annotations

import shlex

from . import HostContext, ModuleHandlers

ACTION = "minio-provision"
TIMEOUT = 900  # the first member waits up to 5 minutes for the cluster's write quorum, then talks to it


def provision(host: HostContext, module: str) -> None:
    for entry in host.manifest.files:
        if entry.module == module and any(a.action == ACTION for a in entry.actions):
            host.log(f"{module}: running {entry.path}")
            host.run(f"bash {shlex.quote(entry.path)}", timeout=TIMEOUT)


HANDLERS = ModuleHandlers("minio", {ACTION: provision})
