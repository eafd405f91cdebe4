"""Pigsty host-based-authentication rules → `pg_hba.conf` (PostgreSQL) and `pgb_hba.conf` (pgbouncer).

A Pigsty HBA rule is a mapping in one of two forms:

* alias form: ``{user, db, addr, auth, title, role, order}``; ``addr`` and ``auth`` are aliases that
  expand into one or more ``type database user address method`` records;
* raw form: ``{rules: [...], title, role, order}``; each string is written as one record, verbatim.

Semantics (Pigsty ``roles/pgsql/templates/pg_hba.conf`` / ``pgbouncer.hba`` and pigsty.io "HBA Rules"):

* ``user`` / ``db`` default to ``all``; the placeholders ``${dbsu}`` ``${repl}`` ``${monitor}``
  ``${admin}`` become the configured user names.
* ``addr`` aliases: ``local`` (unix socket), ``localhost`` (socket + 127.0.0.1/32 + ::1/128, always
  plain ``host`` lines), ``admin`` (admin_ip/32), ``infra`` (each infra node /32), ``cluster`` (each
  member of this cluster /32), ``intra``/``intranet`` (intranet CIDRs), ``world``/``all`` (0.0.0.0/0 and
  ::/0), or a literal IP (a bare address gets /32 or /128) or CIDR.
* ``auth`` aliases select the method and, for ``ssl``/``ssl-sha``/``ssl-md5``/``cert``, a ``hostssl``
  record; ``auth`` defaults to ``pwd`` (``pg_pwd_enc``). See `AUTH_METHODS`.
* ``role`` (default ``common``) filters by instance: a rule whose role does not match is still written
  but commented out. ``common``/``default`` match everywhere, ``offline`` also matches an instance with
  ``pg_offline_query: true``, anything else matches the instance's ``pg_role`` exactly.
* ``order`` (default 1000) sorts the rules ascending; ties keep their definition order.

Stricter than Pigsty, so that every file written is accepted by PostgreSQL 15 and pgbouncer 1.18 and no
value can add a line or directive: see `rule_problems`. `render_hba` refuses (ValueError) to render a
rule or context that has problems.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

FLAVORS = ("postgres", "pgbouncer")
DEFAULT_ORDER = 1000
DEFAULT_INTRANET = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")

ROLES = ("common", "default", "primary", "replica", "offline", "standby", "delayed")
RULE_KEYS = ("user", "db", "addr", "auth", "title", "role", "order", "rules")
ALIAS_KEYS = ("user", "db", "addr", "auth")

ADDR_ALIASES = ("local", "localhost", "admin", "infra", "cluster", "intra", "intranet", "world", "all")
ADDR_HINT = "use local, localhost, admin, infra, cluster, intra, world or a CIDR"

# auth alias -> (method, needs TLS); "pwd" marks the method chosen by pg_pwd_enc.
AUTH_METHODS: dict[str, tuple[str, bool]] = {
    "deny": ("reject", False),
    "reject": ("reject", False),
    "pwd": ("pwd", False),
    "ssl": ("pwd", True),
    "sha": ("scram-sha-256", False),
    "scram-sha-256": ("scram-sha-256", False),
    "ssl-sha": ("scram-sha-256", True),
    "md5": ("md5", False),
    "ssl-md5": ("md5", True),
    "cert": ("cert", True),
    "trust": ("trust", False),
    "ident": ("ident", False),
    "os": ("ident", False),
    "peer": ("peer", False),
}
AUTH_HINT = "use " + ", ".join(AUTH_METHODS)
# pgbouncer has no ident: Pigsty maps ident/os to peer there.
PGBOUNCER_METHOD = {"ident": "peer"}

PLACEHOLDERS = ("${dbsu}", "${repl}", "${monitor}", "${admin}")
PWD_ENCS = ("scram-sha-256", "md5")

CONN_TYPES = {
    "postgres": ("local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"),
    "pgbouncer": ("local", "host", "hostssl", "hostnossl"),
}
# database keywords pgbouncer rejects (its hba.c drops the whole line)
PGBOUNCER_BAD_DB = ("replication", "samerole", "samegroup")

# One element of a user/database list: an unquoted token PostgreSQL and pgbouncer read literally.
# No whitespace, quotes, '#', ',', '\\', '@' (file include) or '/' (regex in PostgreSQL 16+).
_NAME = re.compile(r"[\w][\w.$-]*\Z")
_MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: longer names never match
_ADDR_CHARS = re.compile(r"[0-9A-Fa-f:./]+\Z")

_COLS = (8, 18, 18, 18)  # widths of type, database, user, address


@dataclass(frozen=True)
class HbaContext:
    dbsu: str
    repl: str
    monitor: str
    admin: str  # usernames
    admin_ip: str
    infra_ips: tuple[str, ...]
    cluster_ips: tuple[str, ...]
    intranet: tuple[str, ...] = DEFAULT_INTRANET
    pwd_enc: str = "scram-sha-256"  # pg_pwd_enc
    role: str = "primary"  # this instance's pg_role
    offline_query: bool = False  # this instance's pg_offline_query


# ---------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__
    )


def _bad_chars(text: str) -> str | None:
    """Why `text` cannot be written into one line of an hba file, or None."""
    if "\n" in text or "\r" in text:
        return "contains a line break"
    if not text.isprintable():
        return "contains a control or non-printable character"
    return None


def _name_problems(field: str, value: Any, flavor: str) -> list[str]:
    """Problems of a `user` or `db` value (a name, keyword, placeholder or comma-separated list)."""
    if not isinstance(value, str):
        return [f"{field} must be a string, got {_show(value)} ({_type_name(value)})"]
    if value == "":
        return []  # Pigsty: empty means all
    why = _bad_chars(value)
    if why:
        return [f"{field} {_show(value)} {why}"]
    out: list[str] = []
    for item in value.split(","):
        if item in PLACEHOLDERS:
            continue
        if item.startswith("${"):
            out.append(f"unknown placeholder {_show(item)} in {field}; use {', '.join(PLACEHOLDERS)}")
            continue
        body = item[1:] if field == "user" and item.startswith("+") else item
        if not _NAME.match(body):
            out.append(
                f"{field} {_show(item)} is not a plain name: names may not be empty or contain whitespace, "
                "quotes, '#', '\\', '@', '/' or other punctuation besides . _ - $"
                + (" (a leading '+' means role members)" if field == "user" else "")
            )
            continue
        if len(body.encode()) > _MAX_NAME_BYTES:
            out.append(f"{field} {_show(item)} is longer than {_MAX_NAME_BYTES} bytes and would never match")
        if flavor == "pgbouncer":
            if field == "user" and item.startswith("+"):
                out.append(
                    f"pgbouncer does not support role-membership user {_show(item)} "
                    "(it ignores the whole line); list the users instead"
                )
            if field == "db" and item in PGBOUNCER_BAD_DB:
                out.append(f"db {item!r} is not allowed in pgbouncer hba rules (pgbouncer ignores the line)")
    return out


def _parse_literal_addr(addr: str) -> tuple[str | None, str | None]:
    """(normalized CIDR, None) or (None, problem) for an address that is not an alias."""
    if not _ADDR_CHARS.match(addr) or not any(c in addr for c in ".:/"):
        return None, f"unknown address alias {addr!r}; {ADDR_HINT}"
    try:
        if "/" in addr:
            net = ipaddress.ip_network(addr, strict=False)
            if net.network_address != ipaddress.ip_interface(addr).ip:
                host = ipaddress.ip_interface(addr).ip
                full = 32 if host.version == 4 else 128
                return None, (
                    f"address {addr!r} has host bits set; use {net.with_prefixlen} for the network "
                    f"or {host}/{full} for the host"
                )
        else:
            net = ipaddress.ip_network(ipaddress.ip_address(addr))
    except ValueError:
        return None, f"invalid address {addr!r}: not an IP address or CIDR; {ADDR_HINT}"
    return net.with_prefixlen, None


def _raw_rule_problems(line: str, flavor: str) -> list[str]:
    why = _bad_chars(line)
    if why:
        return [f"raw rule {why}"]
    if line.rstrip().endswith("\\"):
        return ["raw rule ends with a backslash, which continues the record onto the next line"]
    fields = line.split()
    if not fields:
        return ["raw rule is empty"]
    if fields[0] not in CONN_TYPES[flavor]:
        return [f"raw rule must start with a connection type ({', '.join(CONN_TYPES[flavor])}), got {_show(fields[0])}"]
    if len(fields) < 4:
        return ["raw rule needs at least: type database user [address] method"]
    if flavor == "pgbouncer":
        bad = [d for d in fields[1].split(",") if d in PGBOUNCER_BAD_DB]
        if bad:
            return [f"db {bad[0]!r} is not allowed in pgbouncer hba rules (pgbouncer ignores the line)"]
        if any(u.startswith("+") for u in fields[2].split(",")):
            return ["pgbouncer does not support role-membership users ('+role'); it ignores the line"]
    return []


def _meta_problems(rule: Mapping) -> list[tuple[str, str]]:
    """Unknown keys and the keys both forms share: title, role, order."""
    out: list[tuple[str, str]] = []
    for key in rule:
        if key not in RULE_KEYS:
            out.append((str(key), f"unknown hba rule key {_show(key)}; use {', '.join(RULE_KEYS)}"))

    if "title" in rule:
        title = rule["title"]
        if not isinstance(title, str):
            out.append(("title", f"title must be a string, got {_show(title)} ({_type_name(title)})"))
        elif _bad_chars(title):
            out.append(("title", f"title {_bad_chars(title)}"))

    if "role" in rule:
        role = rule["role"]
        if not isinstance(role, str):
            out.append(("role", f"role must be a string, got {_show(role)} ({_type_name(role)})"))
        elif role != "" and role not in ROLES:
            out.append(("role", f"unknown hba role {role!r}; use {', '.join(ROLES)}"))

    if "order" in rule:
        order = rule["order"]
        if isinstance(order, bool) or not isinstance(order, int):
            out.append(("order", f"order must be an integer, got {_show(order)} ({_type_name(order)})"))
    return out


def _raw_form_problems(rule: Mapping, has_addr: bool, flavor: str) -> list[tuple[str, str]]:
    """A rule with `rules`: verbatim lines, so the alias keys would be silently dropped."""
    out: list[tuple[str, str]] = []
    if has_addr:
        out.append(("", "an hba rule has either 'rules' (raw lines) or 'addr' (alias form), not both"))
    for key in ("user", "db", "auth"):
        if key in rule:
            out.append((key, f"{key!r} is ignored in a raw rule ('rules' given); remove it"))
    rules = rule["rules"]
    if not isinstance(rules, list):
        out.append(("rules", f"rules must be a list of strings, got {_show(rules)} ({_type_name(rules)})"))
        return out
    for i, line in enumerate(rules):
        if not isinstance(line, str):
            out.append((f"rules[{i}]", f"raw rule must be a string, got {_show(line)} ({_type_name(line)})"))
            continue
        out.extend((f"rules[{i}]", msg) for msg in _raw_rule_problems(line, flavor))
    return out


def _addr_problem(addr: Any) -> str | None:
    if not isinstance(addr, str):
        return f"addr must be a string, got {_show(addr)} ({_type_name(addr)})"
    if addr in ADDR_ALIASES:
        return None
    return _parse_literal_addr(addr)[1]


def _auth_problem(auth: Any) -> str | None:
    if not isinstance(auth, str):
        return f"auth must be a string, got {_show(auth)} ({_type_name(auth)})"
    if auth != "" and auth not in AUTH_METHODS:
        return f"unknown auth alias {auth!r}; {AUTH_HINT}"
    return None


def _method_problems(addr: str, auth: str, flavor: str) -> list[tuple[str, str]]:
    """Methods that only work over one kind of address (a valid addr and auth on their own)."""
    out: list[tuple[str, str]] = []
    method, _tls = AUTH_METHODS[auth or "pwd"]
    if flavor == "pgbouncer":
        method = PGBOUNCER_METHOD.get(method, method)
    if method == "cert" and addr in ("local", "localhost"):
        out.append(("auth", f"auth {auth!r} needs a TCP address (hostssl); addr {addr!r} is a unix socket"))
    if method == "peer" and addr != "local":
        what = f"auth {auth!r} (peer in pgbouncer)" if auth != "peer" else "auth 'peer'"
        out.append(("auth", f"{what} only works on the unix socket; use addr: local"))
    return out


def _alias_form_problems(rule: Mapping, flavor: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key in ("user", "db"):
        if key in rule:
            out.extend((key, msg) for msg in _name_problems(key, rule[key], flavor))
    addr, auth = rule.get("addr"), rule.get("auth", "")
    addr_why, auth_why = _addr_problem(addr), _auth_problem(auth)
    if addr_why:
        out.append(("addr", addr_why))
    if auth_why:
        out.append(("auth", auth_why))
    if not addr_why and not auth_why:
        out.extend(_method_problems(addr, auth, flavor))
    return out


def _problems(rule: Any, flavor: str) -> list[tuple[str, str]]:
    if flavor not in FLAVORS:
        return [("", f"unknown hba flavor {_show(flavor)}; use postgres or pgbouncer")]
    if not isinstance(rule, Mapping):
        return [("", f"an hba rule must be a mapping, got {_show(rule)} ({_type_name(rule)})")]
    out = _meta_problems(rule)
    rules = rule.get("rules")
    has_rules = "rules" in rule and not (isinstance(rules, list) and len(rules) == 0)
    has_addr = "addr" in rule and rule.get("addr") != ""
    if has_rules:
        return out + _raw_form_problems(rule, has_addr, flavor)
    if not has_addr:
        out.append(("", "an hba rule needs 'addr' (alias form) or a non-empty 'rules' list (raw form)"))
        return out
    return out + _alias_form_problems(rule, flavor)


def rule_problems(rule: object, flavor: str = "postgres") -> list[tuple[str, str]]:
    """Problems of one rule as (sub-path, sentence): e.g. ('addr', "unknown address alias 'intrnet'; use
    local, localhost, admin, infra, cluster, intra, world or a CIDR"). Empty when valid.

    The sub-path is relative to the rule ('' for the rule as a whole, 'rules[2]' for a raw line).
    Never raises. A rule object already judged is not judged again (see _VERDICTS).
    """
    key = (id(rule), flavor)
    seen = _VERDICTS.get(key)
    if seen is not None and seen[0] is rule:
        return list(seen[1])
    try:
        problems = _problems(rule, flavor)
    except Exception as exc:  # noqa: BLE001 - a validator must report, not crash
        problems = [("", f"hba rule could not be checked: {type(exc).__name__}: {exc}")]
    if len(_VERDICTS) >= _VERDICTS_MAX:
        _VERDICTS.clear()
    _VERDICTS[key] = (rule, problems)
    return list(problems)


# Verdicts by rule object. Why by identity: every cluster's definition and every host's render check the default
# rule lists (pg_default_hba_rules, pgb_default_hba_rules), and those are the very same objects for the whole fleet:
# their `${dbsu}` becomes the same user on every host, and an equal substitution result is handed out as the
# earlier host's object (Params._shared). Before that, a fleet of 1200 clusters judged its 19 default rules 23,000
# times at compile time and again per host at render. An inventory's values are
# never modified (tests/test_resolve.py checks it on whole examples), the entry keeps its rule alive so that its id
# is not reused, and a rule a placeholder changed is a new object, judged afresh. Keyed by content instead, the
# key cost what the judgement did (canonical JSON, measured).
_VERDICTS: dict[tuple[int, str], tuple[object, list[tuple[str, str]]]] = {}
_VERDICTS_MAX = 65536


# ---------------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------------


def _host_cidr(ip: Any, what: str) -> str:
    """'10.1.1.1' or '10.1.1.1/32' -> '10.1.1.1/32' (a single host)."""
    if not isinstance(ip, str) or not _ADDR_CHARS.match(ip):
        raise ValueError(f"hba context: {what} {_show(ip)} is not an IP address")
    try:
        net = ipaddress.ip_network(ip)  # strict: a bare address or a full-length prefix
    except ValueError:
        raise ValueError(f"hba context: {what} {_show(ip)} is not an IP address") from None
    if net.num_addresses != 1:
        raise ValueError(f"hba context: {what} {ip!r} is a network, expected one address")
    return net.with_prefixlen


def _checked_ctx(ctx: HbaContext) -> dict[str, Any]:
    """`_check_ctx`, once per distinct context (a frozen dataclass of strings and tuples): the members of a
    cluster share all of it but the role, and every cluster the admin and infra addresses. The caller only
    reads the answer."""
    try:
        return _check_ctx_once(ctx)
    except TypeError:  # a context holding something unhashable: checked (and refused) the long way
        return _check_ctx(ctx)


def _check_ctx(ctx: HbaContext) -> dict[str, Any]:
    """Validated, normalized context values; ValueError on anything that could not be written safely."""
    if not isinstance(ctx, HbaContext):
        raise ValueError(f"hba context must be an HbaContext, got {type(ctx).__name__}")
    users = {}
    for name, placeholder in zip(("dbsu", "repl", "monitor", "admin"), PLACEHOLDERS, strict=True):
        value = getattr(ctx, name)
        if not isinstance(value, str) or not _NAME.match(value) or len(value.encode()) > _MAX_NAME_BYTES:
            raise ValueError(f"hba context: user name {name}={_show(value)} is not a plain name")
        users[placeholder] = value
    if ctx.pwd_enc not in PWD_ENCS:
        raise ValueError(f"hba context: pwd_enc {_show(ctx.pwd_enc)} must be one of {', '.join(PWD_ENCS)}")
    if not isinstance(ctx.role, str) or _bad_chars(ctx.role) or not ctx.role:
        raise ValueError(f"hba context: role {_show(ctx.role)} is not a role name")
    intranet = []
    for cidr in ctx.intranet:
        net, why = _parse_literal_addr(cidr) if isinstance(cidr, str) else (None, "not a string")
        if why:
            raise ValueError(f"hba context: intranet entry {_show(cidr)}: {why}")
        intranet.append(net)
    infra = sorted(
        {_host_cidr(ip, "infra ip") for ip in ctx.infra_ips},
        key=lambda c: (ipaddress.ip_network(c).version, ipaddress.ip_network(c)),
    )
    cluster = list(dict.fromkeys(_host_cidr(ip, "cluster ip") for ip in ctx.cluster_ips))
    return {
        "users": users,
        "pwd": ctx.pwd_enc,
        "admin": [_host_cidr(ctx.admin_ip, "admin_ip")],
        "infra": infra,
        "cluster": cluster,
        "intra": list(dict.fromkeys(intranet)),
        "world": ["0.0.0.0/0", "::/0"],
    }


_check_ctx_once = lru_cache(maxsize=4096)(_check_ctx)


def _record(conn: str, db: str, user: str, addr: str, method: str) -> str:
    w_type, w_db, w_user, w_addr = _COLS
    return f"{conn:<{w_type}} {db:<{w_db}} {user:<{w_user}} {addr:<{w_addr}} {method}"


def _expand_names(value: str, users: dict[str, str]) -> str:
    if value == "":
        return "all"
    return ",".join(users.get(item, item) for item in value.split(","))


def _rule_records(rule: Mapping, env: dict[str, Any], flavor: str) -> list[str]:
    """The hba records (without the disabled '#') of one valid rule."""
    if "rules" in rule and rule["rules"]:
        return list(rule["rules"])
    users = env["users"]
    user = _expand_names(rule.get("user", ""), users)
    db = _expand_names(rule.get("db", ""), users)
    auth = rule.get("auth", "") or "pwd"
    method, tls = AUTH_METHODS[auth]
    if method == "pwd":
        method = env["pwd"]
    if flavor == "pgbouncer":
        method = PGBOUNCER_METHOD.get(method, method)
    conn = "hostssl" if tls else "host"
    addr = rule["addr"]
    if addr == "local":
        return [_record("local", db, user, "", method)]
    if addr == "localhost":  # Pigsty: loopback TCP lines are plain host lines even for ssl auths
        return [
            _record("local", db, user, "", method),
            _record("host", db, user, "127.0.0.1/32", method),
            _record("host", db, user, "::1/128", method),
        ]
    if addr in ("intra", "intranet"):
        cidrs = env["intra"]
    elif addr in ("world", "all"):
        cidrs = env["world"]
    elif addr in ("admin", "infra", "cluster"):
        cidrs = env[addr]
    else:
        cidrs = [_parse_literal_addr(addr)[0]]
    if not cidrs:
        return []
    return [_record(conn, db, user, cidr, method) for cidr in cidrs]


def _role_enabled(role: str, ctx: HbaContext) -> bool:
    if role in ("common", "default"):
        return True
    if role == "offline" and ctx.offline_query:
        return True
    return role == ctx.role


def _header(ctx: HbaContext, env: dict[str, Any], flavor: str) -> list[str]:
    name = "pg_hba.conf (PostgreSQL)" if flavor == "postgres" else "pgb_hba.conf (pgbouncer)"
    u = env["users"]

    def listing(items: list[str]) -> str:
        return ", ".join(items) if items else "(none)"

    return [
        "#" + "=" * 70,
        f"# {name} host-based authentication rules",
        "# generated by sty from Pigsty hba rules: do not edit, changes are overwritten",
        f"# instance role: {ctx.role}, offline query: {'yes' if ctx.offline_query else 'no'}",
        "#" + "=" * 70,
        "# address aliases",
        "#   local     : unix socket",
        "#   localhost : unix socket, 127.0.0.1/32, ::1/128",
        f"#   admin     : {listing(env['admin'])}",
        f"#   infra     : {listing(env['infra'])}",
        f"#   cluster   : {listing(env['cluster'])}",
        f"#   intra     : {listing(env['intra'])}",
        "#   world     : 0.0.0.0/0, ::/0",
        "# user aliases",
        f"#   ${{dbsu}}={u['${dbsu}']}  ${{repl}}={u['${repl}']}  "
        f"${{monitor}}={u['${monitor}']}  ${{admin}}={u['${admin}']}",
        "# rules are sorted by order (default 1000); [DISABLED] rules are for other instance roles",
        "",
        "# " + _record("TYPE", "DATABASE", "USER", "ADDRESS", "METHOD"),
        "",
    ]


def render_hba(rules: list[dict], ctx: HbaContext, flavor: str = "postgres") -> str:
    """Whole file text (header comment, then rules sorted by order; lines for other roles commented out).

    Raises ValueError when the flavor, the context or any rule is invalid (see `rule_problems`).
    """
    if flavor not in FLAVORS:
        raise ValueError(f"unknown hba flavor {_show(flavor)}; use postgres or pgbouncer")
    if not isinstance(rules, (list, tuple)):
        raise ValueError(f"hba rules must be a list, got {_type_name(rules)}")
    bad = [
        f"rule [{i}]{'.' + path if path else ''}: {msg}"
        for i, rule in enumerate(rules)
        for path, msg in rule_problems(rule, flavor)
    ]
    if bad:
        raise ValueError("invalid hba rules:\n  " + "\n  ".join(bad))
    env = _checked_ctx(ctx)

    lines = _header(ctx, env, flavor)
    ordered = sorted(rules, key=lambda r: r.get("order", DEFAULT_ORDER))  # stable on ties
    for rule in ordered:
        role = rule.get("role", "") or "common"
        enabled = _role_enabled(role, ctx)
        title = " ".join(rule.get("title", "").split())  # one line, no trailing backslash
        comment = f"# {title} [{role}]" if title else f"# [{role}]"
        if not enabled:
            comment += " [DISABLED]"
        lines.append(comment)
        records = _rule_records(rule, env, flavor)
        if not records:
            lines.append(f"# (addr {rule['addr']!r} has no addresses: nothing to allow)")
        lines.extend(r if enabled else "#" + r for r in records)
        lines.append("")

    for line in lines:  # last line of defence: one record per line, nothing continues a line
        if "\n" in line or "\r" in line or line.rstrip().endswith("\\"):
            raise ValueError(f"refusing to write unsafe hba line {_show(line)}")
    return "\n".join(lines).rstrip("\n") + "\n"
