"""The `sty` command line. Heavy libraries are imported inside commands so that startup stays fast.

One module per family of commands, all registered on the group in `group.py`.
"""

from __future__ import annotations

from . import compile_cmds, fleet_cmds, graph_cmd, inspect_cmds  # noqa: F401  (registers the commands)
from .group import main, run

__all__ = ["main", "run"]
