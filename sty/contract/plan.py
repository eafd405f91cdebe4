"""The plan: what a build (`sty diff`) or an apply (`sty apply`, `--check`) would do, as data and as text.

Both sides produce it: the compiler from outputs/ against a fresh render, the apply stage from a bundle against
a live host. A reviewer reads the text (one block per host, identical members of a cluster collapsed into one,
a closing totals line); a machine reads `as_json()`, which carries the same facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .actions import ACTIONS
from .targets import host_key

# the host statuses, in the order a plan lists them
STATUSES = ("add", "change", "retire", "remove")
STATUS_WORDS = {
    "add": "new host",
    "change": "changes",
    "retire": "leaves the inventory",
    "remove": "removed",
}
IMPACTS = ("restart", "reload", "run")
# where a module action runs when it is not on every host of the plan
RUNS_ON = {"pg-sql-primary": "on the primary", "pgbackrest-stanza": "on the primary", "patroni-dcs-config": "once"}


@dataclass(frozen=True, order=True)
class Activation:
    """One thing the change sets off: `impact` is restart, reload or run; `label` says it to a person."""

    impact: str
    label: str

    @classmethod
    def of(cls, action: str, label: str | None = None) -> Activation | None:
        """From a manifest action (`restart haproxy.service`, `pg-sql-primary`); None for one with no effect."""
        name = action.split(" ", 1)[0]
        spec = ACTIONS.get(name)
        impact = spec.impact if spec is not None else "run"
        if impact == "none":
            return None
        text = label or action
        where = RUNS_ON.get(name)
        if where and where not in text:
            text = f"{text} ({where})"
        return cls(impact, text)


def ordered(activations: list[Activation]) -> list[Activation]:
    """Restarts first (what a reviewer weighs most), then reloads, then runs; each by label, once."""
    return sorted(set(activations), key=lambda a: (IMPACTS.index(a.impact), a.label))


@dataclass
class HostPlan:
    """One host's part of the plan. Paths are the host's own (`/etc/haproxy/haproxy.cfg`)."""

    host: str
    status: str  # add | change | retire | remove
    group: str = ""  # what identical plans are collapsed under (a cluster's name); "" = never collapsed
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    activations: list[Activation] = field(default_factory=list)
    note: str = ""  # one sentence the reviewer must read (a retirement, a removal)

    def shape(self) -> tuple:
        """What must be equal for two members' plans to be shown as one."""
        acts = tuple(sorted(set(self.activations)))
        return (self.status, tuple(self.added), tuple(self.changed), tuple(self.removed), acts, self.note)

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "status": self.status,
            "group": self.group or None,
            "files": {"added": self.added, "changed": self.changed, "removed": self.removed},
            "activations": [{"impact": a.impact, "label": a.label} for a in ordered(self.activations)],
            "note": self.note or None,
        }


@dataclass
class Plan:
    hosts: list[HostPlan] = field(default_factory=list)
    unchanged: int = 0  # hosts looked at that change nothing

    @property
    def changed(self) -> bool:
        return bool(self.hosts)

    def totals(self) -> dict[str, int]:
        out = {status: 0 for status in STATUSES}
        out.update({impact: 0 for impact in IMPACTS})
        for hp in self.hosts:
            out[hp.status] += 1
            for impact in {a.impact for a in hp.activations}:
                out[impact] += 1
        out["unchanged"] = self.unchanged
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "hosts": [hp.as_json() for hp in sorted(self.hosts, key=_order)],
            "totals": self.totals(),
        }


def _order(hp: HostPlan) -> tuple:
    return (STATUSES.index(hp.status), hp.group or "~", host_key(hp.host))


Paint = Callable[[str, str], str]  # (text, style) -> text; style is one of add, change, remove, restart, bold


def _plain(text: str, style: str) -> str:
    return text


def totals_line(plan: Plan) -> str:
    """`Plan: 1 to add, 3 to change, 0 to retire, 0 unchanged; hosts that restart: 0, reload: 3, run: 3.`
    Every number counts hosts; `to remove` appears only when a host's files go without a retirement."""
    t = plan.totals()
    hosts = [f"{t[s]} to {s}" for s in ("add", "change", "retire")]
    if t["remove"]:
        hosts.append(f"{t['remove']} to remove")
    effects = ", ".join(f"{i}: {t[i]}" for i in IMPACTS)
    return f"Plan: {', '.join(hosts)}, {t['unchanged']} unchanged; hosts that {effects}."


def render_text(plan: Plan, paint: Paint = _plain, files: bool = True, all_files: bool = False) -> list[str]:
    """The plan as lines: members of one group with identical plans are one block (`pg-test: 3 hosts ...`).
    `files` lists the files of changed hosts; a host that arrives or leaves shows counts only (its whole bundle
    would be dozens of lines saying nothing), unless `all_files`."""
    lines: list[str] = []
    blocks: dict[tuple, list[HostPlan]] = {}
    for hp in sorted(plan.hosts, key=_order):
        key = (hp.group, hp.shape()) if hp.group else (hp.host, hp.shape())
        blocks.setdefault(key, []).append(hp)
    sign = {"add": "+", "change": "~", "retire": "-", "remove": "-"}
    style = {"add": "add", "change": "change", "retire": "remove", "remove": "remove"}
    for members in blocks.values():
        first = members[0]
        who = ", ".join(m.host for m in members)
        if len(members) > 1:
            who = f"{first.group}: {len(members)} hosts ({who})"
        elif first.group:
            who = f"{who} ({first.group})"
        head = f"{sign[first.status]} {who}: {STATUS_WORDS[first.status]}"
        counts = [
            f"{len(v)} {k}"
            for k, v in (("added", first.added), ("changed", first.changed), ("removed", first.removed))
            if v
        ]
        if counts:
            head += f", {' / '.join(counts)} file(s)"
        lines.append(paint(head, style[first.status]))
        if first.note:
            lines.append(f"    {first.note}")
        if files and (first.status == "change" or all_files):
            for mark, names in (("+", first.added), ("~", first.changed), ("-", first.removed)):
                lines.extend(f"    {mark} {name}" for name in names)
        for act in ordered(first.activations):
            text = f"    => {act.impact}: {act.label}"
            lines.append(paint(text, "restart") if act.impact == "restart" else text)
    lines.append(paint(totals_line(plan), "bold"))
    return lines
