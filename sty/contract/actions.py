"""The activation vocabulary: what a changed file asks the apply stage to do, declared once.

Unit actions (`start`, `reload`, `restart`) name a systemd unit; module actions belong to the fleet module
whose apply handler carries them out (`module`), and `impact` says what a reviewer should know from the
plan: does it restart a service, reload one, or run something?
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSpec:
    name: str
    impact: str  # none | reload | restart | run
    description: str
    module: str | None = None  # the module whose apply handler performs it; None = the apply stage itself
    takes_unit: bool = False
    # how the plan names it, formatted with the host's manifest identity; the changed keys of the file that
    # carries it follow (`rolling restart of pg-test: max_connections`)
    plan: str | None = None
    # False: the action is due when its file changes, not when the file is installed for the first time (a
    # rolling restart for settings a freshly started PostgreSQL already runs with would restart for nothing)
    on_first_install: bool = True


ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec("none", "none", "nothing to do"),
        ActionSpec("daemon-reload", "reload", "systemctl daemon-reload"),
        ActionSpec("start", "restart", "enable and start a unit that is not running", takes_unit=True),
        ActionSpec("reload", "reload", "reload a unit", takes_unit=True),
        ActionSpec("restart", "restart", "restart a unit", takes_unit=True),
        ActionSpec("patroni-reload", "reload", "Patroni re-reads its file and reloads PostgreSQL", "pgsql"),
        ActionSpec("patroni-dcs-config", "reload", "change the cluster-wide DCS configuration", "pgsql"),
        ActionSpec(
            "pg-rolling-restart",
            "restart",
            "restart PostgreSQL replicas first, then switch over and restart the old primary",
            "pgsql",
            plan="rolling restart of {pgsql[cluster]}",
            on_first_install=False,
        ),
        ActionSpec("pg-sql-primary", "run", "run SQL on the cluster primary", "pgsql"),
        ActionSpec(
            "pgbackrest-stanza", "run", "create the pgBackRest stanza on the primary (and a first full backup)", "pgsql"
        ),
        ActionSpec("redis-cluster-create", "run", "create the native Redis cluster once all members run", "redis"),
        ActionSpec("minio-provision", "run", "create MinIO buckets, users and policies", "minio"),
        ActionSpec(
            "etcd-auth", "run", "keep etcd's root user, authentication and one user per PostgreSQL cluster", "etcd"
        ),
    )
}
UNIT_ACTIONS = frozenset(name for name, spec in ACTIONS.items() if spec.takes_unit)
MODULE_ACTIONS = tuple(name for name, spec in ACTIONS.items() if spec.module)


@dataclass(frozen=True, order=True)
class Action:
    """One action a file's change requires (`restart haproxy.service`, `patroni-reload`)."""

    action: str
    unit: str | None = None

    def __post_init__(self) -> None:
        spec = ACTIONS.get(self.action)
        if spec is None:
            raise ValueError(f"unknown action '{self.action}' (known: {', '.join(ACTIONS)})")
        if spec.takes_unit != (self.unit is not None):
            raise ValueError(f"action {self.action} {'needs' if spec.takes_unit else 'takes no'} unit")

    @property
    def spec(self) -> ActionSpec:
        return ACTIONS[self.action]

    def as_dict(self) -> dict[str, str]:
        return {"action": self.action, **({"unit": self.unit} if self.unit else {})}

    @classmethod
    def from_dict(cls, data: dict) -> Action:
        return cls(str(data.get("action")), data.get("unit"))

    def __str__(self) -> str:
        return f"{self.action} {self.unit}" if self.unit else self.action


def restart(unit: str) -> Action:
    return Action("restart", unit)


def reload(unit: str) -> Action:
    return Action("reload", unit)


DAEMON_RELOAD = Action("daemon-reload")
