"""`sty apply`: ship bundles to their hosts, phase by phase, activating only what changed.

Reads only the bundle directory (manifests and files), the secret store and the CA; never the
inventory. Per host and module phase: stage (substituted files + agent, rsync), host checks on the
staged files, install changed files with backups, activate, health-check, and on failure restore the
backups, re-activate and stop with the program's own error. Steps a module defers (a rolling restart) run
after every wave of the phase succeeded, one host at a time. A record on each host says what was
applied, so the next run (and `--check`) can see drift and files to remove. Modules the record lists and the
manifest does not (a host that left a cluster, or the inventory) are removed after every phase, once confirmed
(apply/remove.py).
"""

from __future__ import annotations

import json
import shlex
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sty import contract
from sty.contract.exits import UsageError
from sty.contract.store import read_store

from . import plan as P
from . import remove as R
from .bundle import CA_PATH, ApplyError, Bundle, Signer, select_hosts
from .handlers import action_handler, member_name, removal_hooks, together_when_new, waves
from .phase import run_phase, split_deferred
from .remote import AGENT, REMOTE_ROOT, Remote, RemoteError, SshOptions

__all__ = ["ApplyError", "ApplyResult", "Bundle", "HostRun", "Printer", "apply", "select_hosts"]

CHECKS = Path(__file__).with_name("checks")
CONTRACT = Path(contract.__file__).parent
# run on the host: the manifest's host/both checks of one module's files, against the staged copies
HOST_CHECKS = """
import json, sys
from sty.apply.checks.runner import HOST_WHERE, run_host_checks
manifest = json.load(open("../manifest.json"))
module = sys.argv[1]
mine = {f["path"] for f in manifest["files"] if f["module"] == module}
manifest["checks"] = [c for c in manifest.get("checks", []) if mine & set(c.get("files", []))]
results = run_host_checks("../files", manifest, HOST_WHERE)
for r in results:  # containers and locked-down hosts may refuse private namespaces: sty lint covers those
    if r.status == "fail" and any(m in r.output for m in ("RTNETLINK answers: Operation not permitted",
                                                           "unshare failed")):
        r.status, r.reason = "skip", "needs a private network namespace, which this host refuses"
print(json.dumps([{"checker": r.checker, "files": list(r.files), "status": r.status, "output": r.output,
                   "reason": r.reason} for r in results]))
"""

HEALTH_TIMEOUT = {"patroni.service": 180.0}
DEFAULT_HEALTH_TIMEOUT = 60.0


# -- one host -------------------------------------------------------------------------------------


@dataclass
class HostRun:
    bundle: Bundle
    remote: Remote
    values: dict[str, str]
    run_id: str
    printer: Printer
    sign: Signer | None = None
    desired: dict[str, bytes] = field(default_factory=dict)
    live: dict[str, P.LiveFile] = field(default_factory=dict)
    record: dict | None = None
    staged: bool = False
    applied: dict[str, dict] = field(default_factory=dict)
    changed_any: bool = False
    deferred: dict[str, list[P.Step]] = field(default_factory=dict)  # per module: steps for after the phase
    removing: frozenset[str] = frozenset()  # while a module is removed: every host it is removed from now
    kept: dict[str, Any] = field(default_factory=dict)  # what a module's before_remove leaves for after_remove

    @property
    def ip(self) -> str:
        return self.bundle.ip

    @property
    def manifest(self):
        return self.bundle.manifest

    # what the module handlers use (apply.handlers.HostContext) -------------------------------
    def run(self, command: str, check: bool = True, timeout: float = 600, stdin: str | None = None):
        return self.remote.run(command, stdin=stdin, check=check, timeout=timeout)

    def log(self, message: str) -> None:
        self.printer(self.ip, message)

    # staging ---------------------------------------------------------------------------------
    def stage(self) -> None:
        """Substituted files, certificates and the agent, mirrored to /var/lib/sty/stage on the host."""
        if self.staged:
            return
        certificates = self.bundle.certificates(self.sign)  # adds their entries to the manifest
        self.desired = self.bundle.desired(self.values, skip=certificates) | certificates
        with tempfile.TemporaryDirectory(prefix="sty-stage-") as tmp:
            root = Path(tmp)
            for path, data in self.desired.items():
                target = root / "files" / path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                target.chmod(0o600)
            (root / "agent.py").write_bytes(AGENT.read_bytes())
            lib = root / "lib" / "sty" / "apply"  # the check runner, to judge the staged files with the host's programs
            (lib / "checks").mkdir(parents=True)
            (lib.parent / "__init__.py").write_text("")
            (lib / "__init__.py").write_text("")
            for src in sorted(CHECKS.glob("*.py")):
                (lib / "checks" / src.name).write_bytes(src.read_bytes())
            (lib.parent / "contract").mkdir()  # the checks read placeholders as the contract defines them
            for src in sorted(CONTRACT.glob("*.py")):
                (lib.parent / "contract" / src.name).write_bytes(src.read_bytes())
            (root / "manifest.json").write_text(json.dumps(self.manifest.to_dict(), sort_keys=True))
            self.remote.rsync(root, f"{REMOTE_ROOT}/stage")
        self.remote.run(f"chmod 700 {REMOTE_ROOT} {REMOTE_ROOT}/stage")
        self.staged = True

    def prepare(self) -> None:
        """Packages, OS users and directories the manifest lists (idempotent)."""
        pkgs = self.manifest.packages
        if pkgs:
            quoted = " ".join(shlex.quote(p) for p in pkgs)
            check = self.remote.run(f"dpkg-query -W -f='${{Package}} ${{Status}}\\n' {quoted}", check=False)
            installed = {line.split()[0] for line in check.stdout.splitlines() if line.endswith("install ok installed")}
            missing = [p for p in pkgs if p not in installed]
            if missing:
                self.log(f"installing packages: {' '.join(missing)}")
                manager = self.manifest.package_manager
                cmd = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q" if manager == "apt" else "dnf install -y"
                self.remote.run(f"{cmd} {' '.join(shlex.quote(p) for p in missing)}", timeout=1800)
        users = [u.to_dict() for u in self.manifest.users]
        directories = [d.to_dict() for d in self.manifest.directories]
        answer = self.remote.agent("ensure", {"users": users, "directories": directories})
        if answer["changed"]:
            self.log("created " + ", ".join(answer["changed"]))

    def read_record(self) -> dict | None:
        """The record of the previous apply, read before anything is written to the host (the agent goes in the
        command line), so that what would be removed is known, and confirmed, before any phase runs."""
        record = self.remote.agent("inspect", {"files": []}, staged=False).get("record")
        return record if isinstance(record, dict) else None

    def inspect(self) -> None:
        files = [{"path": f.path, "kind": f.kind} for f in self.manifest.files]
        answer = self.remote.agent("inspect", {"files": files})
        self.live = {p: P.LiveFile.from_agent(s) for p, s in answer["files"].items()}
        self.record = answer.get("record")

    def running(self, units: list[str]) -> dict[str, bool]:
        if not units:
            return {}
        quoted = " ".join(shlex.quote(u) for u in units)
        active = self.remote.run(f"systemctl is-active {quoted}", check=False).stdout.split()
        enabled = self.remote.run(f"systemctl is-enabled {quoted}", check=False).stdout.split()
        return {
            u: (i < len(active) and active[i] == "active") and (i < len(enabled) and enabled[i] == "enabled")
            for i, u in enumerate(units)
        }

    # one module phase ------------------------------------------------------------------------
    def plan(self, module: str) -> P.ModulePlan:
        units = self.manifest.units_of(module)
        return P.plan_module(self.ip, module, self.manifest, self.desired, self.live, self.record, self.running(units))

    def host_checks(self, module: str) -> None:
        """The host's own programs judge the staged files before anything live changes."""
        result = self.remote.run(
            f"cd {REMOTE_ROOT}/stage/lib && python3 -c {shlex.quote(HOST_CHECKS)} {shlex.quote(module)}",
            check=False,
            timeout=600,
        )
        try:
            results = json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ApplyError(f"the host checks did not run: {(result.stderr or result.stdout).strip()}") from None
        failed = [r for r in results if r["status"] == "fail"]
        if failed:
            said = "\n".join(f"{r['checker']} {' '.join(r['files'])}: {r['output'].strip()}" for r in failed)
            raise ApplyError(f"{module}: the staged files fail their checks; nothing was changed:\n{said}")
        for r in results:
            if r["status"] == "skip":
                self.log(f"{module}: check {r['checker']} skipped: {r['reason']}")

    def apply_module(self, module: str) -> P.ModulePlan:
        plan = self.plan(module)
        if not plan.changes_anything:
            self._remember(module)
            return plan
        self.changed_any = True
        started = time.monotonic()
        self.log(f"{module}: {plan.summary()}")
        if plan.install:
            try:
                self.host_checks(module)
            except (RemoteError, ApplyError) as exc:
                raise ApplyError(f"{self.ip}: {exc}") from None
        try:
            if plan.install:
                self.remote.agent(
                    "install",
                    {
                        "run_id": f"{self.run_id}-{module}",
                        "stage": f"{REMOTE_ROOT}/stage",
                        "files": [
                            {k: getattr(c.entry, k) for k in ("path", "kind", "owner", "group", "mode")}
                            | {"position": "top" if c.path == "/etc/resolv.conf" else "bottom"}
                            for c in plan.install
                        ],
                    },
                )
            if plan.remove:
                self.remote.agent("remove", {"run_id": f"{self.run_id}-{module}", "files": plan.remove})
            now, later = split_deferred(plan.steps)
            for step in now:
                self._activate(step, module)
            self.health(module)
            self.log(f"{module}: done in {time.monotonic() - started:.1f}s")
        except (RemoteError, ApplyError) as exc:
            self._rollback(module, plan)
            raise ApplyError(f"{self.ip}: {module}: {exc}") from None
        self._remember(module)
        if later:
            self.deferred[module] = later
            self.log(f"{module}: {', '.join(map(str, later))} waits until every host of the phase has its files")
        return plan

    def run_deferred(self, step: P.Step, module: str) -> None:
        """A deferred step: the files are installed and healthy, so a failure rolls nothing back."""
        started = time.monotonic()
        self.log(f"{module}: {step} started")
        try:
            self._activate_step(step, module)
        except (RemoteError, ApplyError) as exc:
            raise ApplyError(
                f"{self.ip}: {module}: {step} failed on {member_name(self.manifest, module)}: {exc}; nothing was "
                f"rolled back: the new files are in place and the cluster keeps running with the change pending"
            ) from None
        self.log(f"{module}: {step} done in {time.monotonic() - started:.1f}s")

    def _remember(self, module: str) -> None:
        for entry in self.manifest.files_of(module):
            self.applied[entry.path] = {
                "module": module,
                "kind": entry.kind,
                "sha256": P.sha256(self.desired[entry.path]),
            }
            # the units that read the file, for its removal to reload them (HAProxy and its conf.d)
            readers = sorted({a.unit for a in entry.actions if a.action in ("reload", "restart") and a.unit})
            if readers:
                self.applied[entry.path]["reload"] = readers

    def _activate(self, step: P.Step, module: str) -> None:
        try:
            self._activate_step(step, module)
        except RemoteError as exc:
            said = ""
            if step.unit:  # the daemon's own words, not systemctl's "see journalctl"
                said = self.remote.run(
                    f"journalctl -u {shlex.quote(step.unit)} -n 15 --no-pager -o cat", check=False
                ).stdout.strip()
            raise ApplyError(f"{step} failed: {exc}" + (f"\n{said}" if said else "")) from None

    def _activate_step(self, step: P.Step, module: str) -> None:
        unit = shlex.quote(step.unit or "")
        commands = {
            "daemon-reload": "systemctl daemon-reload",
            "start": f"systemctl enable --now {unit}",
            "restart": f"systemctl restart {unit}",
            "reload": f"systemctl reload-or-restart {unit}",
        }
        if step.kind in commands:
            self.remote.run(commands[step.kind])
        elif step.kind == "stop":
            self.remote.run(f"systemctl disable --now {unit}", check=False)
        elif (handler := action_handler(step.kind)) is not None:
            handler(self, module)
        else:
            raise ApplyError(f"no handler for the action {step.kind}: this sty cannot apply the bundle")

    def disable_conflicts(self) -> None:
        """Units a distribution package starts that would hold our ports (Debian's redis-server ...)."""
        units = sorted({str(u) for v in self.manifest.identity.values() for u in v.get("disable_units", [])})
        for unit in units:
            state = self.remote.run(f"systemctl is-enabled {shlex.quote(unit)}", check=False).stdout.strip()
            if state not in ("masked", "not-found", ""):
                self.remote.run(f"systemctl disable --now {shlex.quote(unit)}", check=False)
                self.remote.run(f"systemctl mask {shlex.quote(unit)}", check=False)
                self.log(f"disabled {unit} (it would hold our ports)")

    def health(self, module: str) -> None:
        for unit in [u for u in self.manifest.units if u.module == module]:
            name, probe = unit.name, unit.health
            limit = HEALTH_TIMEOUT.get(name, DEFAULT_HEALTH_TIMEOUT)
            self.wait(lambda n=name: self.remote.run(f"systemctl is-active {n}", check=False).exited == 0, limit, name)
            if probe.startswith("http"):
                trust = f"--cacert {CA_PATH} " if probe.startswith("https:") else ""  # the fleet CA, on every node
                cmd = f"curl -fsS -o /dev/null --max-time 3 {trust}{shlex.quote(probe)}"
                self.wait(lambda c=cmd: self.remote.run(c, check=False).exited == 0, limit, f"{name} at {probe}")
            elif probe.startswith("port:"):
                port = probe.split(":", 1)[1]
                cmd = f"ss -Hltn 'sport = :{port}' | grep -q ."
                self.wait(lambda c=cmd: self.remote.run(c, check=False).exited == 0, limit, f"{name} on port {port}")

    def wait(self, probe, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if probe():
                return
            if time.monotonic() > deadline:
                unit = what.split()[0]
                said = ""
                if unit.endswith(".service"):
                    said = self.remote.run(
                        f"journalctl -u {shlex.quote(unit)} -n 15 --no-pager -o cat", check=False
                    ).stdout.strip()
                raise ApplyError(f"{what} is not healthy after {timeout:.0f}s" + (f":\n{said}" if said else ""))
            time.sleep(1.0)

    def _rollback(self, module: str, plan: P.ModulePlan) -> None:
        self.log(f"{module}: failed, restoring the previous files")
        try:
            self.remote.agent("restore", {"run_id": f"{self.run_id}-{module}"})  # only this phase's changes
            self.remote.run("systemctl daemon-reload", check=False)
            for step in plan.steps:
                unit = shlex.quote(step.unit or "")
                if step.unit and step.kind == "start":  # it was not running before this phase: nor is it now
                    self.remote.run(f"systemctl disable --now {unit}", check=False)
                elif step.unit and step.kind in ("restart", "reload"):
                    self.remote.run(f"systemctl restart {unit}", check=False)
        except RemoteError as exc:
            self.log(f"rollback incomplete: {exc}")

    def write_record(self) -> None:
        previous = (self.record or {}).get("files", {})
        files = {
            p: e for p, e in previous.items() if e.get("module") not in {x["module"] for x in self.applied.values()}
        }
        files.update(self.applied)
        self._record(files)

    def _record(self, files: dict[str, dict]) -> None:
        record: dict[str, Any] = {"bundle": self.bundle.digest, "address": self.ip}
        record["files"] = dict(sorted(files.items()))
        if self.manifest.retired:
            record["retired"] = True  # with no files left: the host is clean
        self.remote.agent("record", {"record": record})
        self.record = record

    # removing a module the manifest no longer lists ---------------------------------------------
    def remove_module(self, removal: R.Removal) -> None:
        """The module's before_remove hook, then stop and disable its units, remove its recorded files (the agent
        backs them up), daemon-reload, reload the kept units that read them, the after_remove hook; then drop the
        files from the record. Nothing is rolled back: the removal was confirmed, and a failure names the step."""
        module, started = removal.module, time.monotonic()
        before, after = removal_hooks(module)
        backups = f"{REMOTE_ROOT}/backup/{self.run_id}-remove-{module}"
        self.log(f"{module}: {removal.summary()}")
        try:
            self.stage()  # a retired host gets the agent, and nothing else
            if before is not None:
                before(self, module)
            for unit in removal.units:
                self.remote.run(f"systemctl disable --now {shlex.quote(unit)}", check=False)
            still = [u for u, up in self.active(list(removal.units)).items() if up]
            if still:
                raise ApplyError(f"{', '.join(still)} still running after systemctl disable --now")
            if removal.files:
                self.remote.agent("remove", {"run_id": f"{self.run_id}-remove-{module}", "files": list(removal.files)})
            self.remote.run("systemctl daemon-reload")
            for unit in removal.reloads:
                if self.active([unit])[unit]:
                    self.remote.run(f"systemctl reload-or-restart {shlex.quote(unit)}")
            if after is not None:
                after(self, module)
        except (RemoteError, ApplyError) as exc:
            raise ApplyError(
                f"{self.ip}: removing {module}: {exc} (files removed are backed up in {backups})"
            ) from None
        files = (self.record or {}).get("files") or {}
        self._record({p: e for p, e in files.items() if p not in removal.paths})
        self.changed_any = True
        self.log(f"{module}: removed in {time.monotonic() - started:.1f}s; the files are backed up under {backups}")

    def active(self, units: list[str]) -> dict[str, bool]:
        if not units:
            return {}
        states = self.remote.run(f"systemctl is-active {' '.join(map(shlex.quote, units))}", check=False).stdout.split()
        return {u: i < len(states) and states[i] in ("active", "activating", "reloading") for i, u in enumerate(units)}


# -- the fleet ------------------------------------------------------------------------------------


@dataclass
class ApplyResult:
    changed: dict[str, bool]
    failures: list[str]


class Printer:
    """Live progress: one line per event, prefixed with the host; safe across threads."""

    def __init__(self, quiet: bool = False):
        self.lock = threading.Lock()
        self.quiet = quiet

    def __call__(self, host: str, message: str) -> None:
        if self.quiet:
            return
        with self.lock:
            print(f"[{host}] {message}", flush=True)


def _all_new(module: str, plan_waves: list[list[str]], runs: dict[str, HostRun]) -> bool:
    """No member of the phase runs any of the module's units yet (a cluster being created)."""
    for ip in (ip for wave in plan_waves for ip in wave):
        units = runs[ip].manifest.units_of(module)
        try:
            if any(runs[ip].running(units).values()):
                return False
        except RemoteError:
            return False  # the phase itself will say what is wrong with the host
    return True


# shown the removals a run would make (hosts in address order); says whether to go on
Confirm = Callable[[list[R.Removal]], bool]


def plan_removals(
    runs: dict[str, HostRun], pool: ThreadPoolExecutor, log: Callable[[str, str], None]
) -> tuple[list[R.Removal], list[str], set[str]]:
    """Read every host's record (in parallel, writing nothing) and decide what would be removed. A retired host
    that cannot be read is a failure naming it; another host's is left to its first phase, which reports it.
    Returns the removals, the failures and the hosts that failed."""
    futures = {ip: pool.submit(run.read_record) for ip, run in runs.items()}
    records: dict[str, dict | None] = {}
    failures: list[str] = []
    failed: set[str] = set()
    for ip, fut in futures.items():
        try:
            records[ip] = fut.result()
        except (RemoteError, ApplyError) as exc:
            if runs[ip].manifest.retired:
                failures.append(f"{ip}: the retired host cannot be reached, so nothing was removed from it: {exc}")
                failed.add(ip)
                log(ip, f"FAILED: {failures[-1]}")
    manifests = {ip: run.manifest for ip, run in runs.items()}
    order = R.declared_order(manifests.values())
    return R.plan_removals(records, manifests, order), failures, failed


def apply(
    outdir: Path,
    target: str | None,
    jobs: int = 4,
    ssh: SshOptions | None = None,
    log: Printer | None = None,
    sign: Signer | None = None,
    confirm: Confirm | None = None,
) -> ApplyResult:
    """Every phase on the hosts of TARGET (retired hosts included), then the removals `confirm` accepted (None:
    accepted); a refusal raises UsageError before anything changed on any host."""
    outdir = Path(outdir)
    ssh = ssh or SshOptions.from_env()
    log = log or Printer()
    values = read_store(outdir)
    run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
    hosts = select_hosts(outdir, target, retired=True)
    bundles = {ip: Bundle.load(outdir, ip) for ip in hosts}
    runs = {
        ip: HostRun(b, Remote.from_manifest(b.manifest, ssh), values, run_id, log, sign) for ip, b in bundles.items()
    }
    phases = P.phases({ip: b.manifest for ip, b in bundles.items() if not b.manifest.retired})
    failures: list[str] = []
    failed: set[str] = set()

    def first_touch(run: HostRun) -> None:
        if run.staged:
            return
        run.stage()
        run.prepare()
        run.disable_conflicts()
        run.inspect()

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            removals, dark, unreachable = plan_removals(runs, pool, log)
            if removals and confirm is not None and not confirm(removals):
                raise UsageError("the removals were not confirmed; nothing was changed")
            for phase in phases:
                manifests = {ip: b.manifest for ip, b in bundles.items() if ip not in failed}

                def one(ip: str, phase=phase) -> None:
                    run = runs[ip]
                    first_touch(run)
                    run.apply_module(phase)

                plan_waves = waves(phase, manifests)
                if len(plan_waves) > 1 and together_when_new(phase) and _all_new(phase, plan_waves, runs):
                    plan_waves = [[ip for wave in plan_waves for ip in wave]]
                said, lost = run_phase(phase, plan_waves, lambda ip, f=one: pool.submit(f, ip), runs, log)
                failures += said
                failed |= lost
                if failures:
                    break
        for ip, run in runs.items():
            if ip not in failed and run.staged:
                run.write_record()
        if removals and failures:
            for removal in removals:
                log(removal.host, f"{removal.module}: not removed: a phase failed, so other hosts may still use it")
        elif removals:
            said, lost = R.run_removals(removals, runs, log)
            failures += said
            failed |= lost
        failures += dark
        for ip, run in runs.items():
            if ip not in failed | unreachable and (run.staged or run.manifest.retired):
                log(ip, "changed" if run.changed_any else "no change")
    finally:
        for run in runs.values():
            run.remote.close()
    return ApplyResult({ip: r.changed_any for ip, r in runs.items()}, failures)
