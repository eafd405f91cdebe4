"""Options and failure reporting every command shares: one sentence per problem, the documented exit codes."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from sty.compiler.errors import PUBLISHED_SECRET, InventoryError, Problem, Report
from sty.contract.exits import Exit, UsageError

# Switches that only change how problems are judged: their values go to the context's `meta`, so that every
# command compiling an inventory honours them without a parameter of its own (compile_inventory reads them).
_META = "sty.policy."


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    ctx.meta[_META + str(param.name)] = bool(value)


def _switch(name: str, help_text: str) -> Callable[[Any], Any]:
    return click.option(name, is_flag=True, expose_value=False, callback=_remember, help=help_text)


_INVENTORY_OPTION = click.option(
    "-i",
    "--inventory",
    default="pigsty.yml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Pigsty inventory file.",
)
_ALLOW_UNKNOWN = _switch(
    "--allow-unknown",
    "Unknown parameter, field and package names are warnings, not errors (an inventory carrying another "
    "tool's variables); wins over --strict for them.",
)


def INVENTORY(command: Any) -> Any:  # noqa: N802 - used as a decorator like the other options
    """-i/--inventory, and --allow-unknown: every command that reads an inventory can be told to accept
    another tool's variables."""
    return _INVENTORY_OPTION(_ALLOW_UNKNOWN(command))


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
_STRICT_OPTION = click.option("--strict", is_flag=True, help="Treat every warning as an error.")
_STRICT_SECRETS = _switch(
    "--strict-secrets", "Secrets still holding a password Pigsty publishes in its examples are errors."
)


def STRICT(command: Any) -> Any:  # noqa: N802 - used as a decorator like the other options
    """--strict (the command's `strict` parameter, as before) and --strict-secrets (kept in the context)."""
    return _STRICT_OPTION(_STRICT_SECRETS(command))


ALLOW_UPGRADE = click.option(
    "--allow-upgrade",
    is_flag=True,
    help="Accept a changed PostgreSQL major version (after the upgrade procedure of docs/operations.md).",
)
LIMIT = click.option("--limit", "target", default=None, help="Only this TARGET: host, cluster, group or all.")


def problems_json(report: Report) -> list[dict[str, Any]]:
    """The report's problems as data (`--json`): severity, inventory path, sentence, and `file`, `line` and
    `column` when the path was written in the inventory file."""
    out: list[dict[str, Any]] = []
    for p in report.sorted():
        item: dict[str, Any] = {"severity": p.severity, "path": p.path, "message": p.message}
        if p.location:
            item.update(file=p.file, line=p.line, column=p.column)
        out.append(item)
    return out


# kinds of problem that repeat across a fleet and say the same thing each time: one summary line each
# (the sentence, and what to add while it is only a warning)
_SUMMARISED = {
    PUBLISHED_SECRET: (
        "{n} secrets still have a password Pigsty publishes in its examples; set your own in secrets.yml",
        " (--strict-secrets makes this an error)",
    ),
}


def print_report(report: Report, quiet_notes: bool = False) -> None:
    """Each problem on one line (`file:line:column: severity: path: sentence`), except a kind of `_SUMMARISED`
    met more than once at one severity: one line in its place, with the count and the paths listed compactly."""
    problems = [p for p in report.sorted() if not (quiet_notes and p.severity == "note")]
    groups: dict[tuple[str, str], list[Problem]] = {}
    for p in problems:
        if p.kind in _SUMMARISED:
            groups.setdefault((p.severity, p.kind), []).append(p)
    for p in problems:
        group = groups.get((p.severity, p.kind), [p])
        if len(group) == 1:
            click.echo(str(p), err=True)
        elif p is group[0]:
            sentence, while_warning = _SUMMARISED[p.kind]
            text = sentence.format(n=len(group)) + (while_warning if p.severity == "warning" else "")
            click.echo(f"{p.severity}: {text}: {compact_paths(q.path for q in group)}", err=True)


def compact_paths(paths: Any) -> str:
    """`all.vars.{a,b}, all.children.pg-meta.vars.pg_users[0,1].password`: items differing only in their
    last index share one entry, then keys of one parent share braces."""
    by_index: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        m = re.fullmatch(r"(.*)\[(\d+)\]([^\[\]]*)", path)
        prefix, index, suffix = (m.group(1), m.group(2), m.group(3)) if m else (path, "", "")
        by_index.setdefault((prefix, suffix), []).append(index)
    merged = [
        f"{prefix}[{','.join(sorted(set(idx), key=int))}]{suffix}" if idx[0] else prefix
        for (prefix, suffix), idx in by_index.items()
    ]
    by_parent: dict[str, list[str]] = {}
    for path in merged:
        parent, _, leaf = path.rpartition(".") if "." in path.rsplit("]", 1)[-1] else ("", "", path)
        by_parent.setdefault(parent, []).append(leaf)
    parts = []
    for parent, leaves in by_parent.items():
        leaf = leaves[0] if len(leaves) == 1 else "{" + ",".join(sorted(set(leaves))) + "}"
        parts.append(f"{parent}.{leaf}" if parent else leaf)
    return ", ".join(parts)


def settled_fleet(inventory: str, facts_dir: str | None, strict: bool, outdir: str, target: str | None, listing: bool):
    """(fingerprint, Settled or None): the whole-fleet shortcut of compiler/noop.py. The fingerprint is None for a
    limited build (it does not make the fleet whole) and when an input cannot be read (the full path says why)."""
    from sty.compiler.noop import fingerprint, settled

    if target not in (None, "", "all"):
        return None, None
    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    switches = {name: bool(meta.get(_META + name)) for name in ("allow_unknown", "strict_secrets")}
    fp = fingerprint(Path(inventory), facts_dir, {**switches, "strict": bool(strict)})
    return fp, settled(Path(outdir), fp, listing=listing)


def compile_inventory(inventory: str, facts_dir: str | None, strict: bool, *, json_out: bool = False):
    """The compiled fleet, its problems printed; exit 2 with every error when the inventory is invalid.
    With `json_out` nothing is printed as text: an invalid inventory prints `{"valid": false, "problems": [...]}`
    on stdout, and the caller prints the problems of a valid one with its own document."""
    from sty.compiler.pipeline import compile_fleet

    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    try:
        compiled = compile_fleet(
            inventory,
            facts_dir,
            strict=strict,
            allow_unknown=bool(meta.get(_META + "allow_unknown")),
            strict_secrets=bool(meta.get(_META + "strict_secrets")),
        )
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
    if LONG_LIVED_HEAP:
        keep_for_the_process()
    return compiled


# set by the console command (sty/cli/group.py:run), whose process ends with the command: what it compiles lives
# until then. Left False in-process (tests, `CliRunner`), where fleets come and go.
LONG_LIVED_HEAP = False


def keep_for_the_process() -> None:
    """Move everything allocated so far (the compiled fleet) out of the cycle collector's sight. Why: rendering and
    the state that follows allocate enough to trigger full collections, and each walked the whole fleet to free
    nothing: 0.3 s of a 1000-host build after a one-cluster change, 0.4 s of a full one. Garbage already made stays
    allocated until exit (a few megabytes); what is allocated later is collected as usual."""
    import gc

    gc.freeze()


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
