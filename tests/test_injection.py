"""Values that reach a text format cannot inject a second directive: the schema or the render filters
reject them (exit 2, `error: <inventory path>: …`, nothing written), or they are escaped so that the file
keeps exactly the directives it had. One test per format: HAProxy, nginx, pg_hba, pgbouncer
(database.txt, userlist.txt, useropts.txt), dnsmasq and /etc/hosts, chrony, sysctl, systemd units and
the EnvironmentFiles they read.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import shipped_inventory

from sty.cli import main

HOST = "10.10.10.11"
INJECT = "\n    bind *:1"  # a second directive on its own line


def build(tmp_path: Path, mutate) -> tuple[int, str, Path]:
    inv = shipped_inventory()
    mutate(inv)
    (tmp_path / "inv.yml").write_text(yaml.safe_dump(inv, sort_keys=False, allow_unicode=True))
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = CliRunner().invoke(main, ["build", "-q", "-i", "inv.yml", "-o", "out"])
    finally:
        os.chdir(old)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stderr, tmp_path / "out"


def rejected(tmp_path: Path, mutate, path_prefix: str) -> str:
    code, err, out = build(tmp_path, mutate)
    assert code == 2, f"accepted (exit {code}):\n{err}"
    unlocated = (re.sub(r"^\S+:\d+:\d+: ", "", line) for line in err.splitlines())  # drop file:line:column
    errors = [line for line in unlocated if line.startswith("error: ")]
    assert any(line.startswith(f"error: {path_prefix}") for line in errors), err
    assert not out.exists(), "a rejected build wrote outputs"
    return err


def V(inv):
    return inv["all"]["vars"]


def TEST(inv):
    return inv["all"]["children"]["pg-test"]["vars"]


SERVERS = [{"name": "s1", "ip": "10.10.10.11", "port": 5432}]


# --------------------------------------------------------------------------------------------------
# HAProxy
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "service",
    [
        {"name": "svc" + INJECT, "port": 9999, "servers": SERVERS},
        {"name": "svc", "port": 9999, "options": ["option httpchk" + INJECT], "servers": SERVERS},
        {"name": "svc", "port": 9999, "servers": [{**SERVERS[0], "options": "check" + INJECT}]},
        {"name": "svc", "port": 9999, "balance": "roundrobin" + INJECT, "servers": SERVERS},
    ],
    ids=["name", "option", "server-options", "balance"],
)
def test_haproxy_services_cannot_inject(tmp_path, service):
    # a name is refused by its pattern where it is set; the other fields when the host's file is rendered
    where = "all.vars.haproxy_services[0].name" if service["name"] != "svc" else "all.children."
    rejected(tmp_path, lambda inv: V(inv).update(haproxy_services=[service]), where)


@pytest.mark.parametrize("field", ["name", "options", "check"])
def test_pg_services_cannot_inject_into_haproxy(tmp_path, field):
    value = {"name": "standby", "options": "inter 1s", "check": "/sync HTTP/1.1\r\nHost: x"}[field]
    rejected(tmp_path, lambda inv: TEST(inv)["pg_services"][0].update({field: value + INJECT}), "all.children.pg-test")


# --------------------------------------------------------------------------------------------------
# nginx (infra portal)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry,where",
    [
        ({"domain": "x.pigsty; include /etc/passwd", "endpoint": "10.10.10.10:3000"}, "all.vars.infra_portal.x.domain"),
        ({"domain": "x.pigsty\n    location / { }", "endpoint": "10.10.10.10:3000"}, "all.vars.infra_portal.x.domain"),
        ({"domain": "x.pigsty", "endpoint": "10.10.10.10:3000; return 200"}, "all.vars.infra_portal.x.endpoint"),
    ],
    ids=["domain-semicolon", "domain-newline", "endpoint-semicolon"],
)
def test_nginx_portal_cannot_inject(tmp_path, entry, where):
    rejected(tmp_path, lambda inv: V(inv)["infra_portal"].update(x=entry), where)


# --------------------------------------------------------------------------------------------------
# pg_hba.conf (and pgbouncer's pgb_hba.conf, rendered by the same code)
# --------------------------------------------------------------------------------------------------

TRUST_ALL = "host all all 0.0.0.0/0 trust"


@pytest.mark.parametrize(
    "rule,field",
    [
        ({"user": "all", "db": "all", "addr": "intra", "auth": "pwd", "title": "x\n" + TRUST_ALL}, "title"),
        ({"user": "a all 0.0.0.0/0 trust", "db": "all", "addr": "intra", "auth": "pwd"}, "user"),
        ({"user": "all", "db": "all\n" + TRUST_ALL, "addr": "intra", "auth": "pwd"}, "db"),
        ({"user": "all", "db": "all", "addr": "intra", "auth": "pwd\n" + TRUST_ALL}, "auth"),
        ({"title": "t", "rules": ["host all all 10.0.0.0/8 scram-sha-256\n" + TRUST_ALL]}, "rules[0]"),
    ],
    ids=["title", "user-spaces", "db", "auth", "raw-rule"],
)
@pytest.mark.parametrize("param", ["pg_hba_rules", "pgb_hba_rules"])
def test_hba_rules_cannot_inject(tmp_path, rule, field, param):
    rejected(tmp_path, lambda inv: TEST(inv).update({param: [rule]}), f"all.children.pg-test.vars.{param}[0]")


def test_hba_title_is_escaped_as_a_comment(tmp_path):
    """What the title may contain ('#', quotes, non-ASCII) stays in its comment line."""
    rule = {"user": "all", "db": "all", "addr": "intra", "auth": "pwd", "title": "ok # \"x\" 'y' é host all all trust"}
    code, err, out = build(tmp_path, lambda inv: TEST(inv).update(pg_hba_rules=[rule]))
    assert code == 0, err
    text = (out / HOST / "pg/conf/pg_hba.conf").read_text()
    assert not [line for line in text.splitlines() if "trust" in line and not line.lstrip().startswith("#")]


# --------------------------------------------------------------------------------------------------
# pgbouncer: database.txt, userlist.txt, useropts.txt
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user",
    [
        {"name": "evil\nadmin_users = evil", "pgbouncer": True},
        {"name": 'ev"il" "x', "pgbouncer": True},
        {"name": "ev il = pool_mode=session", "pgbouncer": True, "pool_mode": "session"},
        {"name": "ok", "pgbouncer": True, "pool_mode": "session max_user_connections=1"},
    ],
    ids=["name-newline", "name-quote", "name-spaces", "pool-mode"],
)
def test_pgbouncer_users_cannot_inject(tmp_path, user):
    rejected(tmp_path, lambda inv: TEST(inv)["pg_users"].append(user), "all.children.pg-test.vars.pg_users[1]")


@pytest.mark.parametrize(
    "db",
    [
        {"name": "x=host=evil"},
        {"name": "x = host=evil"},
        {"name": "x\nevil = host=10.0.0.1"},
        {"name": "y", "pool_mode": "session auth_user=postgres"},
        {"name": "y", "pool_auth_user": "a host=10.0.0.1"},
    ],
    ids=["name-equals", "name-spaces", "name-newline", "pool-mode", "auth-user"],
)
def test_pgbouncer_databases_cannot_inject(tmp_path, db):
    rejected(tmp_path, lambda inv: TEST(inv)["pg_databases"].append(db), "all.children.pg-test.vars.pg_databases[1]")


# --------------------------------------------------------------------------------------------------
# dnsmasq records and /etc/hosts
# --------------------------------------------------------------------------------------------------


def test_dnsmasq_records_cannot_inject(tmp_path):
    rejected(
        tmp_path,
        lambda inv: V(inv).update(dns_records=["10.10.10.2 api\naddress=/evil/1.2.3.4"]),
        "all.vars.dns_records[0]",
    )


def test_etc_hosts_cannot_inject(tmp_path):
    rejected(tmp_path, lambda inv: V(inv).update(node_etc_hosts=["10.0.0.1 a\n10.0.0.2 evil"]), "all.children.")


# --------------------------------------------------------------------------------------------------
# chrony, sysctl
# --------------------------------------------------------------------------------------------------


def test_chrony_servers_cannot_inject(tmp_path):
    rejected(
        tmp_path, lambda inv: V(inv).update(node_ntp_servers=["pool pool.ntp.org iburst\nallow all"]), "all.children."
    )


@pytest.mark.parametrize("params", [{"vm.a": "1\nkernel.x = 2"}, {"vm.a = 1\nkernel.x": "2"}], ids=["value", "key"])
def test_sysctl_cannot_inject(tmp_path, params):
    rejected(tmp_path, lambda inv: V(inv).update(node_sysctl_params=params), "all.children.")


# --------------------------------------------------------------------------------------------------
# systemd units and their EnvironmentFiles
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "param,value,where",
    [
        ("pg_cluster", "pg-test\nExecStartPre=/bin/evil", "all.children.pg-test.vars.pg_cluster"),
        ("pg_dbsu", "postgres\nExecStartPre=/bin/evil", "all.vars."),
        ("node_exporter_options", "--x\nExecStartPre=/bin/evil", "all.children."),
    ],
    ids=["cluster-in-description", "dbsu-in-user", "exporter-options"],
)
def test_systemd_units_cannot_inject(tmp_path, param, value, where):
    def mutate(inv):
        (TEST(inv) if param == "pg_cluster" else V(inv))[param] = value

    rejected(tmp_path, mutate, where)


def test_environment_file_value_is_escaped(tmp_path):
    code, err, out = build(tmp_path, lambda inv: V(inv).update(node_exporter_options='--x" EVIL="1'))
    if code == 2:
        assert re.search(r"^error: \S+node_exporter_options", err, re.M), err
        return
    line = next(
        line for line in (out / HOST / "etc/default/node_exporter").read_text().splitlines() if "NODE_EXPORTER" in line
    )
    words = shlex.split(line)
    assert len(words) == 1 and words[0].startswith("NODE_EXPORTER_OPTS="), words
