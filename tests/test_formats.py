"""Each file format owns its template quoting and its secret escaping (sty.contract.formats).

Templates: every template declares its format on its first line (`{# format: NAME #}`), and every value it
writes passes a quoting filter of that format, read from the template's own syntax tree (each `{{ ... }}`
of the real environment's parse): a filter or a call of a quoting function named in `FORMATS[fmt].filters`,
a constant, a conditional of such branches, a `join` of items each quoted by `map('<filter>')`, or a macro
of the same template (whose body is held to the same rule). The files a template fills have its format.

Secrets: what each format refuses, with a sentence that says why (the real programs reading substituted
values back are in test_secret_roundtrip.py).
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from conftest import SHIPPED
from jinja2 import nodes

from sty.compiler.render import (
    SQL_QUOTING,
    RenderError,
    declared_format,
    environment,
    heredoc,
    render,
    sql_keyword,
    strict_int,
    template_format,
)
from sty.contract.formats import FORMATS, SecretError, placeholder, substitute

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
TEMPLATE_NAMES = sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.j2"))


def _quoted(expr: nodes.Expr, allowed: frozenset[str], macros: set[str]) -> bool:
    """Whether one `{{ ... }}` expression is a constant or quoted by one of `allowed`."""
    if isinstance(expr, nodes.Const):
        return True
    if isinstance(expr, nodes.CondExpr):
        return _quoted(expr.expr1, allowed, macros) and (expr.expr2 is None or _quoted(expr.expr2, allowed, macros))
    if isinstance(expr, nodes.Filter):
        if expr.name in allowed:
            return True
        inner = expr.node
        return (  # `items | map('token') | join(' ')`: every item quoted, a constant separator
            expr.name == "join"
            and all(isinstance(a, nodes.Const) for a in expr.args)
            and isinstance(inner, nodes.Filter)
            and inner.name == "map"
            and len(inner.args) == 1
            and isinstance(inner.args[0], nodes.Const)
            and inner.args[0].value in allowed
        )
    if isinstance(expr, nodes.Call) and isinstance(expr.node, nodes.Name):
        return expr.node.name in allowed or expr.node.name in macros
    return False


def unquoted(source: str, fmt: str) -> list[str]:
    """The expressions of a template source that no quoting filter of `fmt` guards, as `line N: {{ ... }}`."""
    tree = environment().parse(source)
    macros = {m.name for m in tree.find_all(nodes.Macro)}
    allowed = FORMATS[fmt].filters
    lines = source.splitlines()
    bad = []
    for out in tree.find_all(nodes.Output):
        for expr in out.nodes:
            if not isinstance(expr, nodes.TemplateData) and not _quoted(expr, allowed, macros):
                bad.append(f"line {expr.lineno}: {type(expr).__name__} in {lines[expr.lineno - 1].strip()[:90]}")
    return bad


# --------------------------------------------------------------------------------------------------
# templates
# --------------------------------------------------------------------------------------------------


def test_templates_are_found():
    assert len(TEMPLATE_NAMES) >= 40


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_template_declares_a_text_format(name):
    fmt = declared_format((TEMPLATES / name).read_text(encoding="utf-8"), name)
    assert not FORMATS[fmt].serialised, f"{name}: {fmt} files are dumped from data, never templated"
    assert FORMATS[fmt].filters, f"{name}: format {fmt} has no quoting filters"
    assert template_format(name)[0] == fmt


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_expression_passes_a_filter_of_the_template_format(name):
    source = (TEMPLATES / name).read_text(encoding="utf-8")
    fmt = declared_format(source, name)
    bad = unquoted(source, fmt)
    assert not bad, f"{name} ({fmt}: {', '.join(sorted(FORMATS[fmt].filters))}):\n" + "\n".join(bad)


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_includes_have_the_same_format(name):
    source = (TEMPLATES / name).read_text(encoding="utf-8")
    for inc in environment().parse(source).find_all(nodes.Include):
        assert isinstance(inc.template, nodes.Const), f"{name}: an include names its template"
        assert template_format(inc.template.value)[0] == declared_format(source, name)


def test_every_format_filter_exists():
    env = environment()
    for fmt in FORMATS.values():
        missing = {f for f in fmt.filters if f not in env.filters and f not in env.globals}
        assert not missing, f"{fmt.name} names filters the environment lacks: {missing}"


@pytest.mark.parametrize(
    "source, fmt, ok",
    [
        ("{{ x }}", "env", False),
        ("{{ x | upper }}", "env", False),
        ("{{ x | dquote }}", "env", False),  # a quoting of another format
        ("{{ x | env_quote }}", "env", True),
        ("{{ a ~ b | token }}", "env", False),  # the filter binds to b only
        ("{{ x | join(',') }}", "redis", False),
        ("{{ x | map('upper') | join(',') }}", "redis", False),
        ("{{ x | map('token') | join(sep) }}", "redis", False),
        ("{{ x | map('token') | join(' ') }}", "redis", True),
        ("{{ 'a' if c else 'b' }}", "nginx", True),
        ("{{ 'a' if c else x }}", "nginx", False),
        ("{{ 'PUBLIC' if c else ident(x) }}", "sql", True),
        ("{{ ident(x) }}", "sql", True),
        ("{{ ident(x) }}", "haproxy", False),
        ("{{ f(x) }}", "sql", False),
        ("{{ x.y(1) }}", "sql", False),
        ("{% macro m(v) %}{{ lit(v) }}{% endmacro %}{{ m(x) }}", "sql", True),
        ("{% macro m(v) %}{{ v }}{% endmacro %}{{ m(x) }}", "sql", False),  # the macro's body is checked
        ("{% set b %}{{ x }}{% endset %}{{ dollar(b) }}", "sql", False),
    ],
)
def test_the_rule_itself(source, fmt, ok):
    assert (not unquoted(source, fmt)) is ok


def test_render_needs_the_format_line():
    with pytest.raises(RenderError, match="does not start with"):
        declared_format("# a file\n{{ x | line }}\n", "t.j2")
    with pytest.raises(RenderError, match="unknown file format 'ini'"):
        declared_format("{# format: ini #}\nx\n", "t.j2")
    text = render("infra/hosts.j2", name="x", lines=["10.0.0.1 a"])
    assert "format:" not in text and not text.startswith("\n")


def test_fragment_inserts_only_what_a_fragment_template_rendered():
    env = environment()
    with pytest.raises(RenderError, match="was not rendered by a"):
        env.get_template("pgsql/sql/database.sql.j2").render(
            title="t", cluster="c", path="p", dbname="d", absent=[], schemas=[], create_role=None, privilege_blocks=[],
            privilege_roles=[], dbsu="postgres", extension_blocks=["DROP TABLE x;"],
        )  # fmt: skip
    e = {"name": "vector", "schema": None, "version": None, "cascade": False, "state": "create"}
    block = render("pgsql/sql/extension.sql.j2", e=e).rstrip("\n")
    text = env.get_template("pgsql/sql/database.sql.j2").render(
        title="t", cluster="c", path="p", dbname="d", absent=[], schemas=[], create_role=None, privilege_blocks=[],
        dbsu="postgres", extension_blocks=[block],
    )  # fmt: skip
    assert block in text
    with pytest.raises(RenderError):  # a block of the sql format is not a fragment of another format
        env.from_string("{{ b | fragment }}").render(b=block)


def test_quoting_filters_refuse_what_they_cannot_quote():
    assert strict_int("5432") == 5432 and strict_int(7) == 7
    for bad in ("80; x", "1.5", None, ""):
        with pytest.raises(RenderError, match="not an integer"):
            strict_int(bad)
    assert sql_keyword("SELECT, UPDATE") == "SELECT, UPDATE"
    for bad in ("SELECT; DROP", "x'", "a -- b", ""):
        with pytest.raises(RenderError, match="not a SQL keyword"):
            sql_keyword(bad)
    assert heredoc('{\n  "a": 1\n}', "STY_POLICY") == '{\n  "a": 1\n}'
    with pytest.raises(RenderError, match="would end its here-document"):
        heredoc('{\nSTY_POLICY\n"x": 1}', "STY_POLICY")


def test_sql_quoting_has_one_home():
    """The pgsql module uses the sql format's quoting of the core renderer, not copies of it."""
    from sty.compiler.modules.pgsql import sql

    assert (sql.sql_ident, sql.sql_literal, sql.sql_guc, sql.sql_dollar) == (
        SQL_QUOTING["ident"],
        SQL_QUOTING["lit"],
        SQL_QUOTING["guc"],
        SQL_QUOTING["dollar"],
    )


def test_templates_fill_files_of_their_format(monkeypatch):
    """Every file of the shipped inventory's bundles that holds a template's output has the template's format."""
    from sty.compiler.pipeline import compile_fleet, render_host

    rendered: list[tuple[str, str]] = []
    original = jinja2.Template.render

    def recording(self, *args, **kwargs):
        text = original(self, *args, **kwargs)
        rendered.append((self.name, text))
        return text

    monkeypatch.setattr(jinja2.Template, "render", recording)
    compiled = compile_fleet(SHIPPED)
    seen = set()
    for host in compiled.fleet.hosts.values():
        rendered.clear()
        files = list(render_host(host, compiled).files.values())
        for name, text in rendered:
            if name is None or not text.strip():
                continue
            holders = [f for f in files if f.content and text.strip() in f.content]
            assert holders, f"{name}: its output is in no file"
            fmt = template_format(name)[0]
            wrong = [f"{f.path} ({f.format})" for f in holders if f.format != fmt]
            assert not wrong, f"{name} declares {fmt} but fills {wrong}"
            seen.add(name)
    assert len(seen) >= 25  # not all: some renders are cached across the process (extension_sql)


# --------------------------------------------------------------------------------------------------
# secret escaping: refusals (the values read back by the real programs: test_secret_roundtrip.py)
# --------------------------------------------------------------------------------------------------

AGREE = [  # (format, the template filter, how a placeholder sits in the same place)
    ("env", "env_quote", '"{}"'),
    ("sql", "lit", "'{}'"),
    ("redis", "dquote", '"{}"'),
    ("pgbouncer-auth", "dquote_doubled", '"{}"'),
]


@pytest.mark.parametrize("fmt, name, around", AGREE, ids=[a[0] for a in AGREE])
def test_template_quoting_and_secret_escaping_agree(fmt, name, around):
    """A value quoted by the template and the same value substituted for a placeholder at apply time are the
    same bytes: the program reads one rule."""
    env = environment()
    quote = env.filters.get(name) or env.globals[name]
    for value in ("plain", 'a "b" c', "it's", "back\\slash", "$HOME `id`", "50%", "#;:"):
        assert quote(value) == substitute(around.format(placeholder("s")), fmt, {"s": value})


REFUSED = [
    ("env", "a\nb", "line break"),
    ("sql", "a\rb", "line break"),
    ("haproxy", "a\x00b", "NUL"),
    ("redis", "a\nb", "line break"),
    ("pgbouncer-auth", "a\nb", "line break"),
    ("grafana-ini", 'a"""b', '"""'),
    ("grafana-ini", "${HOME}", "expands"),
    ("grafana-ini", "$__env{HOME}", "expands"),
    ("keepalived", "123456789", "1 to 8 characters"),
    ("keepalived", "a b", "without spaces"),
    ("keepalived", "a#", "#"),
    ("keepalived", "'q", "quotes"),
    ("pgbackrest", " lead", "leading or trailing"),
    ("pgbackrest", "trail\t", "leading or trailing"),
    ("htpasswd", "{PLAIN}a:b", "':'"),
    ("shell", "STY_SECRET", "here-document"),
    ("shell", "a\x00", "NUL"),
]


@pytest.mark.parametrize("fmt, value, why", REFUSED, ids=[f"{f}-{v!r}" for f, v, _ in REFUSED])
def test_a_value_the_format_cannot_hold_is_refused(fmt, value, why):
    with pytest.raises(SecretError) as err:
        substitute(f"x {placeholder('s')}\n", fmt, {"s": value})
    message = str(err.value)
    assert why in message, message
    assert len(message.split()) >= 6 and fmt.split("-")[0] in message.lower(), f"not a sentence naming {fmt}: {message}"


@pytest.mark.parametrize("fmt", sorted(f for f, spec in FORMATS.items() if spec.escape is None and f != "yaml"))
def test_a_format_without_secrets_refuses_a_placeholder(fmt):
    with pytest.raises(SecretError, match="cannot carry secrets"):
        substitute(placeholder("s"), fmt, {"s": "v"})
