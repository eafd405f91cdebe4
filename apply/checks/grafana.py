"""grafana: grafana.ini and datasource provisioning files, judged by a hand-written rule set.

Grafana cannot be installed from this machine's package sources and has no offline check mode, so the rules
below restate what Grafana enforces when it loads these files (messages in Grafana's words where it has
them) plus what a working setup needs:

datasource provisioning (provisioning/datasources/*.yml):
  D1 the file is YAML mapping with `apiVersion: 1` and only the keys apiVersion, datasources,
     deleteDatasources, prune;
  D2 every datasource is a mapping with a non-empty `name` and `type`, and only Grafana's datasource keys;
  D3 `type` is a plugin id (lower case words joined by `-`); `access` is proxy or direct;
  D4 `uid` has at most 40 characters of letters, digits, `-` and `_`;
  D5 names and uids are unique per organisation (`orgId`, default 1);
  D6 only one datasource per organisation is the default (Grafana: "datasource.yaml config is invalid.
     Only one datasource per organization can be marked as default");
  D7 HTTP datasources (prometheus, loki, jaeger, tempo, victoriametrics-*) have an http(s) `url`;
     postgres / mysql ones have `host:port`, a `user` and a database (`jsonData.database`), and
     postgres' `jsonData.sslmode` is one of disable, require, verify-ca, verify-full;
  D8 `jsonData` and `secureJsonData` are mappings, secureJsonData values are strings;
  D9 `deleteDatasources` entries have a `name` (and an integer `orgId` when given).
grafana.ini:
  G1 it parses as an INI file with known sections;
  G2 [server] http_port is a port number, protocol one of http, https, h2, socket;
     `serve_from_sub_path = true` needs a root_url with a path;
  G3 [security] admin_user and admin_password are set;
  G4 [database] type is sqlite3, mysql or postgres (or a url is given).
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import yaml

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import substitute

TOP_KEYS = {"apiVersion", "datasources", "deleteDatasources", "prune"}
DS_KEYS = {
    "name", "type", "access", "orgId", "uid", "url", "user", "database", "basicAuth", "basicAuthUser",
    "withCredentials", "isDefault", "jsonData", "secureJsonData", "version", "editable", "readOnly",
}  # fmt: skip
PLUGIN_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
HTTP_TYPES = {"prometheus", "loki", "jaeger", "tempo", "elasticsearch", "graphite", "influxdb"}
SQL_TYPES = {"postgres", "grafana-postgresql-datasource", "mysql"}
SSLMODES = {"disable", "require", "verify-ca", "verify-full"}
INI_SECTIONS = {
    "paths", "server", "database", "security", "users", "auth", "auth.anonymous", "auth.proxy", "auth.basic",
    "analytics", "log", "log.console", "log.file", "dashboards", "alerting", "unified_alerting", "smtp",
    "snapshots", "plugins", "feature_toggles", "panels", "date_formats", "live", "metrics", "remote_cache",
    "dataproxy", "session", "external_image_storage", "rendering", "explore", "help", "profile", "news",
}  # fmt: skip
DEFAULT_MESSAGE = "datasource.yaml config is invalid. Only one datasource per organization can be marked as default"


def check_datasources(doc: Any, where: str) -> list[str]:
    if not isinstance(doc, dict):
        return [f"{where}: D1 the file must be a mapping with apiVersion and datasources"]
    problems: list[str] = []
    if doc.get("apiVersion") != 1:
        problems.append(f"D1 apiVersion must be 1, got {doc.get('apiVersion')!r}")
    problems += [f"D1 unknown top-level key {key!r}" for key in sorted(set(doc) - TOP_KEYS, key=str)]
    sources = doc.get("datasources") or []
    if not isinstance(sources, list):
        return [f"{where}: {p}" for p in problems] + [f"{where}: D2 datasources must be a list"]
    seen = _Seen()
    for i, ds in enumerate(sources):
        problems += _datasource_problems(i, ds, seen)
    for org, marked in sorted(seen.defaults.items()):
        if len(marked) > 1:
            problems.append(f"D6 {DEFAULT_MESSAGE} (organization {org}: {', '.join(marked)})")
    problems += _delete_problems(doc.get("deleteDatasources") or [])
    return [f"{where}: {p}" for p in problems]


@dataclass
class _Seen:
    """What the earlier datasources of the file claimed: Grafana's uniqueness rules hold per organisation."""

    names: dict[tuple[int, str], int] = field(default_factory=dict)
    uids: dict[tuple[int, str], int] = field(default_factory=dict)
    defaults: dict[int, list[str]] = field(default_factory=dict)


def _datasource_problems(i: int, ds: Any, seen: _Seen) -> list[str]:
    """D2-D8 for one entry; an entry without a name or type is not judged further (nothing to name it by)."""
    at = f"datasources[{i}]"
    if not isinstance(ds, dict):
        return [f"D2 {at} must be a mapping"]
    name, kind = ds.get("name"), ds.get("type")
    if not isinstance(name, str) or not name.strip():
        return [f"D2 {at} has no name"]
    at = f"datasource {name!r}"
    problems = [f"D2 {at}: unknown key {key!r}" for key in sorted(set(ds) - DS_KEYS, key=str)]
    if not isinstance(kind, str) or not kind:
        return problems + [f"D2 {at} has no type"]
    if not PLUGIN_ID.match(kind):
        problems.append(f"D3 {at}: type {kind!r} is not a plugin id")
    if "access" in ds and ds["access"] not in ("proxy", "direct"):
        problems.append(f"D3 {at}: access must be proxy or direct, got {ds['access']!r}")
    problems += _claim_problems(i, at, name, ds, seen)
    problems += _payload_problems(at, kind, ds)
    return problems


def _claim_problems(i: int, at: str, name: str, ds: dict[str, Any], seen: _Seen) -> list[str]:
    """D4-D6: the entry's organisation, uid, name and default flag, recorded in `seen` for the later ones."""
    problems: list[str] = []
    org = ds.get("orgId", 1)
    if not isinstance(org, int) or isinstance(org, bool):
        problems.append(f"D5 {at}: orgId must be an integer")
        org = -1
    if "uid" in ds:
        uid = ds["uid"]
        if not isinstance(uid, str) or not UID.match(uid):
            problems.append(f"D4 {at}: uid {uid!r} must be 1-40 letters, digits, '-' or '_'")
        elif (org, uid) in seen.uids:
            problems.append(f"D5 {at}: uid {uid!r} is also used by datasources[{seen.uids[(org, uid)]}]")
        else:
            seen.uids[(org, uid)] = i
    if (org, name) in seen.names:
        problems.append(
            f"D5 {at}: the name is also used by datasources[{seen.names[(org, name)]}] in organization {org}"
        )
    seen.names[(org, name)] = i
    if ds.get("isDefault") is True:
        seen.defaults.setdefault(org, []).append(name)
    elif "isDefault" in ds and not isinstance(ds["isDefault"], bool):
        problems.append(f"D6 {at}: isDefault must be true or false")
    return problems


def _payload_problems(at: str, kind: str, ds: dict[str, Any]) -> list[str]:
    """D7-D8: the data blocks' shapes and what the datasource's type needs to connect."""
    problems: list[str] = []
    for key in ("jsonData", "secureJsonData"):
        if key in ds and not isinstance(ds[key], dict):
            problems.append(f"D8 {at}: {key} must be a mapping")
    secure = ds.get("secureJsonData") if isinstance(ds.get("secureJsonData"), dict) else {}
    for key, value in secure.items():
        if not isinstance(value, str):
            problems.append(f"D8 {at}: secureJsonData.{key} must be a string")
    json_data = ds.get("jsonData") if isinstance(ds.get("jsonData"), dict) else {}
    url = ds.get("url")
    if kind in HTTP_TYPES or kind.startswith("victoriametrics-"):
        parsed = urlparse(str(url or ""))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            problems.append(f"D7 {at}: url {url!r} must be an http(s) URL")
    if kind in SQL_TYPES:
        if not isinstance(url, str) or not re.match(r"^[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$", url):
            problems.append(f"D7 {at}: url {url!r} must be host:port")
        if not ds.get("user"):
            problems.append(f"D7 {at}: user is missing")
        if not (json_data.get("database") or ds.get("database")):
            problems.append(f"D7 {at}: jsonData.database is missing")
        if kind != "mysql" and json_data.get("sslmode", "disable") not in SSLMODES:
            problems.append(f"D7 {at}: jsonData.sslmode {json_data.get('sslmode')!r} is not one of {sorted(SSLMODES)}")
    return problems


def _delete_problems(deletes: Any) -> list[str]:
    """D9: each entry names the datasource to delete."""
    problems: list[str] = []
    for i, d in enumerate(deletes if isinstance(deletes, list) else [None]):
        if not isinstance(d, dict) or not d.get("name"):
            problems.append(f"D9 deleteDatasources[{i}] needs a name")
        elif "orgId" in d and not isinstance(d["orgId"], int):
            problems.append(f"D9 deleteDatasources[{i}]: orgId must be an integer")
    return problems


def check_ini(text: str, where: str) -> list[str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True, comment_prefixes=("#", ";"))
    try:
        parser.read_string(text, source=where)
    except configparser.Error as exc:
        return [f"{where}: G1 {exc}".replace("\n", " ")]
    problems = [f"{where}: G1 unknown section [{s}]" for s in parser.sections() if s not in INI_SECTIONS]
    server = parser["server"] if parser.has_section("server") else {}
    port = server.get("http_port", "3000")
    if not port.isdigit() or not 0 < int(port) < 65536:
        problems.append(f"{where}: G2 [server] http_port {port!r} is not a port number")
    if server.get("protocol", "http") not in ("http", "https", "h2", "socket"):
        problems.append(f"{where}: G2 [server] protocol {server.get('protocol')!r} is not http, https, h2 or socket")
    if server.get("serve_from_sub_path", "false").lower() == "true":
        path = urlparse(server.get("root_url", "").replace("%(protocol)s", "http").replace("%(domain)s", "x")).path
        if path in ("", "/"):
            problems.append(f"{where}: G2 serve_from_sub_path is true but root_url has no sub path")
    security = parser["security"] if parser.has_section("security") else {}
    for key in ("admin_user", "admin_password"):
        if not security.get(key, "").strip():
            problems.append(f"{where}: G3 [security] {key} is empty")
    database = parser["database"] if parser.has_section("database") else {}
    if not database.get("url") and database.get("type", "sqlite3") not in ("sqlite3", "mysql", "postgres"):
        problems.append(f"{where}: G4 [database] type {database.get('type')!r} is not sqlite3, mysql or postgres")
    return problems


@register("grafana")
def check(ctx: CheckContext) -> CheckResult:
    problems: list[str] = []
    checked: list[str] = []
    for path in ctx.files:
        src = ctx.path(path)
        files = sorted(src.glob("*.y*ml")) if src.is_dir() else [src]
        for f in files:
            where = f"{path.rstrip('/')}/{f.name}" if src.is_dir() else path
            text = substitute(f.read_text(), ctx.secret)
            checked.append(where)
            if f.suffix == ".ini":
                problems += check_ini(text, where)
                continue
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                problems.append(f"{where}: D1 not YAML: {exc}")
                continue
            problems += check_datasources(doc, where)
    if not checked:
        return CheckResult("grafana", ctx.files, FAIL, "no grafana.ini or provisioning file among the files")
    out = "\n".join(problems) + "\n" if problems else "".join(f"{w}: ok\n" for w in checked)
    return CheckResult(
        "grafana", ctx.files, FAIL if problems else PASS, out, "checked by sty's Grafana provisioning rules"
    )
