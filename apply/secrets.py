"""Secret values into bundle files, with the escaping each file format needs, and back out for diffs.

Bundles carry `<<secret:NAME>>`; the store written by `sty build` (`.sty/<outdir>/secrets.yml`) holds
the values. A value that cannot be written safely into a format is refused rather than mangled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping

SECRET = re.compile(r"<<secret:([^<>\s]+)>>")


class SecretError(Exception):
    """A secret is missing, or its value cannot be written into the file's format."""


def _no_breaks(value: str, fmt: str) -> str:
    if any(c in value for c in "\n\r\x00"):
        raise SecretError(f"a value with a line break cannot be written into a {fmt} file")
    return value


def _haproxy(value: str) -> str:
    _no_breaks(value, "haproxy")
    return re.sub(r"([\\\s#'\"])", r"\\\1", value)


def _dquoted(value: str) -> str:  # inside "..." where a quote is doubled (pgbouncer auth_file)
    return _no_breaks(value, "pgbouncer").replace('"', '""')


def _backslash_dquoted(value: str) -> str:  # inside "..." with backslash escapes (redis)
    return _no_breaks(value, "redis").replace("\\", "\\\\").replace('"', '\\"')


def _json_string(value: str) -> str:  # inside a JSON string
    return json.dumps(value, ensure_ascii=False)[1:-1]


def _single_quoted(value: str) -> str:  # inside '...' of a shell/systemd environment file
    if "'" in value:
        raise SecretError("a value with a single quote cannot be written into an environment file")
    return _no_breaks(value, "environment")


def _sql(value: str) -> str:  # inside '...' (standard_conforming_strings on)
    return _no_breaks(value, "SQL").replace("'", "''")


def _plain(fmt: str) -> Callable[[str], str]:
    return lambda value: _no_breaks(value, fmt)


ESCAPERS: dict[str, Callable[[str], str]] = {
    "haproxy": _haproxy,
    "pgbouncer-auth": _dquoted,
    "sql": _sql,
    "redis": _backslash_dquoted,
    "redis-sentinel": _backslash_dquoted,
    "json": _json_string,
    "env": _single_quoted,
}


def _yaml_line(line: str, lookup: Callable[[str], str]) -> str:
    """Substitute inside one YAML line: the scalar holding a placeholder is re-emitted double-quoted."""
    m = re.match(r"^(\s*(?:- )*(?:[^\s#'\"][^#]*?: |'[^']*': |\"[^\"]*\": )?)(.*?)(\s*)$", line)
    if not m:
        return SECRET.sub(lambda x: json.dumps(lookup(x.group(1)))[1:-1], line)
    head, scalar, tail = m.groups()
    if scalar.startswith("'") and scalar.endswith("'") and len(scalar) >= 2:
        text = scalar[1:-1].replace("''", "'")
    elif scalar.startswith('"') and scalar.endswith('"') and len(scalar) >= 2:
        text = json.loads(scalar)
    else:
        text = scalar
    value = SECRET.sub(lambda x: lookup(x.group(1)), text)
    return head + json.dumps(value, ensure_ascii=False) + tail


def substitute(text: str, fmt: str, values: Mapping[str, str]) -> str:
    """The file as it goes to the host: every placeholder replaced by its escaped value."""

    def lookup(name: str) -> str:
        if name not in values:
            raise SecretError(f"the secret store has no value for {name}; run sty build or add it to secrets.yml")
        value = values[name]
        if value == "":
            raise SecretError(f"the secret {name} is empty; set it in secrets.yml")
        return value

    if "<<secret:" not in text:
        return text
    if fmt == "yaml":
        return "".join(
            _yaml_line(line, lookup) if "<<secret:" in line else line for line in text.splitlines(keepends=True)
        )
    escape = ESCAPERS.get(fmt, _plain(fmt))
    return SECRET.sub(lambda m: escape(lookup(m.group(1))), text)


def mask(text: str, names: list[str], fmt: str, values: Mapping[str, str]) -> str:
    """`text` with the values of the named secrets replaced by their placeholders (for diffs)."""
    out = text
    for name in sorted(set(names), key=lambda n: -len(values.get(n, ""))):
        value = values.get(name, "")
        if len(value) < 3:
            continue
        escaped = ESCAPERS.get(fmt, lambda v: v)
        for form in sorted({value, json.dumps(value)[1:-1], escaped(value)}, key=len, reverse=True):
            out = out.replace(form, f"<<secret:{name}>>")
    return out
