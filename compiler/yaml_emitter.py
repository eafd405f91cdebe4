"""A block-style YAML writer for the plain data sty serialises, byte-identical to the PyYAML dump it replaces.

Why: serialising YAML (manifests, Patroni, scrape targets, dashboards' data sources) was most of a build's time,
and nearly all of it went to PyYAML's generic event machinery for strings that need no analysis at all. This
writer lays out the block structure itself (2-space indent, sequences not indented under a mapping key, keys
sorted, `{}`/`[]` for empty collections) and writes a string plain when it is provably plain: printable ASCII
from a conservative set, no indicator where YAML would see one, and read back as the same string by YAML's
resolver. Every other scalar (quoted, literal blocks, floats, long text) is emitted by PyYAML itself in the same
position, and a document this writer cannot lay out exactly (a multi-line or very long key) goes to PyYAML
whole. `tests/test_yaml_emitter.py` proves the identity on every document the corpus builds and on random data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import yaml

_STR = "tag:yaml.org,2002:str"
# a string PyYAML would write plain in block context, as far as its characters go (its resolver decides the
# rest): no leading indicator or space, no `"`, backslash, tab or non-ASCII anywhere, no trailing space, and no
# `: ` / ` #` (or a final `:`) that would start a value or a comment
_PLAIN = re.compile(r"[A-Za-z0-9_/.$(<=+~^;][A-Za-z0-9_/.$()<>=+~^;!&*|%@',:#?\[\]{} -]*")
_OTHER_BREAKS = re.compile("[\r\x85\u2028\u2029]")
_LONG = 1000  # past this a plain or quoted scalar may be folded at the emitter's width: PyYAML writes those


class _Fallback(Exception):
    """The document holds something this writer does not lay out exactly; PyYAML writes all of it."""


@lru_cache(maxsize=65536)
def _resolves_as_string(value: str) -> bool:
    return yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, (True, False)) == _STR


@lru_cache(maxsize=65536)
def _plain_ok(value: str) -> bool:
    return (
        len(value) <= _LONG
        and _PLAIN.fullmatch(value) is not None
        and not value.endswith((" ", ":"))
        and not value.startswith("...")
        and ": " not in value
        and " #" not in value
        and _resolves_as_string(value)
    )


class Writer:
    """One document's lines. Written for speed (it lays out every manifest and Patroni file of a build): the
    common cases (a plain string, a number, a nested mapping) are decided inline, with the output list's
    `append` and the caches bound once per document; `scalar_lines(value)` is PyYAML's rendering of any other
    scalar written at indent 0."""

    def __init__(self, scalar: Callable[[Any], tuple[str, ...]]):
        self.scalar_lines = scalar
        self.out: list[str] = []
        self.append = self.out.append

    # -- scalars --------------------------------------------------------------------------------------
    def scalar(self, value: Any, indent: int) -> str:
        """The text after `key: ` or `- `: one line, or a literal block whose lines follow at `indent` + 2."""
        kind = type(value)
        if kind is str:
            if _plain_ok(value):
                return value
            quoted = _ONE_LINE.get(value)
            if quoted is not None:
                return quoted  # a string PyYAML quotes on one line (a file mode, `'0644'`), seen before
            if ("\n" not in value and len(value) > _LONG) or _OTHER_BREAKS.search(value):
                raise _Fallback  # folded at the width, or broken at a line break YAML has besides \n
        elif kind is bool:
            return "true" if value else "false"
        elif kind is int:
            return str(value)
        elif value is None:
            return "null"
        elif kind is not float:
            raise _Fallback  # another type: PyYAML's representers decide what it becomes
        lines = self.scalar_lines(value)
        if len(lines) == 1:
            return lines[0]
        if not lines[0].startswith(("|", ">")):
            raise _Fallback  # a quoted scalar PyYAML broke over lines: its continuation indent is its own
        pad = " " * indent
        return lines[0] + "".join("\n" + (pad + line if line else line) for line in lines[1:])

    def key(self, key: Any) -> str:
        kind = type(key)
        if kind is str and _plain_ok(key):
            return key
        if kind is int or kind is bool:
            return self.scalar(key, 0)
        raise _Fallback  # a quoted, complex or typed key: rare, and PyYAML's simple-key rules decide it

    # -- collections ----------------------------------------------------------------------------------
    def mapping(self, data: dict, indent: int, first_prefix: str | None = None) -> None:
        """Block mapping at `indent`; `first_prefix` replaces the first key's indentation (`- ` of an item)."""
        try:
            items = sorted(data.items())
        except TypeError:
            items = list(data.items())
        pad = " " * indent
        lead = pad if first_prefix is None else first_prefix
        append, plain = self.append, _plain_ok
        for k, v in items:
            head = (k if type(k) is str and plain(k) else self.key(k)) + ":"
            head, lead = lead + head, pad
            kind = type(v)
            if kind is str and plain(v):
                append(head + " " + v)
            elif kind is dict or kind is Emitted:
                if v:
                    append(head)
                    self.mapping(v, indent + 2)
                else:
                    append(head + " {}")
            elif kind is list or kind is tuple:
                if v:
                    append(head)
                    self.sequence(v, indent)  # not indented under a key, as PyYAML writes it
                else:
                    append(head + " []")
            else:
                append(head + " " + self.scalar(v, indent))

    def sequence(self, data: list | tuple, indent: int, first_prefix: str | None = None) -> None:
        """Block sequence at `indent`; a mapping or sequence item starts on its dash's line."""
        pad = " " * indent
        lead = pad if first_prefix is None else first_prefix
        append, plain = self.append, _plain_ok
        for item in data:
            head, lead = lead + "-", pad
            kind = type(item)
            if kind is str and plain(item):
                append(head + " " + item)
            elif kind is Emitted and item.indent == indent and head == pad + "-":
                self.out.extend(item.lines)
            elif kind is dict or kind is Emitted:
                if item:
                    self.mapping(item, indent + 2, head + " ")
                else:
                    append(head + " {}")
            elif kind is list or kind is tuple:
                if item:
                    self.sequence(item, indent + 2, head + " ")
                else:
                    append(head + " []")
            else:
                append(head + " " + self.scalar(item, indent))


class Emitted(dict):
    """A mapping already laid out as an item of a block sequence at `indent` (a manifest's file entry, alike on
    every host that shares the file): the writer copies its lines instead of laying it out again. It is still the
    mapping, for PyYAML and for any other position."""

    __slots__ = ("indent", "lines")


def emitted(data: dict, indent: int, fallback: Callable[[Any], str]) -> dict:
    """`data` with its lines as a sequence item at `indent`, or `data` itself where only PyYAML can lay it out."""
    writer = Writer(lambda value: _scalar_in_value_position(value, fallback))
    try:
        writer.mapping(data, indent + 2, " " * indent + "- ")
    except _Fallback:
        return data
    item = Emitted(data)
    item.indent, item.lines = indent, tuple(writer.out)
    return item


def dump(data: Any, fallback: Callable[[Any], str]) -> str:
    """`data` as PyYAML's block dump would write it; `fallback` is that dump, used where this writer stops."""

    def scalar_lines(value: Any) -> tuple[str, ...]:
        return _scalar_in_value_position(value, fallback)

    kind = type(data)
    if not ((kind is dict or kind is list or kind is tuple) and data):
        return fallback(data)
    writer = Writer(scalar_lines)
    try:
        if kind is dict:
            writer.mapping(data, 0)
        else:
            writer.sequence(data, 0)
    except _Fallback:
        return fallback(data)
    return "\n".join(writer.out) + "\n"


_scalar_memo: dict[tuple[type, Any], tuple[str, ...]] = {}
_ONE_LINE: dict[str, str] = {}  # the strings of `_scalar_memo` that PyYAML writes on one line, for Writer.scalar


def _scalar_in_value_position(value: Any, fallback: Callable[[Any], str]) -> tuple[str, ...]:
    """PyYAML's rendering of one scalar as a mapping value at indent 0 (`k: <this>`), as lines; a literal
    block's lines carry their indentation relative to the key, which the caller shifts to its own."""
    # keyed by text for floats: 0.0 == -0.0 (and hash alike) but PyYAML writes them differently
    memo_key = (type(value), value if type(value) is str else repr(value))
    try:
        return _scalar_memo[memo_key]
    except KeyError:
        pass
    text = fallback({"k": value})
    if not text.startswith("k: "):
        raise _Fallback
    body = text[3:]
    if body.endswith("\n...\n"):
        raise _Fallback  # a `|+` block leaves the document open: PyYAML closes it where the document ends
    lines = tuple(body.rstrip("\n").split("\n"))
    if len(_scalar_memo) < 65536:
        _scalar_memo[memo_key] = lines
        if type(value) is str and len(lines) == 1:
            _ONE_LINE[value] = lines[0]
    return lines
