"""MINIO: what the bundles of Pigsty's demo/minio.yml say (4 nodes x 4 drives), single-node variants, the
cross-host rules, the apply handler, and (slow) real programs judging them: bash sources the environment file
(minio_env), `bash -n` and runs with stand-in `mcli` and `curl` judge the provisioning script, systemd-analyze the
unit. tests/test_minio_pigsty.py holds the same bundles to Pigsty's own MINIO role.

The demo's `infra` group is left out of these inventories: this file is about MINIO, and INFRA's files are
judged elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from conftest import ROOT, dump_inventory
from shared import CORPUS
from test_redis import Built, expect, failing, render

from sty.apply.handlers import minio as handler
from sty.compiler.pipeline import compile_fleet

DEMO = CORPUS / "demo" / "minio.yml"
MV, MH = "all.children.minio.vars", "all.children.minio.hosts"
IPS = ("10.10.10.10", "10.10.10.11", "10.10.10.12", "10.10.10.13")
SECRET_VALUES = ("S3User.MinIO", "S3User.Backup", "S3User.Meta", "S3User.Data")
ENV, UNIT, SCRIPT = "/etc/default/silo", "/etc/systemd/system/silo.service", "/etc/minio/provision.sh"


def demo_inventory() -> dict[str, Any]:
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["all"]["children"].pop("infra", None)
    return data


def single_inventory(**extra: Any) -> dict[str, Any]:
    """Pigsty's smallest MinIO: one node, one drive (SNSD), defaults otherwise."""
    return {
        "all": {
            "children": {
                "minio": {"hosts": {"10.10.10.10": {"minio_seq": 1}}, "vars": {"minio_cluster": "minio", **extra}}
            },
            "vars": {"admin_ip": "10.10.10.10", "minio_secret_key": "Own.Root.Secret"},
        }
    }


def env(text: str) -> dict[str, str]:
    """`NAME="value"` lines of an environment file (the one env quoting: \\, ", $ and ` backslash-escaped)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            assert value.startswith('"') and value.endswith('"'), line
            out[name] = re.sub(r'\\([\\"$`])', r"\1", value[1:-1])
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Built:
    return render(demo_inventory(), tmp_path_factory.mktemp("minio-demo"))


@pytest.fixture
def variant(tmp_path):
    def make(data: dict[str, Any]) -> Built:
        return render(data, tmp_path)

    return make


# -- environment file and unit -------------------------------------------------------------------------


def test_env_file_spans_four_nodes_by_four_drives(demo):
    for i, ip in enumerate(IPS, 1):
        values = env(demo.file(ip, ENV))
        assert list(values.items()) == [
            ("MINIO_OPTS", "--address :9000 --console-address :9001 --certs-dir /home/minio/.minio/certs"),
            ("MINIO_VOLUMES", "https://minio-{1...4}.pigsty:9000/data{1...4}"),
            ("MINIO_ROOT_USER", "minioadmin"),
            ("MINIO_ROOT_PASSWORD", "<<secret:minio/minio_secret_key>>"),
            ("MINIO_PROMETHEUS_AUTH_TYPE", "public"),
            ("MINIO_PROMETHEUS_JOB_ID", "minio"),
            ("MINIO_PROMETHEUS_URL", "http://10.10.10.10:8428"),  # admin_ip, vmetrics_port
        ]
        assert f"silo.service on minio-{i}.pigsty (MinIO cluster minio)" in demo.file(ip, ENV)
        entry = demo.entry(ip, ENV)
        assert (entry["owner"], entry["group"], entry["mode"], entry["format"]) == ("root", "minio", "0640", "env")
        assert entry["secrets"] == ["minio/minio_secret_key"]
        assert demo.actions(ip, ENV) == ["restart silo.service"]
        assert "/etc/default/minio" not in demo.trees[ip] and "/etc/systemd/system/minio.service" not in demo.trees[ip]


def test_unit_runs_silo_with_the_environment(demo):
    lines = demo.file("10.10.10.12", UNIT).splitlines()
    assert lines.index("EnvironmentFile=-/etc/default/minio") < lines.index("EnvironmentFile=/etc/default/silo")
    assert "ExecStart=/usr/bin/silo server $MINIO_OPTS $MINIO_VOLUMES" in lines and "Type=notify" in lines
    assert "Description=Silo S3 object storage server minio-3.pigsty" in lines
    assert demo.actions("10.10.10.12", UNIT) == ["daemon-reload", "restart silo.service"]


def test_every_member_resolves_every_node_name(demo):
    for ip in IPS:
        lines = demo.file(ip, "/etc/hosts").splitlines()
        for n, peer in enumerate(IPS, 1):
            assert f"{peer} minio-{n}.pigsty" in lines, (ip, lines)


# -- provisioning ------------------------------------------------------------------------------------------


def test_provisioning_script_on_every_member_buckets_and_users_on_the_first(demo):
    for ip in IPS:
        entry = demo.entry(ip, SCRIPT)
        assert (entry["owner"], entry["mode"], entry["format"]) == ("root", "0700", "shell")
        assert demo.actions(ip, SCRIPT) == ["minio-provision"]
        assert "/root/.mcli/certs/CAs/ca.crt" in demo.manifest(ip)["trust"]  # mcli verifies the https endpoint
    assert demo.entry("10.10.10.10", SCRIPT)["secrets"] == [
        f"minio/minio_users/{u}/secret_key" for u in ("pgbackrest", "s3user_data", "s3user_meta")
    ]
    for ip in IPS[1:]:
        lines = demo.file(ip, SCRIPT).splitlines()
        assert not demo.entry(ip, SCRIPT).get("secrets")
        assert 'mcli_ alias set "$ALIAS" "$ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null' in lines
        assert not any(" mb " in line or "admin" in line or "HEALTH" in line for line in lines)
    identity = demo.manifest("10.10.10.11")["identity"]["minio"]
    assert identity["provision_on"] == "10.10.10.10" and identity["endpoint"] == "https://sss.pigsty:9002"


def test_provisioning_script_commands(demo):
    """sty's own parts: root's mcli configuration, the wait for health first, versioning enabled again, the secret
    keys in here-documents (tests/test_minio_pigsty.py holds the commands to Pigsty's)."""
    lines = demo.file("10.10.10.10", SCRIPT).splitlines()
    assert lines[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in lines and ". /etc/default/silo" in lines
    assert "ALIAS=sss" in lines and "ENDPOINT=https://sss.pigsty:9002" in lines
    assert 'mcli_() { "$MCLI" --config-dir /root/.mcli "$@"; }' in lines
    assert 'until "$CURL" -fs -o /dev/null --max-time 5 --cacert /etc/pki/ca.crt "$HEALTH"; do' in lines
    alias = 'mcli_ alias set "$ALIAS" "$ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null'
    assert lines.index("HEALTH=https://127.0.0.1:9000/minio/health/cluster") < lines.index(alias)
    assert [line for line in lines if "version enable" in line] == ["mcli_ version enable sss/meta"]
    for user in ("pgbackrest", "s3user_meta", "s3user_data"):
        i = lines.index(f"<<secret:minio/minio_users/{user}/secret_key>>")
        assert lines[i - 1 : i + 3] == [
            "IFS= read -r secret_key <<'STY_SECRET'",
            lines[i],
            "STY_SECRET",
            f'mcli_ admin user add "$ALIAS" {user} "$secret_key"',
        ]


def test_bucket_options_and_a_user_without_policy(variant):
    data = demo_inventory()
    data["all"]["children"]["minio"]["vars"]["minio_buckets"] = [
        {"name": "locked", "lock": True},
        {"name": "public.files", "policy": "download"},
    ]
    data["all"]["children"]["minio"]["vars"]["minio_users"] = [
        {"access_key": "app", "secret_key": "App.Secret.1"},
        {"access_key": "ops", "secret_key": "Ops.Secret.1", "policy": ""},
        {"access_key": "reader", "secret_key": "Reader.Secret.1", "policy": "readonly"},
    ]
    script = variant(data).file("10.10.10.10", SCRIPT).splitlines()
    assert "mcli_ mb --ignore-existing --with-lock sss/locked" in script
    assert "mcli_ anonymous set download sss/public.files" in script
    # as Pigsty: a user without a policy (or an empty one) gets none attached
    assert [line for line in script if line.startswith("attach ")] == ["attach readonly reader"]
    assert 'mcli_ admin user add "$ALIAS" app "$secret_key"' in script


def test_no_provisioning_when_disabled(variant):
    data = demo_inventory()
    data["all"]["children"]["minio"]["vars"]["minio_provision"] = False
    built = variant(data)
    for ip in IPS:
        assert SCRIPT not in built.trees[ip]
        assert "/root/.mcli/certs/CAs/ca.crt" not in built.manifest(ip)["trust"]
    assert built.manifest("10.10.10.10")["identity"]["minio"]["provision_on"] is None


def test_handler_runs_the_script_wherever_the_bundle_has_it(bundles):
    from sty.contract.manifest import read_manifest

    for ip in IPS:
        ran: list[tuple[str, float]] = []
        host = SimpleNamespace(ip=ip, manifest=read_manifest(bundles / f"{ip}.yml")[0], log=lambda message: None)
        host.run = lambda command, check=True, timeout=600, stdin=None, ran=ran: ran.append((command, timeout))
        handler.provision(host, "minio")
        assert ran == [("bash /etc/minio/provision.sh", handler.TIMEOUT)]
    assert handler.HANDLERS.actions == {"minio-provision": handler.provision}


# -- manifest ----------------------------------------------------------------------------------------------


def test_manifest_certificate_ports_directories(demo):
    m = demo.manifest("10.10.10.11")
    assert m["certificates"] == [
        {
            "name": "minio-server",
            "common_name": "minio-2.pigsty",
            "sans": ["localhost", "minio-2.pigsty", "minio", "minio-2", "sss.pigsty", "127.0.0.1", "10.10.10.11"],
            "cert": "/home/minio/.minio/certs/public.crt",
            "key": "/home/minio/.minio/certs/private.key",
            "owner": "minio",
            "usage": "both",
        }
    ]
    ports = {(p["port"], p["component"]) for p in m["ports"] if p["module"] == "minio"}
    assert ports == {(9000, "minio"), (9001, "minio-console")}
    units = {u["name"]: u["health"] for u in m["units"]}
    assert units["silo.service"] == "port:9000"  # apply's curl does not trust the fleet CA
    assert "/home/minio/.minio/certs/CAs/ca.crt" in m["trust"]
    dirs = {d["path"]: (d["owner"], d["group"], d["mode"]) for d in m["directories"]}
    for n in range(1, 5):
        assert dirs[f"/data{n}"] == ("minio", "minio", "0750")
    for path in ("/home/minio/.minio", "/home/minio/.minio/certs", "/home/minio/.minio/certs/CAs"):
        assert dirs[path] == ("minio", "minio", "0750")
    assert {"silo", "mcli"} <= set(m["packages"]) and "minio" not in m["packages"]
    assert {"name": "minio", "home": "/home/minio", "system": True} in m["users"]
    checks = {(c["checker"], tuple(c["files"]), c["where"]) for c in m["checks"]}
    assert ("minio_env", (ENV,), "both") in checks
    assert ("systemd", (UNIT,), "both") in checks
    assert ("shell", (SCRIPT,), "both") in checks
    identity = m["identity"]["minio"]
    assert identity["members"] == {f"minio-{n}.pigsty": ip for n, ip in enumerate(IPS, 1)}
    assert identity["seq"] == 2 and identity["node"] == "minio-2.pigsty"


def test_secrets_never_reach_the_bundle(demo):
    for ip, tree in demo.trees.items():
        for path, text in tree.items():
            for value in SECRET_VALUES:
                assert value not in text, f"{ip}{path} carries a secret"
    assert demo.secrets["10.10.10.10"]["minio/minio_secret_key"] == "S3User.MinIO"
    assert demo.secrets["10.10.10.10"]["minio/minio_users/pgbackrest/secret_key"] == "S3User.Backup"


# -- single node and parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "drives"), [("/data/minio", ["/data/minio"]), ("/data{1...3}/minio", ["/data1/minio", "/data3/minio"])]
)
def test_single_node_keeps_the_data_pattern(variant, data, drives):
    built = variant(single_inventory(minio_data=data))
    values = env(built.file("10.10.10.10", ENV))
    assert values["MINIO_VOLUMES"] == data  # MinIO expands the ellipsis itself: several drives of one node
    assert not {"MINIO_BROWSER", "MINIO_DOMAIN", "MINIO_SERVER_URL", "MINIO_BROWSER_REDIRECT_URL"} & set(values)
    assert set(drives) <= {d["path"] for d in built.manifest("10.10.10.10")["directories"]}
    assert built.file("10.10.10.10", "/etc/hosts").count("minio-1.pigsty") == 1


def test_plain_http(variant):
    built = variant(single_inventory(minio_https=False))
    values = env(built.file("10.10.10.10", ENV))
    assert values["MINIO_OPTS"] == "--address :9000 --console-address :9001"
    m = built.manifest("10.10.10.10")
    assert m["certificates"] == [] and not [t for t in m["trust"] if "minio" in t or "mcli" in t]
    assert {u["name"]: u["health"] for u in m["units"]}["silo.service"] == "http://10.10.10.10:9000/minio/health/live"
    script = built.file("10.10.10.10", SCRIPT).splitlines()
    assert "ENDPOINT=http://sss.pigsty:9000" in script
    assert 'until "$CURL" -fs -o /dev/null --max-time 5 "$HEALTH"; do' in script


def test_extra_vars_are_parsed_into_lines(variant):
    extra = 'MINIO_COMPRESSION_ENABLE=on\n# a comment\nexport MINIO_REGION_NAME="eu-1"\n'
    values = env(variant(single_inventory(minio_extra_vars=extra)).file("10.10.10.10", ENV))
    assert list(values.items())[-2:] == [("MINIO_COMPRESSION_ENABLE", "on"), ("MINIO_REGION_NAME", "eu-1")]


def test_no_etc_hosts_block_means_no_contribution(variant):
    data = demo_inventory()
    data["all"]["vars"]["node_write_etc_hosts"] = False
    built = variant(data)
    assert "/etc/hosts" not in built.trees["10.10.10.10"]
    assert ENV in built.trees["10.10.10.10"]


# -- cross-host rules ------------------------------------------------------------------------------------------


def hosts(d) -> dict:
    return d["all"]["children"]["minio"]["hosts"]


def mvars(d) -> dict:
    return d["all"]["children"]["minio"]["vars"]


def test_demo_inventory_is_valid(tmp_path):
    assert not compile_fleet(dump_inventory(demo_inventory(), tmp_path / "pigsty.yml")).report.errors


def test_minio_seq_unique(tmp_path):
    d = demo_inventory()
    hosts(d)["10.10.10.12"]["minio_seq"] = 2
    expect(failing(d, tmp_path), f"{MH}.10.10.10.12.minio_seq", "minio_seq 2", "10.10.10.11")


def test_minio_seq_required(tmp_path):
    d = demo_inventory()
    del hosts(d)["10.10.10.12"]["minio_seq"]
    expect(failing(d, tmp_path), f"{MH}.10.10.10.12.minio_seq", "no minio_seq")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("/data{1..4}", ("{x...y}",)),
        ("/data{4...1}", ("descending",)),
        ("/data{1...4", ("{x...y}",)),
        ("data{1...4}", ("absolute",)),
    ],
)
def test_minio_data_expansion_well_formed(tmp_path, data, words):
    d = demo_inventory()
    mvars(d)["minio_data"] = data
    expect(failing(d, tmp_path), f"{MV}.minio_data", *words)


def test_multi_node_needs_consistent_drive_counts(tmp_path):
    d = demo_inventory()
    hosts(d)["10.10.10.13"]["minio_data"] = "/data{1...2}"
    expect(failing(d, tmp_path), f"{MH}.10.10.10.13.minio_data", "2 drive(s)", "4", "same number of drives")


def test_multi_node_needs_the_same_drives(tmp_path):
    d = demo_inventory()
    hosts(d)["10.10.10.13"]["minio_data"] = "/disk{1...4}"
    expect(failing(d, tmp_path), f"{MH}.10.10.10.13.minio_data", "differs")


def test_multi_node_seqs_consecutive(tmp_path):
    d = demo_inventory()
    hosts(d)["10.10.10.13"]["minio_seq"] = 6
    expect(failing(d, tmp_path), f"{MH}.10.10.10.13.minio_seq", "consecutive")


def test_node_pattern_needs_the_seq(tmp_path):
    d = demo_inventory()
    mvars(d)["minio_node"] = "${minio_cluster}.pigsty"
    problems = failing(d, tmp_path)
    expect(problems, f"{MV}.minio_node", "minio.pigsty")


def test_ports_must_agree_and_not_clash(tmp_path):
    d = demo_inventory()
    hosts(d)["10.10.10.12"]["minio_port"] = 9100
    problems = failing(d, tmp_path)
    expect(problems, f"{MH}.10.10.10.12.minio_port", "9100", "node_exporter")
    expect(problems, f"{MH}.10.10.10.12.minio_port", "differs from 9000")


def test_console_port_clashes_with_api_port(tmp_path):
    d = demo_inventory()
    mvars(d)["minio_admin_port"] = 9000
    expect(failing(d, tmp_path), f"{MV}.minio_admin_port", "9000", "minio")


@pytest.mark.parametrize(
    ("key", "value", "path", "words"),
    [
        ("minio_buckets", [{"name": "Bad_Bucket"}], "minio_buckets[0].name", ("S3 naming",)),
        ("minio_buckets", [{"name": "readwrite"}], "minio_buckets[0].name", ("built-in",)),
        ("minio_buckets", [{"name": "pgsql", "policy": "open"}], "minio_buckets[0].policy", ("download",)),
        ("minio_users", [{"access_key": "ab", "secret_key": "x" * 8}], "minio_users[0].access_key", ("3",)),
        (
            "minio_users",
            [{"access_key": "app", "secret_key": "x" * 8, "policy": "pgsql data"}],
            "minio_users[0].policy",
            ("one policy name",),
        ),
        ("minio_extra_vars", "MINIO_X=$(id)", "minio_extra_vars", ("MINIO_X",)),
        ("minio_extra_vars", "not a variable", "minio_extra_vars", ("NAME=value",)),
        ("minio_volumes", "https://minio-{1...4}.pigsty:9000/data{1..4}", "minio_volumes", ("{x...y}",)),
        ("minio_volumes", "/data1 https://x:9000/d", "minio_volumes", ("mix",)),
        ("minio_endpoint", "sss.pigsty:9000", "minio_endpoint", ("URL",)),
        ("minio_domain", "sss pigsty", "minio_domain", ("DNS",)),
        ("minio_access_key", "ab", "minio_access_key", ("3 characters",)),
    ],
)
def test_values_are_validated(tmp_path, key, value, path, words):
    d = demo_inventory()
    mvars(d)[key] = value
    expect(failing(d, tmp_path), f"{MV}.{path}", *words)


def test_a_user_policy_unknown_to_the_inventory_is_a_warning(tmp_path):
    """Pigsty attaches whatever policy is named; one that is neither a bucket's nor built-in must exist already."""
    d = demo_inventory()
    mvars(d)["minio_users"] = [{"access_key": "app", "secret_key": "x" * 8, "policy": "custom"}]
    compiled = compile_fleet(dump_inventory(d, tmp_path / "pigsty.yml"))
    assert not compiled.report.errors
    assert any(
        w.path == f"{MV}.minio_users[0].policy" and "must exist on the server" in w.message
        for w in compiled.report.warnings
    )


# -- schema ---------------------------------------------------------------------------------------------------------


def test_schema_covers_every_minio_parameter_with_pigsty_defaults():
    schema = json.loads((ROOT / "schemas" / "minio.json").read_text())["properties"]
    el = yaml.safe_load((CORPUS / "demo" / "el.yml").read_text())["all"]["vars"]
    listed = {k: v for k, v in el.items() if k.startswith("minio_")}
    assert set(listed) <= set(schema)
    for name, value in listed.items():
        assert schema[name]["default"] == value, name
    for name, spec in schema.items():
        assert spec.get("type") and spec.get("description"), name
        if name not in ("minio_seq", "minio_cluster", "minio_volumes", "minio_endpoint"):  # identity or derived
            assert "default" in spec, name
    assert schema["minio_secret_key"]["x-secret"] is True
    assert schema["minio_users"]["x-secret-fields"] == ["secret_key"]


# ===================================================================================================================
# slow: real programs (bash, systemd-analyze) through the registered checkers
# ===================================================================================================================


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    from sty.compiler.build import build

    tmp = tmp_path_factory.mktemp("minio-bundles")
    build(compile_fleet(dump_inventory(demo_inventory(), tmp / "pigsty.yml")), tmp / "out")
    return tmp / "out"


def run_checker(root: Path, ip: str, name: str, files: tuple[str, ...]):
    import realprog as rp

    return rp.run(root / ip, ip, name, files, outputs=root)


def spoiled(bundles: Path, tmp: Path, path: str, fn) -> Path:
    root = tmp / "out"
    shutil.copytree(bundles, root)
    f = root / "10.10.10.10" / path.lstrip("/")
    f.write_text(fn(f.read_text()))
    return root


@pytest.mark.slow
def test_minio_env_accepts_every_member(bundles):
    for ip in IPS:
        result = run_checker(bundles, ip, "minio_env", (ENV,))
        assert result.status == "pass", result.output
        assert "MINIO_VOLUMES" in result.output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"<<secret:minio/minio_secret_key>>"', '"short"', "MINIO_ROOT_PASSWORD must be >= 8 chars"),
        ('MINIO_ROOT_USER="minioadmin"', 'MINIO_ROOT_USER="mi"', "MINIO_ROOT_USER must be >= 3 chars"),
        ('_JOB_ID="minio"', '_JOB_ID="minio', "unexpected EOF while looking for matching"),
        ('/data{1...4}"', '/data{1..4}"', "malformed ellipsis"),
        ("minio-{1...4}.pigsty:9000/data{1...4}", "minio-{1...17}.pigsty:9000/data1", "endpoints provided (17)"),
        ('MINIO_ROOT_USER="minioadmin"\n', "", "MINIO_ROOT_USER is not set"),
    ],
)
def test_minio_env_rejects_broken_files(bundles, tmp_path, old, new, message):
    root = spoiled(bundles, tmp_path, ENV, lambda t: t.replace(old, new, 1))
    result = run_checker(root, "10.10.10.10", "minio_env", (ENV,))
    assert result.status == "fail", result.output
    assert message in result.output, result.output


@pytest.mark.slow
def test_shell_accepts_and_rejects_the_provisioning_script(bundles, tmp_path):
    for ip in ("10.10.10.10", "10.10.10.11"):
        result = run_checker(bundles, ip, "shell", (SCRIPT,))
        assert result.status == "pass", result.output
    root = spoiled(bundles, tmp_path, SCRIPT, lambda t: t.replace("  esac\n", "", 1))
    result = run_checker(root, "10.10.10.10", "shell", (SCRIPT,))
    assert result.status == "fail" and "syntax error" in result.output, result.output
    assert SCRIPT in result.output


FAKE_MCLI = """#!/bin/sh
# stand-in for mcli: refuses any configuration but root's, records its other arguments; a policy attached once is
# "already in effect" the next time, as mcli says
[ "$1 $2" = "--config-dir /root/.mcli" ] || { echo "mcli: not root's configuration: $1 $2" >&2; exit 2; }
shift 2
printf '%s\\n' "$*" >> "$STY_LOG"
case "$1 $2 $3" in
  "admin policy attach")
    if grep -qxF "attached $5 $7" "$STY_STATE" 2>/dev/null; then
      echo "mcli: <ERROR> Unable to make user/group policy association." \\
        "The specified policy change is already in effect." >&2
      exit 1
    fi
    echo "attached $5 $7" >> "$STY_STATE" ;;
esac
exit 0
"""

# stand-in for curl: the cluster answers unhealthy the first $STY_UNHEALTHY times
FAKE_CURL = """#!/bin/sh
printf 'curl %s\\n' "$*" >> "$STY_LOG"
n=$(cat "$STY_CURLS" 2>/dev/null || echo 0)
echo $((n + 1)) > "$STY_CURLS"
[ "$n" -ge "${STY_UNHEALTHY:-0}" ]
"""


def stand_ins(tmp_path: Path, ip: str, bundles: Path, secrets: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """The member's script and environment file with secrets substituted, the script reading the copy, and the
    environment that runs it with the stand-ins (no sleeping between health probes)."""
    from sty.apply.checks.util import substitute

    node = bundles / ip
    tmp_path.mkdir(exist_ok=True)
    env_file = tmp_path / "silo.env"
    env_file.write_text(substitute((node / "etc/default/silo").read_text(), secrets.get))
    script = tmp_path / "provision.sh"
    text = substitute((node / "etc/minio/provision.sh").read_text(), secrets.get)
    script.write_text(text.replace(". /etc/default/silo", f". {env_file}").replace("  sleep 5\n", ""))
    for name, body in (("mcli", FAKE_MCLI), ("curl", FAKE_CURL)):
        (tmp_path / name).write_text(body)
        (tmp_path / name).chmod(0o755)
    environ = {
        "PATH": os.environ["PATH"],
        "MCLI": str(tmp_path / "mcli"),
        "CURL": str(tmp_path / "curl"),
        "STY_LOG": str(tmp_path / "calls.log"),
        "STY_STATE": str(tmp_path / "state"),
        "STY_CURLS": str(tmp_path / "curls"),
    }
    return script, environ


def run_script(script: Path, environ: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script)], env=environ, capture_output=True, text=True, timeout=30)


@pytest.mark.slow
def test_provisioning_script_runs_idempotently_against_stand_ins(bundles, tmp_path):
    """bash runs the first member's script (secrets substituted, the environment file from the bundle) twice with
    stand-in mcli and curl: it waits for the cluster's health, the calls are the expected ones, the user secret
    keys arrive intact, the second run succeeds too."""
    secrets = {
        "minio/minio_secret_key": "Root.Secret-1",
        "minio/minio_users/pgbackrest/secret_key": "Back up $HOME 'q' \"d\"",
        "minio/minio_users/s3user_meta/secret_key": "Meta.Secret-1",
        "minio/minio_users/s3user_data/secret_key": "Data.Secret-1",
    }
    script, environ = stand_ins(tmp_path, "10.10.10.10", bundles, secrets)
    for unhealthy in ("2", "0"):
        proc = run_script(script, environ | {"STY_UNHEALTHY": unhealthy})
        assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = [re.sub(r"/tmp/tmp\.\w+", "<tmp>", c) for c in (tmp_path / "calls.log").read_text().splitlines()]
    health = "curl -fs -o /dev/null --max-time 5 --cacert /etc/pki/ca.crt https://127.0.0.1:9000/minio/health/cluster"
    assert calls[:3] == [health] * 3  # two unhealthy answers, then healthy
    calls = [c for c in calls if not c.startswith("curl ")]
    first = calls[: len(calls) // 2]
    assert first[0] == "alias set sss https://sss.pigsty:9002 minioadmin Root.Secret-1"
    assert "mb --ignore-existing --with-versioning sss/meta" in first and "version enable sss/meta" in first
    assert "admin user add sss pgbackrest Back up $HOME 'q' \"d\"" in first
    assert "admin policy attach sss pgsql --user pgbackrest" in first
    policies = [c for c in first if c.startswith("admin policy create")]
    assert policies == [f"admin policy create sss {b} <tmp>" for b in ("pgsql", "meta", "data")]
    assert calls[len(calls) // 2 :] == first  # the second run makes the same calls and tolerates the attach errors


@pytest.mark.slow
def test_provisioning_stops_on_an_unhealthy_cluster_and_other_members_only_set_the_alias(bundles, tmp_path):
    root = {"minio/minio_secret_key": "Root.Secret-1"}
    script, environ = stand_ins(tmp_path / "first", "10.10.10.10", bundles, root)
    proc = run_script(script, environ | {"STY_UNHEALTHY": "1000"})
    assert proc.returncode == 1 and "MinIO cluster minio is not healthy at https://127.0.0.1:9000" in proc.stderr
    calls = (tmp_path / "first" / "calls.log").read_text().splitlines()
    assert len(calls) == 60 and all(c.startswith("curl ") for c in calls)  # no mcli call at all
    script, environ = stand_ins(tmp_path / "other", "10.10.10.12", bundles, root)
    assert run_script(script, environ).returncode == 0
    calls = (tmp_path / "other" / "calls.log").read_text().splitlines()
    assert calls == ["alias set sss https://sss.pigsty:9002 minioadmin Root.Secret-1"]


@pytest.mark.slow
def test_systemd_accepts_and_rejects_the_unit(bundles, tmp_path):
    result = run_checker(bundles, "10.10.10.11", "systemd", (UNIT,))
    if result.status == "skip":
        pytest.skip(result.reason)
    assert result.status == "pass", result.output
    root = spoiled(bundles, tmp_path, UNIT, lambda t: t.replace("Type=notify", "Type=notifi"))
    result = run_checker(root, "10.10.10.10", "systemd", (UNIT,))
    assert result.status == "fail" and "Failed to parse service type" in result.output
