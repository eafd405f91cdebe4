"""The closed set of file formats a bundle may contain.

A format is a syntax, not the program it configures: Grafana's datasource file and Patroni's file are both
`yaml`. Each format owns two things, so that neither side has to guess:

- `filters`: the Jinja2 filters that make a value safe inside a template of this format (the compiler's
  templates declare their format, and a test refuses a template expression that passes none of them);
  data formats (`yaml`, `json`) are serialised from data and have no templates.
- `escape`: how a secret's value is written where the bundle carries its placeholder `<<secret:NAME>>`, or
  a refusal (`SecretError`) for a value the format cannot hold; `None` means the format never carries
  secrets, and a placeholder in it is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

SECRET = re.compile(r"<<secret:([^<>\s]+)>>")


def placeholder(name: str) -> str:
    """What a bundle carries instead of a secret's value (valid in every format: no space, quote or `#`)."""
    return f"<<secret:{name}>>"


class SecretError(Exception):
    """A secret is missing, or its value cannot be written into the file's format."""


def _one_line(value: str, fmt: str) -> str:
    if any(c in value for c in "\n\r\x00"):
        raise SecretError(f"a value with a line break or NUL cannot be written into a {fmt} file")
    return value


def _haproxy_char(m: re.Match[str]) -> str:
    c = m.group(0)
    return "\\" + c if c in " #'\"\\" else f"\\x{ord(c):02x}"  # haproxy reads \t, \xNN; `\<tab>` is no escape


def _haproxy(value: str) -> str:  # a bare word: haproxy unescapes backslashes outside quotes
    return re.sub(r"[ #'\"\\\x01-\x1f\x7f]", _haproxy_char, _one_line(value, "haproxy"))


def _doubled_dquote(value: str) -> str:  # inside "..." where a quote is doubled (pgbouncer auth_file)
    return _one_line(value, "pgbouncer-auth").replace('"', '""')


def _backslash_dquote(value: str) -> str:  # inside "..." with backslash escapes (redis)
    return _one_line(value, "redis").replace("\\", "\\\\").replace('"', '\\"')


def _json_string(value: str) -> str:  # inside a JSON string
    return json.dumps(value, ensure_ascii=False)[1:-1]


def _env(value: str) -> str:  # inside "..." of an environment file read by systemd and by sh
    return re.sub(r'([\\"$`])', r"\\\1", _one_line(value, "environment"))


def _sql(value: str) -> str:  # inside '...' (standard_conforming_strings on)
    return _one_line(value, "SQL").replace("'", "''")


_GRAFANA_EXPANSION = re.compile(r"\$(__\w+)?\{")  # ${VAR}, $__env{VAR}, $__file{path}, $__vault{...}


def _grafana_ini(value: str) -> str:  # a bare value: go-ini takes """...""" verbatim, `#` and `;` included
    if '"""' in value:
        raise SecretError('a value with """ cannot be written into grafana.ini')
    if _GRAFANA_EXPANSION.search(value):
        raise SecretError("Grafana expands ${...} and $__name{...} in grafana.ini values: this value would change")
    return '"""' + _one_line(value, "grafana.ini") + '"""'


def _keepalived(value: str) -> str:
    """A bare word of at most 8 characters (keepalived truncates auth_pass). keepalived itself reads `#` and `!`
    as comments, `{` `}` as blocks (`x}` becomes `x`), `${NAME}` as a variable (`${HOME}` becomes `$`) and a
    trailing backslash as a line continuation: refused rather than changed."""
    if len(value) > 8 or re.search(r"[\s#!\"'{}$\\]", value) or not value:
        raise SecretError(
            "keepalived's auth_pass must be 1 to 8 characters without spaces, quotes, #, !, braces, $ or backslash"
        )
    return value


def _line_value(fmt: str, trims: bool) -> Callable[[str], str]:
    """The rest of the line is the value (pgBackRest, htpasswd, a shell here-document line); `trims`: the
    program strips the spaces around it (pgBackRest), so such a value would change."""

    def escape(value: str) -> str:
        _one_line(value, fmt)
        if trims and value != value.strip():
            raise SecretError(
                f"{fmt} strips the spaces around a value, so a value with leading or trailing ones changes"
            )
        if fmt == "shell" and value.startswith("STY_"):
            raise SecretError("a value starting with STY_ could end the here-document of a shell script")
        if fmt == "htpasswd" and ":" in value:
            raise SecretError("nginx ends the password field of an htpasswd line at ':', so a value with ':' is cut")
        return value

    return escape


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    filters: frozenset[str] = frozenset()
    escape: Callable[[str], str] | None = None
    serialised: bool = False


_TEXT = frozenset({"line", "token", "int", "comment"})  # safe anywhere a line holds one value

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("yaml", "YAML, serialised from data", serialised=True),
        Format("json", "JSON, serialised from data", escape=_json_string, serialised=True),
        Format("env", "environment file read by systemd and sh", _TEXT | {"env_quote"}, _env),
        Format("systemd", "systemd unit or drop-in", _TEXT | {"dquote"}),
        Format("haproxy", "HAProxy configuration", _TEXT | {"dquote"}, _haproxy),
        Format("nginx", "nginx configuration", _TEXT | {"dquote"}),
        Format("sql", "SQL script run by psql", _TEXT | {"lit", "ident", "guc", "dollar", "keyword", "fragment"}, _sql),
        Format("hba", "pg_hba.conf / pgbouncer hba", _TEXT),
        Format("pgbouncer", "pgbouncer ini, database and user option files", _TEXT),
        Format("pgbouncer-auth", "pgbouncer auth_file", _TEXT | {"dquote_doubled"}, _doubled_dquote),
        Format("pgbackrest", "pgBackRest ini", _TEXT, _line_value("pgbackrest", trims=True)),
        Format("redis", "redis.conf / sentinel.conf", _TEXT | {"dquote"}, _backslash_dquote),
        Format("grafana-ini", "Grafana's go-ini configuration", _TEXT, _grafana_ini),
        Format("keepalived", "keepalived configuration", _TEXT | {"dquote"}, _keepalived),
        Format("htpasswd", "nginx basic-auth file (hashes only)", _TEXT, _line_value("htpasswd", trims=False)),
        Format("shell", "shell script", _TEXT | {"shell_quote", "heredoc"}, _line_value("shell", trims=False)),
        Format("hosts", "/etc/hosts lines and dnsmasq host files", _TEXT),
        Format("resolv", "resolv.conf", _TEXT),
        Format("dnsmasq", "dnsmasq configuration", _TEXT),
        Format("chrony", "chrony configuration", _TEXT),
        Format("sysctl", "sysctl.d file", _TEXT),
        Format("crontab", "crontab", _TEXT),
        Format("pem", "certificate or key (apply time only)"),
    )
}


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown file format '{name}' (known: {', '.join(sorted(FORMATS))})") from None


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
    """The file as it goes to the host: every placeholder replaced by its value, escaped for the format."""
    if "<<secret:" not in text:
        return text

    def lookup(name: str) -> str:
        if name not in values:
            raise SecretError(f"the secret store has no value for {name}; run sty build or add it to secrets.yml")
        value = values[name]
        if value == "":
            raise SecretError(f"the secret {name} is empty; set it in secrets.yml")
        return value

    spec = get_format(fmt)
    if spec.name == "yaml":
        lines = text.splitlines(keepends=True)
        return "".join(_yaml_line(line, lookup) if "<<secret:" in line else line for line in lines)
    if spec.escape is None:
        raise SecretError(f"a {fmt} file cannot carry secrets")
    escape = spec.escape
    return SECRET.sub(lambda m: escape(lookup(m.group(1))), text)


def mask(text: str, names: list[str], fmt: str, values: Mapping[str, str]) -> str:
    """`text` with the values of the named secrets replaced by their placeholders (for diffs)."""
    escape = get_format(fmt).escape
    out = text
    for name in sorted(set(names), key=lambda n: -len(values.get(n, ""))):
        value = values.get(name, "")
        if len(value) < 3:
            continue
        forms = {value, json.dumps(value)[1:-1]}
        if escape is not None:
            try:
                forms.add(escape(value))
            except SecretError:
                pass
        for form in sorted(forms, key=len, reverse=True):
            out = out.replace(form, placeholder(name))
    return out
