"""`sty show` and `sty explain`: what a host gets and what a parameter means."""

from __future__ import annotations

import click

from .common import FACTS, INVENTORY, compile_inventory, fail_usage
from .group import main


@main.command()
@INVENTORY
@FACTS
@click.argument("host")
def show(inventory, facts_dir, host):
    """Effective parameters of HOST as YAML (secrets masked)."""
    from sty.compiler.render import to_yaml

    compiled = compile_inventory(inventory, facts_dir, False)
    h = compiled.fleet.hosts.get(host)
    if h is None:
        fail_usage(f"host '{host}' is not in {inventory}")
    params = h.params.effective()
    reg = compiled.fleet.registry
    for name in params:
        spec = reg.get(name)
        if spec is not None:
            params[name] = _mask(spec, params[name])
    click.echo(to_yaml({"host": host, "modules": h.modules, "groups": h.groups, "parameters": params}), nl=False)


def _mask(spec, value):
    """Hide secret values, including secret fields of list items and secret mapping values."""
    if spec.secret:
        return "<secret>" if value else value
    if spec.secret_values and isinstance(value, dict):
        return {k: "<secret>" for k in value}
    if spec.secret_fields:
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        masked = []
        for item in items:
            if isinstance(item, dict):
                item = {k: ("<secret>" if k in spec.secret_fields and v else v) for k, v in item.items()}
            masked.append(item)
        return dict(zip(value, masked, strict=True)) if isinstance(value, dict) else masked
    return value


@main.command()
@click.argument("param")
def explain(param):
    """Type, default, description and module of a parameter."""
    from sty.compiler.render import to_yaml
    from sty.compiler.schema import registry

    reg = registry()
    spec = reg.get(param)
    if spec is None:
        module = reg.unrendered_module(param)
        if module:
            click.echo(f"{param}: a parameter of the {module} module, which sty accepts but does not render")
            return
        hint = reg.suggest(param)
        fail_usage(f"unknown parameter '{param}'" + (f"; did you mean '{hint}'?" if hint else ""))
    out = {
        "parameter": param,
        "module": spec.module,
        "type": spec.type_name,
        "description": spec.description,
    }
    if spec.has_default:
        out["default"] = spec.default
    if spec.secret or spec.secret_fields:
        out["secret"] = True if spec.secret else list(spec.secret_fields)
    for key in ("enum", "pattern", "minimum", "maximum"):
        if key in spec.schema:
            out[key] = spec.schema[key]
    click.echo(to_yaml(out), nl=False)
