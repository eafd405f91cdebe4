"""`sty apply`: ship bundles to their hosts, phase by phase, activating only what changed.

Reads only the bundle directory (manifests and files), the secret store and the CA; never the
inventory. Per host and module phase: stage (substituted files + agent, rsync), host checks on the
staged files, install changed files with backups, activate, health-check, and on failure restore the
backups, re-activate and stop with the program's own error. A record on each host says what was
applied, so the next run (and `--check`) can see drift and files to remove.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sty.compiler.secrets import read_store

from . import plan as P
from .remote import AGENT, REMOTE_ROOT, Host, RemoteError, SshOptions
from .secrets import SecretError, mask, substitute

CHECKS = Path(__file__).with_name("checks")
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


class ApplyError(Exception):
    """An apply step failed on a host; the message names host, step and the program's own words."""


# -- bundles --------------------------------------------------------------------------------------


@dataclass
class Bundle:
    outdir: Path
    ip: str
    manifest: dict
    text: str  # the manifest as written (its digest identifies the bundle)

    @classmethod
    def load(cls, outdir: Path, ip: str) -> Bundle:
        path = outdir / f"{ip}.yml"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ApplyError(f"{ip}: no bundle in {outdir} (run sty build first)") from None
        return cls(outdir, ip, yaml.safe_load(text), text)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def raw(self, path: str) -> str:
        return (self.outdir / self.ip / path.lstrip("/")).read_text(encoding="utf-8")

    def desired(self, values: dict[str, str]) -> dict[str, bytes]:
        """Every file as it must be on the host: secrets substituted with the format's escaping."""
        out = {}
        for entry in self.manifest["files"]:
            try:
                out[entry["path"]] = substitute(self.raw(entry["path"]), entry["format"], values).encode()
            except SecretError as exc:
                raise ApplyError(f"{self.ip}: {entry['path']}: {exc}") from None
        return out


def bundle_hosts(outdir: Path) -> list[str]:
    found = [p.stem for p in outdir.glob("*.yml") if (outdir / p.stem).is_dir()]
    return sorted(found, key=P._ip_key)


def select_hosts(outdir: Path, target: str | None) -> list[str]:
    """TARGET from the manifests alone: an address, a group, a cluster name, or all."""
    hosts = bundle_hosts(outdir)
    if target in (None, "", "all"):
        return hosts
    if target in hosts:
        return [target]
    chosen = []
    for ip in hosts:
        m = yaml.safe_load((outdir / f"{ip}.yml").read_text())
        clusters = {str(v.get("cluster")) for v in m.get("identity", {}).values() if isinstance(v, dict)}
        if target in m.get("groups", []) or target in clusters:
            chosen.append(ip)
    if not chosen:
        raise LookupError(f"target '{target}' matches no host, group or cluster in {outdir}")
    return chosen


# -- one host -------------------------------------------------------------------------------------


@dataclass
class HostRun:
    bundle: Bundle
    remote: Host
    values: dict[str, str]
    run_id: str
    log: callable
    desired: dict[str, bytes] = field(default_factory=dict)
    live: dict[str, P.LiveFile] = field(default_factory=dict)
    record: dict | None = None
    staged: bool = False
    applied: dict[str, dict] = field(default_factory=dict)
    changed_any: bool = False

    @property
    def ip(self) -> str:
        return self.bundle.ip

    @property
    def manifest(self) -> dict:
        return self.bundle.manifest

    # staging ---------------------------------------------------------------------------------
    def stage(self) -> None:
        """Substituted files, certificates and the agent, mirrored to /var/lib/sty/stage on the host."""
        if self.staged:
            return
        self.desired = self.bundle.desired(self.values)
        self.desired.update(self._certificates())
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
            (root / "manifest.json").write_text(json.dumps(self.manifest, sort_keys=True))
            self.remote.rsync(root, f"{REMOTE_ROOT}/stage")
        self.remote.run(f"chmod 700 {REMOTE_ROOT} {REMOTE_ROOT}/stage")
        self.staged = True

    def _certificates(self) -> dict[str, bytes]:
        certs = self.manifest.get("certificates") or []
        if not certs:
            return {}
        try:
            from sty.compiler.ca import sign_for_bundle
        except ImportError:
            raise ApplyError(f"{self.ip}: the bundle needs certificates but sty has no CA support") from None
        files = sign_for_bundle(self.bundle.outdir, self.manifest)
        if "/etc/pki/ca.crt" in files:  # the fleet CA, trusted by every host that has certificates
            self.manifest["files"].append(
                {
                    "path": "/etc/pki/ca.crt",
                    "module": "node",
                    "format": "pem",
                    "kind": "file",
                    "owner": "root",
                    "group": "root",
                    "mode": "0644",
                    "actions": [{"action": "none"}],
                }
            )
        for cert in certs:  # certificate files join the manifest's files so they install like any other
            for key, mode in (("cert", "0644"), ("key", "0600")):
                self.manifest["files"].append(
                    {
                        "path": cert[key],
                        "module": "node",
                        "format": "pem",
                        "kind": "file",
                        "owner": cert.get("owner", "root"),
                        "group": cert.get("owner", "root"),
                        "mode": mode,
                        "actions": [{"action": "none"}],
                    }
                )
        return files

    def prepare(self) -> None:
        """Packages, OS users and directories the manifest lists (idempotent)."""
        pkgs = self.manifest.get("packages", [])
        if pkgs:
            quoted = " ".join(shlex.quote(p) for p in pkgs)
            check = self.remote.run(f"dpkg-query -W -f='${{Package}} ${{Status}}\\n' {quoted}", check=False)
            installed = {line.split()[0] for line in check.stdout.splitlines() if line.endswith("install ok installed")}
            missing = [p for p in pkgs if p not in installed]
            if missing:
                self.log(self.ip, f"installing packages: {' '.join(missing)}")
                manager = self.manifest.get("package_manager", "apt")
                cmd = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q" if manager == "apt" else "dnf install -y"
                self.remote.run(f"{cmd} {' '.join(shlex.quote(p) for p in missing)}", timeout=1800)
        answer = self.remote.agent(
            "ensure", {"users": self.manifest.get("users", []), "directories": self.manifest.get("directories", [])}
        )
        if answer["changed"]:
            self.log(self.ip, "created " + ", ".join(answer["changed"]))

    def inspect(self) -> None:
        files = [{"path": f["path"], "kind": f.get("kind", "file")} for f in self.manifest["files"]]
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
        units = [u["name"] for u in self.manifest.get("units", []) if u["module"] == module]
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
                self.log(self.ip, f"{module}: check {r['checker']} skipped: {r['reason']}")

    def apply_module(self, module: str) -> P.ModulePlan:
        plan = self.plan(module)
        if not plan.changes_anything:
            self._remember(module)
            return plan
        self.changed_any = True
        started = time.monotonic()
        self.log(self.ip, f"{module}: {plan.summary()}")
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
                            {k: c.entry.get(k) for k in ("path", "kind", "owner", "group", "mode")}
                            | {"position": "top" if c.path == "/etc/resolv.conf" else "bottom"}
                            for c in plan.install
                        ],
                    },
                )
            if plan.remove:
                self.remote.agent("remove", {"run_id": f"{self.run_id}-{module}", "files": plan.remove})
            for step in plan.steps:
                self._activate(step, module)
            self.health(module)
            self.log(self.ip, f"{module}: done in {time.monotonic() - started:.1f}s")
        except (RemoteError, ApplyError) as exc:
            self._rollback(module, plan)
            raise ApplyError(f"{self.ip}: {module}: {exc}") from None
        self._remember(module)
        return plan

    def _remember(self, module: str) -> None:
        for entry in self.manifest["files"]:
            if entry["module"] == module:
                self.applied[entry["path"]] = {
                    "module": module,
                    "kind": entry.get("kind", "file"),
                    "sha256": P.sha256(self.desired[entry["path"]]),
                }

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
        run = self.remote.run
        if step.kind == "daemon-reload":
            run("systemctl daemon-reload")
        elif step.kind == "start":
            run(f"systemctl enable --now {shlex.quote(step.unit)}")
        elif step.kind == "restart":
            run(f"systemctl restart {shlex.quote(step.unit)}")
        elif step.kind == "reload":
            run(f"systemctl reload-or-restart {shlex.quote(step.unit)}")
        elif step.kind == "stop":
            run(f"systemctl disable --now {shlex.quote(step.unit)}", check=False)
        elif step.kind == "patroni-reload":
            run("systemctl reload patroni.service")
        elif step.kind == "patroni-dcs-config":
            self._patroni_dcs()
        elif step.kind == "pg-sql-primary":
            self._sql_on_primary(module)
        elif step.kind in ("pg-rolling-restart", "pgbackrest-stanza", "redis-cluster-create", "minio-provision"):
            self._module_action(step.kind)

    def _is_primary(self) -> bool:
        return self.manifest.get("identity", {}).get("pgsql", {}).get("role") == "primary"

    def _patroni_dcs(self) -> None:
        """Push bootstrap.dcs to the running cluster, once per cluster, from its primary."""
        if not self._is_primary():
            return
        doc = yaml.safe_load(self.desired["/etc/patroni/patroni.yml"])
        self.wait_patroni_leader()
        dcs = json.dumps(doc["bootstrap"]["dcs"], sort_keys=True)
        self.remote.run(f"cat > {REMOTE_ROOT}/stage/dcs.json", stdin=dcs)
        self.remote.run(
            f"patronictl -c /etc/patroni/patroni.yml edit-config --force --replace {REMOTE_ROOT}/stage/dcs.json"
        )

    def wait_patroni_leader(self, timeout: float = 180.0) -> None:
        port = next((p["port"] for p in self.manifest["ports"] if p["component"] == "patroni"), 8008)
        url = f"http://{self.ip}:{port}/primary"
        self._wait(lambda: self.remote.run(f"curl -fsS -o /dev/null {url}", check=False).exited == 0, timeout, url)

    def _sql_on_primary(self, module: str) -> None:
        if not self._is_primary():
            return
        self.wait_patroni_leader()
        dbsu = self._dbsu()
        for entry in self.manifest["files"]:
            if entry["module"] == module and any(a["action"] == "pg-sql-primary" for a in entry["actions"]):
                self.remote.run(
                    f"runuser -u {shlex.quote(dbsu)} -- psql -X -q -v ON_ERROR_STOP=1 -d postgres "
                    f"-f {shlex.quote(entry['path'])}",
                    timeout=600,
                )

    def _dbsu(self) -> str:
        return shlex.quote(self.manifest.get("identity", {}).get("pgsql", {}).get("dbsu", "postgres"))

    def _module_action(self, kind: str) -> None:
        identity = self.manifest.get("identity", {})
        if kind == "redis-cluster-create":
            spec = identity.get("redis", {}).get("cluster_create")
            if not spec or spec.get("run_on") != self.ip:
                return
            first = spec["members"][0]
            auth = ""
            if spec.get("password_secret"):
                auth = f"-a {shlex.quote(self.values.get(spec['password_secret'], ''))} --no-auth-warning "
            host, port = first.rsplit(":", 1) if ":" in first else first.split()
            known = self.remote.run(f"redis-cli {auth}-h {host} -p {port} cluster info", check=False).stdout
            if "cluster_known_nodes:1\r" not in known and "cluster_known_nodes:1\n" not in known:
                return  # already formed: creating again would fail (and is not wanted)
            members = " ".join(shlex.quote(m.replace(" ", ":")) for m in spec["members"])
            self.remote.run(
                f"redis-cli {auth}--cluster create {members} --cluster-replicas {int(spec['replicas'])} --cluster-yes",
                timeout=300,
            )
        elif kind == "minio-provision":
            if identity.get("minio", {}).get("provision_on") != self.ip:
                return
            for entry in self.manifest["files"]:
                if any(a["action"] == kind for a in entry["actions"]):
                    self.remote.run(f"bash {shlex.quote(entry['path'])}", timeout=600)
        elif kind == "pgbackrest-stanza":
            if self._is_primary():
                self.wait_patroni_leader()
                stanza = shlex.quote(identity["pgsql"]["cluster"])
                dbsu = self._dbsu()
                self.remote.run(f"runuser -u {dbsu} -- pgbackrest --stanza={stanza} stanza-create", timeout=600)
                if identity["pgsql"].get("init_backup"):
                    info = self.remote.run(f"runuser -u {dbsu} -- pgbackrest --stanza={stanza} info", check=False)
                    if "status: error (no valid backups)" in info.stdout:
                        self.remote.run(
                            f"runuser -u {dbsu} -- pgbackrest --stanza={stanza} --type=full backup", timeout=3600
                        )
        elif kind == "pg-rolling-restart":
            if self._is_primary():
                self.wait_patroni_leader()
                self.remote.run(
                    "patronictl -c /etc/patroni/patroni.yml restart --force --pending "
                    f"{shlex.quote(identity['pgsql']['cluster'])}",
                    timeout=900,
                )

    def disable_conflicts(self) -> None:
        """Units a distribution package starts that would hold our ports (Debian's redis-server ...)."""
        units = sorted(
            {
                u
                for v in self.manifest.get("identity", {}).values()
                if isinstance(v, dict)
                for u in v.get("disable_units", [])
            }
        )
        for unit in units:
            state = self.remote.run(f"systemctl is-enabled {shlex.quote(unit)}", check=False).stdout.strip()
            if state not in ("masked", "not-found", ""):
                self.remote.run(f"systemctl disable --now {shlex.quote(unit)}", check=False)
                self.remote.run(f"systemctl mask {shlex.quote(unit)}", check=False)
                self.log(self.ip, f"disabled {unit} (it would hold our ports)")

    def health(self, module: str) -> None:
        for unit in [u for u in self.manifest.get("units", []) if u["module"] == module]:
            name, probe = unit["name"], unit.get("health", "")
            limit = HEALTH_TIMEOUT.get(name, DEFAULT_HEALTH_TIMEOUT)
            self._wait(lambda n=name: self.remote.run(f"systemctl is-active {n}", check=False).exited == 0, limit, name)
            if probe.startswith("http"):
                cmd = f"curl -fsS -o /dev/null --max-time 3 {shlex.quote(probe)}"
                self._wait(lambda c=cmd: self.remote.run(c, check=False).exited == 0, limit, f"{name} at {probe}")
            elif probe.startswith("port:"):
                port = probe.split(":", 1)[1]
                cmd = f"ss -Hltn 'sport = :{port}' | grep -q ."
                self._wait(lambda c=cmd: self.remote.run(c, check=False).exited == 0, limit, f"{name} on port {port}")

    def _wait(self, probe, timeout: float, what: str) -> None:
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
        self.log(self.ip, f"{module}: failed, restoring the previous files")
        try:
            self.remote.agent("restore", {"run_id": f"{self.run_id}-{module}"})  # only this phase's changes
            self.remote.run("systemctl daemon-reload", check=False)
            for step in plan.steps:
                if step.unit and step.kind in ("start", "restart", "reload"):
                    self.remote.run(f"systemctl restart {shlex.quote(step.unit)}", check=False)
        except RemoteError as exc:
            self.log(self.ip, f"rollback incomplete: {exc}")

    def write_record(self) -> None:
        previous = (self.record or {}).get("files", {})
        files = {
            p: e for p, e in previous.items() if e.get("module") not in {x["module"] for x in self.applied.values()}
        }
        files.update(self.applied)
        record = {"bundle": self.bundle.digest, "address": self.ip, "files": dict(sorted(files.items()))}
        self.remote.agent("record", {"record": record})


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


def apply(
    outdir: Path,
    target: str | None,
    jobs: int = 4,
    ssh: SshOptions | None = None,
    log: Printer | None = None,
) -> ApplyResult:
    outdir = Path(outdir)
    ssh = ssh or SshOptions.from_env()
    log = log or Printer()
    values = read_store(outdir)
    run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
    hosts = select_hosts(outdir, target)
    bundles = {ip: Bundle.load(outdir, ip) for ip in hosts}
    runs = {ip: HostRun(b, Host.from_manifest(b.manifest, ssh), values, run_id, log) for ip, b in bundles.items()}
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
            for phase in P.PHASES:
                manifests = {ip: b.manifest for ip, b in bundles.items() if ip not in failed}
                for wave in P.host_order(manifests, phase):

                    def one(ip: str, phase=phase) -> None:
                        run = runs[ip]
                        first_touch(run)
                        run.apply_module(phase)

                    futures = {ip: pool.submit(one, ip) for ip in wave}
                    for ip, fut in futures.items():
                        try:
                            fut.result()
                        except (ApplyError, RemoteError) as exc:
                            failures.append(str(exc))
                            failed.add(ip)
                            log(ip, f"FAILED: {exc}")
                if failures:
                    break
        for ip, run in runs.items():
            if ip not in failed and run.staged:
                run.write_record()
                log(ip, "changed" if run.changed_any else "no change")
    finally:
        for run in runs.values():
            run.remote.close()
    return ApplyResult({ip: r.changed_any for ip, r in runs.items()}, failures)


def check_drift(outdir: Path, target: str | None, ssh: SshOptions | None = None) -> tuple[list[str], list[str]]:
    """Per-file diffs of live vs bundle (secrets masked) without changing the host; (diffs, errors)."""
    import difflib

    outdir = Path(outdir)
    ssh = ssh or SshOptions.from_env()
    values = read_store(outdir)
    diffs, errors = [], []
    for ip in select_hosts(outdir, target):
        bundle = Bundle.load(outdir, ip)
        remote = Host.from_manifest(bundle.manifest, ssh)
        try:
            desired = bundle.desired(values)
            files = [{"path": f["path"], "kind": f.get("kind", "file")} for f in bundle.manifest["files"]]
            source = AGENT.read_text()
            result = remote.run(
                f"python3 -c {shlex.quote(source)} inspect", stdin=json.dumps({"files": files, "content": True})
            )
            answer = json.loads(result.stdout.strip().splitlines()[-1])
            live, record = answer["files"], answer.get("record") or {}
            for entry in bundle.manifest["files"]:
                path, fmt = entry["path"], entry["format"]
                names = entry.get("secrets", [])
                want = mask(desired[path].decode(), names, fmt, values)
                state = live.get(path, {})
                have = mask(state.get("content", ""), names, fmt, values) if state.get("exists") else None
                if have != want:
                    diffs.append(
                        "".join(
                            difflib.unified_diff(
                                (have or "").splitlines(keepends=True),
                                want.splitlines(keepends=True),
                                fromfile=f"{ip}:{path} (live)" if have is not None else "/dev/null",
                                tofile=f"{ip}:{path} (bundle)",
                            )
                        )
                    )
                elif entry.get("kind", "file") == "file" and (
                    (state.get("owner"), state.get("group"), state.get("mode"))
                    != (entry["owner"], entry["group"], entry["mode"])
                ):
                    diffs.append(
                        f"{ip}:{path}: owner/mode {state.get('owner')}:{state.get('group')} {state.get('mode')}"
                        f" (live) != {entry['owner']}:{entry['group']} {entry['mode']} (bundle)\n"
                    )
            wanted = {f["path"] for f in bundle.manifest["files"]}
            for path in sorted(set(record.get("files", {})) - wanted):
                diffs.append(f"{ip}:{path}: applied before, no longer in the bundle (would be removed)\n")
        except (RemoteError, ApplyError, ValueError, KeyError) as exc:
            errors.append(f"{ip}: {exc}")
        finally:
            remote.close()
    return diffs, errors
