"""SQL quoting for the provisioning scripts: identifiers, literals, setting names and dollar-quoted bodies.

Every name and value the inventory puts into SQL goes through one of the `sql` format's quoting filters
(`ident`, `lit`, `guc`, `dollar`, `keyword`, registered by the core renderer for every template), so no
inventory value can end a quote and add a statement. Literals assume `standard_conforming_strings = on`,
PostgreSQL's default since 9.1.
"""

from __future__ import annotations

from functools import cache
from typing import Any

# the sql format's quoting lives with the other formats' in the core renderer; re-exported for this package
from ...render import GUC_NAME, render, sql_dollar, sql_guc, sql_ident, sql_literal

__all__ = ["GUC_NAME", "LIST_GUCS", "extension_sql", "guc_values", "sql_dollar", "sql_guc", "sql_ident", "sql_literal"]

# GUCs whose value is a list: `search_path: a,b` means two elements, not one name with a comma
LIST_GUCS = frozenset(
    {"search_path", "datestyle", "temp_tablespaces", "local_preload_libraries", "session_preload_libraries"}
)


def guc_values(name: str, value: Any) -> list[str]:
    """The literal(s) of `SET name = ...`: booleans as on/off, list settings split at commas."""
    if isinstance(value, bool):
        return ["on" if value else "off"]
    text = str(value)
    if name.lower() in LIST_GUCS and "," in text:
        return [v.strip() for v in text.split(",") if v.strip()]
    return [text]


@cache
def extension_sql(name: str, schema: str | None, version: str | None, cascade: bool, state: str) -> str:
    """The idempotent statement for one extension (the same in every database that lists it)."""
    e = {"name": name, "schema": schema, "version": version, "cascade": cascade, "state": state}
    return render("pgsql/sql/extension.sql.j2", e=e).rstrip("\n")
