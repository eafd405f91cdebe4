"""`minio_env` and `shell`: hand-written checks where no MinIO server is installable (Debian has none).

`minio_env` judges MinIO's environment file (`/etc/default/minio`) the way the server would read it:
`bash -n` for syntax, then the file is sourced by a clean `bash` (`env -i`, secrets substituted) and the
variables it defines are checked against MinIO's startup rules: MINIO_VOLUMES, MINIO_ROOT_USER and
MINIO_ROOT_PASSWORD present, credential lengths (user >= 3, password >= 8 characters), the volumes'
ellipsis notation `{x...y}`, pools all paths or all URLs, and drive counts MinIO can form erasure sets from.

`shell` runs `bash -n` on scripts (the MinIO provisioning script): syntax only, nothing is executed.
"""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import joined, require, run, substitute, tmpdir

ELLIPSIS = re.compile(r"\{([0-9]+)\.\.\.([0-9]+)\}")
VOLUME_URL = re.compile(r"^(https?)://([^/:]+)(?::([0-9]+))?(/.*)?$")
REQUIRED = ("MINIO_VOLUMES", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")
SET_SIZES = range(2, 17)  # erasure set sizes MinIO can form


def _count(pattern: str) -> int:
    n = 1
    for m in ELLIPSIS.finditer(pattern):
        n *= int(m.group(2)) - int(m.group(1)) + 1
    return n


def volume_errors(volumes: str) -> list[str]:
    """MinIO's rules for MINIO_VOLUMES (`minio server` arguments): one pool per argument with ellipses."""
    words = volumes.split()
    if not words:
        return ["MINIO_VOLUMES is empty"]
    errors = []
    kinds = set()
    for word in words:
        rest = ELLIPSIS.sub("", word)
        if "{" in rest or "}" in rest:
            errors.append(f"'{word}': malformed ellipsis, expected {{x...y}} with integers, e.g. /data{{1...4}}")
            continue
        bad = [m.group(0) for m in ELLIPSIS.finditer(word) if int(m.group(1)) > int(m.group(2))]
        if bad:
            errors.append(f"'{word}': descending range {bad[0]}")
            continue
        m = VOLUME_URL.match(word)
        if m:
            kinds.add(m.group(1))
            if m.group(3) is not None and not 0 < int(m.group(3)) < 65536:
                errors.append(f"'{word}': port {m.group(3)} is outside 1-65535")
            if not m.group(4) or m.group(4) == "/":
                errors.append(f"'{word}': a URL endpoint needs an absolute drive path after host:port")
        elif word.startswith("/"):
            kinds.add("path")
        else:
            errors.append(f"'{word}' is neither an absolute path nor an http(s):// URL")
    if errors:
        return errors
    if len(kinds) > 1:
        return [f"pools mix {' and '.join(sorted(kinds))} endpoints; use only local paths or only URLs of one scheme"]
    with_ellipses = [w for w in words if ELLIPSIS.search(w)]
    if len(words) > 1 and with_ellipses and len(with_ellipses) != len(words):
        return ["all args must have ellipses for pool expansion (Invalid arguments specified)"]
    pools = [[w] for w in words] if with_ellipses else [words]
    for pool in pools:
        drives = sum(_count(w) for w in pool)
        distributed = kinds != {"path"}
        if drives == 1 and not distributed:
            continue
        if not any(drives % size == 0 for size in SET_SIZES):
            errors.append(
                f"{' '.join(pool)}: Incorrect number of endpoints provided ({drives}): no erasure set size "
                "between 2 and 16 divides it"
            )
    return errors


def options_errors(opts: str) -> list[str]:
    try:
        words = shlex.split(opts)
    except ValueError as exc:
        return [f"MINIO_OPTS cannot be split into arguments: {exc}"]
    errors = []
    for flag, value in itertools.pairwise(words):
        if flag in ("--address", "--console-address"):
            port = value.rsplit(":", 1)[-1] if ":" in value else ""
            if not port.isdigit() or not 0 < int(port) < 65536:
                errors.append(f"MINIO_OPTS {flag} '{value}' must be [host]:port")
        if flag == "--certs-dir" and not value.startswith("/"):
            errors.append(f"MINIO_OPTS --certs-dir '{value}' must be an absolute path")
    return errors


def sourced(path: Path) -> tuple[dict[str, str] | None, str]:
    """The variables a clean bash defines by sourcing `path` (None and bash's words if it fails)."""
    script = 'set -a; . "$1" || exit 1; env -0'
    proc = run(["env", "-i", "/bin/bash", "--noprofile", "--norc", "-c", script, "sty-minio-env", str(path)])
    if proc.returncode != 0:
        return None, joined(proc)
    found = {}
    for item in proc.stdout.split("\0"):
        if "=" in item:
            key, value = item.split("=", 1)
            found[key] = value
    return found, proc.stderr


def check_env_file(ctx: CheckContext, path: str) -> tuple[bool, str]:
    text = substitute(ctx.path(path).read_text(), ctx.secret)
    with tmpdir("minio-env") as tmp:
        copy = tmp / Path(path).name
        copy.write_text(text)
        proc = run(["bash", "-n", str(copy)])
        if proc.returncode != 0:
            return False, joined(proc).replace(str(copy), path)
        env, err = sourced(copy)
        if env is None:
            return False, err.replace(str(copy), path)
    errors = [f"{name} is not set" for name in REQUIRED if not env.get(name)]
    user, password = env.get("MINIO_ROOT_USER", ""), env.get("MINIO_ROOT_PASSWORD", "")
    if user and len(user) < 3:
        errors.append("MINIO_ROOT_USER must be >= 3 chars")
    if password and len(password) < 8:
        errors.append("MINIO_ROOT_PASSWORD must be >= 8 chars")
    if env.get("MINIO_VOLUMES"):
        errors += [f"MINIO_VOLUMES: {e}" for e in volume_errors(env["MINIO_VOLUMES"])]
    if env.get("MINIO_OPTS"):
        errors += options_errors(env["MINIO_OPTS"])
    auth = env.get("MINIO_PROMETHEUS_AUTH_TYPE")
    if auth is not None and auth not in ("jwt", "public"):
        errors.append(f"MINIO_PROMETHEUS_AUTH_TYPE '{auth}' must be jwt or public")
    if errors:
        return False, f"{path}:\n" + "\n".join(errors)
    shown = ", ".join(sorted(k for k in env if k.startswith("MINIO_")))
    return True, f"{path}: sourced cleanly; {shown}"


def check_script(ctx: CheckContext, path: str) -> tuple[bool, str]:
    text = substitute(ctx.path(path).read_text(), ctx.secret)
    with tmpdir("shell") as tmp:
        copy = tmp / Path(path).name
        copy.write_text(text)
        proc = run(["bash", "-n", str(copy)])
        out = joined(proc).replace(str(copy), path)
    return proc.returncode == 0 and not out.strip(), out or f"{path}: bash -n found no syntax error"


def _run(name: str, ctx: CheckContext, one) -> CheckResult:
    require("bash", package="bash")
    results = [one(ctx, f) for f in ctx.files]
    status = PASS if all(ok for ok, _ in results) else FAIL
    return CheckResult(name, ctx.files, status, "\n".join(out for _, out in results))


@register("minio_env")
def check(ctx: CheckContext) -> CheckResult:
    return _run("minio_env", ctx, check_env_file)


@register("shell")
def check_shell(ctx: CheckContext) -> CheckResult:
    return _run("shell", ctx, check_script)
