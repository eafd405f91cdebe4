"""`sty facts HOST`: read CPU, memory and data-disk size over SSH into `facts/<host>.yml`."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from .bundle import Bundle
from .remote import Remote, SshOptions

# one round trip; the data-disk size is that of the file system holding node_data (/data), else /
SCRIPT = (
    "nproc; awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo; "
    'd={data}; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; df -BG --output=size "$d" | tail -1'
)


def script(data_dir: str) -> str:
    return SCRIPT.replace("@DATA@", shlex.quote(data_dir))


def parse_facts(output: str) -> dict[str, int]:
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    if len(lines) < 3:
        raise ValueError(f"unexpected facts output: {output!r}")
    return {"cpu": int(lines[0]), "mem_mb": int(lines[1]), "disk_gb": int(lines[2].rstrip("G"))}


def gather(outdir: Path, ip: str, facts_dir: Path, ssh: SshOptions | None = None, data_dir: str = "/data") -> Path:
    bundle = Bundle.load(outdir, ip)
    remote = Remote.from_manifest(bundle.manifest, ssh or SshOptions.from_env())
    try:
        out = remote.run(script(data_dir)).stdout
    finally:
        remote.close()
    facts = parse_facts(out)
    facts_dir.mkdir(parents=True, exist_ok=True)
    path = facts_dir / f"{ip}.yml"
    text = "# gathered by `sty facts`; feeds the PostgreSQL tuning\n" + yaml.safe_dump(facts, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path
