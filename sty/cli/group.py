"""The `sty` command group; each command module registers its commands on it."""

from __future__ import annotations

import click

from sty import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="sty")
def main() -> None:
    """sty compiles a Pigsty inventory into reviewable, deterministic per-host bundles."""
