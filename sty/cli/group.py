"""The `sty` command group; each command module registers its commands on it."""

from __future__ import annotations

import atexit
import os
import sys

import click


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """`sty --version`; the version is looked up only here (importlib.metadata is slow to import)."""
    if not value or ctx.resilient_parsing:
        return
    import sty

    click.echo(f"sty, version {sty.__version__}")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-V",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
def main() -> None:
    """sty compiles a Pigsty inventory into reviewable, deterministic per-host bundles."""


def run() -> None:
    """The `sty` console command: `main`, then an exit that skips the interpreter's teardown.

    Why: freeing a large build's objects one by one at exit cost 0.1 s of a no-op build and 0.4 s of a
    1000-host one, for memory the kernel takes back at once. Nothing is lost by skipping it: every file a command
    writes is closed (and synced) before the command returns, the exit handlers sty registers (a checker's
    scratch directory) still run, and the output streams are flushed here. Under a profiler or coverage the
    normal exit is kept, since they save their data at exit.
    """
    from . import common

    common.LONG_LIVED_HEAP = True
    try:
        main.main(prog_name="sty")
    except SystemExit as exc:
        code = exc.code
    else:  # pragma: no cover - click's standalone mode always exits
        code = 0
    if not (code is None or isinstance(code, int)):  # SystemExit("sentence"): said on stderr, status 1
        print(code, file=sys.stderr)
        code = 1
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a profiler or coverage is watching: it writes its data at the normal exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`sty diff | head`): nothing more can reach it
            pass
    os._exit(code or 0)
