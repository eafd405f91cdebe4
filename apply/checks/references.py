"""Every host path a bundle's files name among those only sty delivers must be delivered: by the bundle itself,
or by the apply stage (the certificates it signs, the fleet CA where the manifest says the host trusts it).

The real programs notice a missing certificate only when they start (`haproxy -c` on a `ca-file` that is not
there), and a missing admin script only when cron runs it; this check says so at lint time, naming the file.
The NODE module declares it for every host, with no files: it reads all of the bundle's files.
"""

from __future__ import annotations

import re

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import provided_files

# Paths only sty fills on a host: Pigsty's admin scripts and the PostgreSQL certificates (whole directories), and
# the fleet CA. Other paths (an operator's own certificate under /etc/pki, say) are the operator's to provide.
DELIVERED_DIRS = ("/pg/bin/", "/pg/cert/")
DELIVERED_FILES = ("/etc/pki/ca.crt",)
_REFERENCE = re.compile(
    r"(?<![\w./-])("
    + "|".join(re.escape(d) + r"[\w.-]+(?:/[\w.-]+)*" for d in DELIVERED_DIRS)
    + "|"
    + "|".join(re.escape(f) + r"(?![\w./-])" for f in DELIVERED_FILES)
    + ")"
)
MAX_SCANNED = 4 << 20  # bytes per file: bundles are small; a huge file is someone else's problem to explain


def references(text: str) -> set[str]:
    return {m.group(1) for m in _REFERENCE.finditer(text)}


@register("references")
def check(ctx: CheckContext) -> CheckResult:
    files = [str(f.get("path")) for f in ctx.manifest.get("files") or [] if isinstance(f, dict) and f.get("path")]
    delivered = set(files) | set(provided_files(ctx.manifest))
    dirs = {d.rstrip("/") + "/" for d in (str(x.get("path", "")) for x in ctx.manifest.get("directories") or [])}
    missing: list[str] = []
    naming: list[str] = []
    for path in sorted(files):
        local = ctx.path(path)
        try:
            with open(local, "rb") as handle:
                text = handle.read(MAX_SCANNED).decode("utf-8", "replace")
        except OSError:
            continue  # the file's own checker reports an unreadable file
        for ref in sorted(references(text) - delivered):
            if ref + "/" in dirs:  # a directory the bundle creates (a script's working directory)
                continue
            missing.append(f"{path} names {ref}, which neither this bundle nor the apply stage delivers")
            naming.append(path)
    if missing:
        return CheckResult("references", tuple(dict.fromkeys(naming)), FAIL, "\n".join(missing))
    return CheckResult("references", (), PASS)
