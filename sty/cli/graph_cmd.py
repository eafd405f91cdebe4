"""`sty graph`: the fleet as a picture, for a reviewer who wants the shape of an inventory before its diffs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sty.compiler.errors import InventoryError
from sty.contract.exits import Exit

from .common import INVENTORY, compile_inventory, fail_os, print_report
from .group import main


@main.command()
@INVENTORY
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "svg"]),
    default="text",
    show_default=True,
    help="A text tree (terminal, pull request) or an SVG drawing.",
)
@click.option(
    "-o",
    "--output",
    "output",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write to this file instead of standard output.",
)
def graph(inventory, fmt, output):
    """Clusters and their members' roles, services, VIPs, the DCS link and which infra nodes scrape which hosts."""
    from sty.compiler.graph import fleet_graph, render_svg, render_text

    compiled = compile_inventory(inventory, None, False)
    try:
        topology = fleet_graph(compiled, Path(inventory).name)
    except InventoryError as exc:  # a host that cannot be rendered, as `sty build` reports it
        print_report(exc.report)
        sys.exit(Exit.INVALID)
    text = render_svg(topology) if fmt == "svg" else render_text(topology)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        fail_os(exc)
