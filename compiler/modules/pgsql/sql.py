"""SQL quoting for the provisioning scripts: identifiers, literals, setting names and dollar-quoted bodies.

Every name and value the inventory puts into SQL goes through one of these functions (the templates get them
as `ident`, `lit`, `guc` and `dollar`), so no inventory value can end a quote and add a statement. Literals
assume `standard_conforming_strings = on`, PostgreSQL's default since 9.1.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from ...render import RenderError, one_line, render

# a GUC name as ALTER ROLE/DATABASE SET and postgresql.conf take it (custom ones carry one dot)
GUC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
# GUCs whose value is a list: `search_path: a,b` means two elements, not one name with a comma
LIST_GUCS = frozenset(
    {"search_path", "datestyle", "temp_tablespaces", "local_preload_libraries", "session_preload_libraries"}
)


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


def sql_dollar(body: str, tag: str = "$sty$") -> str:
    """A dollar-quoted block body, refused if it could end the quote early."""
    if tag in body:
        raise RenderError(f"a value contains {tag}")
    return f"{tag}\n{body}{tag}"


def guc_values(name: str, value: Any) -> list[str]:
    """The literal(s) of `SET name = ...`: booleans as on/off, list settings split at commas."""
    if isinstance(value, bool):
        return ["on" if value else "off"]
    text = str(value)
    if name.lower() in LIST_GUCS and "," in text:
        return [v.strip() for v in text.split(",") if v.strip()]
    return [text]


SQL_FUNCS = {"ident": sql_ident, "lit": sql_literal, "guc": sql_guc, "dollar": sql_dollar}


@cache
def extension_sql(name: str, schema: str | None, version: str | None, cascade: bool, state: str) -> str:
    """The idempotent statement for one extension (the same in every database that lists it)."""
    e = {"name": name, "schema": schema, "version": version, "cascade": cascade, "state": state}
    return render("pgsql/sql/extension.sql.j2", e=e, **SQL_FUNCS).rstrip("\n")
