"""Commands that reach hosts, or the certificates of an output directory: ca, apply, forget, verify,
switchover, facts, lint."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from sty.contract.exits import Exit, UsageError

from .common import FACTS, INVENTORY, LIMIT, OUTDIR, SSH_CONFIG, compile_inventory, fail_os, fail_refused, fail_usage
from .group import main


@main.command(name="ca")
@INVENTORY
@OUTDIR
@FACTS
def ca_command(inventory, outdir, facts_dir):
    """Create the fleet CA if missing; issue the certificates the manifests in the output directory list."""
    from sty.compiler.ca import DEFAULT_CN, DEFAULT_VALIDITY, ca_dir, ensure_ca, sign_for_bundle
    from sty.contract.manifest import ManifestError, discover, read_manifest

    compiled = compile_inventory(inventory, facts_dir, False)
    fleet = compiled.fleet
    source = (fleet.with_module("infra") or list(fleet.hosts.values()) or [None])[0]
    cn = str(source.params.get("ca_cn") or DEFAULT_CN) if source else DEFAULT_CN
    validity = str(source.params.get("cert_validity") or DEFAULT_VALIDITY) if source else DEFAULT_VALIDITY
    out = Path(outdir)
    hosts = discover(out)
    if not hosts:
        fail_usage(f"no bundles in {outdir}: run sty build first")
    try:
        manifests = [read_manifest(out / f"{ip}.yml")[0] for ip in hosts]
    except ManifestError as exc:
        fail_usage(str(exc))
    try:
        ca = ensure_ca(ca_dir(out), cn, validity)
        results: list = []
        for manifest in manifests:
            sign_for_bundle(out, manifest, cn, validity, results=results)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.FAILED)
    click.echo(f"{'created' if ca.created else 'kept'} CA {ca_dir(out)} (CN {cn}, expires {ca.expires:%Y-%m-%d})")
    if ca.expires_soon:
        click.echo(
            f"warning: the CA expires on {ca.expires:%Y-%m-%d}; every certificate it signs expires with it", err=True
        )
    for host, name, issued in results:
        if issued.status != "unchanged":
            click.echo(
                f"{host}: {name}: {issued.status}" + (f" ({issued.reason})" if issued.reason != "missing" else "")
            )
    changed = sum(1 for *_, issued in results if issued.status != "unchanged")
    click.echo(f"{len(results)} certificate(s): {changed} issued, {len(results) - changed} unchanged")


@main.command(name="apply")
@OUTDIR
@click.argument("target", default="all")
@click.option(
    "-j",
    "--jobs",
    default=None,
    type=click.IntRange(1, 64),
    help="Hosts read, and changed within a phase, at once [default: min(16, hosts) read, 4 changed].",
)
@click.option("--check", "check_only", is_flag=True, help="Show drift (live vs bundle); change nothing; exit 1 if any.")
@click.option("--yes", is_flag=True, help="Apply the plan (removals included) without asking.")
@click.option(
    "--json", "json_out", is_flag=True, help="Print the plan and the result (with --check: the drift) as JSON."
)
@SSH_CONFIG
def apply_cmd(outdir, target, jobs, check_only, yes, json_out, ssh_config):
    """Ship bundles to hosts over SSH; activate only what changed (TARGET: host, cluster, group or all; default
    all). Every host is read first and the plan shown; nothing changes before it is confirmed (or --yes). Modules
    a host no longer has, and hosts removed from the inventory, are part of the plan and cleaned last."""
    from sty.apply.drift import drift_report
    from sty.apply.progress import Printer
    from sty.apply.remote import SshOptions
    from sty.apply.run import apply as run_apply
    from sty.compiler.ca import sign_for_bundle

    ssh = SshOptions.from_env(config=ssh_config)
    try:
        if check_only:
            _print_drift(drift_report(Path(outdir), target, ssh), json_out)
            return
        confirm = _confirmer(yes, target, json_out)
        result = run_apply(
            Path(outdir), target, jobs=jobs, ssh=ssh, log=Printer(), sign=sign_for_bundle, confirm=confirm
        )
    except UsageError as exc:
        fail_usage(str(exc))
    except Exception as exc:  # ApplyError, RemoteError: one sentence, no traceback
        if type(exc).__name__ not in ("ApplyError", "RemoteError", "SecretError", "ValueError"):
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.FAILED)
    if not result.plan.changed and not json_out and not result.failures:
        _show_plan(result.plan, target, len(result.changed), sys.stdout)
    for failure in result.failures:
        click.echo(f"error: {failure}", err=True)
    changed = sorted(ip for ip, c in result.changed.items() if c)
    hosts = len(result.changed)
    if json_out:
        doc = {"target": target, "plan": result.plan.as_json(), "changed": result.changed, "failures": result.failures}
        doc["seconds"] = round(result.seconds, 3)
        doc["seconds_per_host"] = round(result.seconds / max(1, hosts), 3)
        doc["timings"] = {k: {step: round(v, 3) for step, v in t.items()} for k, t in result.timings.items()}
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(
            f"{hosts} host(s): {len(changed)} changed"
            + (f" ({', '.join(changed)})" if changed else "")
            + f" in {result.seconds:.1f} s ({result.seconds / max(1, hosts):.2f} s per host)"
        )
    if result.failures:
        sys.exit(Exit.FAILED)


def _show_plan(plan, target: str, hosts: int, stream) -> None:
    """`Plan for all (4 hosts)`, then the plan, or `no changes`: a run never starts silently."""
    from sty.contract.plan import render_text

    from .style import painter

    paint = painter(stream)
    click.echo(paint(f"Plan for {target} ({hosts} host{'' if hosts == 1 else 's'})", "bold"), file=stream)
    for line in render_text(plan, paint) if plan.changed else ["no changes"]:
        click.echo(line, file=stream)


def _confirmer(yes: bool, target: str, json_out: bool):
    """Shows the plan (on stderr with --json: stdout carries the document), then asks on stderr; without a terminal and
    without --yes it refuses (exit 2), before anything changed on any host."""

    def confirm(preview) -> bool:
        if not (json_out and yes):
            _show_plan(preview.plan, target, len(preview.hosts), sys.stderr if json_out else sys.stdout)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError("refusing to apply the above without --yes, as there is no terminal to confirm on")
        try:
            return click.confirm("Apply this plan?", default=False, err=True)  # a question, not output
        except click.Abort:  # Ctrl-C or end of input at the question: not confirmed (exit 2), not click's exit 1
            return False

    return confirm


def _print_drift(report, json_out: bool) -> None:
    """`apply --check`: the diffs (or one JSON document); exit 1 on drift, 3 when a host could not be read."""
    if json_out:
        click.echo(json.dumps({"drift": report.as_json(), "errors": report.errors}, indent=2))
    else:
        for text in report.lines():
            click.echo(text, nl=False)
    for err in report.errors:
        click.echo(f"error: {err}", err=True)
    if report.errors:
        sys.exit(Exit.FAILED)
    if report.changed:
        sys.exit(Exit.DIFFERENT)
    if not json_out:
        click.echo("no drift")


@main.command()
@OUTDIR
@click.argument("host")
def forget(outdir, host):
    """Drop the retirement manifest of HOST, a host removed from the inventory, once `sty apply` cleaned it."""
    from sty.compiler.build import LOCK_TIMEOUT
    from sty.compiler.retire import forget as run_forget

    try:
        run_forget(Path(outdir), host, LOCK_TIMEOUT)
    except UsageError as exc:
        fail_refused(exc)
    except OSError as exc:
        fail_os(exc)
    click.echo(f"{host}: forgotten ({Path(outdir) / host}.yml removed)")


@main.command()
@OUTDIR
@click.argument("target", default="all")
@click.option(
    "-j", "--jobs", default=None, type=click.IntRange(1, 64), help="Hosts gathered at once [default: min(16, hosts)]."
)
@SSH_CONFIG
def verify(outdir, target, jobs, ssh_config):
    """Prove the applied state with pytest-testinfra (files, units, ports, behaviour): one SSH round trip per host
    gathers every fact, hosts in parallel, one progress line per host."""
    from sty.apply.bundle import ApplyError
    from sty.apply.remote import SshOptions
    from sty.apply.verify import verify as run_verify

    try:
        code = run_verify(Path(outdir), target, SshOptions.from_env(config=ssh_config), jobs=jobs)
    except UsageError as exc:
        fail_usage(str(exc))
    except ApplyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.FAILED)
    if code == 0:
        click.echo(f"verified: every check passed on {target}")
    sys.exit(Exit.OK if code == 0 else Exit.FAILED)


@main.command()
@OUTDIR
@click.argument("cluster")
@click.option("--to", "to", default=None, metavar="MEMBER", help="The replica to promote (default: best one).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@SSH_CONFIG
def switchover(outdir, cluster, to, yes, ssh_config):
    """Hand CLUSTER's leadership to a healthy replica through Patroni (a synchronous standby, else the least
    lag) and wait until the new leader serves."""
    from sty.apply.bundle import ApplyError
    from sty.apply.remote import RemoteError, SshOptions
    from sty.apply.switchover import Switchover

    try:
        job = Switchover.prepare(Path(outdir), cluster, to, SshOptions.from_env(config=ssh_config))
    except UsageError as exc:
        fail_usage(str(exc))
    if not yes and not sys.stdin.isatty():
        fail_usage(f"{cluster}: refusing to switch over without --yes, as there is no terminal to confirm on")
    try:
        job.inspect()
        if not yes and not click.confirm(f"{cluster}: switch over {job.leader} -> {job.candidate}?"):
            fail_usage(f"{cluster}: not confirmed; nothing was changed")
        seconds = job.run()
    except UsageError as exc:
        fail_usage(str(exc))
    except (ApplyError, RemoteError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.FAILED)
    finally:
        job.close()
    click.echo(f"{cluster}: {job.leader} -> {job.candidate} in {seconds:.1f}s")


@main.command()
@OUTDIR
@click.argument("host")
@click.option("--facts", "facts_dir", default="facts", show_default=True, help="Where facts/<host>.yml is written.")
@SSH_CONFIG
def facts(outdir, host, facts_dir, ssh_config):
    """Gather CPU, memory and disk of HOST over SSH into facts/<host>.yml."""
    from sty.apply.bundle import ApplyError
    from sty.apply.facts import gather
    from sty.apply.remote import RemoteError, SshOptions

    try:
        path = gather(Path(outdir), host, Path(facts_dir), SshOptions.from_env(config=ssh_config))
    except (RemoteError, ApplyError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.FAILED)
    click.echo(f"wrote {path}")


@main.command()
@OUTDIR
@LIMIT
@click.option("-j", "--jobs", default=2, show_default=True, type=click.IntRange(1, 64), help="Hosts checked at once.")
@click.option("-v", "--verbose", is_flag=True, help="Also list the checks that passed.")
@click.option("--json", "json_out", is_flag=True, help="Print every check's result as JSON (same exit codes).")
def lint(outdir, target, jobs, verbose, json_out):
    """Judge every host bundle with the real programs, each host in a private network namespace (root).
    Exit 3 when a check fails."""
    from sty.apply.checks.systemd import PLATFORM_ENV
    from sty.apply.lint import run as run_lint
    from sty.compiler.platform import program_packages

    os.environ[PLATFORM_ENV] = json.dumps(program_packages())  # the checkers' view of the platform table
    try:
        code = run_lint(
            Path(outdir), target, jobs=jobs, verbose=verbose, echo=lambda s: click.echo(s, nl=False), json_out=json_out
        )
    except UsageError as exc:
        fail_usage(str(exc))
    sys.exit(code)
