"""`sty apply --check`: what an apply would change on each host, read from the host without changing it.

Per file, a unified diff of the live content against the bundle's (secrets masked on both sides), owner
and mode differences, and files a previous apply installed that the bundle no longer has; per module that
the host's record lists and its manifest does not (retired hosts included), the removal an apply would make.
As text (the diffs), or as data (`--json`): per host the plan's facts (files added, changed, removed, what their
change sets off, assuming the units run) with the diffs by path.
"""

from __future__ import annotations

import difflib
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sty.contract.formats import mask
from sty.contract.plan import Activation, HostPlan, Plan
from sty.contract.store import read_store

from . import plan as P
from . import remove as R
from .bundle import ApplyError, Bundle, select_hosts
from .preview import group_of
from .remote import AGENT, Remote, RemoteError, SshOptions


@dataclass
class HostDrift:
    """One host's differences: `texts` as `--check` prints them, `diffs` by path for `--json`."""

    host: str
    texts: list[str] = field(default_factory=list)
    diffs: dict[str, str] = field(default_factory=dict)
    plan: HostPlan | None = None


@dataclass
class DriftReport:
    hosts: list[HostDrift]
    errors: list[str]

    @property
    def changed(self) -> bool:
        return any(h.texts for h in self.hosts)

    def lines(self) -> list[str]:
        return [text for h in self.hosts for text in h.texts]

    def as_json(self) -> dict[str, Any]:
        plans = [h.plan for h in self.hosts if h.plan is not None]
        doc = Plan(plans, unchanged=len(self.hosts) - len(plans)).as_json()
        diffs = {h.host: h.diffs for h in self.hosts}
        for host in doc["hosts"]:
            host["diffs"] = diffs.get(host["host"], {})
        return doc


def _live_state(bundle: Bundle, remote: Remote) -> tuple[dict, dict | None]:
    files = [{"path": f.path, "kind": f.kind} for f in bundle.manifest.files]
    result = remote.run(
        f"python3 -c {shlex.quote(AGENT.read_text())} inspect", stdin=json.dumps({"files": files, "content": True})
    )
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    record = answer.get("record")
    return answer["files"], record if isinstance(record, dict) else None


def _host_drift(bundle: Bundle, remote: Remote, values: dict[str, str], order: list[str]) -> HostDrift:
    ip, out = bundle.ip, HostDrift(bundle.ip)
    desired = bundle.desired(values)
    live, found = _live_state(bundle, remote)
    record = found or {}
    differing: list[P.FileChange] = []
    for entry in bundle.manifest.files:
        want = mask(desired[entry.path].decode(), list(entry.secrets), entry.format, values)
        state = live.get(entry.path, {})
        have = (
            mask(state.get("content", ""), list(entry.secrets), entry.format, values) if state.get("exists") else None
        )
        if have != want:
            text = "".join(
                difflib.unified_diff(
                    (have or "").splitlines(keepends=True),
                    want.splitlines(keepends=True),
                    fromfile=f"{ip}:{entry.path} (live)" if have is not None else "/dev/null",
                    tofile=f"{ip}:{entry.path} (bundle)",
                )
            )
            differing.append(P.FileChange(entry, ("new",) if have is None else ("content",)))
        elif entry.kind == "file" and (state.get("owner"), state.get("group"), state.get("mode")) != (
            entry.owner,
            entry.group,
            entry.mode,
        ):
            text = (
                f"{ip}:{entry.path}: owner/mode {state.get('owner')}:{state.get('group')} {state.get('mode')}"
                f" (live) != {entry.owner}:{entry.group} {entry.mode} (bundle)\n"
            )
            differing.append(P.FileChange(entry, ("mode",)))
        else:
            continue
        out.texts.append(text)
        out.diffs[entry.path] = text
    wanted = {f.path for f in bundle.manifest.files}
    # signed at apply time (their content is the CA's, not the bundle's): still the bundle's files
    wanted |= {p for c in bundle.manifest.certificates for p in (c.cert, c.key)} | set(bundle.manifest.trust)
    removals = R.plan_removals({ip: record}, {ip: bundle.manifest}, order)
    going = {path for removal in removals for path in removal.paths}
    leftover = sorted(set(record.get("files", {})) - wanted - going)
    for path in leftover:
        out.texts.append(f"{ip}:{path}: applied before, no longer in the bundle (would be removed)\n")
        out.diffs[path] = out.texts[-1]
    out.texts += [f"{ip}: pending removal: {removal.summary()}\n" for removal in removals]
    if out.texts:
        out.plan = _plan_of(bundle, found, differing, leftover, removals)
    return out


def _plan_of(
    bundle: Bundle, record: dict | None, differing: list[P.FileChange], leftover: list[str], removals: list[R.Removal]
) -> HostPlan:
    """The drift as the plan's facts; what it sets off assumes every unit runs (`--check` does not ask)."""
    manifest = bundle.manifest
    units = [u.name for u in manifest.units]
    left = [{"path": p} for p in leftover]
    steps = P.plan_steps(differing, left, units, dict.fromkeys(units, True))
    activations = [a for a in (Activation.of(str(s)) for s in steps) if a is not None]
    status = "remove" if manifest.retired else ("add" if record is None else "change")
    return HostPlan(
        host=bundle.ip,
        status=status,
        group=group_of(manifest),
        added=sorted(c.path for c in differing if c.reasons == ("new",)),
        changed=sorted(c.path for c in differing if c.reasons != ("new",)),
        removed=sorted(set(leftover) | {p for r in removals for p in r.paths}),
        activations=activations,
        note="; ".join(r.summary() for r in removals),
    )


def drift_report(outdir: Path, target: str | None, ssh: SshOptions | None = None) -> DriftReport:
    """Every host of TARGET read without changing it; the hosts that could not be read are errors."""
    outdir = Path(outdir)
    ssh = ssh or SshOptions.from_env()
    values = read_store(outdir)
    hosts: list[HostDrift] = []
    errors: list[str] = []
    bundles = [Bundle.load(outdir, ip) for ip in select_hosts(outdir, target, retired=True)]
    order = R.declared_order(b.manifest for b in bundles)
    for bundle in bundles:
        remote = Remote.from_manifest(bundle.manifest, ssh)
        try:
            hosts.append(_host_drift(bundle, remote, values, order))
        except (RemoteError, ApplyError, ValueError, KeyError) as exc:
            errors.append(f"{bundle.ip}: {exc}")
        finally:
            remote.close()
    return DriftReport(hosts, errors)


def check_drift(outdir: Path, target: str | None, ssh: SshOptions | None = None) -> tuple[list[str], list[str]]:
    """Per-file diffs of live vs bundle (secrets masked) without changing the host; (diffs, errors)."""
    report = drift_report(outdir, target, ssh)
    return report.lines(), report.errors
