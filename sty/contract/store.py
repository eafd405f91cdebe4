"""The secret store: `.sty/<outdir>/secrets.yml`, written by `sty build`, read by the apply stage.

It maps each placeholder name (`pg-test/pg_users/dbuser_meta/password`) to its value; names ending in
`/scram` hold PostgreSQL SCRAM-SHA-256 verifiers derived from a password. The file is git-ignored, mode 0600.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def store_dir(outdir: Path) -> Path:
    """`.sty/<outdir name>/` beside the output directory: git-ignored state of one bundle tree."""
    outdir = outdir.resolve()
    return outdir.parent / ".sty" / outdir.name


def read_store(outdir: Path) -> dict[str, str]:
    path = store_dir(outdir) / "secrets.yml"
    if not path.exists():
        return {}
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER) or {}
    return {str(k): str(v) for k, v in data.items()}


def write_store(outdir: Path, values: dict[str, str]) -> None:
    """Rewrite the store only when its content changes; mode 0600."""
    path = store_dir(outdir) / "secrets.yml"
    text = yaml.dump(dict(sorted(values.items())), Dumper=_DUMPER, default_flow_style=False, allow_unicode=True)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


@functools.lru_cache(maxsize=4096)
def scram_verifier(password: str, seed: str, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier. The salt is derived from the seed and the password so
    that the same password always gives the same verifier (no spurious diffs, no state to keep)."""
    import base64
    import hmac

    if password.startswith(("SCRAM-SHA-256$", "md5")):
        return password  # already a verifier
    salt = hashlib.sha256(f"sty-scram:{seed}:{password}".encode()).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
