"""A differential test against Pigsty itself: its own templates rendered by real Ansible, compared with sty.

For each inventory of docs/pigsty-differences.yml, one `ansible-playbook` run renders Pigsty v4.5's templates (roles
of PIGSTY_SRC, read in place) for the chosen hosts: a local play (`connection: local`, no facts gathered, every task
delegated to localhost: no host is contacted) against the inventory itself, so hostvars and group vars resolve as
Ansible resolves them, with the roles' defaults below the inventory (a throw-away role whose `defaults/main/` links
Pigsty's defaults files), Pigsty's own `pg_id` tasks, and the node facts Pigsty reads on a node (CPU, memory, data
disk, OS) set to those sty assumed for the host. Each template goes through the `template` lookup; a small callback
plugin hands the results back as JSON. json_query, from community.general (not part of ansible-core), is stood in
for by a filter plugin of the same few lines over jmespath.

sty builds the same inventory, its secret placeholders replaced by the values the build registered (the inventory's).
Both sides are parsed (YAML, INI, HAProxy sections, pg_hba rows, redis directives); every disagreement must be listed
in the allowlist, and every listed difference must still occur (tests/compat_doc.py).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from compat_doc import ABSENT, ALLOWLIST, DOC, Difference, judge, load, rewrite
from shared import CORPUS, PIGSTY_SRC, ROOT

from sty.compiler.build import render_targets
from sty.compiler.pipeline import compile_fleet, resolve_target

ROLES = PIGSTY_SRC / "roles"
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
# the roles of Pigsty's node.yml, etcd.yml, pgsql.yml and redis.yml whose defaults the templates read
DEFAULTS_OF = ["node_id", "node", "haproxy", "node_monitor", "etcd", "pg_id", "pgsql", "redis"]
GiB = 1 << 30
FACTS = ["node_cpu", "node_mem_mb", "node_mem_gb", "node_fs_bytes", "os_package", "os_version", "os_arch"]
OS = {"debian12": ("deb", 12), "el9": ("rpm", 9)}
SECRET = re.compile(r"<<secret:([^>]+)>>")

pytestmark = pytest.mark.skipif(not (ROLES / "pgsql" / "templates").is_dir(), reason=f"no Pigsty sources at {ROLES}")
slow = pytest.mark.slow  # the Ansible runs: about 20 s on two cores

# -- Pigsty's side: the play ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Render:
    """A template: file kind, sty's path (Jinja), template under roles/, when Pigsty renders it, vars, loop."""

    kind: str
    dest: str
    template: str
    when: str
    template_vars: str = "{}"
    loop: str | None = None


PG, PGB = "pg_cluster is defined", "pg_cluster is defined and pgbouncer_enabled|bool"
PGBR, VIP = f"{PG} and pgbackrest_enabled|bool", f"{PG} and pg_vip_enabled|bool"
PG_SERVICE_VARS = "{'service': item, 'pg_cluster_members_query': \"[@.*][0][?pg_cluster=='\" ~ pg_cluster ~ \"']\"}"
# Pigsty asks the node which interface holds its address; sty's facts name none (the stand-in is eth0)
VIP_VARS = (
    "{'node_interface': pg_vip_interface|default('auto', true)|string|trim"
    " if pg_vip_interface|default('auto', true)|string|trim|lower not in ['', 'auto'] else 'eth0'}"
)
REDIS_VARS = "{'port': item.key, 'upstream': (item.value|default({}, true))['replica_of']|default(None)}"
RENDERS = [
    Render("haproxy", "'/etc/haproxy/haproxy.cfg'", "haproxy/templates/haproxy.cfg.j2", "haproxy_enabled|bool"),
    Render(
        "haproxy_service",
        "'/etc/haproxy/conf.d/' ~ item.name ~ '.cfg'",
        "haproxy/templates/service.j2",
        "haproxy_enabled|bool",
        "{'service': item}",
        "haproxy_services|default([])",
    ),
    Render(
        "etcd",
        "'/etc/etcd/etcd.conf'",
        "etcd/templates/etcd.conf",
        "inventory_hostname in groups['etcd']|default([])",
        "{'etcd_instance': etcd_cluster ~ '-' ~ etcd_seq}",
    ),
    Render("patroni", "'/etc/patroni/patroni.yml'", "pgsql/templates/{{ pg_conf }}", PG),
    Render("pg_hba", "pg_hba_file|default('/pg/conf/pg_hba.conf')", "pgsql/templates/pg_hba.conf", PG),
    Render("pgb_hba", "'/etc/pgbouncer/pgb_hba.conf'", "pgsql/templates/pgbouncer.hba", PGB),
    Render("pgbouncer", "'/etc/pgbouncer/pgbouncer.ini'", "pgsql/templates/pgbouncer.ini", PGB),
    Render("pgbouncer_database", "'/etc/pgbouncer/database.txt'", "pgsql/templates/pgbouncer.database", PGB),
    Render("pgbouncer_useropts", "'/etc/pgbouncer/useropts.txt'", "pgsql/templates/pgbouncer.useropts", PGB),
    Render("pgbackrest", "'/etc/pgbackrest/pgbackrest.conf'", "pgsql/templates/pgbackrest.conf", PGBR),
    Render(
        "pg_service",
        "'/etc/haproxy/conf.d/' ~ pg_cluster ~ '-' ~ item.name ~ '.cfg'",
        "pgsql/templates/service.cfg",
        f"{PG} and (pg_service_provider == '' or pg_service_provider not in groups)",  # Pigsty's service_local.yml
        PG_SERVICE_VARS,
        "pg_default_services + pg_services",
    ),
    Render("vip_manager", "'/etc/default/vip-manager.yml'", "pgsql/templates/vip-manager.yml", VIP, VIP_VARS),
    Render(
        "redis",
        "'/etc/redis/' ~ redis_cluster ~ '-' ~ redis_node ~ '-' ~ item.key ~ '.conf'",
        "redis/templates/{{ 'redis-sentinel.conf' if redis_mode == 'sentinel' else redis_conf }}",
        "redis_cluster is defined",
        REDIS_VARS,
        "redis_instances|dict2items",
    ),
]

# community.general's json_query, the same few lines (jmespath over Ansible's lazy containers)
JSON_QUERY = """
import jmespath

TYPES = jmespath.functions.REVERSE_TYPES_MAP
TYPES["string"] += ("AnsibleUnicode", "AnsibleUnsafeText", "_AnsibleTaggedStr")
TYPES["array"] += ("AnsibleSequence", "_AnsibleLazyTemplateList")
TYPES["object"] += ("AnsibleMapping", "_AnsibleLazyTemplateDict")

class FilterModule:
    def filters(self):
        return {"json_query": json_query}

def json_query(data, expr):
    return jmespath.search(expr, data)
"""

# hands the rendered files (the `pigsty_files` fact) and any failure back as one JSON file
COLLECT = """
import json
import os

from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "sty_collect"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.out = {"files": {}, "failed": []}

    def v2_runner_on_ok(self, result):  # ansible-core 2.19's CallbackTaskResult
        files = result.result.get("ansible_facts", {}).get("pigsty_files")
        if files is not None:
            self.out["files"][result.host.get_name()] = json.loads(files)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not ignore_errors:
            self.out["failed"].append(f"{result.host.get_name()}: {result.task.get_name()}: {result.result.get('msg')}")

    v2_runner_on_unreachable = v2_runner_on_failed

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["STY_ORACLE_OUT"], "w") as f:
            json.dump(self.out, f)
"""


PLAY = "- {name: no host contacted, hosts: all, connection: local, gather_facts: false, roles: [pigsty_oracle]}\n"


def _tasks() -> list[dict[str, Any]]:
    node_id = (
        "{% if node_id_from_pg|bool and pg_cluster is defined and pg_seq is defined and pg_cluster != ''"
        " and pg_seq != '' %}{{ pg_cluster }}-{{ pg_seq }}"
        "{% else %}{{ nodename|default(inventory_hostname) }}{% endif %}"
    )
    tasks: list[dict[str, Any]] = [
        {
            "name": "node facts as sty assumed them (Pigsty's node_id reads them on the node) and node identity",
            "set_fact": {name: f"{{{{ sty_oracle.facts[inventory_hostname].{name} }}}}" for name in FACTS}
            | {"nodename": node_id},
        },
        {
            "name": "pgsql identity: Pigsty's own pg_id tasks",
            "when": "pg_cluster is defined",
            "import_tasks": str(ROLES / "pg_id" / "tasks" / "main.yml"),
        },
    ]
    # one task renders every file (a task costs a worker per host): each template through the `template` lookup
    body = ""
    for r in RENDERS:
        src = f"sty_oracle.roles ~ '/{r.template}'"
        if "{{" in r.template:  # the template's name is a parameter (pg_conf, redis_conf)
            head, expr = r.template.split("{{")
            src = f"sty_oracle.roles ~ '/{head}' ~ ({expr.rstrip('} ')})"
        text = f"lookup('template', {src}, template_vars={r.template_vars})"
        add = f"{{% set ns.out = ns.out | combine({{({r.dest}): {{'kind': '{r.kind}', 'text': {text}}}}}) %}}"
        if r.loop:
            add = f"{{% for item in {r.loop} %}}{add}{{% endfor %}}"
        body += f"{{% if {r.when} %}}{add}{{% endif %}}"
    tasks.append(
        {
            "name": "render Pigsty's templates (template lookups)",
            "set_fact": {"pigsty_files": f"{{% set ns = namespace(out={{}}) %}}{body}{{{{ ns.out | to_json }}}}"},
        }
    )
    return [{"name": "render Pigsty's templates on the controller", "delegate_to": "localhost", "block": tasks}]


def _play(work: Path, facts: dict[str, dict[str, Any]]) -> Path:
    role = work / "roles" / "pigsty_oracle"
    (role / "defaults" / "main").mkdir(parents=True)
    for i, name in enumerate(DEFAULTS_OF):  # read in place: links, in the order of Pigsty's playbooks
        (role / "defaults" / "main" / f"{i:02d}-{name}.yml").symlink_to(ROLES / name / "defaults" / "main.yml")
    (role / "tasks").mkdir()
    (role / "tasks" / "main.yml").write_text(yaml.safe_dump(_tasks(), sort_keys=False, width=1000))
    (work / "filter_plugins").mkdir()
    (work / "filter_plugins" / "json_query.py").write_text(JSON_QUERY)
    (work / "callback_plugins").mkdir()
    (work / "callback_plugins" / "sty_collect.py").write_text(COLLECT)
    (work / "play.yml").write_text(PLAY)
    (work / "oracle.json").write_text(json.dumps({"sty_oracle": {"roles": str(ROLES), "facts": facts}}))
    (work / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")
    return work / "play.yml"


def render_pigsty(inventory: Path, hosts: list[str], facts: dict[str, dict[str, Any]], work: Path) -> dict:
    """{host: {path: {kind, text}}} as Pigsty's templates render them; fails the test on any Ansible failure."""
    play = _play(work, facts)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(work / "ansible.cfg"),
        ANSIBLE_HOME=str(work / "home"),
        ANSIBLE_LOCAL_TEMP=str(work / "tmp"),
        ANSIBLE_REMOTE_TEMP=str(work / "tmp"),
        ANSIBLE_CALLBACK_PLUGINS=str(work / "callback_plugins"),
        ANSIBLE_CALLBACKS_ENABLED="sty_collect",
        ANSIBLE_INVENTORY_ENABLED="yaml",
        ANSIBLE_FORKS=str(len(hosts)),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_TRANSFORM_INVALID_GROUP_CHARS="never",
        STY_ORACLE_OUT=str(work / "rendered.json"),
    )
    cmd = [str(PLAYBOOK_BIN), "-i", str(inventory), "--limit", ",".join(hosts), "-e", f"@{work / 'oracle.json'}"]
    proc = subprocess.run([*cmd, str(play)], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    out = json.loads((work / "rendered.json").read_text()) if (work / "rendered.json").exists() else {}
    failed = out.get("failed") or ([] if proc.returncode == 0 else [proc.stdout[-3000:], proc.stderr[-3000:]])
    assert not failed and proc.returncode == 0, "Pigsty's templates did not render:\n" + "\n".join(failed)
    missing = set(hosts) - set(out["files"])
    assert not missing, f"ansible-playbook rendered nothing for {sorted(missing)}:\n{proc.stdout[-3000:]}"
    return out["files"]


# -- sty's side -----------------------------------------------------------------------------------------------------


def render_sty(inventory: Path, hosts: list[str]) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, Any]]]:
    """({host: {path: text with the secrets' values}}, {host: the facts Pigsty's templates get})."""
    compiled = compile_fleet(inventory)
    assert not compiled.report.errors, compiled.report.errors
    rendered = render_targets(compiled, resolve_target(compiled.fleet, "all"))
    files: dict[str, dict[str, str]] = {}
    facts: dict[str, dict[str, Any]] = {}
    for ip in hosts:
        files[ip] = {
            rel[len(ip) :]: SECRET.sub(lambda m, s=rendered.secrets[ip]: s[m.group(1)], raw.decode())
            for rel, raw in rendered.trees[ip].items()
            if rel.startswith(f"{ip}/")
        }
        host = compiled.fleet.hosts[ip]
        package, version = OS[host.platform.name]
        facts[ip] = {  # named as Pigsty's node_id names them; node_fs_bytes is only read by the patroni templates
            "node_cpu": host.facts.cpu,
            "node_mem_mb": host.facts.mem_mb,
            "node_mem_gb": max(math.ceil(host.facts.mem_mb / 1024), 1),
            "node_fs_bytes": host.facts.disk_gb * GiB,
            "os_package": package,
            "os_version": version,
            "os_arch": "x86_64",
        }
    return files, facts


# -- parsing both sides into comparable items -----------------------------------------------------------------------


def canon(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def pg_value(value: Any) -> str:
    """A PostgreSQL setting: booleans in any of the spellings PostgreSQL accepts are on/off."""
    text = canon(value)
    return {"true": "on", "yes": "on", "false": "off", "no": "off"}.get(text.lower(), text)


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(data, dict) and data:
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): canon(data)}


def yaml_items(text: str) -> dict[str, str]:
    return flatten(yaml.safe_load(text) or {})


def patroni_items(text: str) -> dict[str, str]:
    """Key paths, except PostgreSQL's parameters: their effective value (a member's own `postgresql.parameters`
    over the DCS's) as `parameters.<name>`, and where each is set as `placement.<name>`."""
    data = yaml.safe_load(text)
    local = (data.get("postgresql") or {}).pop("parameters", None) or {}
    dcs = ((data.get("bootstrap") or {}).get("dcs") or {}).get("postgresql") or {}
    dcs = dcs.pop("parameters", None) or {}
    hosts = (data.get("etcd3") or {}).get("hosts")
    if isinstance(hosts, str):  # Patroni reads a comma-separated string or a list
        data["etcd3"]["hosts"] = hosts.split(",")
    items = flatten(data)
    if isinstance((data.get("bootstrap") or {}).get("initdb"), list):  # initdb's options, in any order
        items["bootstrap.initdb"] = canon(sorted(data["bootstrap"]["initdb"], key=canon))
    for name in sorted(set(local) | set(dcs)):
        items[f"parameters.{name}"] = pg_value(local.get(name, dcs.get(name)))
        items[f"placement.{name}"] = "+".join(where for where, src in (("dcs", dcs), ("local", local)) if name in src)
    return items


def _lines(text: str, comment: str = "#;") -> list[str]:
    return [line for line in map(str.strip, text.splitlines()) if line and line[0] not in comment]


def hba_items(text: str) -> dict[str, str]:
    """Active rows: `type database user [address] method [options]`, and their order."""
    rows = [" ".join(line.split()) for line in _lines(text, "#")]
    items = {f"row: {row}": f"present x{n}" if n > 1 else "present" for row, n in Counter(rows).items()}
    items["(order)"] = "\n".join(rows)
    return items


def ini_items(text: str) -> dict[str, str]:
    section, found = "", defaultdict(list)
    for line in _lines(text):
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line.startswith("%include"):
            found[f"{section}.%include"].append(line.split(None, 1)[1])
        else:
            key, _, value = line.partition("=")
            found[f"{section}.{key.strip()}"].append(" ".join(value.split()))
    return {k: " | ".join(v) for k, v in found.items()}


def options_items(text: str) -> dict[str, str]:
    """pgbouncer's database.txt / useropts.txt: `name = opt=value ...` as `name.opt`."""
    items = {}
    for line in _lines(text):
        name, _, value = line.partition("=")
        for option in value.split():
            key, _, val = option.partition("=")
            items[f"{name.strip()}.{key}"] = val
    return items


HAPROXY_PAIRS = {"timeout", "stats", "option", "http-check", "http-request", "acl", "server", "user", "group", "no"}
SECTIONS = {"global", "defaults", "listen", "frontend", "backend", "userlist", "resolvers", "peers", "program"}


def haproxy_items(text: str, sectioned: bool = True) -> dict[str, str]:
    """`section/directive` (or `directive` for a file of one listener): its values in order, ` | ` between."""
    section, found = "", defaultdict(list)
    for line in _lines(text.replace("\t", " "), "#"):
        words = line.split("#")[0].split()
        if words[0] in SECTIONS:
            section = " ".join(words)
            found[f"{section}/(section)"].append("")
            continue
        n = 2 if words[0] in HAPROXY_PAIRS and len(words) > 1 else 1
        key = " ".join(words[:n])
        found[f"{section}/{key}" if sectioned else key].append(" ".join(words[n:]))
    if not sectioned:
        found = {k: v for k, v in found.items() if not k.endswith("/(section)")}
    return {k: " | ".join(v) for k, v in found.items()}


REDIS_PAIRS = {"rename-command", "client-output-buffer-limit", "sentinel"}
SENTINEL_TRIPLES = {"monitor", "auth-pass", "down-after-milliseconds", "failover-timeout", "parallel-syncs"}


def redis_items(text: str) -> dict[str, str]:
    """Directives (case-insensitive, as redis reads them) with their arguments, unquoted."""
    found = defaultdict(list)
    for line in _lines(text, "#"):
        words = [w[1:-1] if len(w) > 1 and w[0] == w[-1] == '"' else w for w in line.split()]
        words[0] = words[0].lower()
        n = 2 if words[0] in REDIS_PAIRS and len(words) > 1 else 1
        n = 3 if words[0] == "sentinel" and words[1:2] and words[1] in SENTINEL_TRIPLES else n
        found[" ".join(words[:n])].append(" ".join(words[n:]))
    return {k: " | ".join(v) for k, v in found.items()}


def _listener(text: str) -> dict[str, str]:
    return haproxy_items(text, sectioned=False)


PARSERS = {"patroni": patroni_items, "haproxy": haproxy_items, "redis": redis_items}
PARSERS |= dict.fromkeys(["pg_hba", "pgb_hba"], hba_items) | dict.fromkeys(["pgbouncer", "pgbackrest"], ini_items)
PARSERS |= dict.fromkeys(["pgbouncer_database", "pgbouncer_useropts"], options_items)
PARSERS |= dict.fromkeys(["haproxy_service", "pg_service"], _listener) | dict.fromkeys(
    ["etcd", "vip_manager"], yaml_items
)


def order_value(pig: str, sty: str) -> tuple[str, str]:
    """Where the rows both sides have stop being in the same order: the first such row of each side."""
    a, b = pig.splitlines(), sty.splitlines()
    common = set(a) & set(b)
    a, b = [r for r in a if r in common], [r for r in b if r in common]
    for x, y in zip(a, b, strict=False):
        if x != y:
            return x, y
    return "", ""


def compare(kind: str, pig_text: str | None, sty_text: str | None) -> tuple[list[Difference], int]:
    """The differences of one file and the number of items compared."""
    if pig_text is None or sty_text is None:
        have = ("present", ABSENT) if sty_text is None else (ABSENT, "present")
        return [Difference(kind, "(file)", *have)], 1
    pig, sty = PARSERS[kind](pig_text), PARSERS[kind](sty_text)
    diffs = []
    for key in sorted(set(pig) | set(sty)):
        a, b = pig.get(key, ABSENT), sty.get(key, ABSENT)
        if key == "(order)":
            a, b = order_value(a, b)
        if key.startswith("placement.") and ABSENT in (a, b):
            continue  # a setting only one side has: its `parameters.<name>` says so
        if a != b:
            diffs.append(Difference(kind, key, a, b))
    return diffs, len(set(pig) | set(sty))


# -- the measurement ------------------------------------------------------------------------------------------------


def inventory_path(name: str) -> Path:
    return ROOT / name if (ROOT / name).is_file() else CORPUS / name


def _sty_kind(path: str, pig_files: dict[str, dict[str, str]], sty_files: dict[str, str]) -> str | None:
    """The kind of a file only sty renders (None when it is no kind compared here)."""
    if path in pig_files:
        return pig_files[path]["kind"]
    fixed = {r.dest.strip("'"): r.kind for r in RENDERS if r.dest.startswith("'") and r.dest.endswith("'")}
    if path in fixed:
        return fixed[path]
    if path.startswith("/etc/redis/") and path.endswith(".conf"):
        return "redis"
    if path.startswith("/etc/haproxy/conf.d/"):
        patroni = yaml.safe_load(sty_files.get("/etc/patroni/patroni.yml", "{}")) or {}
        return "pg_service" if Path(path).name.startswith(f"{patroni.get('scope', '')}-") else "haproxy_service"
    return None


def measure(case: dict[str, Any], work: Path) -> tuple[dict[Difference, list[str]], Counter]:
    inventory, hosts = inventory_path(case["inventory"]), [str(h) for h in case["hosts"]]
    sty_files, facts = render_sty(inventory, hosts)
    pigsty = render_pigsty(inventory, hosts, facts, work)
    found: dict[Difference, list[str]] = defaultdict(list)
    counts: Counter = Counter()
    for ip in hosts:
        pig_files, mine = pigsty[ip], sty_files[ip]
        paths = set(pig_files) | {p for p in mine if p not in pig_files and _sty_kind(p, pig_files, mine)}
        for path in sorted(paths):
            kind = _sty_kind(path, pig_files, mine)
            pig_text = pig_files[path]["text"] if path in pig_files else None
            diffs, n = compare(kind, pig_text, mine.get(path))
            counts[kind] += n
            for diff in diffs:
                found[diff].append(f"{case['inventory']} {ip} {path}")
    return found, counts


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[dict[Difference, list[str]], Counter]:
    if not PLAYBOOK_BIN.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{PLAYBOOK_BIN} is missing: ansible-core is a dev dependency (pip install -e '.[dev]')")
        pytest.skip("ansible-core is not installed (pip install -e '.[dev]')")
    cases = load()["inventories"]
    works = [tmp_path_factory.mktemp("pigsty-ansible") for _ in cases]
    with ThreadPoolExecutor(len(cases)) as pool:  # the ansible-playbook runs overlap
        results = list(pool.map(measure, cases, works))
    found: dict[Difference, list[str]] = defaultdict(list)
    for diffs, _ in results:
        for diff, where in diffs.items():
            found[diff] += where
    return found, sum((n for _, n in results), Counter())


@slow
def test_every_difference_from_pigsty_is_listed_with_its_reason(measured):
    found, _ = measured
    unlisted, _ = judge(sorted(found), load())
    report = [
        f"{d}\n    at {found[d][0]}" + (f" (+{len(found[d]) - 1} more)" if len(found[d]) > 1 else "") for d in unlisted
    ]
    assert not unlisted, f"{len(unlisted)} differences from Pigsty not in {ALLOWLIST.name}:\n" + "\n".join(report)


@slow
def test_every_listed_difference_still_occurs(measured):
    found, _ = measured
    _, stale = judge(sorted(found), load())
    assert not stale, f"entries of {ALLOWLIST.name} that no longer occur (remove them):\n" + "\n".join(map(str, stale))


@slow
def test_every_file_kind_was_compared(measured):
    _, counts = measured
    kinds = {r.kind for r in RENDERS}
    assert kinds <= set(counts), f"nothing compared for {kinds - set(counts)}"
    assert all(n > 0 for n in counts.values())


# -- the judge and the document, without Ansible --------------------------------------------------------------------


def _allowlist(*items: dict[str, str]) -> dict[str, Any]:
    return {"differences": [{"title": "t", "why": "w", "items": list(items)}]}


def test_an_unlisted_difference_fails_and_a_stale_entry_is_reported():
    diff = Difference("patroni", "parameters.work_mem", "16MB", "32MB")
    other = Difference("pgbouncer", "pgbouncer.listen_port", "6432", ABSENT)
    allow = _allowlist({"kind": "patroni", "key": "parameters.work_mem", "pigsty": "16MB", "sty": "32MB"})
    assert judge([diff], allow) == ([], [])
    assert judge([diff, other], allow) == ([other], [])
    assert judge([], allow)[1] == [{"kind": "patroni", "key": "parameters.work_mem", "pigsty": "16MB", "sty": "32MB"}]
    # a value given must match; a value left out matches any; `*` is any text, nothing else is special
    assert judge([diff], _allowlist({"kind": "patroni", "key": "parameters.work_mem", "sty": "64MB"}))[0] == [diff]
    assert judge([diff], _allowlist({"kind": "patroni", "key": "parameters.*"})) == ([], [])
    assert judge([diff], _allowlist({"kind": "patroni", "key": "parameters.work?mem"}))[0] == [diff]
    assert judge([diff], _allowlist({"kind": "pg_hba", "key": "parameters.work_mem"}))[0] == [diff]


def test_parsers_reduce_each_format_to_items():
    assert hba_items("# c\nlocal all postgres ident\nhost  all all 10.0.0.0/8  scram-sha-256\n#host x\n") == {
        "row: local all postgres ident": "present",
        "row: host all all 10.0.0.0/8 scram-sha-256": "present",
        "(order)": "local all postgres ident\nhost all all 10.0.0.0/8 scram-sha-256",
    }
    assert order_value("a\nb\nc", "b\nx\na\nc") == ("a", "b")
    assert ini_items("; c\n[db]\n%include /x\n[pgbouncer]\na = 1  2\n") == {"db.%include": "/x", "pgbouncer.a": "1 2"}
    assert options_items("# c\nmeta = host=/run port=5432\n") == {"meta.host": "/run", "meta.port": "5432"}
    cfg = "global\n    maxconn 10 # c\nlisten x\n    bind *:1\n    server a 1:2 check\n    option httpchk\n"
    assert haproxy_items(cfg) == {"global/(section)": "", "global/maxconn": "10", "listen x/(section)": ""} | {
        "listen x/bind": "*:1",
        "listen x/server a": "1:2 check",
        "listen x/option httpchk": "",
    }
    assert _listener(cfg.split("listen x\n")[1]) == {"bind": "*:1", "server a": "1:2 check", "option httpchk": ""}
    assert redis_items('save 60 1\nsave 30 2\nPORT 1\ndir "/x"\n') == {"save": "60 1 | 30 2", "port": "1", "dir": "/x"}
    items = patroni_items(
        "etcd3: {hosts: 'a:1,b:1'}\nbootstrap: {dcs: {postgresql: {parameters: {a: 1, b: true}}}}\n"
        "postgresql: {parameters: {b: 'off', c: x}}\n"
    )
    assert items == {"etcd3.hosts": '["a:1", "b:1"]', "bootstrap.dcs.postgresql": "{}", "postgresql": "{}"} | {
        "parameters.a": "1",
        "placement.a": "dcs",
        "parameters.b": "off",
        "placement.b": "dcs+local",
        "parameters.c": "x",
        "placement.c": "local",
    }


def test_the_real_allowlist_fails_a_new_difference_and_reports_every_entry_stale_without_measurements():
    ini = "[pgbouncer]\nlisten_port = {}\npool_mode = transaction\n"
    diffs, n = compare("pgbouncer", ini.format(6432), ini.format(6433))
    assert (diffs, n) == ([Difference("pgbouncer", "pgbouncer.listen_port", "6432", "6433")], 2)
    assert judge(diffs, load())[0] == diffs
    assert compare("etcd", "a: 1\n", None)[0] == [Difference("etcd", "(file)", "present", ABSENT)]
    assert len(judge([], load())[1]) == sum(len(g["items"]) for g in load()["differences"])


def test_the_compatibility_doc_is_generated_from_the_allowlist():
    doc = DOC.read_text(encoding="utf-8")
    assert doc == rewrite(doc, load()), "docs/compatibility.md is stale: run make compat-doc"
