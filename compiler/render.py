"""Jinja2 for text formats, serialisers for data formats.

Text templates use StrictUndefined so a missing value is a bug, not an empty string, and every
value inserted into a text format passes through a filter that quotes it or refuses it.
YAML and JSON are never templated: they are dumped from data.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import yaml

from .paths import TEMPLATES


class RenderError(Exception):
    """A value cannot be written safely into a text format."""


_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_.:/@%+=,\-\[\]*]+$")


def one_line(value: Any) -> str:
    """A value that must stay on its line: no newline, carriage return or NUL."""
    text = str(value)
    if any(c in text for c in "\n\r\x00"):
        raise RenderError(f"value {text[:40]!r} contains a line break")
    return text


def token(value: Any) -> str:
    """A bare word for configs without quoting (haproxy names, unit names)."""
    text = one_line(value)
    if not _SAFE_TOKEN.match(text):
        raise RenderError(f"value {text[:40]!r} may only contain letters, digits and _.:/@%+=,-")
    return text


def comment(value: Any) -> str:
    """Text for a `#` comment: line breaks become spaces."""
    return re.sub(r"[\r\n\x00]+", " ", str(value))


def dquote(value: Any) -> str:
    """Double-quoted string with backslash escapes (haproxy, pgbouncer auth_file, systemd)."""
    text = one_line(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def env_quote(value: Any) -> str:
    """Double-quoted value for an environment file read by systemd and by sh."""
    text = one_line(value)
    return '"' + re.sub(r'([\\"$`])', r"\\\1", text) + '"'


def squote(value: Any) -> str:
    """Single-quoted SQL / libpq string."""
    text = one_line(value)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@cache
def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(line=one_line, token=token, comment=comment, dquote=dquote, squote=squote, env_quote=env_quote)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


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
        if kind is dict:
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


def to_yaml(data: Any, header: str = "") -> str:
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True, width=4096)
    return (header + body) if header else body


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


HEADER = "# Generated by sty from the inventory. Do not edit: change the inventory and rebuild.\n"


@cache
def template_text(name: str) -> str:
    """A template folder's file taken verbatim (VRL programs, static snippets)."""
    return (TEMPLATES / name).read_text(encoding="utf-8")
