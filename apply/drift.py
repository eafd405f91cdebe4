"""`sty apply --check`: what an apply would change on each host, read from the host without changing it.

Per file, a unified diff of the live content against the bundle's (secrets masked on both sides), owner
and mode differences, and files a previous apply installed that the bundle no longer has; per module that
the host's record lists and its manifest does not (retired hosts included), the removal an apply would make.
"""

from __future__ import annotations

import difflib
import json
import shlex
from pathlib import Path

from sty.contract.formats import mask
from sty.contract.store import read_store

from . import remove as R
from .bundle import ApplyError, Bundle, select_hosts
from .remote import AGENT, Remote, RemoteError, SshOptions


def _live_state(bundle: Bundle, remote: Remote) -> tuple[dict, dict]:
    files = [{"path": f.path, "kind": f.kind} for f in bundle.manifest.files]
    result = remote.run(
        f"python3 -c {shlex.quote(AGENT.read_text())} inspect", stdin=json.dumps({"files": files, "content": True})
    )
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    return answer["files"], answer.get("record") or {}


def _host_drift(bundle: Bundle, remote: Remote, values: dict[str, str], order: list[str]) -> list[str]:
    ip, diffs = bundle.ip, []
    desired = bundle.desired(values)
    live, record = _live_state(bundle, remote)
    for entry in bundle.manifest.files:
        want = mask(desired[entry.path].decode(), list(entry.secrets), entry.format, values)
        state = live.get(entry.path, {})
        have = (
            mask(state.get("content", ""), list(entry.secrets), entry.format, values) if state.get("exists") else None
        )
        if have != want:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        (have or "").splitlines(keepends=True),
                        want.splitlines(keepends=True),
                        fromfile=f"{ip}:{entry.path} (live)" if have is not None else "/dev/null",
                        tofile=f"{ip}:{entry.path} (bundle)",
                    )
                )
            )
        elif entry.kind == "file" and (state.get("owner"), state.get("group"), state.get("mode")) != (
            entry.owner,
            entry.group,
            entry.mode,
        ):
            diffs.append(
                f"{ip}:{entry.path}: owner/mode {state.get('owner')}:{state.get('group')} {state.get('mode')}"
                f" (live) != {entry.owner}:{entry.group} {entry.mode} (bundle)\n"
            )
    wanted = {f.path for f in bundle.manifest.files}
    # signed at apply time (their content is the CA's, not the bundle's): still the bundle's files
    wanted |= {p for c in bundle.manifest.certificates for p in (c.cert, c.key)} | set(bundle.manifest.trust)
    removals = R.plan_removals({ip: record}, {ip: bundle.manifest}, order)
    going = {path for removal in removals for path in removal.paths}
    for path in sorted(set(record.get("files", {})) - wanted - going):
        diffs.append(f"{ip}:{path}: applied before, no longer in the bundle (would be removed)\n")
    diffs += [f"{ip}: pending removal: {removal.summary()}\n" for removal in removals]
    return diffs


def check_drift(outdir: Path, target: str | None, ssh: SshOptions | None = None) -> tuple[list[str], list[str]]:
    """Per-file diffs of live vs bundle (secrets masked) without changing the host; (diffs, errors)."""
    outdir = Path(outdir)
    ssh = ssh or SshOptions.from_env()
    values = read_store(outdir)
    diffs, errors = [], []
    bundles = [Bundle.load(outdir, ip) for ip in select_hosts(outdir, target, retired=True)]
    order = R.declared_order(b.manifest for b in bundles)
    for bundle in bundles:
        ip = bundle.ip
        remote = Remote.from_manifest(bundle.manifest, ssh)
        try:
            diffs += _host_drift(bundle, remote, values, order)
        except (RemoteError, ApplyError, ValueError, KeyError) as exc:
            errors.append(f"{ip}: {exc}")
        finally:
            remote.close()
    return diffs, errors
