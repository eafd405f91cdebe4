"""MINIO as Pigsty v4.5 runs it: sty's bundles held to Pigsty's own MINIO role, read in place from the shared
sources (PIGSTY_SRC/roles/minio) and rendered here with plain Jinja2 from the same resolved parameters.

Pigsty's derived facts (node name, data directories, cluster size, member list, `{x...y}` seq range, MINIO_VOLUMES,
the instance name) are computed by rendering the role's own `set_fact` expressions from tasks/main.yml, with
Ansible's few filters (bool, regex_*, json_query, unique) supplied here. Then, for Pigsty's demo/minio.yml (4 nodes x
4 drives, HTTPS, an endpoint behind HAProxy) and single- and multi-node variants (multi-drive, plain HTTP, other
ports and names, explicit volumes, extra variables):

- the environment file has every variable of Pigsty's silo.env with the same value (MINIO_OPTS apart: sty adds the
  certificate directory, a documented difference), and nothing else;
- the unit sets what Pigsty's silo.svc sets (its prose and the `-` of the second EnvironmentFile apart);
- files, unit name, packages, data/config/certificate directories and the certificate (CN, SANs, paths, owner)
  are where and what config.yml and install.yml make them;
- the provisioning script runs the commands provision.yml runs (alias, buckets with their flags, one policy per
  bucket with the document of Pigsty's policy.json, users and attached policies), on the member Pigsty picks,
  after the health check Pigsty makes;
- the DNS names (local /etc/hosts and the infra nameserver) and the scrape target are Pigsty's.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import jmespath
import pytest
import yaml
from conftest import dump_inventory
from shared import CORPUS, PIGSTY_SRC
from test_minio import single_inventory

from sty.apply.checks.util import substitute
from sty.compiler.build import render_targets
from sty.compiler.pipeline import compile_fleet, resolve_target

ROLE = PIGSTY_SRC / "roles" / "minio"
ENV, UNIT, SCRIPT = "/etc/default/silo", "/etc/systemd/system/silo.service", "/etc/minio/provision.sh"
# unit settings whose words are sty's own (prose), and the second EnvironmentFile, which sty requires (no `-`)
UNIT_PROSE = ("Description", "Documentation")

pytestmark = [
    pytest.mark.skipif(not (ROLE / "templates").is_dir(), reason=f"Pigsty's sources are not at {ROLE}"),
    # Pigsty's expressions write regular expressions in plain Jinja string literals ('{(\\d+)...')
    pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning"),
]


# -- Pigsty's role, rendered as Ansible would ------------------------------------------------------------------


def ansible_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("yes", "true", "1", "on", "y")


def regex_search(value: str, pattern: str) -> str | None:
    m = re.search(pattern, value)
    return m.group(0) if m else None


@cache
def jinja() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ROLE / "templates")),
        trim_blocks=True,  # Ansible's template module default
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        bool=ansible_bool,
        regex_search=regex_search,
        regex_findall=lambda value, pattern: re.findall(pattern, value),
        regex_replace=lambda value, pattern, repl: re.sub(pattern, repl, value),
        json_query=lambda value, query: jmespath.search(query, value),
        unique=lambda value: list(dict.fromkeys(value)),
    )
    return env


@cache
def compiled(text: str) -> jinja2.Template:
    return jinja().from_string(text)


def expand(text: str, facts: dict[str, Any]) -> str:
    """A templated string of the role (a task argument, a set_fact value) rendered with the host's facts."""
    return compiled(text).render(**facts)


def evaluate(text: str, facts: dict[str, Any]) -> Any:
    """As `expand`, a list kept a list (Ansible turns a rendered `[...]` back into one)."""
    value = expand(text, facts)
    return ast.literal_eval(value) if value.startswith("[") else value


@cache
def tasks(name: str) -> list[dict[str, Any]]:
    """Every task of a task file, blocks flattened (a block before its tasks)."""
    out = []

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items or []:
            out.append(item)
            walk(item.get("block"))

    walk(yaml.safe_load((ROLE / "tasks" / name).read_text(encoding="utf-8")))
    return out


def task(file: str, name: str, module: str | None = None) -> dict[str, Any]:
    return next(t for t in tasks(file) if t.get("name") == name and (module is None or module in t))


def key_values(text: str) -> list[tuple[str, str]]:
    """`set_fact` in Ansible's `k=v k=v` form: the expressions, each unquoted."""
    parts = re.split(r"\s+(?=minio_\w+=)", text.strip())
    return [(k, v.strip().strip('"')) for k, _, v in (p.partition("=") for p in parts)]


def pigsty_facts(built: Built, ip: str) -> dict[str, Any]:
    """The variables Pigsty's MINIO role has for host `ip`: its defaults as sty resolves them for the host, the
    identity, and the facts tasks/main.yml derives, in the role's order."""
    if ip not in built.facts:
        built.facts[ip] = _facts(built, ip)
    return dict(built.facts[ip])


def _facts(built: Built, ip: str) -> dict[str, Any]:
    p = built.params[ip]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    facts = {k: p.get(k) for k in defaults}
    facts.update(
        minio_node=p.raw("minio_node"),  # the pattern: the role substitutes it
        minio_cluster=p["minio_cluster"],
        minio_seq=p["minio_seq"],
        inventory_hostname=ip,
        admin_ip=p["admin_ip"],
        groups={"infra": built.infra},
    )
    for optional in ("minio_volumes", "minio_endpoint"):
        if p.get(optional):
            facts[optional] = p[optional]
    facts["minio_meta"] = [  # hostvars|json_query(...): the cluster's hosts in inventory order
        {"inventory_hostname": h, "minio_cluster": q["minio_cluster"], "minio_seq": q["minio_seq"]}
        for h, q in built.params.items()
        if q.get("minio_cluster") == p["minio_cluster"]
    ]
    info = task("main.yml", "get minio cluster info")["set_fact"]
    for name in ("minio_nodename", "minio_data_dirs"):
        facts[name] = expand(info[name], facts)
    for name, expression in key_values(task("main.yml", "building minio params")["set_fact"]):
        facts[name] = evaluate(expression, facts)
    volumes = task("main.yml", "calculate or use minio volumes")["set_fact"]["minio_volumes"]
    facts["minio_volumes"] = expand(volumes, facts)
    config = next(t for t in tasks("main.yml") if t.get("import_tasks") == "config.yml")
    facts.update({k: expand(v, facts) for k, v in config["vars"].items()})  # minio_instance
    return facts


def pigsty_template(name: str, facts: dict[str, Any], **extra: Any) -> str:
    return jinja().get_template(name).render(**facts, **extra)


# -- sty's bundles ----------------------------------------------------------------------------------------------


@dataclass
class Built:
    files: dict[str, dict[str, str]]  # ip -> host path -> text, secrets substituted
    manifests: dict[str, dict[str, Any]]
    params: dict[str, Any]  # ip -> the host's resolved parameters
    infra: list[str]  # Pigsty's groups['infra']
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # ip -> Pigsty's facts (computed once)

    def members(self) -> list[str]:
        return [ip for ip, m in self.manifests.items() if "minio" in m["modules"]]


def build(data: dict[str, Any], tmp: Path) -> Built:
    compiled = compile_fleet(dump_inventory(data, tmp / "pigsty.yml"))
    rendered = render_targets(compiled, resolve_target(compiled.fleet, "all"))
    files, manifests = {}, {}
    for ip, tree in rendered.trees.items():
        values = rendered.secrets[ip]
        files[ip] = {
            rel[len(ip) :]: substitute(raw.decode(), values.__getitem__)
            for rel, raw in tree.items()
            if rel.startswith(f"{ip}/")
        }
        manifests[ip] = yaml.safe_load(tree[f"{ip}.yml"])
    params = {ip: host.params for ip, host in compiled.fleet.hosts.items()}
    infra = list((data["all"]["children"].get("infra") or {}).get("hosts") or {})
    return Built(files, manifests, params, infra)


def env_values(text: str) -> dict[str, str]:
    """`NAME=value` lines of an environment file (double quotes and their backslash escapes resolved)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r'\\([\\"$`])', r"\1", value[1:-1])
        out[name] = value
    return out


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def script_value(script: str, name: str) -> str:
    line = next(x for x in script.splitlines() if x.startswith(f"{name}="))
    return line.split("=", 1)[1].strip("'")


def expand_drives(pattern: str) -> list[str]:
    """How many drives MinIO's ellipsis names (one range at most here): Pigsty creates one directory each."""
    m = re.search(r"\{(\d+)\.\.\.(\d+)\}", pattern)
    return [pattern] if not m else [pattern.replace(m.group(0), str(n)) for n in range(int(m[1]), int(m[2]) + 1)]


def mode(value: Any) -> str:
    """A file mode as Pigsty's YAML gives it (0750 is read as an octal int, '0640' as a string)."""
    return f"{value:04o}" if isinstance(value, int) else str(value)


# -- the inventories --------------------------------------------------------------------------------------------


def demo() -> dict[str, Any]:
    return yaml.safe_load((CORPUS / "demo" / "minio.yml").read_text(encoding="utf-8"))


def snsd() -> dict[str, Any]:
    return single_inventory()


def snmd_http() -> dict[str, Any]:
    return single_inventory(
        minio_data="/data{1...4}/minio",
        minio_https=False,
        minio_port=9200,
        minio_admin_port=9201,
        minio_domain="s3.example.com",
        minio_alias="s3",
        minio_extra_vars="MINIO_COMPRESSION_ENABLE=on\nMINIO_REGION_NAME=eu-1",
        minio_buckets=[{"name": "locked", "lock": True, "versioning": True}, {"name": "plain"}],
        minio_users=[
            {"access_key": "app", "secret_key": "App.Secret.1"},
            {"access_key": "backup", "secret_key": "Backup.Secret.1", "policy": "locked"},
        ],
    )


def mnsd_http() -> dict[str, Any]:
    data = single_inventory(
        minio_https=False, minio_node="${minio_cluster}-${minio_seq}.example", minio_data="/srv/minio"
    )
    group = data["all"]["children"]["minio"]
    group["vars"]["minio_cluster"] = "objects"
    group["hosts"] = {"10.10.10.21": {"minio_seq": 3}, "10.10.10.22": {"minio_seq": 4}, "10.10.10.23": {"minio_seq": 5}}
    data["all"]["children"]["infra"] = {"hosts": {"10.10.10.10": {"infra_seq": 1}}}
    return data


def explicit_volumes() -> dict[str, Any]:
    data = demo()
    del data["all"]["children"]["infra"]  # the demo scenario covers what INFRA serves
    data["all"]["children"]["minio"]["vars"]["minio_volumes"] = (
        "https://minio-{1...4}.pigsty:9000/data{1...4} https://minio-{5...8}.pigsty:9000/data{1...4}"
    )
    return data


SCENARIOS = {"demo": demo, "snsd": snsd, "snmd-http": snmd_http, "mnsd-http": mnsd_http, "volumes": explicit_volumes}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def built(request, tmp_path_factory) -> Built:
    return build(SCENARIOS[request.param](), tmp_path_factory.mktemp(f"minio-pigsty-{request.param}"))


# -- the environment and the unit ---------------------------------------------------------------------------------


def test_environment_has_pigsty_variables_and_values(built):
    for ip in built.members():
        facts = pigsty_facts(built, ip)
        theirs = env_values(pigsty_template(f"{facts['minio_type']}.env", facts))
        ours = env_values(built.files[ip][ENV])
        if ansible_bool(facts["minio_https"]):  # the documented difference: sty names the certificate directory
            certs = f"/home/{facts['minio_user']}/.minio/certs"
            assert ours["MINIO_OPTS"] == f"{theirs['MINIO_OPTS']} --certs-dir {certs}"
            ours["MINIO_OPTS"] = theirs["MINIO_OPTS"]
        assert ours == theirs
        assert list(ours)[:2] == ["MINIO_OPTS", "MINIO_VOLUMES"]


def test_unit_sets_what_pigsty_sets(built):
    for ip in built.members():
        facts = pigsty_facts(built, ip)
        theirs = unit_settings(pigsty_template(f"{facts['minio_type']}.svc", facts))
        ours = unit_settings(built.files[ip][UNIT])
        for key in UNIT_PROSE:
            assert theirs.pop(key) and ours.pop(key)
        env = f"/etc/default/{facts['minio_type']}"
        assert theirs["EnvironmentFile"] == ["-/etc/default/minio", f"-{env}"]
        assert ours["EnvironmentFile"] == ["-/etc/default/minio", env]  # sty ships the second file: no `-`
        theirs.pop("EnvironmentFile"), ours.pop("EnvironmentFile")
        assert ours == theirs


def test_files_unit_packages_and_directories_where_pigsty_puts_them(built):
    render = task("config.yml", "render minio config", "template")
    install = task("install.yml", "install object storage package", "package")
    for ip in built.members():
        facts, m = pigsty_facts(built, ip), built.manifests[ip]
        entries = {f["path"]: f for f in m["files"]}
        for item in render["loop"]:
            dest = expand(item["dest"], facts)
            entry = entries[dest]
            expected = (expand(item["owner"], facts), expand(item["group"], facts), mode(item["mode"]))
            assert (entry["owner"], entry["group"], entry["mode"]) == expected, dest
        launch = task("main.yml", "launch silo server service", "systemd")["systemd"]
        unit = re.search(r"name=(\S+)", expand(launch, facts)).group(1)
        assert [u["name"] for u in m["units"] if u["module"] == "minio"] == [f"{unit}.service"]
        assert {expand(x, facts) for x in install["with_items"]} <= set(m["packages"])
        dirs = {d["path"]: d for d in m["directories"]}
        drives = task("install.yml", "create minio data directories", "file")
        conf = task("install.yml", "create minio conf directory", "file")["file"]
        wanted = [(d, drives["file"]) for d in evaluate(drives["with_items"], facts)]  # path: "{{ item }}"
        assert len(wanted) == len(expand_drives(facts["minio_data"]))
        wanted.append((expand(conf["path"], facts), conf))
        for path, spec in wanted:
            d = dirs[path]
            assert (d["owner"], d["group"], d["mode"]) == (
                expand(spec["owner"], facts),
                expand(spec["group"], facts),
                mode(spec["mode"]),
            ), path


def test_certificate_as_pigsty_issues_and_installs_it(built):
    csr = task("config.yml", "generate silo server signing request", "openssl_csr")["openssl_csr"]
    copies = task("config.yml", "copy minio certificates", "copy")["loop"]
    ca_dir = task("config.yml", "create minio cert directory", "file")["file"]
    for ip in built.members():
        facts, m = pigsty_facts(built, ip), built.manifests[ip]
        if not ansible_bool(facts["minio_https"]):
            assert m["certificates"] == [] and not [t for t in m["trust"] if "minio" in t]
            continue
        (cert,) = [c for c in m["certificates"] if c["name"] == "minio-server"]
        assert cert["common_name"] == expand(csr["common_name"], facts)
        assert cert["sans"] == [expand(s, facts).split(":", 1)[1] for s in csr["subject_alt_name"]]
        dest = {Path(item["src"]).suffix: expand(item["dest"], facts) for item in copies}
        owners = {expand(item["owner"], facts) for item in copies}
        assert (cert["cert"], cert["key"], {cert["owner"]}) == (dest[".crt"], dest[".key"], owners)
        ca = next(expand(item["dest"], facts) for item in copies if "/ca/" in item["src"])
        assert ca in m["trust"]
        spec = dict(arg.split("=", 1) for arg in expand(ca_dir, facts).split())  # `path=... owner=...` form
        d = next(d for d in m["directories"] if d["path"] == spec["path"])
        assert (d["owner"], d["group"], d["mode"]) == (spec["owner"], spec["group"], spec["mode"])


# -- provisioning ---------------------------------------------------------------------------------------------------


def provisioning_member(built: Built) -> list[str]:
    """The members where Pigsty enters provision.yml (the `when` of its import in main.yml)."""
    spec = next(t for t in tasks("main.yml") if t.get("import_tasks") == "provision.yml")
    chosen = []
    for ip in built.members():
        facts = pigsty_facts(built, ip)
        if all(ansible_bool(expand("{{ " + cond + " }}", facts)) for cond in spec["when"]):
            chosen.append(ip)
    return chosen


def words(text: str) -> list[str]:
    return text.replace(";", " ").split()


def test_provisioning_runs_pigsty_commands_on_pigsty_member(built):
    (first,) = provisioning_member(built)
    assert {m["identity"]["minio"]["provision_on"] for m in built.manifests.values() if "minio" in m["modules"]} == {
        first
    }
    facts = pigsty_facts(built, first)
    script = built.files[first][SCRIPT]
    lines = script.splitlines()
    env = env_values(built.files[first][ENV])

    # the health check before anything else: Pigsty's `silo healthcheck --url <url> cluster`
    check = words(expand(task("provision.yml", "check minio health status", "command")["command"], facts))
    assert check[1:] == ["healthcheck", "--url", check[3], "cluster"]
    assert script_value(script, "HEALTH") == f"{check[3]}/minio/health/cluster"

    # the alias: same name, endpoint and credentials
    alias = words(expand(task("provision.yml", "write minio alias to infra nodes", "shell")["shell"], facts))
    assert alias[:3] == ["mcli", "alias", "set"]
    assert [script_value(script, "ALIAS"), script_value(script, "ENDPOINT")] == alias[3:5]
    assert [env["MINIO_ROOT_USER"], env["MINIO_ROOT_PASSWORD"]] == alias[5:7]

    # buckets and their policies
    mb = task("provision.yml", "create minio buckets", "shell")["shell"]
    policy = task("provision.yml", "create minio bucket policies", "shell")["shell"]
    for item in facts["minio_buckets"]:
        theirs = words(expand(mb, facts | {"item": item}))
        assert ["mcli_", *theirs[1:]] in [line.split() for line in lines], theirs
        create = words(expand(policy, facts | {"item": item}))[:-1]  # their /tmp file, our mktemp file
        assert create[:4] == ["mcli", "admin", "policy", "create"] and create[4] == script_value(script, "ALIAS")
        assert f'mcli_ admin policy create "$ALIAS" {create[5]} "$policy_file"' in lines
        document = json.loads(pigsty_template("policy.json", facts, item=item))
        assert document in bucket_documents(script).get(item["name"], [])

    # users: added with their secret key, their policy attached when they have one
    shell = task("provision.yml", "create minio users", "shell")["shell"]
    added, attached = [], []
    for item in facts["minio_users"]:
        for line in expand(shell, facts | {"item": item}).splitlines():
            w = words(line)
            if w[:3] == ["mcli", "admin", "user"]:
                added.append((w[5], w[6]))
            elif w[:4] == ["mcli", "admin", "policy", "attach"]:
                attached.append((w[5], w[6].removeprefix("--user=")))
    assert added == script_users(script)
    assert attached == [tuple(line.split()[1:]) for line in lines if line.startswith("attach ")]


def bucket_documents(script: str) -> dict[str, list[Any]]:
    """The policy documents of sty's script, by the policy they are created as."""
    out: dict[str, list[Any]] = {}
    for body, after in re.findall(r"<<'STY_POLICY'\n(.*?)\nSTY_POLICY\n([^\n]*)", script, flags=re.S):
        out.setdefault(after.split()[5], []).append(json.loads(body))
    return out


def script_users(script: str) -> list[tuple[str, str]]:
    """(access key, secret key) of each `admin user add` of sty's script, the secret read from its here-document."""
    found = re.findall(r"<<'STY_SECRET'\n(.*?)\nSTY_SECRET\nmcli_ admin user add \"\$ALIAS\" (\S+)", script)
    return [(access.strip("'"), secret) for secret, access in found]


def test_other_members_set_only_the_alias(built):
    (first,) = provisioning_member(built)
    for ip in built.members():
        if ip != first:
            lines = built.files[ip][SCRIPT].splitlines()
            assert [line.split()[1:3] for line in lines if line.startswith("mcli_ ")] == [["alias", "set"]]


# -- names and metrics ----------------------------------------------------------------------------------------------


def test_dns_names_as_pigsty_writes_them(built):
    etc_hosts = task("config.yml", "write static etc hosts entry", "lineinfile")
    dnsmasq = task("config.yml", "render minio instance dns to infra nameserver", "copy")["copy"]
    served = set()
    for ip in built.members():
        facts = pigsty_facts(built, ip)
        local = {
            expand(etc_hosts["lineinfile"]["line"], facts | {"item": item}) for item in facts["minio_member"].split(",")
        }
        assert {line.removesuffix(" # minio dns") for line in local} <= set(built.files[ip]["/etc/hosts"].splitlines())
        served |= set(expand(dnsmasq["content"], facts).splitlines()) - {""}
    for infra in built.infra:
        hosts = built.files[infra][f"/etc/hosts.d/minio-{pigsty_facts(built, built.members()[0])['minio_cluster']}"]
        assert {line for line in hosts.splitlines() if not line.startswith("#")} == served


def test_scrape_target_as_pigsty_registers_it(built):
    register = task("main.yml", "register minio as victoria target", "copy")["copy"]
    for ip in built.members():
        facts = pigsty_facts(built, ip)
        (theirs,) = yaml.safe_load(expand(register["content"], facts))
        name = Path(expand(register["dest"], facts)).name
        for infra in built.infra:
            (ours,) = yaml.safe_load(built.files[infra][f"/infra/targets/minio/{name}"])
            assert ours["targets"] == theirs["targets"]
            labels = {k: v for k, v in ours["labels"].items() if not k.startswith("__")}
            assert labels.items() <= theirs["labels"].items()
            # the rest is INFRA's: `instance` is Prometheus' default (the target), `flavor` is not written
            assert set(theirs["labels"]) - set(labels) <= {"instance", "flavor"}
            assert theirs["labels"]["instance"] == theirs["targets"][0]
            assert (ours["labels"].get("__scheme__") == "https") == ansible_bool(facts["minio_https"])
            env = env_values(built.files[ip][ENV])
            jobs = yaml.safe_load(built.files[infra]["/infra/prometheus.yml"])["scrape_configs"]
            assert env["MINIO_PROMETHEUS_JOB_ID"] in {j["job_name"] for j in jobs}
