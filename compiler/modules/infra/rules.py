"""sty's alerting and recording rules, kept as Prometheus rule files under `templates/infra/rules/` (one per
subject: node, pgsql, patroni, etcd, haproxy, infra) so they can be read, edited and checked with promtool like
any other rule file. vmalert on each infra node gets them as `/infra/rules/<subject>.yml`; they take nothing from
the inventory.
"""

from __future__ import annotations

from typing import Any

import yaml

from ...paths import TEMPLATES
from ...render import template_text

RULES_SOURCE = "infra/rules"


def alert_rules() -> dict[str, list[dict[str, Any]]]:
    """The rule groups per subject (the data file's name); parsed on every call (the text is cached) so that no
    caller sees another's changes."""
    names = sorted(path.stem for path in (TEMPLATES / RULES_SOURCE).glob("*.yml"))
    return {name: yaml.safe_load(template_text(f"{RULES_SOURCE}/{name}.yml"))["groups"] for name in names}
