"""Service selectors (compiler/modules/pgsql/services.py `select`): a pure selector is evaluated once per distinct
set of the values it reads, and the memo picks each cluster's own members; anything that could depend on more
(a member's name, a list value, another type) is evaluated every time."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sty.compiler.modules.pgsql import services

PRIMARY = "[? pg_role == `primary`]"


def members(cluster: str, *views: dict) -> list[SimpleNamespace]:
    """Stand-ins with what `select` reads: the selector view and the address."""
    out = []
    for i, view in enumerate(views, 1):
        ip = f"10.{len(cluster)}.0.{i}"
        out.append(SimpleNamespace(host=SimpleNamespace(ip=ip), selector_view={**view, "inventory_hostname": ip}))
    return out


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each JMESPath evaluation, by expression; the memo starts empty."""
    monkeypatch.setattr(services, "_SELECTED", {})
    done: list[str] = []
    real = services._selector

    def counting(expr: str):
        compiled = real(expr)
        return SimpleNamespace(parsed=compiled.parsed, search=lambda data: done.append(expr) or compiled.search(data))

    monkeypatch.setattr(services, "_selector", counting)
    services._fields_read.cache_clear()
    yield done
    services._fields_read.cache_clear()


def test_a_pure_selector_is_evaluated_once_per_distinct_values(searches: list[str]) -> None:
    a = members("pg-a", {"pg_role": "primary"}, {"pg_role": "replica"}, {"pg_role": "replica"})
    b = members("pg-bb", {"pg_role": "primary"}, {"pg_role": "replica"}, {"pg_role": "replica"})
    c = members("pg-ccc", {"pg_role": "replica"}, {"pg_role": "primary"}, {"pg_role": "replica"})
    assert services.select(PRIMARY, a) == [a[0]]
    assert services.select(PRIMARY, b) == [b[0]]  # the memo's positions, this cluster's member
    assert searches == [PRIMARY]
    assert services.select(PRIMARY, c) == [c[1]]  # other values: evaluated
    assert searches == [PRIMARY, PRIMARY]


def test_a_value_of_another_type_is_another_key(searches: list[str]) -> None:
    weighted = "[? pg_weight == `1`]"
    one = members("pg-a", {"pg_weight": 1})
    true = members("pg-b", {"pg_weight": True})
    assert services.select(weighted, one) == [one[0]]
    assert services.select(weighted, true) == []  # JMESPath tells true from 1
    assert searches == [weighted, weighted]


@pytest.mark.parametrize(
    ("expr", "view"),
    [
        ("[? inventory_hostname == '10.4.0.1']", {}),  # names a member
        ("[? pg_role == `primary`]", {"pg_role": ["primary"]}),  # a list value
        ("[? contains(pg_role, 'pri')]", {"pg_role": "primary"}),  # a function
        ("[? a.b == `1`]", {"a": {"b": 1}}),  # a sub-expression
    ],
)
def test_what_could_depend_on_more_is_evaluated_every_time(searches: list[str], expr: str, view: dict) -> None:
    first, second = members("pg-a", view), members("pg-b", view)
    assert [m.host.ip for m in services.select(expr, first)] == [m.host.ip for m in services.select(expr, first)]
    services.select(expr, second)
    assert searches == [expr, expr, expr]
