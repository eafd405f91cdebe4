"""Secret values: where they come from, and the git-ignored store the apply stage reads.

Bundles carry `<<secret:NAME>>` placeholders; NAME is scoped (`pg-test/pg_admin_password`,
`pg-test/pg_users/dbuser_meta/password`). Values come from, in order: `secrets.yml` next to the
inventory (by scoped name, then by the name without its scope), then the inventory itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from sty.contract.store import read_store, scram_verifier, store_dir, write_store

from .errors import Report

__all__ = ["PUBLISHED_DEFAULTS", "load_overrides", "pick", "read_store", "scram_verifier", "store_dir", "write_store"]


# Values Pigsty publishes in its docs and templates; a fleet still using one is warned about.
PUBLISHED_DEFAULTS = {
    "DBUser.DBA",
    "DBUser.Monitor",
    "DBUser.Replicator",
    "DBUser.Meta",
    "DBUser.Viewer",
    "Patroni.API",
    "Etcd.Root",
    "S3User.MinIO",
    "S3User.Backup",
    "S3User.Meta",
    "S3User.Data",
    "pigsty",
    "pgBackRest",
}


def load_overrides(inventory: Path, report: Report) -> tuple[dict[str, str], str]:
    """`secrets.yml` beside the inventory: {scoped-or-bare-name: value}; returns values and a digest."""
    path = inventory.parent / "secrets.yml"
    if not path.exists():
        return {}, ""
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        report.error(str(path), f"cannot parse the secrets file: {exc}")
        return {}, ""
    if not isinstance(data, dict):
        report.error(str(path), "the secrets file must map secret names to values")
        return {}, ""
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, (dict, list)) or value is None:
            report.error(f"{path}:{key}", "a secret value must be a string or a number")
            continue
        out[str(key)] = str(value)
    return out, hashlib.sha256(raw).hexdigest()


def pick(name: str, inventory_value: Any, overrides: dict[str, str]) -> str:
    if name in overrides:
        return overrides[name]
    bare = name.split("/", 1)[1] if "/" in name else name
    if bare in overrides:
        return overrides[bare]
    return "" if inventory_value is None else str(inventory_value)
