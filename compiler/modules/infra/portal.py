"""The `infra_portal` entries: which web services nginx fronts, under which domains. Parsed and validated in one
function used both by `derive` (with a report, to reject bad entries) and by rendering (without one, once the
inventory is known good), so the two can never disagree on what an entry means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...errors import Report, join_path

DOMAIN = re.compile(r"^(?=.{1,253}$)(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")
PATH = re.compile(r"^/[A-Za-z0-9_./@%+=,~-]*$")
_PORTAL_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ENDPOINT = re.compile(r"^(?P<host>[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$")
_LOG = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class Portal:
    key: str
    kind: str  # home | endpoint | path
    domain: str
    domains: list[str]
    spec: dict[str, Any]

    @property
    def names(self) -> list[str]:
        return [self.domain, *self.domains]


class _Invalid(Exception):
    """Why a portal entry is rejected, as (inventory path, message): each check stays one condition, one message."""


def portal_entries(p, report: Report | None = None) -> list[Portal]:
    """The `infra_portal` entries nginx serves (those with a domain), validated; a rejected entry is reported
    (when there is a report) and left out."""

    def err(path: str, message: str) -> None:
        if report is not None:
            report.error(path, message)

    out: list[Portal] = []
    where = p.source("infra_portal")
    seen: dict[str, str] = {}
    for key, spec in sorted((p.get("infra_portal") or {}).items()):
        at = join_path(where, key)
        try:
            portal = _portal(key, spec, at)
        except _Invalid as e:
            err(*e.args)
            continue
        if portal is None:
            continue  # Pigsty: only entries with a domain get an nginx server
        clash = next((n for n in portal.names if n in seen), None)
        if clash:
            err(join_path(at, "domain"), f"domain {clash} is already served by portal entry {seen[clash]}")
            continue
        for n in portal.names:
            seen[n] = key
        out.append(portal)
    return out


def _portal(key: Any, spec: Any, at: str) -> Portal | None:
    """One entry, None when it has no domain; raises _Invalid at the first problem."""
    if not isinstance(spec, dict):
        raise _Invalid(at, "a portal entry must be a mapping")
    domain = spec.get("domain")
    if not domain:
        return None
    if not _PORTAL_KEY.match(str(key)):
        raise _Invalid(at, f"portal name '{key}' may only contain letters, digits and _.-")
    domains = spec.get("domains") or []
    bad = [d for d in [domain, *domains] if not isinstance(d, str) or not DOMAIN.match(d)]
    if bad:
        raise _Invalid(
            join_path(at, "domain" if bad[0] == domain else "domains"), f"'{bad[0]}' is not a valid domain name"
        )
    if "conf" in spec:
        raise _Invalid(
            join_path(at, "conf"), "custom nginx templates (conf) are not supported: use endpoint, path or config"
        )
    kind = _kind(key, spec, at)
    _check_options(spec, at)
    return Portal(str(key), kind, str(domain), [str(d) for d in domains], spec)


def _kind(key: Any, spec: dict[str, Any], at: str) -> str:
    if key == "home":
        return "home"
    if spec.get("path"):
        return "path"
    if not spec.get("endpoint"):
        raise _Invalid(at, f"portal entry '{key}' has a domain but neither endpoint nor path")
    m = _ENDPOINT.match(str(spec["endpoint"]))
    if not m or not 0 < int(m.group("port")) < 65536:
        raise _Invalid(join_path(at, "endpoint"), f"endpoint '{spec['endpoint']}' must be host:port")
    return "endpoint"


def _check_options(spec: dict[str, Any], at: str) -> None:
    """The values that end up in nginx's config verbatim: paths, log name, certificate name, directives."""
    for sub in ("path", "cert", "key"):
        if sub in spec and not PATH.match(str(spec[sub])):
            raise _Invalid(join_path(at, sub), f"{sub} '{spec[sub]}' must be an absolute path without spaces or quotes")
    if "log" in spec and not _LOG.match(str(spec["log"])):
        raise _Invalid(join_path(at, "log"), f"log '{spec['log']}' must be a file name")
    if "certbot" in spec and spec["certbot"] and not DOMAIN.match(str(spec["certbot"])):
        raise _Invalid(join_path(at, "certbot"), f"certbot '{spec['certbot']}' must be a certificate (domain) name")
    config = spec.get("config") or ""
    if config and not _balanced(str(config)):
        raise _Invalid(join_path(at, "config"), "config must be nginx directives with balanced braces")


def _balanced(text: str) -> bool:
    depth = 0
    for c in re.sub(r"(\"[^\"]*\"|'[^']*'|#[^\n]*)", "", text):
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return False
    return depth == 0
