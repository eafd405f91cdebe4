"""PGSQL: what a changed PostgreSQL bundle needs beyond its units, always through Patroni.

Cluster-wide steps (DCS configuration, SQL, the pgBackRest stanza, rolling restarts) run once, on the
member that is primary in the bundle, after Patroni reports it as leader. Primaries change first.
"""

from __future__ import annotations

import json
import shlex

import yaml

from sty.contract.manifest import Manifest
from sty.contract.targets import sort_hosts

from . import HostContext, ModuleHandlers

PATRONI_CONF = "/etc/patroni/patroni.yml"
LEADER_TIMEOUT = 180.0


def _pg(host: HostContext) -> dict:
    return host.manifest.identity.get("pgsql", {})


def _is_primary(host: HostContext) -> bool:
    return _pg(host).get("role") == "primary"


def _dbsu(host: HostContext) -> str:
    return shlex.quote(_pg(host).get("dbsu", "postgres"))


def wait_leader(host: HostContext, timeout: float = LEADER_TIMEOUT) -> None:
    url = f"http://{host.ip}:{host.manifest.port_of('patroni', 8008)}/primary"
    host.wait(lambda: host.run(f"curl -fsS -o /dev/null {url}", check=False).exited == 0, timeout, url)


def patroni_reload(host: HostContext, module: str) -> None:
    host.run("systemctl reload patroni.service")


def dcs_config(host: HostContext, module: str) -> None:
    """Push bootstrap.dcs to the running cluster, once per cluster, from its primary."""
    if not _is_primary(host):
        return
    doc = yaml.safe_load(host.desired[PATRONI_CONF])
    wait_leader(host)
    stage = "/var/lib/sty/stage/dcs.json"
    host.run(f"cat > {stage}", stdin=json.dumps(doc["bootstrap"]["dcs"], sort_keys=True))
    host.run(f"patronictl -c {PATRONI_CONF} edit-config --force --replace {stage}")


def sql_on_primary(host: HostContext, module: str) -> None:
    if not _is_primary(host):
        return
    wait_leader(host)
    for entry in host.manifest.files_of(module):
        if any(a.action == "pg-sql-primary" for a in entry.actions):
            host.run(
                f"runuser -u {_dbsu(host)} -- psql -X -q -v ON_ERROR_STOP=1 -d postgres -f {shlex.quote(entry.path)}",
                timeout=600,
            )


def stanza(host: HostContext, module: str) -> None:
    if not _is_primary(host):
        return
    wait_leader(host)
    name, dbsu = shlex.quote(_pg(host)["cluster"]), _dbsu(host)
    host.run(f"runuser -u {dbsu} -- pgbackrest --stanza={name} stanza-create", timeout=600)
    if _pg(host).get("init_backup"):
        info = host.run(f"runuser -u {dbsu} -- pgbackrest --stanza={name} info", check=False)
        if "status: error (no valid backups)" in info.stdout:
            host.run(f"runuser -u {dbsu} -- pgbackrest --stanza={name} --type=full backup", timeout=3600)


def rolling_restart(host: HostContext, module: str) -> None:
    if not _is_primary(host):
        return
    wait_leader(host)
    host.run(f"patronictl -c {PATRONI_CONF} restart --force --pending {shlex.quote(_pg(host)['cluster'])}", timeout=900)


def primaries_first(manifests: dict[str, Manifest]) -> list[list[str]]:
    """The first bootstrap needs the primary up; replicas follow in one wave."""
    primaries = [ip for ip, m in manifests.items() if m.identity.get("pgsql", {}).get("role") == "primary"]
    return [sort_hosts(primaries), sort_hosts(set(manifests) - set(primaries))]


HANDLERS = ModuleHandlers(
    "pgsql",
    {
        "patroni-reload": patroni_reload,
        "patroni-dcs-config": dcs_config,
        "pg-sql-primary": sql_on_primary,
        "pgbackrest-stanza": stanza,
        "pg-rolling-restart": rolling_restart,
    },
    primaries_first,
)
