"""`sty build`, `sty check` and `sty diff`: the inventory to bundles, and what would change."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sty.compiler.errors import InventoryError
from sty.contract.exits import Exit, UsageError

from .common import (
    ALLOW_UPGRADE,
    FACTS,
    INVENTORY,
    LIMIT,
    OUTDIR,
    STRICT,
    compile_inventory,
    fail_os,
    fail_refused,
    print_report,
)
from .group import main


@main.command()
@INVENTORY
@OUTDIR
@FACTS
@STRICT
@LIMIT
@click.option("--no-cache", is_flag=True, help="Render every host even if its inputs did not change.")
@click.option("-q", "--quiet", is_flag=True, help="Print only problems.")
@ALLOW_UPGRADE
def build(inventory, outdir, facts_dir, strict, target, no_cache, quiet, allow_upgrade):
    """Render bundles into the output directory (only changed files are written)."""
    from sty.compiler.build import build as run_build

    compiled = compile_inventory(inventory, facts_dir, strict)
    try:
        result = run_build(compiled, Path(outdir), target, use_cache=not no_cache, allow_upgrade=allow_upgrade)
    except UsageError as exc:
        fail_refused(exc)
    except OSError as exc:
        fail_os(exc)
    except InventoryError as exc:
        print_report(exc.report)
        sys.exit(Exit.INVALID)
    if not quiet:
        s = result.stats
        click.echo(
            f"{result.hosts} host(s): {result.rendered} rendered, {result.skipped} unchanged inputs; "
            f"{len(s.written)} file(s) written, {len(s.removed)} removed, {s.unchanged} unchanged"
        )


@main.command()
@INVENTORY
@FACTS
@STRICT
def check(inventory, facts_dir, strict):
    """Validate the inventory without writing anything."""
    compiled = compile_inventory(inventory, facts_dir, strict)
    n = len(compiled.fleet.hosts)
    click.echo(f"{inventory}: valid ({n} host(s), {len(compiled.report.warnings)} warning(s))")


@main.command()
@INVENTORY
@OUTDIR
@FACTS
@STRICT
@LIMIT
@click.option("--stat", is_flag=True, help="Only the per-host impact summary, no file diffs.")
@ALLOW_UPGRADE
def diff(inventory, outdir, facts_dir, strict, target, stat, allow_upgrade):
    """Show what a build would change; exit 1 when anything differs."""
    from sty.compiler.build import diff as run_diff

    compiled = compile_inventory(inventory, facts_dir, strict)
    try:
        result = run_diff(compiled, Path(outdir), target, allow_upgrade=allow_upgrade)
    except UsageError as exc:
        fail_refused(exc)
    except OSError as exc:
        fail_os(exc)
    except InventoryError as exc:
        print_report(exc.report)
        sys.exit(Exit.INVALID)
    if not stat:
        for text in result.diffs:
            click.echo(text, nl=False)
    for ip, lines in result.impact.items():
        click.echo(f"{ip}: {lines[0]}" + (f"; {', '.join(lines[1:])}" if lines[1:] else ""))
    for ip, files in sorted(result.foreign.items()):
        click.echo(
            f"note: {ip}: {len(files)} file(s) sty did not write, left alone and never shipped: " + ", ".join(files),
            err=True,
        )
    if result.changed:
        sys.exit(Exit.DIFFERENT)
    click.echo("no differences")
