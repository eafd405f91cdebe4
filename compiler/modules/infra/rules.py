"""The alert and recording rules vmalert evaluates: every rule file the modules published (`AlertRules`, each
kept as data in its module's `templates/<module>/rules/`), INFRA's own among them. They take nothing from the
inventory; a subject published twice is a programming error.
"""

from __future__ import annotations

from typing import Any

from ...contrib import AlertRules, Board


def alert_rules(board: Board) -> dict[str, list[dict[str, Any]]]:
    """The rule groups per subject (`/infra/rules/<subject>.yml`)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rules in board.read(AlertRules):
        if rules.subject in out:
            raise RuntimeError(f"the alert rules '{rules.subject}' are published twice")
        out[rules.subject] = rules.groups()
    return out
