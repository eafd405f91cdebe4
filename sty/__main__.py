"""`python -m sty` is the `sty` command."""

from sty.cli import main

main()
