"""`make bench`: wall time and peak memory of `sty build`, printed, never asserted.

Cases: the shipped inventory (fresh build and rebuild with nothing changed) and a generated
fleet of 1000 hosts (300 PostgreSQL clusters of 3, 5 etcd members, 3 infra nodes, plain nodes).
Each case runs the real CLI in a fresh process, so interpreter start and imports are included.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
STY = [sys.executable, "-m", "sty"]


def fleet(clusters: int = 300, etcd: int = 5, infra: int = 3, total: int = 1000) -> dict:
    def ip(n: int) -> str:
        return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256 + 0}"

    n = 10
    children: dict = {}
    infra_hosts = {ip(n + i): {"infra_seq": i + 1} for i in range(infra)}
    etcd_hosts = {ip(n + i): {"etcd_seq": i + 1} for i in range(etcd)}
    children["infra"] = {"hosts": infra_hosts}
    children["etcd"] = {"hosts": etcd_hosts, "vars": {"etcd_cluster": "etcd"}}
    n += max(infra, etcd)
    for c in range(clusters):
        name = f"pg-c{c:03d}"
        hosts = {ip(n + i): {"pg_seq": i + 1, "pg_role": "primary" if i == 0 else "replica"} for i in range(3)}
        n += 3
        children[name] = {
            "hosts": hosts,
            "vars": {
                "pg_cluster": name,
                "pg_users": [{"name": f"u{c}", "password": f"pw{c}", "pgbouncer": True, "roles": ["dbrole_admin"]}],
                "pg_databases": [{"name": f"db{c}", "owner": f"u{c}"}],
            },
        }
    plain = total - (n - 10)
    children["nodes"] = {"hosts": {ip(n + i): {} for i in range(max(plain, 0))}}
    return {"all": {"children": children, "vars": {"admin_ip": ip(10), "pg_version": 15, "sty_platform": "debian12"}}}


def run(args: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) of this one child process, last output line."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # like a user's shell: bytecode caching on (some CI images disable it, which skews start-up time)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=err, env={**env, "PYTHONPATH": str(ROOT)})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{stderr[-2000:]}")
    last = (stdout.strip().splitlines() or [""])[-1]
    return wall, usage.ru_maxrss / 1024, last


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="sty-bench-") as tmp:
        tmp = Path(tmp)
        sty = [str(ROOT / ".venv/bin/sty")] if (ROOT / ".venv/bin/sty").exists() else STY
        shipped = tmp / "shipped"
        shipped.mkdir()
        (shipped / "pigsty.yml").write_bytes((ROOT / "pigsty.yml").read_bytes())
        rows.append(("shipped (4 hosts), full build", *run([*sty, "build"], shipped)))
        rows.append(("shipped (4 hosts), nothing changed", *run([*sty, "build"], shipped)))
        big = tmp / "big"
        big.mkdir()
        (big / "pigsty.yml").write_text(yaml.safe_dump(fleet(), sort_keys=False))
        rows.append(("1000 hosts, full build", *run([*sty, "build", "-q"], big)))
        rows.append(("1000 hosts, nothing changed", *run([*sty, "build"], big)))
        rows.append(("1000 hosts, check only", *run([*sty, "check"], big)))
    print(f"{'case':40} {'wall s':>8} {'peak MiB':>9}  result")
    for name, wall, peak, last in rows:
        print(f"{name:40} {wall:8.2f} {peak:9.0f}  {last[:70]}")
    print("targets: shipped < 0.5 s; 1000 hosts < 10 s full, < 1 s unchanged; peak < 1024 MiB")


if __name__ == "__main__":
    main()
