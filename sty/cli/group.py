"""The `sty` command group; each command module registers its commands on it."""

from __future__ import annotations

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
