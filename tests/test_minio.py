"""MINIO: what the bundles of Pigsty's demo/minio.yml say (4 nodes x 4 drives), single-node variants, the
cross-host rules, and (slow) real programs judging them: bash sources the environment file (minio_env),
`bash -n` and a run with a stand-in `mcli` judge the provisioning script, systemd-analyze the unit.

The demo's `infra` group is left out of these inventories: this file is about MINIO, and INFRA's files are
judged elsewhere (its `infra_portal` in all.vars stays, and MinIO's console redirect follows it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, dump_inventory
from shared import CORPUS
from test_redis import Built, expect, failing, render

from sty.compiler.pipeline import compile_fleet

DEMO = CORPUS / "demo" / "minio.yml"
MV, MH = "all.children.minio.vars", "all.children.minio.hosts"
IPS = ("10.10.10.10", "10.10.10.11", "10.10.10.12", "10.10.10.13")
SECRET_VALUES = ("S3User.MinIO", "S3User.Backup", "S3User.Meta", "S3User.Data")


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
        values = env(demo.file(ip, "/etc/default/minio"))
        assert values == {
            "MINIO_VOLUMES": "https://minio-{1...4}.pigsty:9000/data{1...4}",
            "MINIO_OPTS": "--address :9000 --console-address :9001 --certs-dir /home/minio/.minio/certs",
            "MINIO_ROOT_USER": "minioadmin",
            "MINIO_ROOT_PASSWORD": "<<secret:minio/minio_secret_key>>",
            "MINIO_SERVER_URL": "https://sss.pigsty:9000",
            "MINIO_BROWSER_REDIRECT_URL": "https://m.pigsty",  # infra_portal.minio
            "MINIO_DOMAIN": "sss.pigsty",
            "MINIO_PROMETHEUS_AUTH_TYPE": "public",
        }
        assert f"MinIO server minio-{i}.pigsty of cluster minio" in demo.file(ip, "/etc/default/minio")
        entry = demo.entry(ip, "/etc/default/minio")
        assert (entry["owner"], entry["group"], entry["mode"], entry["format"]) == ("root", "minio", "0640", "env")
        assert entry["secrets"] == ["minio/minio_secret_key"]
        assert demo.actions(ip, "/etc/default/minio") == ["restart minio.service"]


def test_unit_runs_minio_server_with_the_environment(demo):
    unit = demo.file("10.10.10.12", "/etc/systemd/system/minio.service")
    assert "EnvironmentFile=/etc/default/minio" in unit
    assert "ExecStart=/usr/bin/minio server $MINIO_OPTS $MINIO_VOLUMES\n" in unit
    assert (
        "User=minio" in unit
        and "Group=minio" in unit
        and "Description=MinIO object storage server minio-3.pigsty" in unit
    )
    assert demo.actions("10.10.10.12", "/etc/systemd/system/minio.service") == [
        "daemon-reload",
        "restart minio.service",
    ]


def test_every_member_resolves_every_node_name(demo):
    for ip in IPS:
        lines = demo.file(ip, "/etc/hosts").splitlines()
        for n, peer in enumerate(IPS, 1):
            assert f"{peer} minio-{n}.pigsty" in lines, (ip, lines)


# -- provisioning ------------------------------------------------------------------------------------------


def test_provisioning_script_on_the_first_member_only(demo):
    assert "/etc/minio/provision.sh" in demo.trees["10.10.10.10"]
    for ip in IPS[1:]:
        assert "/etc/minio/provision.sh" not in demo.trees[ip]
    entry = demo.entry("10.10.10.10", "/etc/minio/provision.sh")
    assert (entry["owner"], entry["mode"], entry["format"]) == ("root", "0700", "shell")
    assert demo.actions("10.10.10.10", "/etc/minio/provision.sh") == ["minio-provision"]
    assert entry["secrets"] == [
        f"minio/minio_users/{u}/secret_key" for u in ("pgbackrest", "s3user_data", "s3user_meta")
    ]
    identity = demo.manifest("10.10.10.11")["identity"]["minio"]
    assert identity["provision_on"] == "10.10.10.10" and identity["endpoint"] == "https://sss.pigsty:9002"


def test_provisioning_script_commands(demo):
    script = demo.file("10.10.10.10", "/etc/minio/provision.sh")
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in lines
    assert "ALIAS=sss" in lines and "ENDPOINT=https://sss.pigsty:9002" in lines
    assert ". /etc/default/minio" in lines
    assert '"$MCLI" alias set "$ALIAS" "$ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null' in lines
    for bucket in ("pgsql", "meta", "data"):
        assert f'"$MCLI" mb --ignore-existing sss/{bucket}' in lines
        assert f'"$MCLI" admin policy create "$ALIAS" {bucket} "$policy_file"' in lines
    assert [line for line in lines if "version enable" in line] == ['"$MCLI" version enable sss/meta']
    for user, policy in (("pgbackrest", "pgsql"), ("s3user_meta", "meta"), ("s3user_data", "data")):
        assert f'"$MCLI" admin user add "$ALIAS" {user} "$secret_key"' in lines
        assert f"attach {policy} {user}" in lines
        assert f"<<secret:minio/minio_users/{user}/secret_key>>" in lines
    policies = script.split("<<'STY_POLICY'\n")[1:]
    first = json.loads(policies[0].split("STY_POLICY")[0])
    assert first["Statement"][0]["Resource"] == ["arn:aws:s3:::pgsql", "arn:aws:s3:::pgsql/*"]


def test_bucket_options_and_default_user_policy(variant):
    data = demo_inventory()
    data["all"]["children"]["minio"]["vars"]["minio_buckets"] = [
        {"name": "locked", "lock": True},
        {"name": "public.files", "policy": "download"},
    ]
    data["all"]["children"]["minio"]["vars"]["minio_users"] = [{"access_key": "app", "secret_key": "App.Secret.1"}]
    script = variant(data).file("10.10.10.10", "/etc/minio/provision.sh").splitlines()
    assert '"$MCLI" mb --ignore-existing --with-lock sss/locked' in script
    assert '"$MCLI" anonymous set download sss/public.files' in script
    assert "attach readwrite app" in script


def test_no_provisioning_when_disabled(variant):
    data = demo_inventory()
    data["all"]["children"]["minio"]["vars"]["minio_provision"] = False
    built = variant(data)
    assert "/etc/minio/provision.sh" not in built.trees["10.10.10.10"]
    assert built.manifest("10.10.10.10")["identity"]["minio"]["provision_on"] is None


# -- manifest ----------------------------------------------------------------------------------------------


def test_manifest_certificate_ports_directories(demo):
    m = demo.manifest("10.10.10.11")
    assert m["certificates"] == [
        {
            "name": "minio-server",
            "common_name": "minio-2.pigsty",
            "sans": ["minio-2.pigsty", "sss.pigsty", "localhost", "10.10.10.11", "127.0.0.1"],
            "cert": "/home/minio/.minio/certs/public.crt",
            "key": "/home/minio/.minio/certs/private.key",
            "owner": "minio",
            "usage": "both",
        }
    ]
    ports = {(p["port"], p["component"]) for p in m["ports"] if p["module"] == "minio"}
    assert ports == {(9000, "minio"), (9001, "minio-console")}
    units = {u["name"]: u["health"] for u in m["units"]}
    assert units["minio.service"] == "https://10.10.10.11:9000/minio/health/live"
    dirs = {d["path"]: (d["owner"], d["mode"]) for d in m["directories"]}
    for n in range(1, 5):
        assert dirs[f"/data{n}"] == ("minio", "0750")
    assert dirs["/home/minio/.minio/certs"] == ("minio", "0750")
    assert {"minio", "mcli"} <= set(m["packages"])
    assert {"name": "minio", "home": "/home/minio", "system": True} in m["users"]
    checks = {(c["checker"], tuple(c["files"]), c["where"]) for c in m["checks"]}
    assert ("minio_env", ("/etc/default/minio",), "both") in checks
    assert ("systemd", ("/etc/systemd/system/minio.service",), "both") in checks
    assert ("shell", ("/etc/minio/provision.sh",), "both") in {
        (c["checker"], tuple(c["files"]), c["where"]) for c in demo.manifest("10.10.10.10")["checks"]
    }
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


def test_single_node_single_drive(variant):
    built = variant(single_inventory())
    values = env(built.file("10.10.10.10", "/etc/default/minio"))
    assert values["MINIO_VOLUMES"] == "/data/minio"
    assert values["MINIO_BROWSER_REDIRECT_URL"] == "https://minio-1.pigsty:9001"  # no portal: the node itself
    dirs = {d["path"] for d in built.manifest("10.10.10.10")["directories"]}
    assert "/data/minio" in dirs
    assert built.file("10.10.10.10", "/etc/hosts").count("minio-1.pigsty") == 1


def test_single_node_multi_drive_keeps_the_ellipsis(variant):
    built = variant(single_inventory(minio_data="/data{1...4}/minio"))
    assert env(built.file("10.10.10.10", "/etc/default/minio"))["MINIO_VOLUMES"] == "/data{1...4}/minio"
    dirs = {d["path"] for d in built.manifest("10.10.10.10")["directories"]}
    assert {"/data1/minio", "/data2/minio", "/data3/minio", "/data4/minio"} <= dirs


def test_plain_http(variant):
    built = variant(single_inventory(minio_https=False))
    values = env(built.file("10.10.10.10", "/etc/default/minio"))
    assert values["MINIO_OPTS"] == "--address :9000 --console-address :9001"
    assert values["MINIO_SERVER_URL"] == "http://sss.pigsty:9000"
    m = built.manifest("10.10.10.10")
    assert m["certificates"] == []
    assert {u["name"]: u["health"] for u in m["units"]}["minio.service"] == "http://10.10.10.10:9000/minio/health/live"


def test_explicit_volumes_and_extra_vars(variant):
    data = demo_inventory()
    v = data["all"]["children"]["minio"]["vars"]
    v["minio_volumes"] = "https://minio-{1...4}.pigsty:9000/data{1...4} https://minio-{5...8}.pigsty:9000/data{1...4}"
    v["minio_extra_vars"] = 'MINIO_COMPRESSION_ENABLE=on\n# a comment\nexport MINIO_REGION_NAME="eu-1"\n'
    values = env(variant(data).file("10.10.10.13", "/etc/default/minio"))
    assert values["MINIO_VOLUMES"] == v["minio_volumes"]
    assert values["MINIO_COMPRESSION_ENABLE"] == "on" and values["MINIO_REGION_NAME"] == "eu-1"


def test_no_etc_hosts_block_means_no_contribution(variant):
    data = demo_inventory()
    data["all"]["vars"]["node_write_etc_hosts"] = False
    built = variant(data)
    assert "/etc/hosts" not in built.trees["10.10.10.10"]
    assert "/etc/default/minio" in built.trees["10.10.10.10"]


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
            [{"access_key": "app", "secret_key": "x" * 8, "policy": "nope"}],
            "minio_users[0].policy",
            ("nope",),
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
        result = run_checker(bundles, ip, "minio_env", ("/etc/default/minio",))
        assert result.status == "pass", result.output
        assert "MINIO_VOLUMES" in result.output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"<<secret:minio/minio_secret_key>>"', '"short"', "MINIO_ROOT_PASSWORD must be >= 8 chars"),
        ('MINIO_ROOT_USER="minioadmin"', 'MINIO_ROOT_USER="mi"', "MINIO_ROOT_USER must be >= 3 chars"),
        ('MINIO_DOMAIN="sss.pigsty"', 'MINIO_DOMAIN="sss.pigsty', "unexpected EOF while looking for matching"),
        ('/data{1...4}"', '/data{1..4}"', "malformed ellipsis"),
        ("minio-{1...4}.pigsty:9000/data{1...4}", "minio-{1...17}.pigsty:9000/data1", "endpoints provided (17)"),
        ('MINIO_ROOT_USER="minioadmin"\n', "", "MINIO_ROOT_USER is not set"),
    ],
)
def test_minio_env_rejects_broken_files(bundles, tmp_path, old, new, message):
    root = spoiled(bundles, tmp_path, "/etc/default/minio", lambda t: t.replace(old, new, 1))
    result = run_checker(root, "10.10.10.10", "minio_env", ("/etc/default/minio",))
    assert result.status == "fail", result.output
    assert message in result.output, result.output


@pytest.mark.slow
def test_shell_accepts_and_rejects_the_provisioning_script(bundles, tmp_path):
    result = run_checker(bundles, "10.10.10.10", "shell", ("/etc/minio/provision.sh",))
    assert result.status == "pass", result.output
    root = spoiled(bundles, tmp_path, "/etc/minio/provision.sh", lambda t: t.replace("  esac\n", "", 1))
    result = run_checker(root, "10.10.10.10", "shell", ("/etc/minio/provision.sh",))
    assert result.status == "fail" and "syntax error" in result.output, result.output
    assert "/etc/minio/provision.sh" in result.output


FAKE_MCLI = """#!/bin/sh
# stand-in for mcli: records its arguments (and the policy documents it gets); a policy attached once is
# "already in effect" the next time, as mcli says
printf '%s\\n' "$*" >> "$STY_LOG"
case "$1 $2 $3" in
  "admin policy create")
    printf 'document %s %s\\n' "$5" "$(tr -d ' \\n' < "$6")" >> "$STY_LOG" ;;
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


@pytest.mark.slow
def test_provisioning_script_runs_idempotently_against_a_stand_in_mcli(bundles, tmp_path):
    """bash runs the script (secrets substituted, the environment file from the bundle) twice with a stand-in
    mcli: the calls are the expected ones, the user secret keys arrive intact, the second run succeeds too."""
    from sty.apply.checks.util import substitute

    secrets = {
        "minio/minio_secret_key": "Root.Secret-1",
        "minio/minio_users/pgbackrest/secret_key": "Back up $HOME 'q' \"d\"",
        "minio/minio_users/s3user_meta/secret_key": "Meta.Secret-1",
        "minio/minio_users/s3user_data/secret_key": "Data.Secret-1",
    }
    node = bundles / "10.10.10.10"
    env_file = tmp_path / "minio.env"
    env_file.write_text(substitute((node / "etc/default/minio").read_text(), secrets.get))
    script = tmp_path / "provision.sh"
    text = substitute((node / "etc/minio/provision.sh").read_text(), secrets.get)
    script.write_text(text.replace(". /etc/default/minio", f". {env_file}"))
    mcli = tmp_path / "mcli"
    mcli.write_text(FAKE_MCLI)
    mcli.chmod(mcli.stat().st_mode | stat.S_IEXEC)
    log, state = tmp_path / "calls.log", tmp_path / "state"
    environ = {"PATH": os.environ["PATH"], "MCLI": str(mcli), "STY_LOG": str(log), "STY_STATE": str(state)}
    for _ in range(2):
        proc = subprocess.run(["bash", str(script)], env=environ, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = [re.sub(r"/tmp/tmp\.\w+", "<tmp>", c) for c in log.read_text().splitlines()]
    first = calls[: len(calls) // 2]
    assert first[0] == "alias set sss https://sss.pigsty:9002 minioadmin Root.Secret-1"
    assert "mb --ignore-existing sss/meta" in first and "version enable sss/meta" in first
    assert "admin user add sss pgbackrest Back up $HOME 'q' \"d\"" in first
    assert "admin policy attach sss pgsql --user pgbackrest" in first
    policies = [c for c in first if c.startswith("admin policy create")]
    assert policies == [f"admin policy create sss {b} <tmp>" for b in ("pgsql", "meta", "data")]
    document = next(c for c in first if c.startswith("document meta "))
    assert json.loads(document.split(" ", 2)[2])["Statement"][0]["Resource"] == [
        "arn:aws:s3:::meta",
        "arn:aws:s3:::meta/*",
    ]
    assert calls[len(calls) // 2 :] == first  # the second run makes the same calls and tolerates the attach errors


@pytest.mark.slow
def test_systemd_accepts_and_rejects_the_unit(bundles, tmp_path):
    result = run_checker(bundles, "10.10.10.11", "systemd", ("/etc/systemd/system/minio.service",))
    if result.status == "skip":
        pytest.skip(result.reason)
    assert result.status == "pass", result.output
    root = spoiled(
        bundles, tmp_path, "/etc/systemd/system/minio.service", lambda t: t.replace("Type=simple", "Type=simpel")
    )
    result = run_checker(root, "10.10.10.10", "systemd", ("/etc/systemd/system/minio.service",))
    assert result.status == "fail" and "Failed to parse service type" in result.output
