"""`sty switchover CLUSTER`: hand a PostgreSQL cluster's leadership to a healthy replica through Patroni, for
maintenance of the leader's host. The members come from the bundles (identity `pgsql.cluster`), the live state
from patronictl on the first member that answers; the command line only confirms and prints.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sty.contract.exits import UsageError
from sty.contract.manifest import Manifest, ManifestError, read_manifest
from sty.contract.targets import host_key

from .bundle import ApplyError, bundle_hosts
from .handlers import member_name
from .patroni import Member, Patroni, candidates, leader_of, poll, switch_over
from .remote import Remote, RemoteError, SshOptions

SERVE_TIMEOUT = 60.0


@dataclass
class RemoteShell:
    """One member's host as the Patroni helpers use it (run and wait), outside an apply."""

    remote: Remote
    interval: float = 1.0

    def run(self, command: str, check: bool = True, timeout: float = 600, stdin: str | None = None):
        return self.remote.run(command, stdin=stdin, check=check, timeout=timeout)

    def wait(self, probe: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                raise ApplyError(f"{what}: not after {timeout:.0f}s")
            time.sleep(self.interval)

    def close(self) -> None:
        self.remote.close()


def cluster_members(outdir: Path, cluster: str) -> dict[str, Manifest]:
    """The cluster's members as the bundles name them (`pg-test-1`), in address order."""
    found: dict[str, Manifest] = {}
    clusters: set[str] = set()
    for ip in bundle_hosts(outdir):
        try:
            manifest = read_manifest(outdir / f"{ip}.yml")[0]
        except ManifestError as exc:
            raise UsageError(str(exc)) from None
        pg = manifest.identity.get("pgsql") or {}
        if pg.get("cluster"):
            clusters.add(str(pg["cluster"]))
        if str(pg.get("cluster")) == cluster:
            found[member_name(manifest, "pgsql")] = manifest
    if not found:
        known = f" (clusters: {', '.join(sorted(clusters))})" if clusters else ""
        raise UsageError(f"'{cluster}' is not a PostgreSQL cluster of the bundles in {outdir}{known}")
    return dict(sorted(found.items(), key=lambda kv: host_key(kv[1].address)))


@dataclass
class Switchover:
    cluster: str
    members: dict[str, Manifest]
    ssh: SshOptions
    to: str | None = None
    leader: str = ""
    candidate: str = ""
    ctl: Patroni | None = None
    live: list[Member] = field(default_factory=list)

    @classmethod
    def prepare(cls, outdir: Path, cluster: str, to: str | None, ssh: SshOptions) -> Switchover:
        """Everything the bundles can refuse, before any host is contacted (UsageError)."""
        members = cluster_members(Path(outdir), cluster)
        if to is not None and to not in members:
            raise UsageError(f"{to} is not a member of {cluster} (members: {', '.join(members)})")
        return cls(cluster, members, ssh, to)

    def inspect(self) -> None:
        """Read the live state from the first member that answers and choose the candidate."""
        errors = []
        for name, manifest in self.members.items():
            shell = RemoteShell(Remote.from_manifest(manifest, self.ssh))
            ctl = Patroni(shell, self.cluster)
            try:
                self.live = ctl.members()
            except (ApplyError, RemoteError) as exc:
                errors.append(f"{name}: {exc}")
                shell.close()
                continue
            self.ctl = ctl
            break
        else:
            raise ApplyError(f"no member of {self.cluster} answered: {'; '.join(errors)}")
        leader = leader_of(self.live)
        if leader is None:
            raise ApplyError(f"{self.cluster} has no leader to switch over from: {self.ctl.seen()}")
        self.leader = leader.name
        fit = candidates(self.live)
        if self.to is not None:
            if self.to == self.leader:
                raise UsageError(f"{self.to} already leads {self.cluster}")
            if self.to not in {m.name for m in fit}:
                live = next((str(m) for m in self.live if m.name == self.to), "not listed by Patroni")
                raise ApplyError(
                    f"{self.to} is not a healthy replica of {self.cluster} ({live}); choose another with --to"
                )
            self.candidate = self.to
        elif fit:
            self.candidate = fit[0].name
        else:
            raise ApplyError(
                f"{self.cluster} has no healthy replica to take over from {self.leader}: {self.ctl.seen()}"
            )

    def run(self) -> float:
        """Switch over and wait until the new leader serves (Patroni's /primary answers 200 on it)."""
        assert self.ctl is not None, "inspect() first"
        started = time.monotonic()
        switch_over(self.ctl, self.leader, self.candidate, old_must_follow=False)
        manifest = self.members.get(self.candidate)
        if manifest is not None:
            url = f"http://{manifest.address}:{manifest.port_of('patroni', 8008)}/primary"
            cmd = f"curl -fsS -o /dev/null --max-time 3 {shlex.quote(url)}"
            shell = self.ctl.shell
            if not poll(shell, lambda: shell.run(cmd, check=False).exited == 0, SERVE_TIMEOUT, url):
                raise ApplyError(
                    f"Patroni reports {self.candidate} as leader of {self.cluster} but {url} did not answer "
                    f"within {SERVE_TIMEOUT:.0f}s"
                )
        return time.monotonic() - started

    def close(self) -> None:
        if self.ctl is not None and isinstance(self.ctl.shell, RemoteShell):
            self.ctl.shell.close()
