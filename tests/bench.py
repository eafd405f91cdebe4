"""`make bench`: where the time of `sty` goes, printed, never asserted.

    .venv/bin/python tests/bench.py            # `make bench`: everything that fits in 10 minutes on 2 cores
    .venv/bin/python tests/bench.py --budget 0 # the whole matrix however long it takes (about 20 min today)
    .venv/bin/python tests/bench.py --quick    # 100 and 1000 hosts only, for iterating (about 1.5 min)
    .venv/bin/python tests/bench.py --profile  # then cProfile the 1000-host full and no-op builds (top 25)

`make bench BENCH_ARGS=--quick` passes options through. Others: `--sizes 100,4000` (fleet sizes),
`--check-hosts N` (the big `sty check`; 0 skips it), `--plain` (no phase timers: the real CLI alone),
`--repeat N` (each case N times, the median kept and the spread shown: single runs on this shared machine vary
by 20% and more, so compare two versions of sty with `--quick --repeat 3`),
`--json FILE` (every measurement, to compare two runs), `--dir DIR` (where the fleets are built: the file system
is part of what is measured; `--dir /dev/shm` takes the disk out and leaves sty's own cost).

Time budget (`--budget SECONDS`, default 600): before each case its wall time is projected from the same case at
the smaller fleets; a case that would not fit in what is left is skipped and listed with its projection (and the
cases that need its output with it), so `make bench` ends in about ten minutes however slow sty is today.

Cases: the shipped inventory (a fresh build, then a rebuild with nothing changed), and for each generated fleet
(`fleet()`: one infra/etcd group, PostgreSQL clusters of three, plain nodes; 30% of the hosts' count in
clusters) a full build, a no-op build, a build after one cluster changed (a database added to pg-c000), a
`sty diff` with nothing changed and a `sty check`; then `sty check` of a much larger fleet (50,000 hosts), as
the loader takes it and, if the loader's size limits refuse it, with those limits lifted from outside.

Each case is a fresh process running the real command line, so interpreter start and imports are included:
wall time from this process, CPU time (user+sys) and peak RSS from the child's rusage (`os.wait4`). The child
is tests/bench_phases.py, which wraps the compiler's functions from the outside and reports the exclusive
wall time of each phase: start (interpreter and imports), load, validate, model, bundle (the modules' per-host
Python), render (Jinja2), serialise (YAML/JSON and manifests), state (digests, the incremental record, the
manifests read back), secrets (the store and its SCRAM verifiers), write (the file system, reads included),
diff, other (the command line's own code, what no wrapped function covers) and exit (interpreter teardown).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tests" / "bench_phases.py"
MARKER = "STY-BENCH-PHASES "
PHASE_COLUMNS = (
    "start",
    "load",
    "validate",
    "model",
    "bundle",
    "render",
    "serialise",
    "workers",
    "state",
    "secrets",
    "write",
    "diff",
    "other",
    "exit",
)
FULL_SIZES = (100, 1000, 4000, 10_000)
QUICK_SIZES = (100, 1000)
CHECK_HOSTS = 50_000
BUDGET = 600.0  # seconds: `make bench` stays within about ten minutes
KINDS = ("full build", "no-op build", "one cluster changed", "diff, nothing changed", "check")


def fleet(clusters: int = 300, etcd: int = 5, infra: int = 3, total: int = 1000) -> dict:
    """A generated inventory: `infra` infra nodes and `etcd` etcd members on the first addresses, `clusters`
    PostgreSQL clusters of three (a pooled user and a database each), then plain nodes up to `total` hosts."""

    def ip(n: int) -> str:
        return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256 + 0}"

    n = 10
    children: dict = {}
    infra_hosts = {ip(n + i): {"infra_seq": i + 1} for i in range(infra)}
    etcd_hosts = {ip(n + i): {"etcd_seq": i + 1} for i in range(etcd)}
    children["infra"] = {"hosts": infra_hosts}
    children["etcd"] = {"hosts": etcd_hosts, "vars": {"etcd_cluster": "etcd"}}
    n += max(infra, etcd)
    for c in range(clusters):
        name = f"pg-c{c:03d}"
        hosts = {ip(n + i): {"pg_seq": i + 1, "pg_role": "primary" if i == 0 else "replica"} for i in range(3)}
        n += 3
        children[name] = {
            "hosts": hosts,
            "vars": {
                "pg_cluster": name,
                "pg_users": [{"name": f"u{c}", "password": f"pw{c}", "pgbouncer": True, "roles": ["dbrole_admin"]}],
                "pg_databases": [{"name": f"db{c}", "owner": f"u{c}"}],
            },
        }
    plain = total - (n - 10)
    children["nodes"] = {"hosts": {ip(n + i): {} for i in range(max(plain, 0))}}
    return {"all": {"children": children, "vars": {"admin_ip": ip(10), "pg_version": 15, "sty_platform": "debian12"}}}


def sized_fleet(hosts: int) -> dict:
    """A fleet of exactly `hosts` hosts shaped like the 1000-host one: 30% of the count in clusters of three."""
    clusters = max(1, min(hosts * 3 // 10, (hosts - 5) // 3))
    return fleet(clusters=clusters, total=hosts)


def change_one_cluster(inventory: dict, changed: bool = True) -> None:
    """What a typical pull request does: one cluster gets one more database (`changed=False` takes it back, so a
    repeated case changes something each time). Its three members re-render, and so do the infra and etcd
    nodes, whose bundles depend on every cluster (scrape targets, data sources, DCS users)."""
    cluster = inventory["all"]["children"]["pg-c000"]["vars"]
    first = [db for db in cluster["pg_databases"] if db["name"] != "db0_extra"]
    cluster["pg_databases"] = [*first, {"name": "db0_extra", "owner": "u0"}] if changed else first


def dump(inventory: dict, path: Path) -> None:
    """libyaml's dumper: the 50,000-host inventory takes seconds with it, a minute without."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(inventory, Dumper=dumper, sort_keys=False))


@dataclass
class Result:
    case: str
    kind: str
    hosts: int
    wall: float
    cpu: float
    peak_mib: float
    exit: int
    last: str
    start: float | None = None
    exit_s: float | None = None  # from the end of the command to the end of the process (interpreter teardown)
    phases: dict[str, float | None] = field(default_factory=dict)  # phase -> exclusive wall seconds (None: n/a)
    cpu_phases: dict[str, float | None] = field(default_factory=dict)  # phase -> exclusive CPU seconds (all threads)
    missing: list[str] = field(default_factory=list)  # wrapped names the runner did not find (renamed or moved)
    gc_s: float | None = None  # seconds in the cyclic garbage collector (inside the phases)
    gc_full: int | None = None  # full (generation 2) collections
    spread: float | None = None  # with --repeat: (slowest - fastest) / the median run, which is the one kept

    @property
    def other(self) -> float | None:
        if self.start is None:
            return None
        done = self.start + (self.exit_s or 0.0) + sum(v for v in self.phases.values() if v is not None)
        return self.wall - done


@dataclass
class Runner:
    """Runs one case in a fresh process: the real CLI through the phase-timing runner."""

    timed: bool = True
    repeat: int = 1
    results: list[Result] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def median(self, prepare: Callable[[int], None], *args: Any, **kwargs: Any) -> Result:
        """`run` `repeat` times, `prepare(i)` before each, keeping the run of median wall time: on a shared
        machine one run of a case varies by 20% and more."""
        runs = []
        for i in range(self.repeat):
            prepare(i)
            runs.append(self.run(*args, **kwargs))
        keep = sorted(runs, key=lambda r: r.wall)[len(runs) // 2]
        if len(runs) > 1:
            keep.spread = (max(r.wall for r in runs) - min(r.wall for r in runs)) / max(keep.wall, 1e-9)
            self.results[:] = [r for r in self.results if r is keep or all(r is not x for x in runs)]
        return keep

    def run(
        self,
        case: str,
        kind: str,
        hosts: int,
        args: list[str],
        cwd: Path,
        ok: tuple[int, ...] = (0,),
        env: dict[str, str] | None = None,
    ) -> Result:
        # like a user's shell: bytecode caching on (some CI images disable it, which skews start-up time)
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        base |= {"PYTHONPATH": str(ROOT), "STY_BENCH_PHASES": "1" if self.timed else "0", **(env or {})}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            base["STY_BENCH_T0"] = repr(time.time())
            start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, str(RUNNER), *args], cwd=cwd, stdout=out, stderr=err, env=base)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            ended = time.time()
            code = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        report, problems = _phase_line(stderr)
        lines = stdout.strip().splitlines() or [line for line in problems.splitlines() if line.startswith("error")]
        if code not in ok:  # kept as a row (a long run's other figures stay), and `make bench` fails at the end
            print(f"{case}: sty {' '.join(args)} exited {code}:\n{problems[-2000:]}", file=sys.stderr)
            self.failed.append(case)
            lines = [f"FAILED (exit {code}): {(lines or [''])[-1]}"]
        result = Result(
            case,
            kind,
            hosts,
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,
            code,
            (lines or [""])[-1],
        )
        if report is not None and self.timed:
            result.start = report["start"]
            result.exit_s = max(0.0, ended - report["done"])
            result.phases = {p: (v["wall"] if v else None) for p, v in report["phases"].items()}
            result.cpu_phases = {p: (v["cpu"] if v else None) for p, v in report["phases"].items()}
            result.missing = report.get("missing", [])
            if report.get("gc"):
                result.gc_s, result.gc_full = report["gc"]["seconds"], report["gc"]["collections"][2]
        self.results.append(result)
        print(f"  {case:44} {wall:8.2f} s  {result.last[:60]}", file=sys.stderr, flush=True)
        return result


@dataclass
class Budget:
    """Keeps `make bench` within its time: a case whose projected duration (from the same kind of case at the
    smaller fleets) does not fit in what is left is skipped and listed with its projection, which is itself a
    figure worth reading. 0 seconds is no limit."""

    seconds: float
    began: float = field(default_factory=time.perf_counter)
    skipped: list[str] = field(default_factory=list)
    overhead: dict[str, float] = field(default_factory=lambda: {"inventories": 0.0, "cleaning": 0.0})

    def allows(self, case: str, kind: str, hosts: int, results: list[Result]) -> bool:
        if not self.seconds:
            return True
        projected = project(kind, hosts, results)
        left = self.seconds - (time.perf_counter() - self.began)
        if projected is None or projected <= left:
            return True
        self.skip(case, f"projected {projected:.0f} s, {max(left, 0):.0f} s of the budget left")
        return False

    def skip(self, case: str, why: str) -> None:
        self.skipped.append(f"{case}: {why}")
        print(f"  {case:44} skipped: {why}", file=sys.stderr, flush=True)


def project(kind: str, hosts: int, results: list[Result]) -> float | None:
    """Wall seconds of a case of `kind` at `hosts`, extrapolated from the two largest smaller fleets measured
    (the growth exponent between them, kept within [1, 1.25]: measured ones are 1.0 to 1.2, and a noisy pair of
    runs must not inflate it), or from one of them linearly."""
    known = sorted((r.hosts, r.wall) for r in results if r.kind == kind and 0 < r.hosts < hosts)
    if not known:
        return None
    n1, t1 = known[-1]
    alpha = 1.0
    if len(known) > 1:
        n0, t0 = known[-2]
        if n1 > n0 and t1 > 0 and t0 > 0:
            alpha = min(max(math.log(t1 / t0) / math.log(n1 / n0), 1.0), 1.25)
    return t1 * (hosts / n1) ** alpha


def _phase_line(stderr: str) -> tuple[dict | None, str]:
    """The runner's JSON report and the rest of stderr (the command's own messages)."""
    report, rest = None, []
    for line in stderr.splitlines():
        if line.startswith(MARKER):
            report = json.loads(line[len(MARKER) :])
        else:
            rest.append(line)
    return report, "\n".join(rest)


def shipped_cases(runner: Runner, tmp: Path) -> None:
    where = tmp / "shipped"
    where.mkdir()
    (where / "pigsty.yml").write_bytes((ROOT / "pigsty.yml").read_bytes())
    hosts = len(_count_hosts(where / "pigsty.yml"))
    full, noop = f"shipped ({hosts} hosts), full build", f"shipped ({hosts} hosts), nothing changed"
    runner.median(lambda i: _wipe(where), full, "shipped full", hosts, ["build"], where)
    runner.median(_nothing, noop, "shipped no-op", hosts, ["build"], where)


def _wipe(where: Path) -> None:
    """Back to no output at all, for a repeated full build."""
    for name in ("outputs", ".sty"):
        shutil.rmtree(where / name, ignore_errors=True)


def _nothing(_: int) -> None:
    pass


def _count_hosts(path: Path) -> list[str]:
    """Host addresses of an inventory (for the case names), without the compiler."""
    found: set[str] = set()

    def walk(group: dict) -> None:
        found.update((group.get("hosts") or {}).keys())
        for child in (group.get("children") or {}).values():
            if isinstance(child, dict):
                walk(child)

    walk(yaml.safe_load(path.read_text())["all"])
    return sorted(found)


def fleet_cases(runner: Runner, budget: Budget, tmp: Path, hosts: int) -> None:
    """The five cases of one generated fleet; those after the full build need its output, so they go with it."""
    where = tmp / f"fleet-{hosts}"
    where.mkdir()
    t0 = time.perf_counter()
    inventory = sized_fleet(hosts)
    dump(inventory, where / "pigsty.yml")
    budget.overhead["inventories"] += time.perf_counter() - t0
    cases = [
        (f"{hosts} hosts, full build", KINDS[0], ["build"]),
        (f"{hosts} hosts, nothing changed", KINDS[1], ["build"]),
        (f"{hosts} hosts, one cluster changed", KINDS[2], ["build"]),
        (f"{hosts} hosts, diff with nothing changed", KINDS[3], ["diff"]),
    ]
    built = budget.allows(cases[0][0], cases[0][1], hosts, runner.results)
    for case, kind, args in cases:
        if not built:
            if kind != KINDS[0]:
                budget.skip(case, "needs the full build")
            continue
        if kind == KINDS[0] or budget.allows(case, kind, hosts, runner.results):
            prepare = _preparation(kind, where, inventory)
            runner.median(prepare, case, kind, hosts, args, where, ok=(0, 1) if kind == KINDS[3] else (0,))
    case = f"{hosts} hosts, check only"
    if budget.allows(case, KINDS[4], hosts, runner.results):
        runner.median(_nothing, case, KINDS[4], hosts, ["check"], where)
    t0 = time.perf_counter()
    shutil.rmtree(where, ignore_errors=True)  # 10,000 hosts leave 400,000 files behind
    budget.overhead["cleaning"] += time.perf_counter() - t0


def _preparation(kind: str, where: Path, inventory: dict) -> Callable[[int], None]:
    """What comes before each run of a case: a full build starts from nothing; a changed cluster is changed
    and changed back in turn, so every run re-renders the same hosts."""
    if kind == KINDS[0]:
        return lambda i: _wipe(where)
    if kind == KINDS[2]:

        def toggle(i: int) -> None:
            change_one_cluster(inventory, changed=i % 2 == 0)
            dump(inventory, where / "pigsty.yml")

        return toggle
    return _nothing


def check_case(runner: Runner, budget: Budget, tmp: Path, hosts: int) -> None:
    """`sty check` of a large fleet as the loader takes it (its size limits may refuse it: exit 2), and, when
    refused, again with those limits raised from outside, so that the cost of checking is known either way."""
    where = tmp / f"check-{hosts}"
    where.mkdir()
    t0 = time.perf_counter()
    dump(sized_fleet(hosts), where / "pigsty.yml")
    budget.overhead["inventories"] += time.perf_counter() - t0
    size = (where / "pigsty.yml").stat().st_size
    case = f"{hosts} hosts ({size / 2**20:.1f} MiB), check"
    refused = size > _loader_limit()  # refused at once, whatever the budget: that is a finding too
    if not refused and not budget.allows(case, KINDS[4], hosts, [r for r in runner.results if r.exit == 0]):
        return
    first = runner.run(case, KINDS[4], hosts, ["check"], where, ok=(0, 2))
    if first.exit == 0:
        return
    first.kind = "check, refused"  # not a check's cost: keep it out of the projections and the scaling rows
    case = f"{hosts} hosts, check, loader limits lifted"
    if budget.allows(case, KINDS[4], hosts, runner.results):
        runner.run(case, KINDS[4], hosts, ["check"], where, env={"STY_BENCH_LIFT_LIMITS": "1"})


def _loader_limit() -> float:
    """The loader's file-size limit, read from the compiler (infinite when it has none any more)."""
    try:
        from sty.compiler import loader
    except ImportError:
        return float("inf")
    limit = getattr(loader, "MAX_BYTES", None)
    return float(limit) if isinstance(limit, int) else float("inf")


def profile(tmp: Path, hosts: int, top: int = 25) -> None:
    """cProfile of a full and a no-op build (phase timers off): the functions to look at first."""
    import pstats

    where = tmp / f"profile-{hosts}"
    where.mkdir()
    dump(sized_fleet(hosts), where / "pigsty.yml")
    runner = Runner(timed=False)
    for label, args in (("full build", ["build", "-q"]), ("no-op build", ["build"])):
        stats_file = tmp / f"profile-{label.replace(' ', '-')}.prof"
        runner.run(f"{hosts} hosts, {label} (cProfile)", label, hosts, args, where, env=_profile_env(stats_file))
        for order in ("cumulative", "tottime"):
            print(f"\n== cProfile: {hosts} hosts, {label}, top {top} by {order} ==")
            pstats.Stats(str(stats_file), stream=sys.stdout).strip_dirs().sort_stats(order).print_stats(top)


def _profile_env(path: Path) -> dict[str, str]:
    return {"STY_BENCH_PROFILE": str(path)}


def _fmt(value: float | None, width: int = 7, digits: int = 2) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def print_scaling(results: list[Result]) -> None:
    """One row per case, each kind of case by fleet size; `gc s` is the cyclic collector's share of the wall
    time (inside the phases) and `full` its full collections."""
    spread = any(r.spread is not None for r in results)
    print(
        f"{'case':44} {'hosts':>6} {'wall s':>7} {'cpu s':>7} {'MiB':>6} {'ms/host':>8} {'cpu ms/h':>8}"
        f" {'gc s':>6} {'full':>4}" + (f" {'spread':>6}" if spread else "") + "  result"
    )
    for r in _ordered(results):
        per_wall, per_cpu = 1000 * r.wall / max(r.hosts, 1), 1000 * r.cpu / max(r.hosts, 1)
        gc_cols = f"{_fmt(r.gc_s, 6)} {r.gc_full if r.gc_full is not None else 'n/a':>4}"
        if spread:
            gc_cols += f" {'n/a':>6}" if r.spread is None else f" {100 * r.spread:5.0f}%"
        print(
            f"{r.case:44} {r.hosts:6d} {r.wall:7.2f} {r.cpu:7.2f} {r.peak_mib:6.0f} "
            f"{per_wall:8.2f} {per_cpu:8.2f} {gc_cols}  {r.last[:60]}"
        )


def print_phases(results: list[Result]) -> None:
    """Exclusive wall seconds per phase (`other` = wall - the rest), then per host for the largest fleet."""
    timed = [r for r in _ordered(results) if r.start is not None]
    if not timed:
        return
    header = " ".join(f"{c[:7]:>7}" for c in PHASE_COLUMNS)
    print(f"\n{'phase wall seconds':44} {header}")
    for r in timed:
        print(f"{r.case:44} " + " ".join(_fmt(v) for v in _row(r)))
    largest = {r.kind: r.hosts for r in timed}  # ordered by size: the last one of each kind wins
    big = [r for r in timed if r.kind in KINDS[:4] and r.hosts == largest[r.kind]]
    if big:
        print(f"\n{'phase ms per host (largest fleet)':44} {header}")
        for r in big:
            per_host = [None if v is None else 1000 * v / r.hosts for v in _row(r)]
            print(f"{r.case:44} " + " ".join(_fmt(v, digits=3) for v in per_host))


# issue 14's targets: (fleet size, kind of case, the most seconds, the most MiB or None)
TARGETS = (
    (1000, KINDS[0], 5.0, 1024),
    (1000, KINDS[1], 0.5, None),
    (1000, KINDS[2], 1.0, None),
    (1000, KINDS[3], 1.0, None),
    (4000, KINDS[0], 20.0, None),
    (4000, KINDS[3], 2.0, None),
    (10_000, KINDS[0], 60.0, 2048),
    (10_000, KINDS[1], 3.0, None),
    (CHECK_HOSTS, KINDS[4], 15.0, None),
)


def print_targets(results: list[Result]) -> None:
    """Each target beside the measurement it judges: met, missed, or not run (skipped by the budget)."""
    print(f"\n{'target':<47} {'limit':<15} {'measured':<16} verdict")
    for hosts, kind, seconds, mib in TARGETS:
        found = [r for r in results if r.hosts == hosts and r.kind == kind and r.exit == 0]
        limit = f"{seconds:g} s" + (f", {mib} MiB" if mib else "")
        if not found:
            print(f"{hosts:>6} hosts, {kind:<33} {limit:<15} {'not run':<16} -")
            continue
        r = found[-1]
        met = r.wall <= seconds and (mib is None or r.peak_mib <= mib)
        measured = f"{r.wall:.2f} s" + (f", {r.peak_mib:.0f} MiB" if mib else "")
        print(f"{hosts:>6} hosts, {kind:<33} {limit:<15} {measured:<16} {'met' if met else 'MISSED'}")


def print_notes(results: list[Result], budget: Budget) -> None:
    """A no-op build that rendered hosts, or a one-cluster change that rendered every host, measured something
    else: the code digest changed under it (the working tree was edited during the run); say so beside the
    numbers."""
    for r in results:
        found = re.search(r"(\d+) rendered", r.last)
        rendered = int(found.group(1)) if found else 0
        noop = r.kind in ("no-op build", "shipped no-op") and rendered
        if noop or (r.kind == KINDS[2] and r.hosts > 8 and rendered == r.hosts):
            print(f"note: {r.case} rendered {rendered} host(s): the sources changed during the run (not comparable)")
    missing = sorted({name for r in results for name in r.missing})
    if missing:
        print("note: not found, so not timed (renamed or moved?): " + ", ".join(missing))
    for line in budget.skipped:
        print(f"skipped: {line} (--budget 0 runs everything)")


def _row(r: Result) -> list[float | None]:
    return [r.start, *(r.phases.get(p) for p in PHASE_COLUMNS[1:-2]), r.other, r.exit_s]


def _ordered(results: list[Result]) -> list[Result]:
    """Shipped cases first, then each kind of case by fleet size: a scaling table reads down a column."""
    order = {k: i for i, k in enumerate(("shipped full", "shipped no-op", *KINDS))}
    return sorted(results, key=lambda r: (order.get(r.kind, 99), r.hosts, r.case))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fleets of 100 and 1000 hosts only")
    parser.add_argument("--sizes", help="comma-separated fleet sizes (default 100,1000,4000,10000)")
    parser.add_argument("--check-hosts", type=int, help=f"hosts of the `sty check` case (default {CHECK_HOSTS})")
    parser.add_argument("--budget", type=float, default=BUDGET, help="seconds; skip cases projected past it (0: none)")
    parser.add_argument("--repeat", type=int, default=1, help="run each case N times and keep the median")
    parser.add_argument("--plain", action="store_true", help="no phase timers")
    parser.add_argument("--profile", action="store_true", help="cProfile the 1000-host full and no-op builds")
    parser.add_argument("--json", type=Path, help="write every measurement to this file")
    parser.add_argument("--dir", type=Path, help="build the fleets below this directory (default: the system's temp)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(QUICK_SIZES if args.quick else FULL_SIZES)
    check_hosts = args.check_hosts if args.check_hosts is not None else (0 if args.quick else CHECK_HOSTS)
    runner = Runner(timed=not args.plain, repeat=max(args.repeat, 1))
    budget = Budget(args.budget)
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sty-bench-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        shipped_cases(runner, tmp)
        for hosts in sizes:
            fleet_cases(runner, budget, tmp, hosts)
        if check_hosts:
            check_case(runner, budget, tmp, check_hosts)
        print_scaling(runner.results)
        print_phases(runner.results)
        print_notes(runner.results, budget)
        spent = time.perf_counter() - budget.began
        extra = ", ".join(f"{k} {v:.0f} s" for k, v in budget.overhead.items())
        print(f"\nbenchmark: {spent:.0f} s ({extra}); budget: {f'{args.budget:.0f} s' if args.budget else 'none'}")
        print_targets(runner.results)
        if args.profile:
            profile(tmp, 1000)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runner.results], indent=1))
    if runner.failed:
        sys.exit(f"failed: {', '.join(runner.failed)}")


if __name__ == "__main__":
    main()
