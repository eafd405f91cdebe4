"""Jinja2 for text formats, serialisers for data formats.

Text templates use StrictUndefined so a missing value is a bug, not an empty string, and every
value inserted into a text format passes through a filter that quotes it or refuses it. Each template
declares its format on its first line (`{# format: sql #}`); the filters that may quote a value in it are
that format's `filters` (sty.contract.formats), which tests/test_formats.py holds every expression to.
YAML and JSON are never templated: they are dumped from data.
"""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from typing import Any

import jinja2
import yaml
from jinja2.runtime import Context

from sty.contract.formats import get_format

from . import yaml_emitter
from .paths import TEMPLATES
from .template_cache import bytecode_cache

pass_context = jinja2.pass_context


class RenderError(Exception):
    """A value cannot be written safely into a text format. Its message never quotes the value: the filters
    do not know whether a value is a secret, and a caller that knows the parameter names it instead."""


_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_.:/@%+=,\-\[\]*]+$")


def one_line(value: Any) -> str:
    """A value that must stay on its line: no newline, carriage return or NUL."""
    text = str(value)
    if any(c in text for c in "\n\r\x00"):
        raise RenderError("a value contains a line break, carriage return or NUL")
    return text


def token(value: Any) -> str:
    """A bare word for configs without quoting (haproxy names, unit names)."""
    text = one_line(value)
    if not _SAFE_TOKEN.match(text):
        raise RenderError("a value may only contain letters, digits and _.:/@%+=,-[]*")
    return text


def comment(value: Any) -> str:
    """Text for a `#` comment: line breaks become spaces."""
    return re.sub(r"[\r\n\x00]+", " ", str(value))


def dquote(value: Any) -> str:
    """Double-quoted string with backslash escapes (redis, nginx)."""
    text = one_line(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dquote_doubled(value: Any) -> str:
    """Double-quoted string in which a quote is doubled and a backslash is literal (pgbouncer's auth_file)."""
    return '"' + one_line(value).replace('"', '""') + '"'


def env_quote(value: Any) -> str:
    """Double-quoted value for an environment file read by systemd and by sh."""
    text = one_line(value)
    return '"' + re.sub(r'([\\"$`])', r"\\\1", text) + '"'


def squote(value: Any) -> str:
    """Single-quoted SQL / libpq string."""
    text = one_line(value)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def shell_quote(value: Any) -> str:
    """One shell word, single-quoted when it needs to be (a line break is refused: scripts are line-based)."""
    return shlex.quote(one_line(value))


def strict_int(value: Any) -> int:
    """An integer, or a refusal: Jinja's own `int` turns `"80; x"` into 0, which would hide a bad value."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise RenderError(f"a value is not an integer (a {type(value).__name__})")


def heredoc(value: Any, delimiter: str) -> str:
    """The body of a quoted shell here-document (`<<'DELIM'`), taken verbatim by the shell: refused if one of
    its lines would end the document early."""
    text = str(value)
    if "\x00" in text or any(line.strip() == delimiter for line in text.splitlines()):
        raise RenderError(f"a value holds a NUL or a line {delimiter}, which would end its here-document")
    return text


# --------------------------------------------------------------------------------------------------
# SQL (format `sql`): identifiers, literals, setting names, keywords, dollar-quoted bodies
# --------------------------------------------------------------------------------------------------

# a GUC name as ALTER ROLE/DATABASE SET and postgresql.conf take it (custom ones carry one dot)
GUC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
# SQL keywords as the templates insert them (GRANT, SELECT, UPDATE, TABLES, admin_option, WAL_LOG ...)
SQL_KEYWORDS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(,? [A-Za-z_][A-Za-z0-9_]*)*$")


def sql_ident(name: Any) -> str:
    """A double-quoted SQL identifier (embedded quotes doubled)."""
    return '"' + one_line(name).replace('"', '""') + '"'


def sql_literal(value: Any) -> str:
    """A single-quoted SQL literal for standard_conforming_strings = on (embedded quotes doubled)."""
    if isinstance(value, bool):
        value = "on" if value else "off"
    return "'" + one_line(value).replace("'", "''") + "'"


def sql_guc(name: Any) -> str:
    """A setting name, refused unless it is one."""
    if not GUC_NAME.match(str(name)):
        raise RenderError(f"{name!r} is not a setting name")
    return str(name)


def sql_keyword(value: Any) -> str:
    """One or more SQL keywords (`GRANT`, `SELECT, UPDATE`): words only, so no quote, `;` or comment fits."""
    if not SQL_KEYWORDS.match(str(value)):
        raise RenderError("a value is not a SQL keyword (words only)")
    return str(value)


def sql_dollar(body: str, tag: str = "$sty$") -> str:
    """A dollar-quoted block body, refused if it could end the quote early."""
    if tag in body:
        raise RenderError(f"a value contains {tag}")
    return f"{tag}\n{body}{tag}"


SQL_QUOTING = {"ident": sql_ident, "lit": sql_literal, "guc": sql_guc, "dollar": sql_dollar, "keyword": sql_keyword}


# --------------------------------------------------------------------------------------------------
# templates: each declares its format on its first line
# --------------------------------------------------------------------------------------------------

FORMAT_LINE = re.compile(r"\{# format: ([a-z0-9-]+) #\}\n")
FRAGMENT_LINE = "{# fragment"  # its output may be inserted into another template of its format (`| fragment`)
_FRAGMENTS: set[tuple[str, str]] = set()  # (format, text) of every fragment rendered in this process


def declared_format(source: str, name: str) -> str:
    """The format a template's first line `{# format: NAME #}` declares: which filters quote its values."""
    m = FORMAT_LINE.match(source)
    if not m:
        raise RenderError(f"template {name} does not start with {{# format: NAME #}}")
    try:
        get_format(m.group(1))  # the closed set
    except ValueError as e:
        raise RenderError(f"template {name}: {e}") from None
    return m.group(1)


@cache
def template_format(name: str) -> tuple[str, bool]:
    """(declared format, whether it is a fragment) of a template of the templates folder."""
    env = environment()
    source = env.loader.get_source(env, name)[0]
    second = source.split("\n", 2)[1] if source.count("\n") >= 2 else ""
    return declared_format(source, name), second.startswith(FRAGMENT_LINE)


@pass_context
def fragment(context: Context, value: Any) -> str:
    """Text a fragment template of this template's format rendered (its own values quoted by that format's
    filters, which the template test checks), inserted verbatim; any other text is refused."""
    text = str(value)
    fmt = template_format(context.name)[0] if context.name else None
    if (fmt, text.rstrip("\n")) not in _FRAGMENTS:
        raise RenderError(f"a value inserted as a fragment was not rendered by a {fmt} fragment template")
    return text


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        auto_reload=False,  # templates are part of sty's code: no stat of each one at every render
        bytecode_cache=bytecode_cache(),
    )
    env.filters.update(
        line=one_line,
        token=token,
        comment=comment,
        dquote=dquote,
        dquote_doubled=dquote_doubled,
        squote=squote,
        env_quote=env_quote,
        shell_quote=shell_quote,
        int=strict_int,
        heredoc=heredoc,
        fragment=fragment,
        **SQL_QUOTING,
    )
    env.globals.update(SQL_QUOTING)  # the SQL templates call them: `lit('DROP ROLE ' ~ ident(name))`
    return env


def render(template: str, **context: Any) -> str:
    """The template rendered; it must declare its format (the comment line renders to nothing)."""
    fmt, is_fragment = template_format(template)
    text = environment().get_template(template).render(**context)
    if is_fragment:
        _FRAGMENTS.add((fmt, text.rstrip("\n")))
    return text


_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_BOOL, _INT, _NULL = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:null"


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """Safe dumper without anchors (a reviewer should read values, not `*id001`) and with a
    memo of implicit-tag resolution, which dominates the cost of dumping many similar documents."""

    _resolved: dict = {}

    def ignore_aliases(self, data):
        return True

    def represent(self, data):
        """The node tree built directly for the plain data we dump (dicts, lists, scalars): PyYAML's generic
        representer spends most of a build's time on bookkeeping this data does not need."""
        self.serialize(self._node(data))

    def _node(self, data):
        kind = type(data)
        if kind is str:
            return yaml.ScalarNode(_STR, data, style="|" if "\n" in data else None)
        if kind is dict or kind is yaml_emitter.Emitted:
            try:
                items = sorted(data.items())
            except TypeError:
                items = list(data.items())
            return yaml.MappingNode(_MAP, [(self._node(k), self._node(v)) for k, v in items], flow_style=False)
        if kind is list or kind is tuple:
            return yaml.SequenceNode(_SEQ, [self._node(v) for v in data], flow_style=False)
        if kind is bool:
            return yaml.ScalarNode(_BOOL, "true" if data else "false")
        if kind is int:
            return yaml.ScalarNode(_INT, str(data))
        if data is None:
            return yaml.ScalarNode(_NULL, "null")
        return self.represent_data(data)

    def resolve(self, kind, value, implicit):
        if kind is not yaml.ScalarNode:
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        try:
            return self._resolved[key]
        except KeyError:
            tag = self._resolved[key] = super().resolve(kind, value, implicit)
            return tag


def _str_presenter(dumper, data: str):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


def pyyaml_dump(data: Any) -> str:
    """The reference serialisation: PyYAML's block dump with sty's settings (what yaml_emitter must equal)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True, width=4096)


def to_yaml(data: Any, header: str = "") -> str:
    body = yaml_emitter.dump(data, pyyaml_dump)
    return (header + body) if header else body


def list_item(data: dict) -> dict:
    """A mapping that is an item of a top-level key's list (a manifest's file entry), laid out once."""
    return yaml_emitter.emitted(data, 0, pyyaml_dump)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


HEADER = "# Generated by sty from the inventory. Do not edit: change the inventory and rebuild.\n"


@cache
def template_text(name: str) -> str:
    """A template folder's file taken verbatim (VRL programs, static snippets)."""
    return (TEMPLATES / name).read_text(encoding="utf-8")
