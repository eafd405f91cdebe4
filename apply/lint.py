"""`sty lint`: every host bundle in an output directory judged by the real programs, on the build machine.

For each host a worker process runs in a private network namespace made for it (`unshare --net`), with the
host's own addresses on `lo`, and runs the manifest's `build` and `both` checks through the check runner.
Checkers that contact peers make their own namespace inside it with stand-ins: Patroni gets a real etcd
cluster started from the etcd members' bundles in the same directory (else a TCP stand-in listener on
each endpoint), and etcd gets its cluster's other members. So no check can send a packet anywhere else.

Exit codes: 0 every check passed (skips are listed), 3 a check failed, 2 usage (not root, no bundles,
unknown --limit target). `--json` prints the same results as one document (`as_json`), with the same exit codes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from sty.apply.checks import FAIL, PASS, SKIP, CheckResult
from sty.contract.exits import Exit, UsageError
from sty.contract.manifest import ManifestError, read_manifest
from sty.contract.manifest import discover as find_bundles
from sty.contract.targets import select

HOST_TIMEOUT = 600
MAX_OUTPUT_LINES = 40


def discover(outdir: Path) -> dict[str, dict]:
    """Host address -> manifest (as the checkers read it), for every `<ip>.yml` with a `<ip>/` beside it."""
    if not outdir.is_dir():
        raise UsageError(f"{outdir}: no such directory (run sty build first)")
    found = {}
    for ip in find_bundles(outdir):
        try:
            found[ip] = read_manifest(outdir / f"{ip}.yml")[0]
        except ManifestError as exc:
            raise UsageError(str(exc)) from None
    if not found:
        raise UsageError(f"{outdir}: no host bundles (<ip>.yml beside <ip>/); run sty build first")
    return {ip: m.to_dict() for ip, m in found.items()}


def select_bundles(manifests: dict[str, dict], target: str | None) -> list[str]:
    index = {
        ip: set(m["groups"]) | {str(v["cluster"]) for v in m["identity"].values() if v.get("cluster")}
        for ip, m in manifests.items()
    }
    return select(index, target, "these bundles")


def addresses(manifest: dict, ip: str) -> list[str]:
    """The host's own addresses: its address and any specific address it is expected to listen on."""
    out = [ip]
    for port in manifest.get("ports") or []:
        addr = str((port or {}).get("address") or "")
        if addr and addr not in ("0.0.0.0", "::", "*") and not addr.startswith("127."):
            out.append(addr)
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------------------------------
# the worker: one host, inside its own network namespace
# --------------------------------------------------------------------------------------------------


def worker(job_file: str) -> int:
    job = json.loads(Path(job_file).read_text())
    if os.readlink("/proc/self/ns/net") == job["parent_netns"]:
        print("refusing to run checks in the machine's own network namespace", file=sys.stderr)
        return 2
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
    for addr in job["addresses"]:
        subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", "lo"], check=True, capture_output=True)
    from sty.apply.checks.runner import LINT_WHERE, run_host_checks

    root = Path(job["root"])
    manifest = read_manifest(Path(job["manifest"]))[0].to_dict()
    peers = {ip: Path(p) for ip, p in job["peers"].items()}
    results = run_host_checks(root, manifest, LINT_WHERE, peers=peers)
    Path(job["results"]).write_text(json.dumps([asdict(r) for r in results]))
    return 0


def lint_host(outdir: Path, ip: str, manifest: dict, hosts: list[str]) -> list[CheckResult]:
    """Run the worker for one host under `unshare --net`; its results (or one failure if it died)."""
    with tempfile.TemporaryDirectory(prefix="sty-lint-") as tmp:
        job = {
            "root": str((outdir / ip).resolve()),
            "manifest": str((outdir / f"{ip}.yml").resolve()),
            "peers": {h: str((outdir / h).resolve()) for h in hosts if h != ip},
            "addresses": addresses(manifest, ip),
            "results": str(Path(tmp) / "results.json"),
            "parent_netns": os.readlink("/proc/self/ns/net"),
        }
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job))
        cmd = ["unshare", "--net", "--", sys.executable, "-m", "sty.apply.lint", "--worker", str(job_file)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HOST_TIMEOUT)
        except subprocess.TimeoutExpired:
            return [CheckResult("lint", (), FAIL, f"the checks of {ip} took longer than {HOST_TIMEOUT}s")]
        results_file = Path(job["results"])
        if proc.returncode != 0 or not results_file.exists():
            return [CheckResult("lint", (), FAIL, f"the lint worker of {ip} failed:\n{proc.stdout}{proc.stderr}")]
        return [CheckResult(**{**r, "files": tuple(r["files"])}) for r in json.loads(results_file.read_text())]


# --------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------


def _indent(text: str) -> str:
    lines = [line for line in text.rstrip().splitlines() if line.strip()]
    if len(lines) > MAX_OUTPUT_LINES:
        lines = lines[:MAX_OUTPUT_LINES] + [f"... ({len(lines) - MAX_OUTPUT_LINES} more lines)"]
    return "".join(f"      {line}\n" for line in lines)


def host_report(ip: str, results: list[CheckResult], verbose: bool = False) -> str:
    counts = {s: sum(r.status == s for r in results) for s in (PASS, FAIL, SKIP)}
    out = f"{ip}: {len(results)} check(s): {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped\n"
    for r in results:
        files = ", ".join(r.files)
        if r.status == FAIL:
            out += f"  FAIL {r.checker}: {files}\n" + _indent(r.output or r.reason)
        elif r.status == SKIP:
            out += f"  skip {r.checker}: {files}: {r.reason}\n"
        elif verbose:
            out += f"  ok   {r.checker}: {files}" + (f" ({r.reason})" if r.reason else "") + "\n"
    return out


def summary(all_results: dict[str, list[CheckResult]], seconds: float) -> str:
    total = [r for rs in all_results.values() for r in rs]
    counts = {s: sum(r.status == s for r in total) for s in (PASS, FAIL, SKIP)}
    out = (
        f"lint: {len(all_results)} host(s), {len(total)} check(s): {counts[PASS]} passed, {counts[FAIL]} failed, "
        f"{counts[SKIP]} skipped in {seconds:.1f}s\n"
    )
    for status, title in ((SKIP, "skipped"), (PASS, "notes")):
        grouped: dict[str, list[str]] = {}
        for ip, rs in all_results.items():
            for r in rs:
                if r.status == status and r.reason:
                    for reason in r.reason.split("; "):
                        grouped.setdefault(reason, []).append(f"{ip} {r.checker}")
        if grouped:
            out += f"{title}:\n"
            for reason, where in sorted(grouped.items()):
                shown = ", ".join(dict.fromkeys(where))
                out += f"  {reason}\n    ({shown})\n"
    return out


def as_json(all_results: dict[str, list[CheckResult]]) -> dict:
    """Per host, per check: checker, files, status (pass, fail, skip), the program's output and the reason."""
    total = [r for rs in all_results.values() for r in rs]
    counts = {"passed": PASS, "failed": FAIL, "skipped": SKIP}
    return {
        "hosts": [
            {"host": ip, "checks": [asdict(r) | {"files": list(r.files)} for r in rs]} for ip, rs in all_results.items()
        ],
        "totals": {name: sum(r.status == status for r in total) for name, status in counts.items()},
    }


def _lookup_packages(manifests: list[dict]) -> None:
    """One `apt-cache policy` for every package the bundles name, handed to the workers (the systemd checker
    asks whether a missing program's package can be installed here)."""
    from sty.apply.checks.systemd import APT_ENV, apt_candidates

    if os.environ.get(APT_ENV):
        return
    packages = sorted({str(p) for m in manifests for p in m.get("packages") or []})
    os.environ[APT_ENV] = json.dumps(apt_candidates(packages))


def _pg_templates(manifests: list[dict]):
    """Template clusters for the PostgreSQL checkers, made once and copied by every worker."""
    from sty.apply.checks.postgres import shared_templates

    wanted = any(str(c.get("checker", "")).startswith("postgres") for m in manifests for c in m.get("checks") or [])
    return shared_templates() if wanted else contextlib.nullcontext()


def run(
    outdir: Path,
    target: str | None = None,
    jobs: int = 2,
    verbose: bool = False,
    echo=sys.stdout.write,
    json_out: bool = False,
) -> int:
    """Lint the bundles of `outdir` (hosts matching `target`); `echo` receives newline-terminated text: the report,
    or with `json_out` one JSON document."""
    if os.geteuid() != 0:
        raise UsageError(
            "sty lint needs root: it runs each host's checks in a private network namespace and starts "
            "PostgreSQL as the postgres user"
        )
    manifests = discover(outdir)
    chosen = select_bundles(manifests, target)
    hosts = list(manifests)
    start = time.monotonic()
    _lookup_packages([manifests[ip] for ip in chosen])
    results: dict[str, list[CheckResult]] = {}
    with _pg_templates([manifests[ip] for ip in chosen]), ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {ip: pool.submit(lint_host, outdir, ip, manifests[ip], hosts) for ip in chosen}
        for ip, fut in futures.items():  # reported in address order
            results[ip] = fut.result()
            if not json_out:
                echo(host_report(ip, results[ip], verbose))
    echo(json.dumps(as_json(results), indent=2) + "\n" if json_out else summary(results, time.monotonic() - start))
    return Exit.FAILED if any(r.status == FAIL for rs in results.values() for r in rs) else Exit.OK


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2]))
    print("usage: python -m sty.apply.lint --worker JOB (use `sty lint`)", file=sys.stderr)
    sys.exit(2)
