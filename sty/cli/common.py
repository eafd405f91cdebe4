"""Options and failure reporting every command shares: one sentence per problem, the documented exit codes."""

from __future__ import annotations

import json
import sys

import click

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


def problems_json(report: Report) -> list[dict[str, str]]:
    """The report's problems as data (`--json`): severity, inventory path, sentence."""
    return [{"severity": p.severity, "path": p.path, "message": p.message} for p in report.sorted()]


def print_report(report: Report, quiet_notes: bool = False) -> None:
    for problem in report.sorted():
        if quiet_notes and problem.severity == "note":
            continue
        click.echo(str(problem), err=True)


def compile_inventory(inventory: str, facts_dir: str | None, strict: bool, *, json_out: bool = False):
    """The compiled fleet, its problems printed; exit 2 with every error when the inventory is invalid.
    With `json_out` nothing is printed as text: an invalid inventory prints `{"valid": false, "problems": [...]}`
    on stdout, and the caller prints the problems of a valid one with its own document."""
    from sty.compiler.pipeline import compile_fleet

    try:
        compiled = compile_fleet(inventory, facts_dir, strict=strict)
    except InventoryError as exc:
        if json_out:
            click.echo(json.dumps({"valid": False, "problems": problems_json(exc.report)}, indent=2))
            sys.exit(Exit.INVALID)
        print_report(exc.report)
        n = len(exc.report.errors)
        click.echo(f"{inventory}: {n} error(s); nothing was written", err=True)
        sys.exit(Exit.INVALID)
    except OSError as exc:  # a facts or secrets file that cannot be read
        fail_os(exc)
    if not json_out:
        print_report(compiled.report)
    return compiled


def fail_os(exc: OSError) -> None:
    """The file system refused (a read-only or full output directory, a name over 255 bytes): the operation
    failed, not the input; one sentence naming the path, exit 3."""
    where = exc.filename if exc.filename is not None else "sty"
    click.echo(f"error: {where}: {exc.strerror or exc}", err=True)
    sys.exit(Exit.FAILED)


def fail_usage(message: str, code: int = Exit.INVALID) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def fail_refused(exc: UsageError) -> None:
    """A UsageError is the user's to fix (exit 2) unless it says the operation failed (the writer's
    WriteFailed carries `exit_code` 3: the file system refused)."""
    fail_usage(str(exc), getattr(exc, "exit_code", Exit.INVALID))


SSH_CONFIG = click.option("--ssh-config", default=None, help="OpenSSH client config (identity, known hosts).")
