"""HAProxy as Pigsty v4.5 renders it: sty's haproxy.cfg, haproxy_services files and PostgreSQL service files held
to Pigsty's own templates (roles/haproxy and roles/pgsql of PIGSTY_SRC, read in place), rendered here with plain
Jinja2 from the same resolved parameters.

- haproxy.cfg: per section, every directive of Pigsty's is in sty's and the only differences are the ones the
  NODE haproxy module's docstring lists (authentication, the extra timeouts and logging, /run paths);
- a haproxy_services file and a pg_services file have exactly Pigsty's directives in Pigsty's order (defaults,
  default-server, server lines with backup, weight, TLS checks), the one documented difference being the CA
  path of `check-ssl` (/etc/pki/ca.crt);
- the unit runs HAProxy as Pigsty's does (limits, restart, master CLI);
- real programs: `haproxy -c` (sty's checker) accepts the configs, and a running HAProxy drops to user
  haproxy, answers on the admin socket, shows the page at /haproxy/<nodename>/ and / with a login, and serves
  metrics without one.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jmespath
import pytest
import yaml
from conftest import dump_inventory, shipped_inventory
from shared import PIGSTY_SRC

from sty.apply.checks import PASS
from sty.apply.checks.runner import run_host_checks
from sty.apply.checks.util import stop
from sty.compiler.build import render_targets
from sty.compiler.pipeline import compile_fleet, resolve_target

HAPROXY_ROLE = PIGSTY_SRC / "roles" / "haproxy"
PGSQL_ROLE = PIGSTY_SRC / "roles" / "pgsql"
META, TEST_1, TEST_2 = "10.10.10.10", "10.10.10.11", "10.10.10.12"

pytestmark = pytest.mark.skipif(
    not (HAPROXY_ROLE / "templates").is_dir(), reason=f"Pigsty's sources are not at {PIGSTY_SRC}"
)

# haproxy_services on the meta node: Pigsty's MinIO example and one with every field away from its default
SERVICES = [
    {
        "name": "minio",
        "port": 9002,
        "balance": "leastconn",
        "options": [
            "option httpchk",
            "option http-keep-alive",
            "http-check send meth OPTIONS uri /minio/health/live",
            "http-check expect status 200",
        ],
        "servers": [
            {"name": f"minio-{i}", "ip": f"10.10.10.1{i}", "port": 9000, "options": "check-ssl ca-file /etc/pki/ca.crt"}
            for i in range(1, 4)
        ],
    },
    {
        "name": "web",
        "port": 8088,
        "ip": "127.0.0.1",
        "protocol": "http",
        "maxconn": 200,
        "balance": "source",
        "default": "inter 5s rise 2 fall 2 maxconn 100",
        "servers": [
            {"name": "w1", "ip": "10.10.10.11", "port": 80, "weight": 10, "options": "check"},
            {"name": "w2", "ip": "10.10.10.12", "port": 80, "weight": 0, "backup": True},
            {"name": "w3", "ip": "10.10.10.13", "port": 80},
        ],
    },
]
# a pg_services entry with every field Pigsty's service.cfg reads
CUSTOM = {
    "name": "custom",
    "port": 5440,
    "ip": "*",
    "dest": 6543,
    "check": "/replica",
    "maxconn": 100,
    "balance": "leastconn",
    "selector": "[? pg_role == `replica`]",
    "backup": "[? pg_offline_query]",
    "options": "inter 1s fastinter 500ms downinter 1s rise 2 fall 2 maxconn 100 maxqueue 10 weight 10",
}


@dataclass
class Built:
    trees: dict[str, dict[str, str]]  # ip -> host path -> text ("manifest" for the manifest)
    fleet: Any

    def file(self, ip: str, path: str) -> str:
        return self.trees[ip][path]


def scenario() -> dict[str, Any]:
    data = shipped_inventory()
    groups = data["all"]["children"]
    groups["pg-meta"]["vars"].update(patroni_ssl_enabled=True, haproxy_services=SERVICES)
    test = groups["pg-test"]
    test["vars"]["pg_services"].append(CUSTOM)
    test["vars"]["pg_rto"] = "fast"
    test["hosts"][TEST_2]["pg_weight"] = 50
    return data


def build(data: dict[str, Any], tmp: Path) -> Built:
    compiled = compile_fleet(dump_inventory(data, tmp / "pigsty.yml"))
    rendered = render_targets(compiled, resolve_target(compiled.fleet, "all"))
    trees = {}
    for ip, tree in rendered.trees.items():
        trees[ip] = {rel[len(ip) :]: raw.decode() for rel, raw in tree.items() if rel.startswith(f"{ip}/")}
        trees[ip]["manifest"] = tree[f"{ip}.yml"].decode()
    return Built(trees, compiled.fleet)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    return build(scenario(), tmp_path_factory.mktemp("haproxy-pigsty"))


def jinja(role: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(role / "templates"), str(role / "files")]),
        trim_blocks=True,  # Ansible's template module default
        undefined=jinja2.StrictUndefined,
    )
    env.filters["json_query"] = lambda data, expr: jmespath.search(expr, data)
    env.filters["bool"] = lambda value: value if isinstance(value, bool) else str(value).lower() in ("yes", "true", "1")
    return env


def pigsty_haproxy(built: Built, ip: str, template: str, **extra: Any) -> str:
    p = built.fleet.hosts[ip].params
    names = yaml.safe_load((HAPROXY_ROLE / "defaults" / "main.yml").read_text())
    values = {k: p.get(k) for k in names}
    values.update(ansible_managed="managed", inventory_hostname=ip, nodename=built.fleet.hosts[ip].nodename)
    return jinja(HAPROXY_ROLE).get_template(template).render(**values, **extra)


def hostvars(built: Built) -> dict[str, dict[str, Any]]:
    """What Pigsty's service template sees of each host: its inventory vars (role defaults are not in hostvars)."""
    out = {}
    for ip, host in built.fleet.hosts.items():
        p = host.params
        out[ip] = {key: p[key] for block in p.layers for key in block.data} | {"inventory_hostname": ip}
    return out


def pigsty_pg_service(built: Built, ip: str, service: dict[str, Any]) -> str:
    p = built.fleet.hosts[ip].params
    values = {k: p.get(k) for k in ("pg_cluster", "pg_rto", "pg_rto_plan", "pg_default_service_dest")}
    values.update(
        ansible_managed="managed",
        inventory_hostname=ip,
        hostvars=hostvars(built),
        pg_cluster_members_query=f"[@.*][0][?pg_cluster=='{p.get('pg_cluster')}']",
        service=service,
    )
    return jinja(PGSQL_ROLE).get_template("service.cfg").render(**values)


def sections(text: str) -> dict[str, list[str]]:
    """A HAProxy config as {section header: its directives}, comments dropped and blanks collapsed; secret
    placeholders read as SECRET."""
    out: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = " ".join(re.sub(r"(?<!\\)#.*", "", raw).split())
        line = re.sub(r"<<secret:[^>]+>>", "SECRET", line)
        if not line:
            continue
        if not raw[0].isspace():
            current = line
            out[current] = []
        else:
            assert current is not None, raw
            out[current].append(line)
    return out


# -- haproxy.cfg ------------------------------------------------------------------------------------------------


def documented(nodename: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(Pigsty's directives sty does not write, sty's directives Pigsty does not write), per section: the
    differences haproxy.py's docstring lists."""
    theirs = {
        "global": {"pidfile /var/run/haproxy.pid", "stats socket /var/run/haproxy.sock mode 600 level admin"},
        "listen stats": {
            "acl AUTH http_auth(stats-auth)",
            "acl AUTH_ADMIN http_auth_group(stats-auth) admin",
            "stats http-request auth unless AUTH",
            "stats admin if AUTH_ADMIN",
        },
    }
    ours = {
        "global": {
            "pidfile /run/haproxy.pid",
            "stats socket /run/haproxy.sock mode 600 level admin expose-fd listeners",
            "stats timeout 2m",
            "no strict-limits",
            "log /dev/log local0 info",
        },
        "defaults": {"log global", "timeout http-request 5s", "timeout http-keep-alive 10s"},
        "listen stats": {
            "option httplog",
            "stats auth admin:SECRET",
            "stats admin if TRUE",
            f"http-request set-path /haproxy/{nodename}%[path] unless {{ path_beg /haproxy/{nodename}/ }}",
        },
    }
    return theirs, ours


@pytest.mark.parametrize("ip", [META, TEST_1])
def test_main_config_sets_what_pigsty_sets(built, ip):
    ours = sections(built.file(ip, "/etc/haproxy/haproxy.cfg"))
    theirs = sections(pigsty_haproxy(built, ip, "haproxy.cfg.j2"))
    # Pigsty's login list: sty's `stats auth` line holds its admin user (the read-only haproxy/haproxy is dropped)
    assert theirs.pop("userlist stats-auth") == [
        "group admin users admin",
        "user admin insecure-password pigsty",
        "group readonly users haproxy",
        "user haproxy insecure-password haproxy",
    ]
    assert set(ours) == set(theirs) == {"global", "defaults", "listen stats"}
    missing, extra = documented(built.fleet.hosts[ip].nodename)
    for section in theirs:
        assert set(theirs[section]) - set(ours[section]) == missing.get(section, set()), section
        assert set(ours[section]) - set(theirs[section]) == extra.get(section, set()), section
    assert f"stats uri /haproxy/{built.fleet.hosts[ip].nodename}/" in ours["listen stats"]
    assert {"user haproxy", "group haproxy", "maxconn 65535"} <= set(ours["global"])


def test_metrics_path_and_timeouts_follow_the_inventory(tmp_path):
    data = scenario()
    data["all"]["vars"].update(exporter_metrics_path="/probe", haproxy_client_timeout="1h", haproxy_server_timeout=90)
    b = build(data, tmp_path)
    ours = sections(b.file(TEST_1, "/etc/haproxy/haproxy.cfg"))
    theirs = sections(pigsty_haproxy(b, TEST_1, "haproxy.cfg.j2"))
    assert "http-request use-service prometheus-exporter if { path /probe }" in ours["listen stats"]
    assert set(theirs["defaults"]) - set(ours["defaults"]) == set()
    assert {"timeout client 1h", "timeout server 90"} <= set(ours["defaults"])


def test_without_auth_the_page_is_read_only(tmp_path):
    """haproxy_auth_enabled: false (Pigsty ignores it): no login and no admin actions."""
    data = scenario()
    data["all"]["vars"]["haproxy_auth_enabled"] = False
    b = build(data, tmp_path)
    stats = sections(b.file(TEST_1, "/etc/haproxy/haproxy.cfg"))["listen stats"]
    assert not [line for line in stats if line.startswith(("stats auth", "stats admin"))]
    assert "haproxy_admin_password" not in b.file(TEST_1, "manifest")


# -- the unit ---------------------------------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_runs_haproxy_as_pigsty_does(built):
    ours = unit_settings(built.file(TEST_1, "/etc/systemd/system/haproxy.service"))
    theirs = unit_settings((HAPROXY_ROLE / "files" / "haproxy.svc").read_text())
    for key in ("Type", "KillMode", "SuccessExitStatus", "Restart", "RestartSec", "LimitNPROC", "LimitCORE"):
        assert ours[key] == theirs[key], key
    assert ours["LimitNOFILE"] == ["1048576"]  # documented: the kernel's default fs.nr_open
    assert ours["Environment"] == [
        '"CONFIG=/etc/haproxy/haproxy.cfg" "CONFDIR=/etc/haproxy/conf.d" "MASTER=/run/haproxy-master.sock"'
    ]
    # Pigsty's program, flags and files; its master CLI socket comes from $EXTRAOPTS, sty's from $MASTER
    assert theirs["Environment"] == ['"EXTRAOPTS=-S /run/haproxy-master.sock"']
    assert theirs["ExecStart"] == [
        "/usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg -f /etc/haproxy/conf.d $EXTRAOPTS"
    ]
    assert ours["ExecStart"] == ["/usr/sbin/haproxy -Ws -f $CONFIG -f $CONFDIR -S $MASTER"]
    check = "/usr/sbin/haproxy -Ws -c -q -f $CONFIG -f $CONFDIR"
    assert ours["ExecStartPre"] == [check] and ours["ExecReload"] == [check, theirs["ExecReload"][1]]
    dirs = {d["path"]: d["mode"] for d in yaml.safe_load(built.file(TEST_1, "manifest"))["directories"]}
    assert dirs["/etc/haproxy"] == dirs["/etc/haproxy/conf.d"] == "0700"  # as Pigsty's tasks make them


# -- conf.d -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s["name"])
def test_haproxy_service_is_pigsty_line_for_line(built, service):
    ours = sections(built.file(META, f"/etc/haproxy/conf.d/{service['name']}.cfg"))
    theirs = sections(pigsty_haproxy(built, META, "service.j2", service=service))
    assert ours == theirs


def test_haproxy_service_defaults(built):
    cfg = sections(built.file(META, "/etc/haproxy/conf.d/minio.cfg"))["listen minio"]
    assert cfg[:3] == ["bind *:9002", "mode tcp", "maxconn 10000"]
    assert (
        "default-server inter 3s fastinter 1s downinter 5s rise 3 fall 3 on-marked-down shutdown-sessions "
        "slowstart 30s maxconn 3000 maxqueue 128 weight 100"
    ) in cfg
    web = sections(built.file(META, "/etc/haproxy/conf.d/web.cfg"))["listen web"]
    assert web[-3:] == [
        "server w1 10.10.10.11:80 weight 10 check",
        "server w2 10.10.10.12:80 backup weight 0",
        "server w3 10.10.10.13:80",
    ]


def pg_services(built: Built, ip: str) -> list[dict[str, Any]]:
    return built.fleet.hosts[ip].params.combined("pg_services")


def documented_pg(text: str) -> str:
    """Pigsty's service file with services.py's documented differences applied: the fleet CA at /etc/pki/ca.crt,
    fractional timers in milliseconds (HAProxy refuses `0.5s`)."""
    text = text.replace("/pg/cert/ca.crt", "/etc/pki/ca.crt")
    return re.sub(r" (\d+)\.5s ", lambda m: f" {int(m[1]) * 1000 + 500}ms ", text)


@pytest.mark.parametrize("ip", [META, TEST_1, TEST_2])
def test_pg_services_are_pigsty_line_for_line(built, ip):
    """Every service of the member's cluster: Pigsty's directives and server lines in Pigsty's order."""
    cluster = built.fleet.hosts[ip].params.get("pg_cluster")
    for service in pg_services(built, ip):
        ours = sections(built.file(ip, f"/etc/haproxy/conf.d/{cluster}-{service['name']}.cfg"))
        theirs = sections(documented_pg(pigsty_pg_service(built, ip, service)))
        assert ours == theirs, service["name"]


def test_pg_service_settings(built):
    replica = sections(built.file(TEST_1, "/etc/haproxy/conf.d/pg-test-replica.cfg"))["listen pg-test-replica"]
    # pg_rto fast: inter 1s fastinter 0.5s downinter 1s rise 3 fall 3 (Pigsty's plan), maxqueue 128
    assert re.search(r"^default-server inter \S+ .* maxconn 3000 maxqueue 128 weight 100$", "\n".join(replica), re.M)
    assert [s for s in replica if s.startswith("server")] == [
        "server pg-test-1 10.10.10.11:6432 check port 8008 weight 100 backup",
        "server pg-test-2 10.10.10.12:6432 check port 8008 weight 50",
        "server pg-test-3 10.10.10.13:6432 check port 8008 weight 100",
    ]
    custom = sections(built.file(TEST_2, "/etc/haproxy/conf.d/pg-test-custom.cfg"))["listen pg-test-custom"]
    assert custom[:4] == ["bind *:5440", "mode tcp", "maxconn 100", "balance leastconn"]
    assert "default-server " + CUSTOM["options"] in custom
    meta = sections(built.file(META, "/etc/haproxy/conf.d/pg-meta-primary.cfg"))["listen pg-meta-primary"]
    assert "server pg-meta-1 10.10.10.10:6432 check-ssl ca-file /etc/pki/ca.crt check port 8008 weight 100" in meta
    assert "/etc/pki/ca.crt" in yaml.safe_load(built.file(META, "manifest"))["trust"]


# -- real programs ----------------------------------------------------------------------------------------------


def write_bundle(built: Built, ip: str, root: Path) -> dict:
    for path, text in built.trees[ip].items():
        if path != "manifest":
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.lstrip("/")).write_text(text)
    return yaml.safe_load(built.trees[ip]["manifest"])


@pytest.mark.skipif(not (shutil.which("haproxy") and shutil.which("unshare")), reason="haproxy is not installed")
@pytest.mark.parametrize("ip", [META, TEST_1])
def test_haproxy_accepts_the_configs(built, ip, tmp_path):
    """sty's checker: `haproxy -c -dW` on haproxy.cfg and every conf.d file (warnings fail)."""
    manifest = write_bundle(built, ip, tmp_path)
    results = run_host_checks(tmp_path, manifest, {"build", "both"}, only={"haproxy"})
    assert [r.checker for r in results] == ["haproxy"]
    assert results[0].status == PASS, results[0].output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, auth: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + b64encode(auth.encode()).decode())
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=3) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except urllib.error.URLError:
        return 0, ""


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.skipif(
    not shutil.which("haproxy") or os.geteuid() != 0 or not _user_exists("haproxy"),
    reason="needs haproxy, root and the haproxy user",
)
def test_running_haproxy_drops_to_haproxy_and_serves_the_page(built, tmp_path):
    port = _free_port()
    text = built.file(TEST_1, "/etc/haproxy/haproxy.cfg")
    text = re.sub(r"<<secret:[^>]+>>", "s3cret", text).replace("/run/", f"{tmp_path}/")
    (tmp_path / "h.cfg").write_text(text.replace("bind *:9101", f"bind 127.0.0.1:{port}"))
    master = tmp_path / "master.sock"
    proc = subprocess.Popen(
        ["haproxy", "-W", "-db", "-f", str(tmp_path / "h.cfg"), "-S", str(master)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while _get(f"http://127.0.0.1:{port}/metrics")[0] != 200:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.1)
        base, page = f"http://127.0.0.1:{port}", "/haproxy/pg-test-1/"
        assert _get(base + page)[0] == 401 and _get(base + page, "admin:wrong")[0] == 401
        status, body = _get(base + page, "admin:s3cret")
        assert status == 200 and "pg-test-1" in body
        assert _get(base + "/", "admin:s3cret")[0] == 200  # the portal's prefix-stripped path
        assert _get(base + "/;csv", "admin:s3cret")[1].startswith("# pxname")
        status, metrics = _get(base + "/metrics")
        assert status == 200 and "haproxy_process_nbthread" in metrics
        with socket.socket(socket.AF_UNIX) as admin:  # root's admin socket, mode 600
            admin.connect(str(tmp_path / "haproxy.sock"))
            admin.sendall(b"show info\n")
            info = b"".join(iter(lambda: admin.recv(65536), b""))
            assert b"\nnode: pg-test-1\n" in info, info
        assert oct((tmp_path / "haproxy.sock").stat().st_mode & 0o777) == "0o600"
        workers = subprocess.run(["ps", "-o", "user=", "--ppid", str(proc.pid)], capture_output=True, text=True)
        assert workers.stdout.split() and set(workers.stdout.split()) == {"haproxy"}
    finally:
        stop(proc)
