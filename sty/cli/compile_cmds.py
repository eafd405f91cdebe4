"""`sty build`, `sty check` and `sty diff`: the inventory to bundles, and what would change."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sty.compiler.errors import InventoryError
from sty.contract.exits import Exit, UsageError
from sty.contract.plan import render_text
from sty.contract.targets import host_key

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
    problems_json,
    settled_fleet,
)
from .group import main

if TYPE_CHECKING:
    from sty.compiler.diff import DiffResult
    from sty.compiler.noop import Settled
    from sty.compiler.pipeline import Compiled
from .style import colour_enabled, paint_diff, painter


@main.command()
@INVENTORY
@OUTDIR
@FACTS
@STRICT
@LIMIT
@click.option("--no-cache", is_flag=True, help="Render every host even if its inputs did not change.")
@click.option("-q", "--quiet", is_flag=True, help="Print only problems.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 256),
    default=None,
    help="Worker processes rendering hosts (default: the CPUs sty may use); the output is the same for any value.",
)
@ALLOW_UPGRADE
def build(inventory, outdir, facts_dir, strict, target, no_cache, quiet, jobs, allow_upgrade):
    """Render bundles into the output directory (only changed files are written)."""
    fp, done = settled_fleet(inventory, facts_dir, strict, outdir, target, listing=False)
    if done is not None and not no_cache:  # the inputs of the last build, its files in place: nothing to do
        print_report(done.report)
        if not quiet:
            click.echo(
                f"{done.hosts} host(s): 0 rendered, {done.hosts} unchanged inputs; "
                "0 file(s) written, 0 removed, 0 unchanged"
            )
        return
    from sty.compiler import early_stamps
    from sty.compiler.build import build as run_build

    early = None if no_cache else early_stamps.start(Path(outdir))  # on the other core, while this one compiles
    try:
        compiled = compile_inventory(inventory, facts_dir, strict)
        result = run_build(
            compiled,
            Path(outdir),
            target,
            use_cache=not no_cache,
            allow_upgrade=allow_upgrade,
            fingerprint=fp,
            jobs=jobs,
            early=early,
        )
    except UsageError as exc:
        fail_refused(exc)
    except OSError as exc:
        fail_os(exc)
    except InventoryError as exc:
        print_report(exc.report)
        sys.exit(Exit.INVALID)
    finally:
        if early is not None:
            early.close()
    if not quiet:
        s = result.stats
        click.echo(
            f"{result.hosts} host(s): {result.rendered} rendered, {result.skipped} unchanged inputs; "
            f"{len(s.written)} file(s) written, {len(s.removed)} removed, {s.unchanged} unchanged"
        )
    others = len(compiled.fleet.hosts) - result.hosts
    if others > 0:  # a limited build leaves the rest as they were, which may no longer match the inventory
        click.echo(
            f"note: --limit {target}: {others} other host(s) were not rebuilt and may be stale; "
            f"`sty diff -i {inventory}` shows whether they are",
            err=True,
        )


@main.command()
@INVENTORY
@FACTS
@STRICT
@click.option("--json", "as_json", is_flag=True, help='One JSON document: {"valid", "hosts", "problems"}.')
def check(inventory, facts_dir, strict, as_json):
    """Validate the inventory without writing anything."""
    compiled = compile_inventory(inventory, facts_dir, strict, json_out=as_json)
    n = len(compiled.fleet.hosts)
    if as_json:
        click.echo(json.dumps({"valid": True, "hosts": n, "problems": problems_json(compiled.report)}, indent=2))
        return
    click.echo(f"{inventory}: valid ({n} host(s), {len(compiled.report.warnings)} warning(s))")


@main.command()
@INVENTORY
@OUTDIR
@FACTS
@STRICT
@LIMIT
@click.option("--stat", is_flag=True, help="Only the plan, no file diffs.")
@click.option("--manifests", is_flag=True, help="Also the diffs of the manifests <host>.yml (bookkeeping).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: plan, diffs, foreign files, problems.")
@click.option("--no-cache", is_flag=True, help="Render every host even if the last build says it is unchanged.")
@ALLOW_UPGRADE
def diff(inventory, outdir, facts_dir, strict, target, stat, manifests, as_json, no_cache, allow_upgrade):
    """Show what a build would change, as diffs and a plan; exit 1 when anything differs."""
    if not no_cache:
        _, done = settled_fleet(inventory, facts_dir, strict, outdir, target, listing=True)
        if done is not None:  # the inputs of the last build, its files in place: no differences
            _diff_settled(done, stat, as_json)
            sys.exit(Exit.OK)
    from sty.compiler.diff import diff as run_diff

    compiled = compile_inventory(inventory, facts_dir, strict, json_out=as_json)
    try:
        result = run_diff(compiled, Path(outdir), target, allow_upgrade=allow_upgrade, use_cache=not no_cache)
    except UsageError as exc:
        fail_refused(exc)
    except OSError as exc:
        fail_os(exc)
    except InventoryError as exc:
        if as_json:
            click.echo(json.dumps({"valid": False, "problems": problems_json(exc.report)}, indent=2))
        else:
            print_report(exc.report)
        sys.exit(Exit.INVALID)
    if as_json:
        _diff_json(result, compiled, stat, manifests)
    else:
        _diff_text(result, stat, manifests)
    sys.exit(Exit.DIFFERENT if result.changed else Exit.OK)


def _shown(result: DiffResult, manifests: bool) -> Iterator[tuple[str, str, str]]:
    """(ip, rel, unified text) of the diffs to show, hosts and files in order; manifests only when asked."""
    from sty.compiler.diff import is_manifest

    for ip in sorted(result.diffs, key=host_key):
        for rel, text in sorted(result.diffs[ip].items()):
            if manifests or not is_manifest(ip, rel):
                yield ip, rel, text


def _diff_text(result: DiffResult, stat: bool, manifests: bool) -> None:
    paint, colour = painter(sys.stdout), colour_enabled(sys.stdout)
    shown = [] if stat else list(_shown(result, manifests))
    for _, _, text in shown:
        click.echo(paint_diff(text, paint), nl=False, color=colour)
    for ip, files in sorted(result.foreign.items(), key=_ip_key):
        click.echo(
            f"note: {ip}: {len(files)} file(s) sty did not write, left alone and never shipped: " + ", ".join(files),
            err=True,
        )
    if not result.changed:
        click.echo("no differences")
        return
    if shown:
        click.echo("")
    for line in render_text(result.plan, paint):
        click.echo(line, color=colour)


def _diff_settled(done: Settled, stat: bool, as_json: bool) -> None:
    """`sty diff` when the whole-fleet shortcut holds: what `_diff_text`/`_diff_json` print for a plan with no
    host changed, the recorded problems and the files sty did not write included."""
    from sty.contract.plan import Plan

    if as_json:
        doc: dict = {"plan": Plan(unchanged=done.hosts).as_json()}
        if not stat:
            doc["diffs"] = {}
        doc["foreign"] = {
            ip: [rel[len(ip) :] for rel in files] for ip, files in sorted(done.foreign.items(), key=_ip_key)
        }
        doc["problems"] = problems_json(done.report)
        click.echo(json.dumps(doc, indent=2))
        return
    print_report(done.report)
    for ip, files in sorted(done.foreign.items(), key=_ip_key):
        click.echo(
            f"note: {ip}: {len(files)} file(s) sty did not write, left alone and never shipped: " + ", ".join(files),
            err=True,
        )
    click.echo("no differences")


def _diff_json(result: DiffResult, compiled: Compiled, stat: bool, manifests: bool) -> None:
    from sty.compiler.diff import host_path

    doc: dict = {"plan": result.plan.as_json()}
    if not stat:
        diffs: dict[str, dict[str, str]] = {}
        for ip, rel, text in _shown(result, manifests):
            diffs.setdefault(ip, {})[host_path(ip, rel)] = text
        doc["diffs"] = diffs
    doc["foreign"] = {
        ip: [host_path(ip, rel) for rel in files] for ip, files in sorted(result.foreign.items(), key=_ip_key)
    }
    doc["problems"] = problems_json(compiled.report)
    click.echo(json.dumps(doc, indent=2))


def _ip_key(item: tuple[str, object]) -> tuple:
    return host_key(item[0])
