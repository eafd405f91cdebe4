"""Problems found in an inventory, and the exit codes every command shares.

A build never stops at the first problem: each stage appends `Problem`s to a `Report`
so that a user sees everything wrong with an inventory in one run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace

from sty.contract.exits import Exit

__all__ = ["Exit", "InventoryError", "Problem", "Report", "join_path", "UNKNOWN", "PUBLISHED_SECRET"]

# Kinds of problem a command-line switch acts on (the kind is a tag, never shown).
UNKNOWN = "unknown-name"  # a name sty does not know (a typo?): an error unless --allow-unknown
PUBLISHED_SECRET = "published-secret"  # a secret still holding a value Pigsty publishes: --strict-secrets

# (file, line, column) of a problem's inventory path, 1-based; None when the path was not written there
Locator = Callable[[str], "tuple[str, int, int] | None"]


@dataclass(frozen=True, order=True)
class Problem:
    """One finding, located by its inventory path (`all.children.pg-test.hosts.10.10.10.11.pg_seq`) and, when
    the path was written in the inventory file, by file, line and column. Two problems are the same problem
    whatever their location or kind, so that a report never says one thing twice."""

    path: str
    message: str
    severity: str = "error"  # error | warning | note
    kind: str = field(default="", compare=False)
    file: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    @property
    def location(self) -> str:
        """`pigsty.yml:41:9`, or '' for a path not written in the file (a default, a derived rule)."""
        return f"{self.file}:{self.line}:{self.column}" if self.file and self.line else ""

    def __str__(self) -> str:
        # one problem, one line: a value quoted in the message may carry a line break
        where = f"{self.location}: " if self.location else ""
        text = f"{where}{self.severity}: {self.path}: {self.message}"
        return text.replace("\r", "\\r").replace("\n", "\\n")


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)

    def error(self, path: str, message: str, kind: str = "") -> None:
        self.problems.append(Problem(path, message, "error", kind))

    def warning(self, path: str, message: str, kind: str = "") -> None:
        self.problems.append(Problem(path, message, "warning", kind))

    def note(self, path: str, message: str, kind: str = "") -> None:
        self.problems.append(Problem(path, message, "note", kind))

    def extend(self, other: Report) -> None:
        self.problems.extend(other.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def strict(self, kinds: Collection[str] | None = None, keep: Collection[str] = ()) -> None:
        """--strict: every warning becomes an error; `kinds` limits that to warnings of those kinds
        (--strict-secrets), `keep` leaves the warnings of some kinds alone (--allow-unknown wins over --strict)."""
        self.problems = [
            replace(p, severity="error")
            if p.severity == "warning" and (kinds is None or p.kind in kinds) and p.kind not in keep
            else p
            for p in self.problems
        ]

    def relax(self, kind: str) -> None:
        """Errors of one kind become warnings (--allow-unknown: another tool's variables are not typos)."""
        self.problems = [
            replace(p, severity="warning") if p.severity == "error" and p.kind == kind else p for p in self.problems
        ]

    def locate(self, where: Locator) -> None:
        """Give every problem whose inventory path was written in the file its file, line and column."""
        located = []
        for p in self.problems:
            found = None if p.line else where(p.path)
            located.append(replace(p, file=found[0], line=found[1], column=found[2]) if found else p)
        self.problems = located

    def sorted(self) -> list[Problem]:
        rank = {"error": 0, "warning": 1, "note": 2}
        seen: set[Problem] = set()
        unique = [p for p in self.problems if not (p in seen or seen.add(p))]
        return sorted(unique, key=lambda p: (rank[p.severity], p.path, p.message))


class InventoryError(Exception):
    """Raised when the inventory cannot be built; carries every problem found so far."""

    def __init__(self, report: Report):
        # the first problem as the text: code that catches broadly and quotes the exception still says why
        errors = report.errors
        text = f"{errors[0].path}: {errors[0].message}" if errors else "no errors"
        super().__init__(text + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
        self.report = report


def join_path(*parts: object) -> str:
    """Dotted inventory path; list indexes render as `[i]` (`all.vars.pg_users[2].name`)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part is None or part == "":
            continue
        else:
            out += ("." if out else "") + str(part)
    return out
