"""`sty show`, `sty explain` and `sty schema`: what a host gets, what a parameter (a field of one, a PostgreSQL
setting) means, and the inventory schema editors read. Everything comes from the schemas in schemas/."""

from __future__ import annotations

import fnmatch
import re
import sys
from typing import Any

import click

from sty.contract.exits import Exit

from .common import FACTS, INVENTORY, compile_inventory, fail_os, fail_usage, print_report
from .group import main

MASK = "<secret>"
# parameters no schema describes (Ansible's, unrendered modules') whose name says they hold a secret
SECRET_NAME = re.compile(r"pass|secret|token|credential", re.I)


# -- shell completion: cheap, and silent on any problem (a completion must never print an error) ------------


def _complete_param(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from sty.compiler.schema import registry

    return [name for name in sorted(registry().params) if name.startswith(incomplete)]


def _complete_host(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from sty.compiler.loader import load_inventory

    try:
        hosts = load_inventory(ctx.params.get("inventory") or "pigsty.yml").hosts
    except Exception:  # an unreadable or invalid inventory completes nothing
        return []
    return [h for h in hosts if h.startswith(incomplete)]


# -- sty show ---------------------------------------------------------------------------------------------


@main.command()
@INVENTORY
@FACTS
@click.option("--set", "only_set", is_flag=True, help="Only parameters the inventory sets (no schema defaults).")
@click.option("--source", "sources", is_flag=True, help="Add `sources:`, where each value comes from.")
@click.argument("host", shell_complete=_complete_host)
@click.argument("names", metavar="[PARAM]...", nargs=-1, shell_complete=_complete_param)
def show(inventory, facts_dir, only_set, sources, host, names):
    """Effective parameters of HOST as YAML (secrets masked).

    PARAM (a name or a shell pattern such as 'pg_*') limits the output to those parameters; --source adds
    `sources:`, the vars block each value comes from (its inventory path) or `default` (the schema's)."""
    from sty.compiler.errors import InventoryError
    from sty.compiler.render import to_yaml

    compiled = compile_inventory(inventory, facts_dir, False)
    h = compiled.fleet.hosts.get(host)
    if h is None:
        fail_usage(f"host '{host}' is not in {inventory}")
    reg = compiled.fleet.registry
    selected = _select(sorted(h.params), names, host, reg)
    if only_set:
        selected = [name for name in selected if h.params.is_set(name)]
    try:
        params = {name: _masked(reg.get(name), name, h.params[name]) for name in selected}
    except InventoryError as exc:  # a placeholder that cannot expand
        print_report(exc.report)
        sys.exit(Exit.INVALID)
    out: dict[str, Any] = {"host": host, "modules": h.modules, "groups": h.groups, "parameters": params}
    if sources:
        out["sources"] = {name: h.params.origin(name) or "default" for name in selected}
    click.echo(to_yaml(out), nl=False)


def _select(available: list[str], patterns: tuple[str, ...], host: str, reg) -> list[str]:
    """The parameters PARAM names or patterns pick; one that picks nothing is a usage error with a hint."""
    if not patterns:
        return available
    picked: set[str] = set()
    for pattern in patterns:
        found = fnmatch.filter(available, pattern)
        if not found:
            hint = reg.suggest(pattern)
            fail_usage(f"no parameter of {host} matches '{pattern}'" + (f"; did you mean '{hint}'?" if hint else ""))
        picked.update(found)
    return sorted(picked)


def _masked(spec, name: str, value: Any) -> Any:
    if spec is None:
        return MASK if value and SECRET_NAME.search(name) else value
    return _mask(spec, value)


def _mask(spec, value):
    """Hide secret values: the whole value, every value of a secret mapping, or secret fields at any depth."""
    if spec.secret:
        return MASK if value else value
    if spec.secret_values and isinstance(value, dict):
        return dict.fromkeys(value, MASK)
    if spec.secret_fields:
        return _mask_fields(value, frozenset(spec.secret_fields))
    return value


def _mask_fields(value: Any, fields: frozenset[str]) -> Any:
    if isinstance(value, list):
        return [_mask_fields(v, fields) for v in value]
    if isinstance(value, dict):
        return {k: (MASK if k in fields and v else _mask_fields(v, fields)) for k, v in value.items()}
    return value


# -- sty explain ------------------------------------------------------------------------------------------


@main.command()
@click.argument("name", metavar="PARAM", required=False, shell_complete=_complete_param)
@click.option(
    "--search", "word", metavar="WORD", default=None, help="List parameters whose name or description has WORD."
)
def explain(name, word):
    """What PARAM means: type, default, description, module, the fields of its items.

    PARAM may name a field (pg_users.pgbouncer, pg_databases.extensions.name) or a PostgreSQL setting
    (max_connections): sty says how to set it and when a change takes effect."""
    from sty.compiler.render import to_yaml
    from sty.compiler.schema import registry

    reg = registry()
    if word is not None:
        if name:
            fail_usage("give PARAM or --search WORD, not both")
        click.echo(_search(reg, word), nl=False)
        return
    if not name:
        fail_usage("give a parameter to explain, or --search WORD")
    param, _, rest = name.partition(".")
    spec = reg.get(param)
    if spec is not None:
        click.echo(to_yaml(_explain_field(spec, name, rest.split(".")) if rest else _explain_param(spec)), nl=False)
        return
    module = reg.unrendered_module(name)
    if module:
        click.echo(f"{name}: a parameter of the {module} module, which sty accepts but does not render")
        return
    hint = reg.suggest(param) if rest else None  # pg_user.name: a typo, not an extension's setting
    setting = None if hint else _explain_setting(reg, name)
    if setting is None:
        hint = reg.suggest(param) or _setting_hint(reg, name)
        fail_usage(
            f"'{name}' is neither a parameter nor a PostgreSQL setting" + (f"; did you mean '{hint}'?" if hint else "")
        )
    click.echo(to_yaml(setting), nl=False)


def _explain_param(spec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "parameter": spec.name,
        "module": spec.module,
        "type": spec.type_name,
        "description": spec.description,
    }
    if spec.has_default:
        out["default"] = _mask(spec, spec.default)
    if spec.secret or spec.secret_fields:
        out["secret"] = True if spec.secret else list(spec.secret_fields)
    out.update(_limits(spec.schema))
    node, kind = _container(spec.schema, spec.defs)
    if kind:  # a list's items or a mapping's values
        out[kind] = _summary(node, spec.defs)
    fields = _fields(node, spec.defs, spec.secret_fields)
    if fields:
        out["fields"] = fields
    examples = spec.schema.get("examples")
    sample = examples[0] if examples else spec.default
    if kind == "item" and isinstance(sample, list) and sample:
        out["example"] = _mask(spec, sample[:1])[0]
    elif examples and isinstance(sample, dict):
        out["example"] = _mask(spec, sample)
    elif examples and not spec.secret:
        out["examples"] = examples
    return out


def _explain_field(spec, name: str, path: list[str]) -> dict[str, Any]:
    """One field of a parameter's items or values, at any depth (pg_users.roles.name)."""
    node: Any = spec.schema
    required = False
    for depth, seg in enumerate(path):
        holder, kind = _container(node, spec.defs)
        props = holder.get("properties", {})
        if seg in props:
            node, required = props[seg], seg in holder.get("required", [])
        elif kind == "value":  # a mapping keyed by names or ports (redis_instances.6379)
            node, required = holder, False
        else:
            where = ".".join([spec.name, *path[:depth]])
            close = _close(seg, list(props))
            fail_usage(f"{where} has no field '{seg}'" + (f"; did you mean '{close}'?" if close else ""))
    node = _deref(node, spec.defs)
    secret = spec.secret or spec.secret_values or any(seg in spec.secret_fields for seg in path)
    out: dict[str, Any] = {
        "field": name,
        "parameter": spec.name,
        "module": spec.module,
        "type": _type(node, spec.defs),
        "description": node.get("description", ""),
    }
    if required:
        out["required"] = True
    if secret:
        out["secret"] = True
    out.update(_limits(node))
    inner, kind = _container(node, spec.defs)
    if kind:
        out[kind] = _summary(inner, spec.defs)
    fields = _fields(inner, spec.defs, spec.secret_fields)
    if fields:
        out["fields"] = fields
    examples = spec.schema.get("examples")
    sample = _dig(examples[0] if examples else spec.default, path)
    if sample is not None and not secret:
        out["example"] = _mask_fields(sample, frozenset(spec.secret_fields))
    return out


def _search(reg, word: str) -> str:
    """`name: (module, type) description` for each parameter whose name or description holds `word`."""
    from sty.compiler.render import to_yaml

    needle = word.lower()
    hits = {
        n: f"({s.module}, {s.type_name}) {s.description}"
        for n, s in reg.params.items()
        if needle in n.lower() or needle in s.description.lower()
    }
    if not hits:
        click.echo(f"no parameter's name or description contains '{word}'", err=True)
        return ""
    return to_yaml(hits)


# -- PostgreSQL settings ----------------------------------------------------------------------------------

EFFECT = {
    "postmaster": "at a restart (sty diff announces a rolling restart of the cluster)",
    "sighup": "at a reload, which Patroni performs",
    "superuser": "at a reload; a superuser may also SET it per session",
    "user": "at a reload; any session may also SET it",
    "backend": "at a reload, for sessions that start afterwards",
    "superuser-backend": "at a reload, for sessions that start afterwards",
    "internal": "never: it is fixed when PostgreSQL is built or initialised",
}
EXTENSION_SETTING = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_.]*")


def _explain_setting(reg, name: str) -> dict[str, Any] | None:
    """A PostgreSQL setting: set through pg_parameters (over what the pg_conf template computes), with its
    context in the default major. None when `name` is no setting."""
    from sty.compiler.modules.pgsql import pg_settings, tuning
    from sty.compiler.modules.pgsql.rules import SET_BY_STY

    major = int(reg.params["pg_version"].default)
    if EXTENSION_SETTING.fullmatch(name):  # an extension's prefix.name: its library defines it when it loads
        return {
            "setting": name,
            "kind": "a setting of a PostgreSQL extension (its library defines it when it loads)",
            "set_with": f"pg_parameters, e.g. `pg_parameters: {{{name}: ...}}`, once the library is in pg_libs",
        }
    context = pg_settings.context(major, name)
    if context is None:
        return None
    out: dict[str, Any] = {
        "setting": name,
        "kind": "a PostgreSQL setting, not an inventory parameter",
        "set_with": f"pg_parameters, e.g. `pg_parameters: {{{name}: ...}}` in a cluster's vars",
        "context": f"{context} (PostgreSQL {major}, pg_version's default)",
        "takes_effect": EFFECT.get(context, context),
    }
    if name in SET_BY_STY:
        out["set_with"] = f"the parameter {SET_BY_STY[name]}; pg_parameters may not set it"
    elif name in tuning.PATRONI_OWNED:
        out["set_with"] = "nothing: Patroni sets it itself, and pg_parameters may not"
    elif name in tuning.DCS_PARAMETER_NAMES:
        out["scope"] = "cluster-wide: Patroni keeps it in the DCS, the same on every member"
    conf = str(reg.params["pg_conf"].default)
    if name in _template_settings(conf, major):
        out["pg_conf"] = f"the {conf} template (pg_conf's default) computes it; pg_parameters overrides that"
    # PGSQL parameters that name it (pg_max_conn: "max_connections, or auto ..."); a bare word such as `port`
    # appears in too many descriptions to point anywhere
    word = re.compile(rf"\b{re.escape(name)}\b")
    related = sorted(
        n for n, s in reg.params.items() if "_" in name and s.module == "pgsql" and word.search(s.description)
    )
    if related:
        out["parameters"] = related
    return out


def _template_settings(conf: str, major: int) -> set[str]:
    """The settings the pg_conf template writes, for the default facts (2 CPUs, 4 GiB, 100 GiB)."""
    from sty.compiler.modules.pgsql import tuning

    try:
        profile = tuning.profile_name(conf)
        res = tuning.HostResources(2, 4096, 100)
        names = tuning.postgres_parameters(profile, res, pg_version=major).keys()
        return set(names) | set(tuning.dcs_parameters(profile, res, pg_version=major))
    except ValueError:
        return set()


def _setting_hint(reg, name: str) -> str | None:
    from sty.compiler.modules.pgsql import pg_settings

    return pg_settings.closest(int(reg.params["pg_version"].default), name)


# -- walking a parameter's schema -------------------------------------------------------------------------


def _deref(node: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The schema a `$ref` into the module's `$defs` names, with the referring node's own keywords."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        target = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node if isinstance(node, dict) else {}


def _container(node: Any, defs: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(the schema whose fields a value holds, how): the value itself (""), its list items ("item") or its
    mapping values ("value")."""
    node = _deref(node, defs)
    if "properties" in node:
        return node, ""
    if isinstance(node.get("items"), dict):
        return _deref(node["items"], defs), "item"
    if isinstance(node.get("additionalProperties"), dict):
        return _deref(node["additionalProperties"], defs), "value"
    return node, ""


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    kinds = node.get("type")
    if kinds is None:
        alternatives = node.get("anyOf") or node.get("oneOf") or []
        kinds = [a.get("type") or ("const" if "const" in a else "object") for a in alternatives]
    text = " or ".join(dict.fromkeys(kinds)) if isinstance(kinds, list) else str(kinds or "any")
    items = node.get("items")
    if isinstance(items, dict) and "array" in text:
        ref = items.get("$ref")
        inner = ref.rsplit("/", 1)[-1] if isinstance(ref, str) else _type(_deref(items, defs), defs)
        text = text.replace("array", f"array of {inner}", 1)
    return text


def _limits(node: dict[str, Any]) -> dict[str, Any]:
    return {k: node[k] for k in ("enum", "pattern", "minimum", "maximum") if k in node}


def _summary(node: dict[str, Any], defs: dict[str, Any]) -> str:
    """`type: description` of a list's items or a mapping's values."""
    description = node.get("description")
    return f"{_type(node, defs)}: {description}" if description else _type(node, defs)


def _fields(node: dict[str, Any], defs: dict[str, Any], secret: tuple[str, ...] = ()) -> dict[str, str]:
    """Each field of an object schema as one line: type, required, secret, allowed values, then the description."""
    required = set(node.get("required", []))
    out = {}
    for field, sub in node.get("properties", {}).items():
        sub = _deref(sub, defs)
        notes = [_type(sub, defs)]
        if field in required:
            notes.append("required")
        if field in secret:
            notes.append("secret (keep it in secrets.yml)")
        if "enum" in sub:
            notes.append("one of " + " | ".join(map(str, sub["enum"])))
        line = ", ".join(notes)
        out[field] = f"{line}: {sub['description']}" if sub.get("description") else line
    return out


def _dig(value: Any, path: list[str]) -> Any:
    """The value at `path` in an example, looking through list items for the first that has it."""
    if not path:
        return value
    if isinstance(value, list):
        return next((found for item in value if (found := _dig(item, path)) is not None), None)
    if isinstance(value, dict) and path[0] in value:
        return _dig(value[path[0]], path[1:])
    return None


def _close(word: str, names: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return found[0] if found else None


# -- sty schema -------------------------------------------------------------------------------------------


@main.command()
@click.option("-o", "--output", "path", default=None, type=click.Path(dir_okay=False), help="Write to FILE.")
def schema(path):
    """The inventory's JSON Schema (draft-07) for editors: every parameter with its type, default and description.

    The shipped copy is schemas/editor/pigsty-inventory.schema.json; name it in an inventory's first line:
    `# yaml-language-server: $schema=schemas/editor/pigsty-inventory.schema.json`."""
    from sty.compiler.editor_schema import EditorSchemaError, render

    try:
        text = render()
    except EditorSchemaError as exc:
        fail_usage(str(exc), Exit.FAILED)
    if path is None:
        click.echo(text, nl=False)
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        fail_os(exc)
