"""`sty apply`: ship bundles to their hosts, phase by phase, activating only what changed.

Reads only the bundle directory (manifests and files), the secret store and the CA; never the
inventory. First every host is read without changing it (apply/preview.py) and the plan of the whole run is
confirmed. Then, on the hosts with something to do, per host and module phase: stage (substituted files + agent,
rsync), host checks on the staged files, install changed files with backups, activate, health-check, and on
failure restore the backups, re-activate and stop with the program's own error. Steps a module defers (a rolling
restart) run after every wave of the phase succeeded, one host at a time. A record on each host says what was
applied, so the next run (and `--check`) can see drift and files to remove. Modules the record lists and the
manifest does not (a host that left a cluster, or the inventory) are removed after every phase (apply/remove.py).
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sty import contract
from sty.contract.exits import UsageError
from sty.contract.plan import Plan
from sty.contract.store import read_store

from . import plan as P
from . import preview as V
from . import remove as R
from .bundle import CA_PATH, ApplyError, Bundle, Signer, load_bundles, select_hosts
from .handlers import action_handler, member_name, removal_hooks, together_when_new, waves
from .phase import run_phase, split_deferred
from .progress import Printer, count
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
    look: V.Look | None = None  # what the first pass read; the phases start from it
    rendered: bool = False
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
    def render(self) -> None:
        """Every file as the host must have it: secrets put in, certificates signed (done once, locally)."""
        if self.rendered:
            return
        certificates = self.bundle.certificates(self.sign)  # adds their entries to the manifest
        self.desired = self.bundle.desired(self.values, skip=certificates) | certificates
        self.rendered = True

    def stage(self) -> None:
        """Substituted files, certificates and the agent, mirrored to /var/lib/sty/stage on the host."""
        if self.staged:
            return
        self.render()
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

    def needs(self) -> V.Needs:
        return self.look.needs if self.look is not None else V.probe(self.remote, self.manifest)

    def prepare(self) -> bool:
        """Packages, OS users and directories the manifest lists (idempotent); whether it changed anything."""
        missing = self.needs().packages
        if missing:
            self.log(f"installing {count(len(missing), 'package')}: {' '.join(missing)}")
            manager = self.manifest.package_manager
            cmd = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q" if manager == "apt" else "dnf install -y"
            self.remote.run(f"{cmd} {' '.join(shlex.quote(p) for p in missing)}", timeout=1800)
        users = [u.to_dict() for u in self.manifest.users]
        directories = [d.to_dict() for d in self.manifest.directories]
        answer = self.remote.agent("ensure", {"users": users, "directories": directories})
        if answer["changed"]:
            self.log("created " + ", ".join(answer["changed"]))
        return bool(missing or answer["changed"])

    def inspect(self, staged: bool = True) -> None:
        """Checksum, owner and mode of every managed path, and the record of the previous apply. Unstaged, the
        agent goes in the command line: the first pass writes nothing to the host."""
        files = [{"path": f.path, "kind": f.kind} for f in self.manifest.files]
        self.live, self.record = V.live_of(self.remote.agent("inspect", {"files": files}, staged=staged))

    def running(self, units: list[str]) -> dict[str, bool]:
        if not units:
            return {}
        quoted = " ".join(shlex.quote(u) for u in units)
        active = self.remote.run(f"systemctl is-active {quoted}", check=False).stdout.split()
        enabled = self.remote.run(f"systemctl is-enabled {quoted}", check=False).stdout.split()
        return V.unit_states(units, active, enabled)

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

    def unit_states(self, units: list[str]) -> dict[str, bool]:
        """As `running`, from what the first pass read while nothing has touched the host since."""
        if self.look is not None and not self.staged:
            return {u: self.look.running.get(u, False) for u in units}
        return self.running(units)

    def apply_module(self, module: str) -> P.ModulePlan:
        plan = self.plan(module)
        if not plan.changes_anything:
            self._remember(module)
            return plan
        self.changed_any = True
        started = time.monotonic()
        files = count(len(plan.install), "file")
        if plan.install:
            self.log(f"{module}: checking {files} with the host's programs")
            try:
                self.host_checks(module)
            except (RemoteError, ApplyError) as exc:
                raise ApplyError(f"{self.ip}: {exc}") from None
        try:
            if plan.install:
                self.log(f"{module}: installing {files}")
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
                self.log(f"{module}: removing {count(len(plan.remove), 'file')}")
                self.remote.agent("remove", {"run_id": f"{self.run_id}-{module}", "files": plan.remove})
            now, later = split_deferred(plan.steps)
            for step in now:
                self.log(f"{module}: activating {step}")
                self._activate(step, module)
            self.health(module)
            self.log(f"{module}: healthy in {time.monotonic() - started:.1f}s")
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
        self.log(f"{module}: activating {step}")
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
            self.applied[entry.path] = P.applied_entry(entry, self.desired[entry.path])

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

    def disable_conflicts(self) -> bool:
        """Units a distribution package starts that would hold our ports (Debian's redis-server ...), as the first
        pass found them, and any the packages just installed started; whether there were any."""
        units = V.probe(self.remote, self.manifest).conflicts if self.needs().packages else self.needs().conflicts
        for unit in units:
            self.remote.run(f"systemctl disable --now {shlex.quote(unit)}", check=False)
            self.remote.run(f"systemctl mask {shlex.quote(unit)}", check=False)
            self.log(f"disabled {unit} (it would hold our ports)")
        return bool(units)

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
        if files != previous:  # a record brought up to date is a change the plan showed
            self.changed_any = True
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
    plan: Plan = field(default_factory=Plan)  # what the first pass found to do (shown before anything changed)
    seconds: float = 0.0  # wall time of the run (the confirmation's wait excluded)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # per host: where its time went (`timings`)


def timings(runs: dict[str, HostRun], fleet: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per host, the seconds of each step (`render`, `connect`, `agent look`, `plan`, and for a changed host every
    command and rsync, summed by name), and `fleet` for what no host owns (loading the bundles ...)."""
    out: dict[str, dict[str, float]] = {"fleet": dict(fleet)}
    for ip, run in runs.items():
        steps: dict[str, float] = {}
        if run.look is not None:
            steps["render"] = run.look.seconds.get("render", 0.0)
        for what, seconds in run.remote.spent:
            steps[what] = steps.get(what, 0.0) + seconds
        if run.look is not None:
            steps["plan"] = run.look.seconds.get("plan", 0.0)
        out[ip] = steps
    return out


def print_timings(found: dict[str, dict[str, float]], log: Printer) -> None:
    """`STY_TIMINGS=1`: one line per host (and one for the fleet) on stderr, the steps in the order they ran."""
    for ip, steps in found.items():
        said = ", ".join(f"{what} {seconds:.3f}s" for what, seconds in steps.items())
        log(ip, f"timings: {said}")


def _all_new(module: str, plan_waves: list[list[str]], runs: dict[str, HostRun]) -> bool:
    """No member of the phase runs any of the module's units yet (a cluster being created)."""
    for ip in (ip for wave in plan_waves for ip in wave):
        units = runs[ip].manifest.units_of(module)
        try:
            if any(runs[ip].unit_states(units).values()):
                return False
        except RemoteError:
            return False  # the phase itself will say what is wrong with the host
    return True


# shown the plan of a run (never an empty one); says whether to go on
Confirm = Callable[[V.Preview], bool]


def _first_touch(run: HostRun) -> None:
    """Stage, prepare, and read the files again only when preparing may have changed them (a package installing
    its default configuration, or starting its unit)."""
    if run.staged:
        return
    run.stage()
    touched = run.prepare()
    touched = run.disable_conflicts() or touched
    if touched:
        run.changed_any = True
        run.inspect()


PHASE_JOBS = 4  # hosts changed at once within a phase, unless -j says otherwise
READ_JOBS = 16  # hosts read at once by the first pass, unless -j says otherwise (reading changes nothing)


def apply(
    outdir: Path,
    target: str | None,
    jobs: int | None = None,
    ssh: SshOptions | None = None,
    log: Printer | None = None,
    sign: Signer | None = None,
    confirm: Confirm | None = None,
) -> ApplyResult:
    """Read every host of TARGET (retired hosts included) and plan; `confirm` sees a plan with something to do
    (None: accepted), and a refusal raises UsageError before anything changed on any host. Then every phase on
    the hosts with something to do, then the removals. `jobs`: hosts read and changed at once (default: up to
    READ_JOBS read, PHASE_JOBS changed)."""
    started = time.monotonic()
    waited = 0.0  # at the confirmation: not the run's time
    outdir = Path(outdir)
    ssh = ssh or SshOptions.from_env()
    log = log or Printer()
    values = read_store(outdir)
    run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
    bundles = load_bundles(outdir, target, retired=True)
    runs = {
        ip: HostRun(b, Remote.from_manifest(b.manifest, ssh), values, run_id, log, sign) for ip, b in bundles.items()
    }
    phases = P.phases({ip: b.manifest for ip, b in bundles.items() if not b.manifest.retired})
    fleet = {"load": time.monotonic() - started}
    failed: set[str] = set()
    phase_failed = False
    try:
        log.stage("plan")
        reading = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, min(READ_JOBS, len(runs)) if jobs is None else jobs)) as reads:
            preview = V.look_all(runs, reads, log, R.declared_order(b.manifest for b in bundles.values()))
        fleet["first pass"] = time.monotonic() - reading
        failures = list(preview.failures)
        unread = {ip for ip, run in runs.items() if run.look is None}
        if preview.blocked:
            return _result(runs, failures, preview.plan, started, fleet)
        asked = time.monotonic()
        if preview.plan.changed and confirm is not None and not confirm(preview):
            raise UsageError("the plan was not confirmed; nothing was changed")
        waited = time.monotonic() - asked
        changing = time.monotonic()
        said, lost = _run_phases(phases, bundles, runs, preview.pending, jobs, log)
        failures += said
        failed |= lost
        phase_failed = bool(said)
        for ip, run in runs.items():
            if ip not in failed and run.staged:
                run.write_record()
        fleet["phases"] = time.monotonic() - changing
        log.stage("remove")
        if preview.removals and phase_failed:
            for removal in preview.removals:
                log(removal.host, f"{removal.module}: not removed: a phase failed, so other hosts may still use it")
        elif preview.removals:
            said, lost = R.run_removals(preview.removals, runs, log)
            failures += said
            failed |= lost
        log.stage("done")
        for ip, run in runs.items():
            if ip not in failed | unread:
                log(ip, "changed" if run.changed_any else "no change")
    finally:
        closing = time.monotonic()
        for run in runs.values():
            run.remote.close()
        fleet["close"] = time.monotonic() - closing
    return _result(runs, failures, preview.plan, started + waited, fleet)


def _run_phases(
    phases: list, bundles: dict, runs: dict[str, HostRun], pending: set[str], jobs: int | None, log: Printer
) -> tuple[list[str], set[str]]:
    """Every module phase, in order, on the hosts with something to do (`pending`), wave by wave; stops after the
    first phase that failed. Returns the failures said and the hosts lost."""
    failures: list[str] = []
    failed: set[str] = set()
    with ThreadPoolExecutor(max_workers=max(1, PHASE_JOBS if jobs is None else jobs)) as pool:
        for index, phase in enumerate(phases, 1):
            manifests = {ip: b.manifest for ip, b in bundles.items() if ip not in failed}
            plan_waves = waves(phase, manifests)
            if len(plan_waves) > 1 and together_when_new(phase) and _all_new(phase, plan_waves, runs):
                plan_waves = [[ip for wave in plan_waves for ip in wave]]
            plan_waves = [w for w in ([ip for ip in wave if ip in pending] for wave in plan_waves) if w]
            if not plan_waves:
                continue
            log.stage(f"{index}/{len(phases)}")

            def one(ip: str, phase=phase) -> None:
                _first_touch(runs[ip])
                runs[ip].apply_module(phase)

            said, lost = run_phase(phase, plan_waves, lambda ip, f=one: pool.submit(f, ip), runs, log)
            failures += said
            failed |= lost
            if said:
                break
    return failures, failed


def _result(runs: dict[str, HostRun], failures: list[str], plan: Plan, since: float, fleet: dict[str, float]):
    found = timings(runs, fleet)
    if os.environ.get("STY_TIMINGS"):
        print_timings(found, runs[next(iter(runs))].printer if runs else Printer())
    return ApplyResult({ip: r.changed_any for ip, r in runs.items()}, failures, plan, time.monotonic() - since, found)
