"""`python -m sty` is the `sty` command."""

from sty.cli import run

run()
