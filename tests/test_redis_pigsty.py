"""REDIS as Pigsty v4.5 renders it: sty's bundles for Pigsty's demo/redis.yml (a standalone primary and replica, a
sentinel trio, a 3 x 2 native cluster) held to Pigsty's own REDIS role, read in place from the shared sources
(PIGSTY_SRC/roles/redis) and rendered here with plain Jinja2 from the same resolved parameters.

- the files: every directive of Pigsty's redis.conf and sentinel config is in sty's with the same value, and
  sty's extra directives are only those the module docstring lists; the unit sets what Pigsty's sets;
- the scrape targets carry Pigsty's labels (`instance=<ip>:<port>`, not the exporter's address);
- (slow) real redis-servers, on 127.0.0.1 with a temporary directory in place of the data, log and run roots:
  sty's config and Pigsty's report the same `CONFIG GET *` (save points apart when `redis_rdb_save` is empty,
  the documented difference), the expected paths and settings, and an instance Pigsty's config wrote (RDB, AOF,
  cluster node table) is found by sty's config: a migrated instance keeps its data and its cluster identity.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from conftest import RenderedFleet, render_fleet
from shared import CORPUS, PIGSTY_SRC
from test_redis import demo_inventory

from sty.apply.checks.redis import directives
from sty.apply.checks.util import stop, substitute, wait_for

ROLE = PIGSTY_SRC / "roles" / "redis"
# keys of the demo's instances: (ip, cluster, node, port)
STANDALONE = ("10.10.10.10", "redis-ms", 1, 6379)
REPLICA = ("10.10.10.10", "redis-ms", 1, 6380)
SENTINEL = ("10.10.10.11", "redis-meta", 1, 26379)
CLUSTER = ("10.10.10.13", "redis-test", 2, 6381)
# directives sty writes that Pigsty's redis.conf does not: redis' default value, written out
SERVER_EXTRAS = {("cluster-node-timeout", "15000")}
# sty's sentinel config: `supervised systemd` (Pigsty passes it on the command line), loglevel notice (the
# default), and the masters of redis_sentinel_monitor (which Pigsty's role does not configure)
SENTINEL_EXTRAS = {"supervised", "loglevel", "sentinel monitor", "sentinel auth-pass"}

pytestmark = pytest.mark.skipif(not (ROLE / "templates").is_dir(), reason=f"Pigsty's sources are not at {ROLE}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> RenderedFleet:
    return render_fleet(demo_inventory(), tmp_path_factory.mktemp("redis-pigsty"))


def name_of(key: tuple[str, str, int, int]) -> str:
    _, cluster, node, port = key
    return f"{cluster}-{node}-{port}"


def sty_file(demo: RenderedFleet, key, kind: str) -> str:
    """sty's config (kind `conf`) or unit (`unit`) of an instance, at the path Pigsty's tasks give it."""
    path = f"/etc/redis/{name_of(key)}.conf" if kind == "conf" else f"/etc/systemd/system/{name_of(key)}.service"
    return demo.files[key[0]][path]


def pigsty_file(demo: RenderedFleet, key, template: str, **override: Any) -> str:
    """Pigsty's template for an instance, rendered from the host's resolved parameters as Ansible would."""
    ip, _, _, port = key
    p = demo.params[ip]
    instances = p.get("redis_instances")
    names = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values = {k: p.get(k) for k in names if k.startswith("redis_")}
    values.update(
        redis_cluster=p.get("redis_cluster"),
        redis_node=p.get("redis_node"),
        inventory_hostname=ip,
        port=port,
        upstream=(instances.get(port, instances.get(str(port))) or {}).get("replica_of"),
    )
    values.update(override)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ROLE / "templates")),
        trim_blocks=True,  # Ansible's template module default
        undefined=jinja2.StrictUndefined,
    )
    env.filters["strftime"] = lambda fmt: "(time)"
    return env.get_template(template).render(**values)


def settings(text: str) -> set[tuple[str, ...]]:
    """A config's directives as tuples (names lower-cased, quotes resolved), comments and blank lines skipped."""
    out = set()
    for words in directives(text):
        words = [words[0].lower(), *words[1:]]
        if words[0] == "sentinel" and len(words) > 1:
            words = [f"sentinel {words[1].lower()}", *words[2:]]
        out.add(tuple(words))
    return out


# -- the files -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [STANDALONE, REPLICA, CLUSTER], ids=name_of)
def test_server_config_sets_what_pigsty_sets(demo, key):
    ours = settings(substitute(sty_file(demo, key, "conf"), demo.secrets[key[0]].__getitem__))
    theirs = settings(pigsty_file(demo, key, "redis.conf"))
    assert theirs - ours == set(), "Pigsty's settings missing or different in sty's config"
    assert ours - theirs <= SERVER_EXTRAS, "sty's settings beyond Pigsty's"


def test_server_config_with_every_parameter_changed(tmp_path):
    """The parameters Pigsty's template reads, all away from the demo's values: still the same settings."""
    data = demo_inventory()
    data["all"]["children"]["redis-ms"]["vars"].update(
        redis_bind_address="",
        redis_rdb_save=["900 1", "300 10"],
        redis_aof_enabled=True,
        redis_mem_policy="volatile-ttl",
        redis_max_memory="2gb",
        redis_rename_commands={"FLUSHALL": "", "KEYS": "sty-keys"},
        redis_fs_main="/srv/redis",
        redis_password="",
    )
    built = render_fleet(data, tmp_path)
    for key in (STANDALONE, REPLICA):
        ours = settings(sty_file(built, key, "conf"))
        theirs = settings(pigsty_file(built, key, "redis.conf"))
        assert theirs - ours == set() and ours - theirs <= SERVER_EXTRAS
        assert ("dir", f"/srv/redis/{name_of(key)}") in ours and ("appendonly", "yes") in ours
        assert ("rename-command", "FLUSHALL", "") in ours and ("bind", "10.10.10.10") in ours


def test_empty_save_points_differ_as_documented(tmp_path):
    """`redis_rdb_save: []` disables snapshots in sty (`save ""`); Pigsty's template then writes no `save`."""
    data = demo_inventory()
    data["all"]["children"]["redis-ms"]["vars"]["redis_rdb_save"] = []
    built = render_fleet(data, tmp_path)
    ours = settings(substitute(sty_file(built, STANDALONE, "conf"), built.secrets[STANDALONE[0]].__getitem__))
    theirs = settings(pigsty_file(built, STANDALONE, "redis.conf"))
    assert ours - theirs <= SERVER_EXTRAS | {("save", "")}
    assert ("save", "") in ours and not any(s[0] == "save" for s in theirs)


def test_sentinel_config_sets_what_pigsty_sets(demo):
    ours = settings(substitute(sty_file(demo, SENTINEL, "conf"), demo.secrets[SENTINEL[0]].__getitem__))
    theirs = settings(pigsty_file(demo, SENTINEL, "redis-sentinel.conf"))
    assert theirs - ours == set()
    assert {s[0] for s in ours - theirs} <= SENTINEL_EXTRAS
    assert ("dir", "/data/redis/redis-meta-1-26379") in ours
    assert ("pidfile", "/var/run/redis/redis-meta-1-26379.pid") in ours


def unit_settings(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@pytest.mark.parametrize("key", [STANDALONE, SENTINEL, CLUSTER], ids=name_of)
def test_unit_sets_what_pigsty_sets(demo, key):
    ours = unit_settings(sty_file(demo, key, "unit"))
    theirs = unit_settings(pigsty_file(demo, key, "redis.svc"))
    # documented differences: no PIDFile= (Type=notify), /usr/bin, daemonize/supervised in the config
    for setting in ("Description", "Documentation", "PIDFile", "ExecStart"):
        theirs.pop(setting)
    assert {k: ours.get(k) for k in theirs} == theirs
    assert "PIDFile" not in ours
    exec_start = sty_file(demo, key, "unit").split("ExecStart=")[1].splitlines()[0].split()
    conf = f"/etc/redis/{name_of(key)}.conf"
    assert exec_start == ["/usr/bin/redis-server", conf, *(["--sentinel"] if key == SENTINEL else [])]
    assert settings(sty_file(demo, key, "conf")) >= {("daemonize", "no"), ("supervised", "systemd")}


def test_scrape_targets_carry_pigsty_labels(tmp_path):
    """One file per redis node, `<cluster>-<node>.yml`; each instance scraped through its node's exporter with
    the labels Pigsty's scrape job gives it (cls, ins, ip, instance=<ip>:<port>)."""
    data = yaml.safe_load((CORPUS / "demo" / "redis.yml").read_text(encoding="utf-8"))
    built = render_fleet(data, tmp_path)
    infra = built.files["10.10.10.10"]
    for ip, cluster, node, ports in (
        ("10.10.10.10", "redis-ms", 1, (6379, 6380)),
        ("10.10.10.11", "redis-meta", 1, (26379, 26380, 26381)),
        ("10.10.10.13", "redis-test", 2, (6379, 6380, 6381)),
    ):
        groups = yaml.safe_load(infra[f"/infra/targets/redis/{cluster}-{node}.yml"])
        assert groups == [
            {
                "labels": {
                    "__param_target": f"redis://{ip}:{port}",
                    "cls": cluster,
                    "ins": f"{cluster}-{node}-{port}",
                    "instance": f"{ip}:{port}",
                    "ip": ip,
                },
                "targets": [f"{ip}:9121"],
            }
            for port in ports
        ]
    jobs = {j["job_name"]: j for j in yaml.safe_load(infra["/infra/prometheus.yml"])["scrape_configs"]}
    assert jobs["redis"]["metrics_path"] == "/scrape"
    assert not jobs["redis"].get("relabel_configs")  # nothing rewrites the instance label


# ===================================================================================================================
# slow: real redis-servers from sty's and Pigsty's configs
# ===================================================================================================================


def need(*programs: str) -> None:
    for prog in programs:
        if shutil.which(prog) is None:
            if os.environ.get("CI"):
                pytest.fail(f"{prog} is not installed (see .ci/run PACKAGES)")
            pytest.skip(f"{prog} is not installed")


def free_port(cluster: bool = False) -> int:
    """A free port on 127.0.0.1 (and, for a cluster instance, its bus port + 10000)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not cluster:
            return port
        if port + 10000 < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no free port")


def relocate(text: str, root: Path, port: int, upstream: int | None = None) -> str:
    """The config on 127.0.0.1:<port> with <root> in place of the data, log and run roots (the same change to
    sty's and Pigsty's: what differs between them stays)."""
    for old, new in (("/data/redis/", "data/redis/"), ("/var/log/redis/", "log/"), ("/var/run/redis/", "run/")):
        text = text.replace(old, f"{root}/{new}")
    lines = []
    for line in text.splitlines():
        word = line.split(" ", 1)[0].lower()
        if word == "bind":
            line = "bind 127.0.0.1"
        elif word == "port":
            line = f"port {port}"
        elif word == "replicaof" and upstream:
            line = f"replicaof 127.0.0.1 {upstream}"
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class Server:
    port: int
    password: str
    proc: subprocess.Popen

    def ask(self, *words: str, strip: bool = True) -> str:
        cmd = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--raw", *words]
        env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
        if self.password:
            env["REDISCLI_AUTH"] = self.password
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, env=env).stdout
        return out.strip() if strip else out

    def config(self, pattern: str = "*") -> dict[str, str]:
        out = self.ask("config", "get", pattern, strip=False).splitlines()
        return dict(zip(out[0::2], out[1::2], strict=True))


def _nofile() -> None:  # the unit's LimitNOFILE, as far as this process may raise it
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = 10032 if hard == resource.RLIM_INFINITY else min(10032, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


@contextmanager
def serve(text: str, root: Path, password: str, sentinel: bool = False, cluster: bool = False, **kw) -> Iterator:
    """redis-server on the relocated config exactly as the unit runs it (no extra flags; outside systemd the
    `supervised systemd` of the config is only a warning)."""
    port = free_port(cluster)
    for sub in ("log", "run"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / f"{port}.conf"
    conf.write_text(relocate(text, root, port, **kw))
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    cmd = ["redis-server", str(conf), *(["--sentinel"] if sentinel else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env, preexec_fn=_nofile)
    server = Server(port, password, proc)
    try:
        if not wait_for(lambda: server.ask("ping") == "PONG", 10, alive=proc):
            pytest.fail("".join(f.read_text() for f in (root / "log").iterdir()) or f"{cmd} did not answer")
        yield server
    finally:
        stop(proc)  # SIGTERM, as systemd stops the unit: redis persists what its config says, then exits


def make_dirs(demo: RenderedFleet, ip: str, root: Path) -> None:
    """The directories sty's manifest has the apply stage create, relocated under root."""
    for d in demo.manifest(ip)["directories"]:
        path = d["path"]
        if path.startswith("/data/redis"):
            (root / "data" / "redis" / path[len("/data/redis") :].lstrip("/")).mkdir(parents=True, exist_ok=True)


def both(demo: RenderedFleet, key) -> tuple[str, str, str]:
    """(sty's config with secrets, Pigsty's config, the password) of an instance."""
    ip = key[0]
    password = demo.params[ip].get("redis_password") or ""
    ours = substitute(sty_file(demo, key, "conf"), demo.secrets[ip].__getitem__)
    theirs = pigsty_file(demo, key, "redis.conf")
    return ours, theirs, password


def relative(config: dict[str, str], root: Path) -> dict[str, str]:
    """The server's settings with its root shown as <root>, less its (relocated) port."""
    return {k: v.replace(str(root), "<root>") for k, v in config.items() if k != "port"}


@pytest.mark.slow
@pytest.mark.parametrize("key", [STANDALONE, REPLICA, CLUSTER], ids=name_of)
def test_redis_server_reports_pigsty_settings(demo, tmp_path, key):
    """CONFIG GET * of sty's config equals that of Pigsty's, and names Pigsty's paths."""
    need("redis-server", "redis-cli")
    ours, theirs, password = both(demo, key)
    cluster = key == CLUSTER
    upstream = free_port()  # a replica's primary, not running: the replica only keeps trying
    reports = []
    for text, root in ((ours, tmp_path / "sty"), (theirs, tmp_path / "pigsty")):
        make_dirs(demo, key[0], root)
        with serve(text, root, password, cluster=cluster, upstream=upstream) as server:
            reports.append(relative(server.config(), root))
            if key == STANDALONE:
                assert server.ask("config", "get", "requirepass").splitlines()[1] == password
    got, expected = reports
    assert {k: (got[k], expected.get(k)) for k in got if got[k] != expected.get(k)} == {}
    name = name_of(key)
    assert got["dir"] == f"<root>/data/redis/{name}"
    assert (got["dbfilename"], got["appendfilename"]) == (f"{name}.rdb", f"{name}.aof")
    assert got["pidfile"] == f"<root>/run/{name}.pid" and got["logfile"] == f"<root>/log/{name}.log"
    assert got["unixsocket"] == ""
    for setting, value in {
        "stop-writes-on-bgsave-error": "no",
        "cluster-require-full-coverage": "no",
        "cluster-enabled": "yes" if cluster else "no",
        "repl-diskless-sync": "no",
        "tcp-keepalive": "300",
        "tcp-backlog": "1024",
        "save": "1200 1",
        "appendonly": "no",
        "maxmemory": str((32 if cluster else 64) * 1024 * 1024),
        "maxmemory-policy": "allkeys-lru",
        "supervised": "systemd",
        "protected-mode": "no",
    }.items():
        assert got[setting] == value, setting
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= 6032:  # redis needs maxclients + 32 descriptors
        assert got["maxclients"] == "6000"
    assert got["replicaof"] == (f"127.0.0.1 {upstream}" if key == REPLICA else "")
    if cluster:
        assert got["cluster-config-file"] == "nodes-6381.conf"


@pytest.mark.slow
def test_empty_save_points_disable_snapshots(tmp_path):
    """The one documented difference of the server settings, as the servers report it."""
    need("redis-server", "redis-cli")
    data = demo_inventory()
    data["all"]["children"]["redis-ms"]["vars"]["redis_rdb_save"] = []
    built = render_fleet(data, tmp_path)
    ours, theirs, password = both(built, STANDALONE)
    saves = []
    for text, root in ((ours, tmp_path / "sty"), (theirs, tmp_path / "pigsty")):
        make_dirs(built, STANDALONE[0], root)
        with serve(text, root, password) as server:
            saves.append(server.config("save")["save"])
    assert saves == ["", "3600 1 300 100 60 10000"]


def migrate(
    demo: RenderedFleet, key, tmp: Path, write: Callable[[Server], Any], read: Callable[[Server], Any]
) -> tuple:
    """An instance started from Pigsty's config writes; stopped; sty's config started on the same root reads."""
    ours, theirs, password = both(demo, key)
    root = tmp / "root"
    make_dirs(demo, key[0], root)
    cluster = key == CLUSTER
    with serve(theirs, root, password, cluster=cluster) as server:
        written = write(server)
    with serve(ours, root, password, cluster=cluster) as server:
        assert read(server) == written
    return written, root / "data" / "redis" / name_of(key)


@pytest.mark.slow
def test_migrated_instance_finds_its_rdb_snapshot(demo, tmp_path):
    need("redis-server", "redis-cli")

    def write(s: Server) -> list[str]:
        for i in range(20):
            s.ask("set", f"key:{i}", f"value-{i}")
        assert s.ask("save") == "OK"
        return [s.ask("dbsize"), s.ask("get", "key:7")]

    def read(s: Server) -> list[str]:
        return [s.ask("dbsize"), s.ask("get", "key:7")]

    written, data = migrate(demo, STANDALONE, tmp_path, write, read)
    assert written == ["20", "value-7"]
    assert (data / "redis-ms-1-6379.rdb").is_file()


@pytest.mark.slow
def test_migrated_instance_finds_its_append_only_file(tmp_path):
    """With `redis_aof_enabled` a server loads its data from the AOF (`<dir>/appendonlydir/<appendfilename>.*`),
    so the AOF base name must be the one Pigsty's config wrote."""
    need("redis-server", "redis-cli")
    data = demo_inventory()
    data["all"]["children"]["redis-ms"]["vars"].update(redis_aof_enabled=True)
    built = render_fleet(data, tmp_path / "build")

    def write(s: Server) -> list[str]:
        for i in range(10):
            s.ask("rpush", "list", str(i))
        return [s.ask("llen", "list"), s.config("appendonly")["appendonly"]]

    def read(s: Server) -> list[str]:
        return [s.ask("llen", "list"), s.config("appendonly")["appendonly"]]

    written, data_dir = migrate(built, STANDALONE, tmp_path, write, read)
    assert written == ["10", "yes"]
    aof = sorted(p.name for p in (data_dir / "appendonlydir").iterdir())
    assert "redis-ms-1-6379.aof.manifest" in aof and any(n.startswith("redis-ms-1-6379.aof.") for n in aof)


@pytest.mark.slow
def test_migrated_cluster_instance_keeps_its_node_identity(demo, tmp_path):
    """The node table (`nodes-<port>.conf` in the data directory) Pigsty's config created is the one sty's reads:
    the same node id, so the instance stays the same member of its native cluster."""
    need("redis-server", "redis-cli")

    def myid(s: Server) -> str:
        return s.ask("cluster", "myid")

    written, data = migrate(demo, CLUSTER, tmp_path, myid, myid)
    assert len(written) == 40
    assert (data / "nodes-6381.conf").is_file()


@pytest.mark.slow
def test_sentinel_from_sty_config_watches_its_master(demo, tmp_path):
    """sty's sentinel config, its master moved to a live primary (sty's config) on 127.0.0.1: the sentinel
    authenticates with auth-pass and reports it as an up master; its settings equal Pigsty's sentinel's."""
    need("redis-server", "redis-cli")
    ours, _, password = both(demo, STANDALONE)
    root = tmp_path / "root"
    make_dirs(demo, STANDALONE[0], root)
    sentinel_text = substitute(sty_file(demo, SENTINEL, "conf"), demo.secrets[SENTINEL[0]].__getitem__)
    make_dirs(demo, SENTINEL[0], root)
    with serve(ours, root, password) as primary:
        moved = sentinel_text.replace("redis-ms 10.10.10.10 6379 2", f"redis-ms 127.0.0.1 {primary.port} 1")
        meta = demo.params[SENTINEL[0]].get("redis_password")
        with serve(moved, root, meta, sentinel=True) as sentinel:

            def up() -> bool:
                fields = sentinel.ask("sentinel", "master", "redis-ms").splitlines()
                info = dict(zip(fields[0::2], fields[1::2], strict=False))
                # INFO answered (the auth-pass is right) within the last seconds
                return info.get("flags") == "master" and int(info.get("info-refresh", "1e9")) < 5000

            assert wait_for(up, 10), sentinel.ask("sentinel", "master", "redis-ms")
            ours_cfg = sentinel.ask("sentinel", "config", "get", "*")
        pig = pigsty_file(demo, SENTINEL, "redis-sentinel.conf")
        make_dirs(demo, SENTINEL[0], tmp_path / "pigsty")
        with serve(pig, tmp_path / "pigsty", meta, sentinel=True) as sentinel:
            assert sentinel.ask("sentinel", "config", "get", "*") == ours_cfg
