"""REDIS with real programs, on the bundles of Pigsty's demo/redis.yml: redis-server starts on every config and
refuses broken ones, redis_exporter scrapes an instance with the password file, `redis-cli --cluster create`
forms the native cluster from the recorded member list, systemd-analyze verifies the units.

Everything that starts a server runs inside a private network namespace (the configs name 10.10.10.x
addresses) via apply.checks.util.netns, so these tests need root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import dump_inventory
from test_redis import demo_inventory

from sty.compiler.build import build
from sty.compiler.pipeline import compile_fleet


def need_root(*programs: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (private network namespaces)")
    for prog in programs:
        if shutil.which(prog) is None:
            if os.environ.get("CI"):
                pytest.fail(f"{prog} is not installed (see .ci/run PACKAGES)")
            pytest.skip(f"{prog} is not installed")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    """The demo inventory built to disk: <dir>/<ip>/ and <dir>/<ip>.yml."""
    tmp = tmp_path_factory.mktemp("redis-bundles")
    compiled = compile_fleet(dump_inventory(demo_inventory(), tmp / "pigsty.yml"))
    build(compiled, tmp / "out")
    return tmp / "out"


def run_checker(root: Path, ip: str, name: str, files: tuple[str, ...]):
    """One registered checker through the check runner (as `sty lint` runs it) on the bundle `root/ip`."""
    import realprog as rp

    return rp.run(root / ip, ip, name, files, outputs=root)


def manifest_checks(root: Path, checker: str) -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for m in sorted(root.glob("*.yml")):
        for c in yaml.safe_load(m.read_text())["checks"]:
            if c["checker"] == checker:
                out.append((m.stem, tuple(c["files"])))
    return out


@pytest.mark.slow
def test_redis_server_accepts_every_config(bundles):
    need_root("redis-server", "redis-cli", "ip")
    checks = manifest_checks(bundles, "redis")
    assert len(checks) == 11  # 2 standalone + 3 sentinel + 6 cluster instances
    for ip, files in checks:
        result = run_checker(bundles, ip, "redis", files)
        assert result.status == "pass", result.output
        assert "answered PONG" in result.output


@pytest.mark.slow
def test_redis_server_rejects_broken_configs(bundles, tmp_path):
    need_root("redis-server", "redis-cli", "ip")
    root = tmp_path / "broken"
    shutil.copytree(bundles, root)
    conf = root / "10.10.10.10/etc/redis/redis-ms-1-6379.conf"
    conf.write_text(conf.read_text().replace("maxmemory-policy allkeys-lru", "maxmemory-policy all-keys-lru"))
    result = run_checker(root, "10.10.10.10", "redis", ("/etc/redis/redis-ms-1-6379.conf",))
    assert result.status == "fail"
    assert "FATAL CONFIG FILE ERROR" in result.output
    assert "'maxmemory-policy all-keys-lru'" in result.output and "must be one of the following" in result.output

    sentinel = root / "10.10.10.11/etc/redis/redis-meta-1-26379.conf"
    sentinel.write_text(sentinel.read_text().replace("10.10.10.10 6379 2", "10.10.10.10 6379 two"))
    result = run_checker(root, "10.10.10.11", "redis", ("/etc/redis/redis-meta-1-26379.conf",))
    assert result.status == "fail" and "Quorum must be 1 or greater" in result.output


@pytest.mark.slow
def test_redis_server_rejects_a_bad_replicaof(bundles, tmp_path):
    need_root("redis-server", "redis-cli", "ip")
    root = tmp_path / "broken"
    shutil.copytree(bundles, root)
    conf = root / "10.10.10.10/etc/redis/redis-ms-1-6380.conf"
    conf.write_text(conf.read_text().replace("replicaof 10.10.10.10 6379", "replicaof 10.10.10.10 sixty"))
    result = run_checker(root, "10.10.10.10", "redis", ("/etc/redis/redis-ms-1-6380.conf",))
    assert result.status == "fail" and "replicaof" in result.output


def _start(ns, conf: Path, data: Path, log: Path, *extra: str) -> subprocess.Popen:
    text = re.sub(r'^dir ".*"$', f'dir "{data}"', conf.read_text(), flags=re.M)
    copy_ = data.parent / conf.name
    copy_.write_text(text)
    with open(log, "wb") as fh:
        return ns.popen(
            [
                shutil.which("redis-server"),
                str(copy_),
                *extra,
                "--daemonize",
                "no",
                "--supervised",
                "no",
                "--logfile",
                "",
            ],
            stdout=fh,
            stderr=fh,
        )


@pytest.mark.slow
def test_exporter_scrapes_an_instance_with_the_password_file(bundles, tmp_path):
    """redis_exporter with the unit's flags and the bundle's password file (secrets substituted) scrapes the
    bundle's redis instance: redis_up 1; a wrong password in the file gives redis_up 0."""
    need_root("redis-server", "redis-cli", "ip", "prometheus-redis-exporter")
    from sty.apply.checks.util import netns, substitute, wait_for

    node = bundles / "10.10.10.10"
    secret = "Sty.Redis.Secret-1"
    unit = (node / "etc/systemd/system/redis_exporter.service").read_text()
    args = next(line for line in unit.splitlines() if line.startswith("ExecStart=")).split()[1:]
    data = tmp_path / "data"
    data.mkdir()
    conf = tmp_path / "redis.conf"
    conf.write_text(substitute((node / "etc/redis/redis-ms-1-6379.conf").read_text(), secret))
    passwords = tmp_path / "passwords.json"
    with netns(["10.10.10.10"]) as ns:
        server = _start(ns, conf, data, tmp_path / "redis.log")
        ping = ["redis-cli", "-h", "10.10.10.10", "-p", "6379", "--no-auth-warning", "-a", secret, "ping"]
        assert wait_for(lambda: ns.run(ping).stdout.strip() == "PONG", 10, alive=server), (
            tmp_path / "redis.log"
        ).read_text()
        for value, up in ((secret, "1"), ("wrong-password", "0")):
            passwords.write_text(substitute((node / "etc/redis/redis_exporter.json").read_text(), value))
            flags = [a.replace("/etc/redis/redis_exporter.json", str(passwords)) for a in args]
            flags = [a.replace("-web.listen-address=:9121", "-web.listen-address=127.0.0.1:9121") for a in flags]
            exporter = ns.popen(
                [shutil.which("prometheus-redis-exporter"), *flags], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
            url = "http://127.0.0.1:9121/scrape?target=redis://10.10.10.10:6379"
            fetch = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
            assert wait_for(lambda: ns.tcp_open("127.0.0.1", 9121), 10, alive=exporter)
            body = ns.run([sys.executable, "-c", fetch]).stdout
            assert re.search(rf"^redis_up {up}$", body, re.M), body[:2000]
            from sty.apply.checks.util import stop

            stop(exporter)
            ns.procs.remove(exporter)


@pytest.mark.slow
def test_native_cluster_forms_from_the_recorded_members(bundles, tmp_path):
    """The six cluster configs started in one namespace holding both hosts' addresses (each instance bound to
    and announcing its host's address, as `bind 0.0.0.0` on two hosts cannot share one namespace), then the
    create command
    built from the manifest's cluster_create: the cluster reaches cluster_state:ok with 3 primaries."""
    need_root("redis-server", "redis-cli", "ip")
    from sty.apply.checks.util import netns, substitute, wait_for

    secret = "Sty.Redis.Secret-1"
    create = yaml.safe_load((bundles / "10.10.10.12.yml").read_text())["identity"]["redis"]["cluster_create"]
    with netns(["10.10.10.12", "10.10.10.13"]) as ns:
        servers = []
        for ip, node in (("10.10.10.12", 1), ("10.10.10.13", 2)):
            for port in (6379, 6380, 6381):
                src = bundles / ip / f"etc/redis/redis-test-{node}-{port}.conf"
                work = tmp_path / f"{ip}-{port}"
                (work / "data").mkdir(parents=True)
                conf = work / "redis.conf"
                conf.write_text(substitute(src.read_text(), secret).replace("bind 0.0.0.0", f"bind {ip}"))
                # in one namespace the kernel picks the peer's own address as source: announce ours
                servers.append(_start(ns, conf, work / "data", work / "redis.log", "--cluster-announce-ip", ip))
        auth = ["--no-auth-warning", "-a", secret]
        for member in create["members"]:
            host, port = member.split(":")
            ping = ["redis-cli", "-h", host, "-p", port, *auth, "ping"]
            assert wait_for(lambda ping=ping: ns.run(ping).stdout.strip() == "PONG", 10), member
        cmd = ["redis-cli", *auth, "--cluster", "create", *create["members"]]
        cmd += ["--cluster-replicas", str(create["replicas"]), "--cluster-yes"]
        out = ns.run(cmd, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        info = ["redis-cli", "-h", "10.10.10.13", "-p", "6381", *auth, "cluster", "info"]
        assert wait_for(lambda: "cluster_state:ok" in ns.run(info).stdout, 15), ns.run(info).stdout
        assert "cluster_size:3" in ns.run(info).stdout


@pytest.mark.slow
def test_systemd_accepts_the_units(bundles):
    need_root("systemd-analyze")
    units = [(ip, u) for ip, files in manifest_checks(bundles, "systemd") for u in files if "redis" in u]
    assert len(units) == 15  # 11 instances + 4 exporters
    # one unit of each shape (the others differ only in names and paths): standalone, sentinel, cluster, exporter
    shapes = {"redis-ms-1-6379.service", "redis-meta-1-26379.service", "redis-test-2-6381.service"}
    chosen = [(ip, u) for ip, u in units if Path(u).name in shapes or (ip == "10.10.10.12" and "exporter" in u)]
    assert len(chosen) == 4
    for ip, unit in chosen:
        result = run_checker(bundles, ip, "systemd", (unit,))
        assert result.status == "pass", f"{unit}: {result.output} {result.reason}"


@pytest.mark.slow
def test_systemd_rejects_a_broken_unit(bundles, tmp_path):
    need_root("systemd-analyze")
    root = tmp_path / "out"
    shutil.copytree(bundles, root)
    unit = root / "10.10.10.10/etc/systemd/system/redis-ms-1-6379.service"
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notifyy"))
    result = run_checker(root, "10.10.10.10", "systemd", ("/etc/systemd/system/redis-ms-1-6379.service",))
    assert result.status == "fail" and "Failed to parse service type" in result.output
