"""Colour on a terminal, never in a pipe or a file, and never when NO_COLOR is set (https://no-color.org).

`STY_COLOR=always` forces it (a CI log that renders ANSI), `STY_COLOR=never` turns it off.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

import click

STYLES = {
    "add": {"fg": "green"},
    "change": {"fg": "yellow"},
    "remove": {"fg": "red"},
    "restart": {"fg": "red", "bold": True},
    "error": {"fg": "red", "bold": True},
    "warning": {"fg": "yellow"},
    "bold": {"bold": True},
    "hunk": {"fg": "cyan"},
}


def colour_enabled(stream: TextIO | None = None) -> bool:
    forced = os.environ.get("STY_COLOR", "").lower()
    if forced in ("never", "0", "no"):
        return False
    if os.environ.get("NO_COLOR"):
        return False
    if forced in ("always", "1", "yes"):
        return True
    stream = stream if stream is not None else sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)()) and os.environ.get("TERM") != "dumb"


def painter(stream: TextIO | None = None):
    """A `(text, style) -> text` function for one output stream: ANSI styles on a terminal, plain text otherwise."""
    if not colour_enabled(stream):
        return lambda text, style: text
    return lambda text, style: click.style(text, **STYLES.get(style, {}))


def paint_diff(text: str, paint) -> str:
    """A unified diff with its added lines green, removed ones red, hunk headers cyan and file headers bold."""
    out = []
    for line in text.splitlines(keepends=True):
        body, end = (line[:-1], "\n") if line.endswith("\n") else (line, "")
        if line.startswith(("--- ", "+++ ")):
            style = "bold"
        elif line.startswith("@@"):
            style = "hunk"
        elif line.startswith("+"):
            style = "add"
        elif line.startswith("-"):
            style = "remove"
        else:
            out.append(line)
            continue
        out.append(paint(body, style) + end)
    return "".join(out)
