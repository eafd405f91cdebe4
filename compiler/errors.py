"""Problems found in an inventory, and the exit codes every command shares.

A build never stops at the first problem: each stage appends `Problem`s to a `Report`
so that a user sees everything wrong with an inventory in one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sty.contract.exits import Exit

__all__ = ["Exit", "InventoryError", "Problem", "Report", "join_path"]


@dataclass(frozen=True, order=True)
class Problem:
    """One finding, located by its inventory path (`all.children.pg-test.hosts.10.10.10.11.pg_seq`)."""

    path: str
    message: str
    severity: str = "error"  # error | warning | note

    def __str__(self) -> str:
        # one problem, one line: a value quoted in the message may carry a line break
        text = f"{self.severity}: {self.path}: {self.message}"
        return text.replace("\r", "\\r").replace("\n", "\\n")


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message, "error"))

    def warning(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message, "warning"))

    def note(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message, "note"))

    def extend(self, other: Report) -> None:
        self.problems.extend(other.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def strict(self) -> None:
        """--strict: every warning becomes an error."""
        self.problems = [Problem(p.path, p.message, "error") if p.severity == "warning" else p for p in self.problems]

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
