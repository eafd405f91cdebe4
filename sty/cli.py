"""The `sty` command line. Heavy libraries are imported inside commands so that startup stays fast."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from sty import __version__
from sty.compiler.errors import InventoryError, Report
from sty.contract.exits import Exit, UsageError

INVENTORY = click.option(
    "-i",
    "--inventory",
    default="pigsty.yml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Pigsty inventory file.",
)
OUTDIR = click.option(
    "-o",
    "--output",
    "outdir",
    default="outputs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Bundle directory.",
)
FACTS = click.option(
    "--facts", "facts_dir", default=None, help="Facts directory (default: facts/ beside the inventory)."
)
STRICT = click.option("--strict", is_flag=True, help="Treat warnings as errors.")
ALLOW_UPGRADE = click.option(
    "--allow-upgrade",
    is_flag=True,
    help="Accept a changed PostgreSQL major version (after the upgrade procedure of docs/operations.md).",
)
LIMIT = click.option("--limit", "target", default=None, help="Only this TARGET: host, cluster, group or all.")


def _print_report(report: Report, quiet_notes: bool = False) -> None:
    for problem in report.sorted():
        if quiet_notes and problem.severity == "note":
            continue
        click.echo(str(problem), err=True)


def _compile(inventory: str, facts_dir: str | None, strict: bool):
    from sty.compiler.pipeline import compile_fleet

    try:
        compiled = compile_fleet(inventory, facts_dir, strict=strict)
    except InventoryError as exc:
        _print_report(exc.report)
        n = len(exc.report.errors)
        click.echo(f"{inventory}: {n} error(s); nothing was written", err=True)
        sys.exit(Exit.INVALID)
    except OSError as exc:  # a facts or secrets file that cannot be read
        _fail_os(exc)
    _print_report(compiled.report)
    return compiled


def _fail_os(exc: OSError) -> None:
    """The file system refused (a read-only or full output directory, a name over 255 bytes): the operation
    failed, not the input; one sentence naming the path, exit 3."""
    where = exc.filename if exc.filename is not None else "sty"
    click.echo(f"error: {where}: {exc.strerror or exc}", err=True)
    sys.exit(Exit.FAILED)


def _fail_usage(message: str, code: int = Exit.INVALID) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _fail_refused(exc: UsageError) -> None:
    """A UsageError is the user's to fix (exit 2) unless it says the operation failed (the writer's
    WriteFailed carries `exit_code` 3: the file system refused)."""
    _fail_usage(str(exc), getattr(exc, "exit_code", Exit.INVALID))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="sty")
def main() -> None:
    """sty compiles a Pigsty inventory into reviewable, deterministic per-host bundles."""


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

    compiled = _compile(inventory, facts_dir, strict)
    try:
        result = run_build(compiled, Path(outdir), target, use_cache=not no_cache, allow_upgrade=allow_upgrade)
    except UsageError as exc:
        _fail_refused(exc)
    except OSError as exc:
        _fail_os(exc)
    except InventoryError as exc:
        _print_report(exc.report)
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
    compiled = _compile(inventory, facts_dir, strict)
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

    compiled = _compile(inventory, facts_dir, strict)
    try:
        result = run_diff(compiled, Path(outdir), target, allow_upgrade=allow_upgrade)
    except UsageError as exc:
        _fail_refused(exc)
    except OSError as exc:
        _fail_os(exc)
    except InventoryError as exc:
        _print_report(exc.report)
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


@main.command()
@INVENTORY
@FACTS
@click.argument("host")
def show(inventory, facts_dir, host):
    """Effective parameters of HOST as YAML (secrets masked)."""
    from sty.compiler.render import to_yaml

    compiled = _compile(inventory, facts_dir, False)
    h = compiled.fleet.hosts.get(host)
    if h is None:
        _fail_usage(f"host '{host}' is not in {inventory}")
    params = h.params.effective()
    reg = compiled.fleet.registry
    for name in params:
        spec = reg.get(name)
        if spec is not None:
            params[name] = _mask(spec, params[name])
    click.echo(to_yaml({"host": host, "modules": h.modules, "groups": h.groups, "parameters": params}), nl=False)


def _mask(spec, value):
    """Hide secret values, including secret fields of list items and secret mapping values."""
    if spec.secret:
        return "<secret>" if value else value
    if spec.secret_values and isinstance(value, dict):
        return {k: "<secret>" for k in value}
    if spec.secret_fields:
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        masked = []
        for item in items:
            if isinstance(item, dict):
                item = {k: ("<secret>" if k in spec.secret_fields and v else v) for k, v in item.items()}
            masked.append(item)
        return dict(zip(value, masked, strict=True)) if isinstance(value, dict) else masked
    return value


@main.command()
@click.argument("param")
def explain(param):
    """Type, default, description and module of a parameter."""
    from sty.compiler.render import to_yaml
    from sty.compiler.schema import registry

    reg = registry()
    spec = reg.get(param)
    if spec is None:
        module = reg.unrendered_module(param)
        if module:
            click.echo(f"{param}: a parameter of the {module} module, which sty accepts but does not render")
            return
        hint = reg.suggest(param)
        _fail_usage(f"unknown parameter '{param}'" + (f"; did you mean '{hint}'?" if hint else ""))
    out = {
        "parameter": param,
        "module": spec.module,
        "type": spec.type_name,
        "description": spec.description,
    }
    if spec.has_default:
        out["default"] = spec.default
    if spec.secret or spec.secret_fields:
        out["secret"] = True if spec.secret else list(spec.secret_fields)
    for key in ("enum", "pattern", "minimum", "maximum"):
        if key in spec.schema:
            out[key] = spec.schema[key]
    click.echo(to_yaml(out), nl=False)


@main.command(name="ca")
@INVENTORY
@OUTDIR
@FACTS
def ca_command(inventory, outdir, facts_dir):
    """Create the fleet CA if missing; issue the certificates the manifests in the output directory list."""
    from sty.compiler.ca import DEFAULT_CN, DEFAULT_VALIDITY, ca_dir, ensure_ca, sign_for_bundle
    from sty.contract.manifest import ManifestError, discover, read_manifest

    compiled = _compile(inventory, facts_dir, False)
    fleet = compiled.fleet
    source = (fleet.with_module("infra") or list(fleet.hosts.values()) or [None])[0]
    cn = str(source.params.get("ca_cn") or DEFAULT_CN) if source else DEFAULT_CN
    validity = str(source.params.get("cert_validity") or DEFAULT_VALIDITY) if source else DEFAULT_VALIDITY
    out = Path(outdir)
    hosts = discover(out)
    if not hosts:
        _fail_usage(f"no bundles in {outdir}: run sty build first")
    try:
        manifests = [read_manifest(out / f"{ip}.yml")[0] for ip in hosts]
    except ManifestError as exc:
        _fail_usage(str(exc))
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


SSH_CONFIG = click.option("--ssh-config", default=None, help="OpenSSH client config (identity, known hosts).")


@main.command(name="apply")
@OUTDIR
@click.argument("target", default="all")
@click.option("-j", "--jobs", default=4, show_default=True, help="Hosts changed in parallel within a phase.")
@click.option("--check", "check_only", is_flag=True, help="Show drift (live vs bundle); change nothing; exit 1 if any.")
@click.option("--yes", is_flag=True, help="Remove modules and retired hosts without asking.")
@SSH_CONFIG
def apply_cmd(outdir, target, jobs, check_only, yes, ssh_config):
    """Ship bundles to hosts over SSH; activate only what changed (TARGET: host, cluster, group or all). Modules
    a host no longer has, and hosts removed from the inventory, are cleaned after confirmation."""
    from sty.apply.drift import check_drift
    from sty.apply.remote import SshOptions
    from sty.apply.run import apply as run_apply
    from sty.compiler.ca import sign_for_bundle

    ssh = SshOptions.from_env(config=ssh_config)
    try:
        if check_only:
            diffs, errors = check_drift(Path(outdir), target, ssh)
            for text in diffs:
                click.echo(text, nl=False)
            for err in errors:
                click.echo(f"error: {err}", err=True)
            if errors:
                sys.exit(Exit.FAILED)
            if diffs:
                sys.exit(Exit.DIFFERENT)
            click.echo("no drift")
            return
        result = run_apply(Path(outdir), target, jobs=jobs, ssh=ssh, sign=sign_for_bundle, confirm=_confirmer(yes))
    except UsageError as exc:
        _fail_usage(str(exc))
    except Exception as exc:  # ApplyError, RemoteError: one sentence, no traceback
        if type(exc).__name__ not in ("ApplyError", "RemoteError", "SecretError", "ValueError"):
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(Exit.FAILED)
    for failure in result.failures:
        click.echo(f"error: {failure}", err=True)
    changed = sorted(ip for ip, c in result.changed.items() if c)
    click.echo(
        f"{len(result.changed)} host(s): {len(changed)} changed" + (f" ({', '.join(changed)})" if changed else "")
    )
    if result.failures:
        sys.exit(Exit.FAILED)


def _confirmer(yes: bool):
    """Shows what an apply would remove, then asks (or, without a terminal and --yes, refuses: exit 2)."""

    def confirm(removals) -> bool:
        for removal in removals:
            click.echo(f"{removal.host}: {removal.summary()}")
        if yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError("refusing to remove the above without --yes, as there is no terminal to confirm on")
        return click.confirm("Remove these modules from these hosts?")

    return confirm


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
        _fail_refused(exc)
    except OSError as exc:
        _fail_os(exc)
    click.echo(f"{host}: forgotten ({Path(outdir) / host}.yml removed)")


@main.command()
@OUTDIR
@click.argument("target", default="all")
@SSH_CONFIG
def verify(outdir, target, ssh_config):
    """Prove the applied state with pytest-testinfra (files, units, ports, behaviour)."""
    from sty.apply.bundle import ApplyError
    from sty.apply.remote import SshOptions
    from sty.apply.verify import verify as run_verify

    try:
        code = run_verify(Path(outdir), target, SshOptions.from_env(config=ssh_config))
    except UsageError as exc:
        _fail_usage(str(exc))
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
        _fail_usage(str(exc))
    if not yes and not sys.stdin.isatty():
        _fail_usage(f"{cluster}: refusing to switch over without --yes, as there is no terminal to confirm on")
    try:
        job.inspect()
        if not yes and not click.confirm(f"{cluster}: switch over {job.leader} -> {job.candidate}?"):
            _fail_usage(f"{cluster}: not confirmed; nothing was changed")
        seconds = job.run()
    except UsageError as exc:
        _fail_usage(str(exc))
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
def lint(outdir, target, jobs, verbose):
    """Judge every host bundle with the real programs, each host in a private network namespace (root).
    Exit 3 when a check fails."""
    from sty.apply.checks.systemd import PLATFORM_ENV
    from sty.apply.lint import run as run_lint
    from sty.compiler.platform import program_packages

    os.environ[PLATFORM_ENV] = json.dumps(program_packages())  # the checkers' view of the platform table
    try:
        code = run_lint(Path(outdir), target, jobs=jobs, verbose=verbose, echo=lambda s: click.echo(s, nl=False))
    except UsageError as exc:
        _fail_usage(str(exc))
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
