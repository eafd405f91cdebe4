"""The child side of `make bench`: run the real `sty` command line with per-phase timers wrapped around the
compiler's functions from the outside, and report the phase totals as one JSON line on stderr at exit.

    python tests/bench_phases.py build -q          # what `sty build -q` does, plus the phase line

Why from the outside: the compiler is being changed while it is measured, and timers inside it would be one
more thing to keep in step. Here each phase is a list of `module:function` names (`module:Class.method` for a
method; `a|b` where a function may live in either place), plus whole modules whose public functions all belong
to one phase (the loader, the writer, the YAML emitter, `diff`), so a function added there is timed too. A name
that is missing (renamed or moved) is skipped and reported in the JSON line, and a phase none of whose names
exist is reported as n/a instead of failing the run: the benchmark keeps working across refactorings.

Attribution is exclusive: a wrapped call charges its phase with its own time minus the time of the wrapped
calls nested in it, so a Jinja2 template rendered inside a module's `render` counts once, under `render`, and
a manifest serialised inside `render_targets` counts under `serialise`. Only the main process's main thread is
timed: the build's worker processes run inside `stage_all`, whose wall time is charged to `workers` as a whole
(with one worker, `--jobs 1`, the phases inside are split as usual).

Wrapping by identity: modules import functions by name (`from ...render import render, to_yaml`), so
replacing the attribute on the defining module alone would miss those copies. After importing the compiler
and every fleet module, each wrapped function is replaced wherever a `sty.*` module holds that very object.

The line also carries the time spent in Python's cyclic garbage collector (`gc.callbacks`), which happens inside
the phases and grows with the heap, and the time the line was written, from which the parent derives the
interpreter's teardown.

Environment: `STY_BENCH_T0` (the parent's `time.time()` at spawn) lets the child report interpreter start
and imports as `start`; `STY_BENCH_PHASES=0` turns the timers off (a plain run through the same entry point);
`STY_BENCH_PROFILE=FILE` runs the command under cProfile (main thread only) and dumps the statistics to FILE;
`STY_BENCH_LIFT_LIMITS=1` raises the loader's size limits, to time a fleet larger than sty accepts.
"""

from __future__ import annotations

import functools
import gc
import importlib
import inspect
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_T0 = float(os.environ.get("STY_BENCH_T0") or time.time())
_ENTRY = time.time()  # before any sty import: the interpreter's own start ends here

MARKER = "STY-BENCH-PHASES "

# phase -> the functions whose (exclusive) time it is; order is the order of the printed table. `a|b` names
# where one function may live (or two generations of it): every one that exists is wrapped, and the entry is
# reported missing only when none does
PHASES: dict[str, tuple[str, ...]] = {
    "load": (
        "sty.compiler.loader:read_marked|sty.compiler.loader:read_yaml",
        "sty.compiler.loader:parse_inventory",
        "sty.compiler.loader:load_inventory",
    ),
    "validate": (
        "sty.compiler.schema:registry",
        "sty.compiler.validate:validate_shape",
        "sty.compiler.validate:validate_host_keys",
        "sty.compiler.validate:validate_blocks",
        "sty.compiler.validate:validate_one_cluster_per_module",
        "sty.compiler.secrets:load_overrides",
        "sty.compiler.pipeline:_warn_default_secrets",
    ),
    # compile_fleet's remainder: hosts and their lazy parameters, module membership, derive, cross-host rules
    "model": (
        "sty.compiler.pipeline:compile_fleet",
        "sty.compiler.model:build_hosts",
        "sty.compiler.pipeline:resolve_target",
    ),
    # per-host Python of the modules' render methods (and the lazy parameter resolution they trigger)
    "bundle": (
        "sty.compiler.build:render_targets",
        "sty.compiler.pipeline:render_host",
    ),
    "render": (
        "sty.compiler.render:render",
        "sty.compiler.render:environment",
    ),
    "serialise": (
        "sty.compiler.render:to_yaml",
        "sty.compiler.render:to_json",
        "sty.compiler.manifest:manifest_text",
        "sty.compiler.manifest:manifest",
        "sty.compiler.retire:retirement_text",
    ),
    # what sty knows of its earlier output: input digests, stat checks of a skipped host's files, state.json,
    # the files a manifest says sty wrote (parsed back from YAML), the pinned identity
    "state": (
        "sty.compiler.writer:manifest_files",
        "sty.compiler.build:unchanged_hosts",
        "sty.compiler.stamps:files_in_place|sty.compiler.build:_unchanged",
        "sty.compiler.stamps:files_in_place_listing|sty.compiler.diff:_unchanged_listing",
        "sty.compiler.paths:code_digest|sty.compiler.schema:code_digest",
        "sty.compiler.pipeline:input_digest",
        "sty.compiler.stamps:read_state|sty.compiler.build:read_state",
        "sty.compiler.noop:fingerprint",
        "sty.compiler.noop:settled",
        "sty.compiler.build:write_state",
        "sty.compiler.build:_save_state",
        "sty.compiler.build:refuse_pin_changes",
    ),
    # the secret store: read, SCRAM verifiers (PBKDF2), rewrite
    "secrets": (
        "sty.compiler.build:_begin_secrets|sty.compiler.build:_save_secrets",
        "sty.contract.store:read_store",
        "sty.contract.store:write_store",
        "sty.contract.store:PendingStore.finish",
    ),
    # the file system, reads included (a diff reads every file it compares)
    "write": (
        "sty.compiler.build:check_output_dir",
        "sty.compiler.build:_refuse_foreign",
        "sty.compiler.stage:commit",
        "sty.compiler.stage:discard",
        "sty.compiler.writer:host_tree",
        "sty.compiler.writer:host_contents",
        "sty.compiler.writer:existing_hosts",
        "sty.compiler.stage:stage_files",
    ),
    # hosts rendered, serialised and staged in forked worker processes: the parent waits, and the phases inside
    # the workers are not split (`--jobs 1` renders in this process, where they are)
    "workers": ("sty.compiler.stage:stage_all",),
    "diff": (
        "sty.compiler.diff:diff|sty.compiler.build:diff",
        "sty.compiler.diff:_diff_files|sty.compiler.build:_diff_files",
        "sty.compiler.writer:unified|sty.compiler.diff:unified",
    ),
}
# modules whose other public functions belong to one phase: a function a helper adds or renames there is still
# timed (the explicit names above win)
MODULE_PHASES: dict[str, str] = {
    "sty.compiler.loader": "load",
    "sty.compiler.validate": "validate",
    "sty.compiler.writer": "write",
    "sty.compiler.yaml_emitter": "serialise",
    "sty.compiler.diff": "diff",
}
# what a run always imports before the command: the CLI, the compiler core and (through all_modules) the modules
PRELOAD = (
    "sty.cli",
    "sty.compiler.pipeline",
    "sty.compiler.build",
    "sty.compiler.diff",
    "sty.compiler.manifest",
    "sty.compiler.retire",
    "sty.compiler.writer",
    "sty.contract.store",
)


class Clock:
    """Exclusive wall and CPU seconds per phase, charged by the main thread's wrapped calls."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {p: 0.0 for p in PHASES}
        self.cpu: dict[str, float] = {p: 0.0 for p in PHASES}
        self.calls: dict[str, int] = {p: 0 for p in PHASES}
        self.stack: list[list[float]] = []  # per open call: [wall, cpu] spent in nested wrapped calls
        self.main = threading.get_ident()

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = self
        perf, cpu_now, ident = time.perf_counter, time.process_time, threading.get_ident

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if ident() != clock.main:
                return fn(*args, **kwargs)
            nested = [0.0, 0.0]
            clock.stack.append(nested)
            w0, c0 = perf(), cpu_now()
            try:
                return fn(*args, **kwargs)
            finally:
                dw, dc = perf() - w0, cpu_now() - c0
                clock.stack.pop()
                clock.wall[phase] += dw - nested[0]
                clock.cpu[phase] += dc - nested[1]
                clock.calls[phase] += 1
                if clock.stack:
                    clock.stack[-1][0] += dw
                    clock.stack[-1][1] += dc

        timed.__sty_bench_original__ = fn  # type: ignore[attr-defined]
        return timed


class GcClock:
    """Seconds spent in Python's cyclic garbage collector, from `gc.callbacks`. A full collection walks every
    tracked object, so with a fleet's worth of objects alive it costs more the larger the fleet: the part of
    the phases that grows faster than the fleet. Not a phase of its own: it happens inside the others."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._since = 0.0

    def __call__(self, event: str, info: dict[str, int]) -> None:
        if event == "start":
            self._since = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._since
        generation = info.get("generation", 2)
        if 0 <= generation < len(self.collections):
            self.collections[generation] += 1


def _preload() -> None:
    """Import the compiler and its fleet modules, so that every wrapped function exists before patching. With the
    whole-fleet shortcut a no-op build imports much less: its `start` phase is the same wherever it is charged, but
    `--plain` runs without this, and its wall times are the command's own."""
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - missing or mid-edit: its functions are reported n/a
            pass
    try:
        from sty.compiler.modules import all_modules

        all_modules()  # the registry imports the fleet modules lazily
    except Exception:  # noqa: BLE001 - a moved registry only costs the modules' own copies of wrapped names
        pass


def _resolve(target: str) -> Callable[..., Any] | None:
    module_name, _, attr = target.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - missing or mid-edit: reported n/a
            return None
    fn: Any = module
    for part in attr.split("."):  # `Class.method` names a method
        fn = getattr(fn, part, None)
    return fn if callable(fn) and not isinstance(fn, type) else None


def _module_functions(module_name: str) -> list[str]:
    """`module:function` of the public plain functions a module defines (not generators: a wrapper would time
    only their creation)."""
    module = sys.modules.get(module_name)
    if module is None:
        return []
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or not inspect.isfunction(value) or value.__module__ != module_name:
            continue
        if inspect.isgeneratorfunction(inspect.unwrap(value)):
            continue
        names.append(f"{module_name}:{name}")
    return names


def install(clock: Clock) -> tuple[dict[str, list[str]], list[str]]:
    """Wrap every phase function that exists. Returns phase -> the names found (none: the phase is n/a), and
    the entries of PHASES none of whose alternatives exists (renamed or moved: their time lands elsewhere).

    A name listed in PHASES is replaced everywhere, its own module included (`build` calls `render_targets`
    through its module's globals). A function found only through MODULE_PHASES is replaced in the other
    modules: calls into the module are timed, its calls to its own small helpers cost nothing extra."""
    found: dict[str, list[str]] = {p: [] for p in PHASES}
    missing: list[str] = []
    wrappers: dict[int, tuple[Callable[..., Any], str | None]] = {}  # id -> wrapper, module it is not patched in
    targets = [(phase, t, False) for phase, entries in PHASES.items() for e in entries for t in e.split("|")]
    targets += [(phase, t, True) for module, phase in MODULE_PHASES.items() for t in _module_functions(module)]
    resolved = {target: _resolve(target) for _, target, _ in targets}
    for phase, target, boundary_only in targets:
        fn = resolved[target]
        if fn is None:
            continue
        fn = getattr(fn, "__sty_bench_original__", fn)
        if id(fn) not in wrappers:  # listed twice or re-exported: one wrapper, the first phase listed
            home = target.partition(":")[0] if boundary_only else None
            wrappers[id(fn)] = (clock.wrap(phase, fn), home)
            found[phase].append(target)
    for entries in PHASES.values():
        missing += [e for e in entries if all(resolved[t] is None for t in e.split("|"))]
    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "")
        if not name.startswith("sty"):
            continue
        for attr, value in list(vars(module).items()):
            entry = wrappers.get(id(value))
            if entry is not None and callable(value) and entry[1] != name:
                setattr(module, attr, entry[0])
            if isinstance(value, type) and value.__module__ == name:  # a method listed as `Class.method`
                for method, member in list(vars(value).items()):
                    entry = wrappers.get(id(member))
                    if entry is not None and callable(member):
                        setattr(value, method, entry[0])
    return found, missing


def _report(
    clock: Clock | None,
    found: dict[str, list[str]],
    missing: list[str],
    imported: float,
    status: int,
    collector: GcClock,
) -> None:
    """One JSON line on stderr: the parent parses it; a human reading stderr can too."""
    phases = {}
    for phase in PHASES:
        if clock is None or not found.get(phase):
            phases[phase] = None
        else:
            phases[phase] = {"wall": clock.wall[phase], "cpu": clock.cpu[phase], "calls": clock.calls[phase]}
    doc = {
        "start": imported - _T0,
        "interpreter": _ENTRY - _T0,
        "phases": phases,
        "missing": missing,
        "gc": {"seconds": collector.seconds, "collections": collector.collections},
        "exit": status,
        "done": time.time(),
    }
    sys.stderr.write(MARKER + json.dumps(doc) + "\n")
    sys.stderr.flush()


def lift_limits() -> None:
    """Raise the loader's size bounds (an untrusted inventory's guard) so that a fleet beyond them can be
    timed: what checking would cost, not what sty accepts today."""
    import importlib

    for module in ("sty.compiler.limits", "sty.compiler.loader", "sty.compiler.noop"):
        try:  # imported here: a plain run (no phase timers) has not imported them yet
            loaded = importlib.import_module(module)
        except ImportError:
            continue
        for name in ("MAX_BYTES", "MAX_VALUES", "MAX_CHARS"):
            if isinstance(getattr(loaded, name, None), int):
                setattr(loaded, name, getattr(loaded, name) * 20)  # not more: read() sizes its buffer by it


def main(argv: list[str]) -> int:
    timed = os.environ.get("STY_BENCH_PHASES", "1") != "0"
    profile_to = os.environ.get("STY_BENCH_PROFILE")
    if timed:  # the wrapped functions must exist first; a plain run imports only what the command imports
        _preload()
    if os.environ.get("STY_BENCH_LIFT_LIMITS") == "1":
        lift_limits()
    clock = Clock() if timed else None
    found, missing = install(clock) if clock else ({}, [])
    imported = time.time()
    from sty.cli import common
    from sty.cli import main as cli

    common.LONG_LIVED_HEAP = True  # as the console command (sty.cli.group:run) sets it

    collector = GcClock()
    gc.callbacks.append(collector)

    status = 0
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        cli.main(args=argv, prog_name="sty", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_to)
        _report(clock, found, missing, imported, status, collector)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
