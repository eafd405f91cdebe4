"""`make bench`, second part: the floors under issue 14's targets, measured on this machine and printed.

    .venv/bin/python tests/bench_floors.py                # the 1000-host fleet of tests/bench.py (about 1 min)
    .venv/bin/python tests/bench_floors.py --check-hosts 0 # without the 50,000-host parse (about 40 s)

A target is out of reach when the work no version of sty can skip already costs more than the target on two
cores. What is counted, each measured here and now rather than assumed:

- start: a fresh interpreter importing sty's command line (`python -c "import sty.cli"`), wall time.
- parse: libyaml's C loader reading the inventory, without the positions sty keeps for its messages; serial.
- scram: one PBKDF2-SHA256 verifier at PostgreSQL's 4096 rounds, times the SCRAM users a fresh build stores
  (counted in the store the build wrote). A fresh clone has no store, so its first build computes every one.
- write: the system calls that writing the bundles safely needs (a temporary file opened O_EXCL|O_NOFOLLOW,
  written, fstat'ed for its stamp, closed and renamed into place), for files of the sizes the build wrote.
- jinja2: the CPU time the build spent inside Jinja2's templates (tests/bench_phases.py's `render` phase, one
  worker), which is the templates as they are, not a floor: it is printed for scale.
- compile: sty's load, validation and model of the whole fleet (one process), today's cost, not a floor.

The floor of a full build is start + parse + (scram + write) / 2 cores: rendering counted as free. The floor of a
one-cluster rebuild is start + parse + compile, because cross-host rules read the whole fleet (unless a cache of
validated models survives between builds, which sty does not keep). Printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402 (the fleets are bench.py's)

ROOT = Path(__file__).resolve().parent.parent
CORES = 2  # the machine the targets are set for


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return env | {"PYTHONPATH": str(ROOT)}


def start_time(repeat: int = 5) -> tuple[float, float]:
    """(bare interpreter, interpreter importing sty's command line), medians of wall seconds."""

    def run(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=_env())
        return time.perf_counter() - t0

    run("import sty.cli")  # bytecode written once
    return (
        statistics.median(run("pass") for _ in range(repeat)),
        statistics.median(run("import sty.cli") for _ in range(repeat)),
    )


def parse_time(path: Path) -> float:
    t0 = time.process_time()
    yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
    return time.process_time() - t0


def scram_time(repeat: int = 40) -> float:
    """CPU seconds of one verifier with a random salt, as the store computes it."""
    from sty.contract.store import scram_verifier

    t0 = time.process_time()
    for i in range(repeat):
        scram_verifier(f"password-{i}")
    return (time.process_time() - t0) / repeat


def write_time(outputs: Path, scratch: Path) -> tuple[float, int, int]:
    """CPU seconds to write files of the sizes under `outputs` with sty's safe sequence; (seconds, files, bytes)."""
    sizes: dict[str, list[tuple[str, int]]] = {}
    for directory, _, names in os.walk(outputs):
        rel = os.path.relpath(directory, outputs)
        sizes[rel] = [(n, os.lstat(os.path.join(directory, n)).st_size) for n in names]
    for rel in sizes:
        (scratch / rel).mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    files = total = 0
    t0 = time.process_time()
    for rel, entries in sizes.items():
        dir_fd = os.open(scratch / rel, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for name, size in entries:
                tmp = f".{name}.tmp"
                fd = os.open(tmp, flags, 0o644, dir_fd=dir_fd)
                os.write(fd, b"x" * size)
                os.fstat(fd)
                os.close(fd)
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                files, total = files + 1, total + size
        finally:
            os.close(dir_fd)
    return time.process_time() - t0, files, total


def build_phases(where: Path) -> dict:
    """A fresh one-worker build's phase line (tests/bench_phases.py), and the wall and CPU of the whole run."""
    env = _env() | {"STY_BENCH_PHASES": "1", "STY_BENCH_T0": repr(time.time())}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "bench_phases.py"), "build", "-q", "--jobs", "1"],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - t0
    line = next(x for x in proc.stderr.splitlines() if x.startswith(bench.MARKER))
    return {"wall": wall, **json.loads(line[len(bench.MARKER) :])}


def compile_time(inventory: Path) -> float:
    """Wall seconds of sty's whole compile (load, validation, model) in this process."""
    from sty.compiler.pipeline import compile_fleet

    t0 = time.perf_counter()
    compile_fleet(inventory)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--check-hosts", type=int, default=bench.CHECK_HOSTS, help="0 skips the big parse")
    parser.add_argument("--dir", type=Path, help="where the fleet is built (default: the system's temp)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="sty-floors-", dir=args.dir))
    try:
        where = tmp / "fleet"
        where.mkdir()
        bench.dump(bench.sized_fleet(args.hosts), where / "pigsty.yml")
        bare, start = start_time()
        phases = build_phases(where)
        store = json.loads((where / ".sty" / "outputs" / "secrets.yml").read_text())
        users = sum(1 for v in store.values() if str(v).startswith("SCRAM-SHA-256$"))
        per_user = scram_time()
        write_cpu, files, size = write_time(where / "outputs", tmp / "scratch")
        parse = parse_time(where / "pigsty.yml")
        compile_s = compile_time(where / "pigsty.yml")
        jinja = (phases["phases"].get("render") or {}).get("cpu") or 0.0
        big = None
        if args.check_hosts:
            bench.dump(bench.sized_fleet(args.check_hosts), tmp / "big.yml")
            big = parse_time(tmp / "big.yml")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(args.hosts, bare, start, parse, users, per_user, write_cpu, files, size, jinja, compile_s, phases)
    if big is not None:
        per_host = compile_s / args.hosts
        print(f"\n{args.check_hosts} hosts, `sty check` (target 15 s): libyaml's parse alone {big:.1f} s (serial);")
        print(
            f"  today's compile at {per_host * 1000:.2f} ms/host split perfectly over {CORES} cores would add "
            f"{per_host * args.check_hosts / CORES:.1f} s"
        )


def report(
    hosts: int,
    bare: float,
    start: float,
    parse: float,
    users: int,
    per_user: float,
    write_cpu: float,
    files: int,
    size: int,
    jinja: float,
    compile_s: float,
    phases: dict,
) -> None:
    scram = users * per_user
    print(f"floors on this machine ({os.cpu_count()} CPUs seen, {CORES} counted), {hosts}-host fleet:")
    print(f"  start        {start:6.2f} s wall (bare interpreter {bare:.2f} s)")
    print(f"  parse        {parse:6.2f} s CPU (libyaml, no positions)")
    print(f"  scram        {scram:6.2f} s CPU ({users} SCRAM users x {per_user * 1000:.2f} ms)")
    print(f"  write        {write_cpu:6.2f} s CPU ({files} files, {size / 2**20:.0f} MiB)")
    print(f"  jinja2       {jinja:6.2f} s CPU (the templates as they are, one worker; not a floor)")
    print(f"  compile      {compile_s:6.2f} s (load, validation, model; today's, serial; not a floor)")
    cpu = {name: value["cpu"] for name, value in phases.get("phases", {}).items() if value and value.get("cpu")}
    split = ", ".join(f"{name} {seconds:.1f}" for name, seconds in sorted(cpu.items(), key=lambda x: -x[1]))
    print(f"  that build   {phases['wall']:6.2f} s wall with one worker; its CPU by phase (s): {split}")
    for n, target in ((hosts, 5.0), (4000, 20.0), (10_000, 60.0)):  # issue 14's full-build targets
        k = n / hosts
        floor = start + parse * k + (scram + write_cpu) * k / CORES
        with_jinja = floor + jinja * k / CORES
        print(
            f"full build, {n} hosts: floor {floor:5.1f} s, with today's templates {with_jinja:5.1f} s "
            f"(target {target:.0f} s{', out of reach' if floor > target else ''})"
        )
    one = start + compile_s
    print(f"one cluster changed, {hosts} hosts: start + whole compile {one:.2f} s before any rendering (target 1 s)")


if __name__ == "__main__":
    main()
