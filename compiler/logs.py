"""The log-source contract: how a module hands its logs to the node's log agent without knowing NODE.

NODE owns /etc/vector/vector.yaml (serialised from data) and composes it from fragments of the host's bundle
contributed to `VECTOR_CONFIG`. A module hands in its log sources with `contribute_logs(b, host, module, {...})`:

    {
        "<log id>": {                     # [a-z][a-z0-9_]*, unique on the host; becomes the `src` field
            "job": "postgres",            # required: `job` unless the remap sets it (Pigsty's values: syslog
                                          # postgres patroni pgbackrest nginx redis ...)
            "ins": "pg-test-1",           # optional: `ins` unless the remap sets it (default: nodename)
            "cls": "pg-test",             # optional: `cls` unless the remap sets it (default: node_cluster)
            "source": {"type": "file", "include": ["/pg/log/postgres/*.csv"]},  # a vector source: file | journald
            "remap": "<VRL>",             # optional: parses the raw event (sets .message, ._time, .level ...)
        },
    }

`contribute_logs` does nothing where vector_enabled is false (a contribution to a file nobody owns would be an
error). NODE's composer reads the fragments back as `LogSource`s with `log_sources`, which enforces the contract
(violations are programming errors, raised): each becomes a source `<id>_raw` (file sources get `read_from`
from vector_read_from, journald sources `since_now` and `current_boot_only`), a remap transform `<id>_logs`
(journald events shaped as Pigsty's syslog, the module's VRL, then ip/src and the job/ins/cls/_time the VRL did
not set) feeding one http sink per VictoriaLogs receiver. The labels are those Pigsty's vector config writes,
since Pigsty's log dashboards query them: a module whose sources differ in Pigsty's `job` sets it in each VRL.
The system journal is one source (`syslog`, job syslog) shipped whole, as Pigsty ships it; a journald
contribution (`include_units`) is an additional, parsed stream of those units.

This lives in the core, not in NODE, so that the modules that ship logs (INFRA, ETCD, PGSQL, REDIS ...) depend
on the contract only; the path of the file is part of the contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .bundle import Contribution, HostBundle

__all__ = [
    "LOG_ID",
    "LOG_SOURCE_TYPES",
    "LOG_SPEC_KEYS",
    "VECTOR_CONFIG",
    "LogSource",
    "contribute_logs",
    "log_sources",
]

VECTOR_CONFIG = "/etc/vector/vector.yaml"
LOG_ID = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
LOG_SOURCE_TYPES = ("file", "journald")
LOG_SPEC_KEYS = frozenset({"job", "ins", "cls", "source", "remap"})


def contribute_logs(b: HostBundle, host: Any, module: str, logs: dict[str, Any]) -> None:
    """Hand a module's log sources (the contract above) to the host's vector.yaml; nothing when vector is
    disabled there (a contribution to a file nobody owns would be an error)."""
    if host.params.get("vector_enabled"):
        b.contribute(VECTOR_CONFIG, module, module, logs)


@dataclass
class LogSource:
    """One contributed log source, checked: what the composer turns into a source and a remap."""

    id: str
    module: str
    job: str
    source: dict[str, Any]
    ins: str | None = None
    cls: str | None = None
    remap: str = ""


def log_sources(fragments: list[Contribution]) -> dict[str, LogSource]:
    """The contributed log sources, checked against the contract (violations are programming errors)."""
    found: dict[str, LogSource] = {}
    for fragment in fragments:
        if not isinstance(fragment.data, dict):
            raise RuntimeError(f"{fragment.module}: a vector contribution maps log ids to log sources")
        for log_id, spec in fragment.data.items():
            where = f"{fragment.module}: vector log source {log_id!r}"
            if not isinstance(log_id, str) or not LOG_ID.match(log_id):
                raise RuntimeError(f"{where}: a log id matches {LOG_ID.pattern}")
            if log_id in found:
                raise RuntimeError(f"{where} is also contributed by {found[log_id].module}")
            if not isinstance(spec, dict) or set(spec) - LOG_SPEC_KEYS:
                raise RuntimeError(f"{where}: only the keys {', '.join(sorted(LOG_SPEC_KEYS))} are understood")
            source = spec.get("source")
            if not spec.get("job") or not isinstance(source, dict):
                raise RuntimeError(f"{where}: `job` and `source` are required")
            if source.get("type") not in LOG_SOURCE_TYPES:
                raise RuntimeError(f"{where}: source type must be one of {', '.join(LOG_SOURCE_TYPES)}")
            if source["type"] == "file" and not source.get("include"):
                raise RuntimeError(f"{where}: a file source needs `include`")
            found[log_id] = LogSource(
                log_id,
                fragment.module,
                str(spec["job"]),
                dict(source),
                spec.get("ins"),
                spec.get("cls"),
                str(spec.get("remap") or ""),
            )
    return found
