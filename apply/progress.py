"""Live progress of `sty apply`: one line per host and step on stderr, flushed at once, safe across threads.

Stdout carries what a caller parses (the plan, the closing summary, `--json`); progress goes to stderr so that it
never mixes into them. Each line says where the run is (`[2/4]`: the second of four module phases; `plan`,
`remove`, `done` outside them), then the host and what happens there:

    [2/4] 10.10.10.11 pgsql: installing 3 files
    [2/4] 10.10.10.11 pgsql: activating patroni-reload
    [2/4] 10.10.10.11 pgsql: healthy in 2.1s

Lines only, no cursor movement, so a CI log reads the same as a terminal.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO


class Printer:
    """`printer(host, message)` prints one progress line; `stage()` sets the prefix every later line carries."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None):
        self.lock = threading.Lock()
        self.quiet = quiet
        self.stream = stream  # None: sys.stderr when printing (a test harness may swap it in the meantime)
        self.where = ""

    def stage(self, where: str) -> None:
        """`2/4` while the second of four phases runs; `plan`, `remove` or `done` outside the phases."""
        self.where = where

    def __call__(self, host: str, message: str) -> None:
        if self.quiet:
            return
        prefix = f"[{self.where}] " if self.where else ""
        with self.lock:
            print(f"{prefix}{host} {message}", file=self.stream or sys.stderr, flush=True)


def count(n: int, noun: str) -> str:
    """`1 file`, `3 files`: progress lines are read by people."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
