"""pgBackRest judges `/etc/pgbackrest/pgbackrest.conf`.

pgBackRest has no check mode. Its `backup` command parses and validates every option of the file (and
warns about unknown ones) before it touches a repository, so it runs against a repository that cannot
hold a backup: a posix repository moved to an empty temporary directory (rc 55, "FileMissingError ...
backup.info", means the options are good), a remote one (S3, Azure, GCS, SFTP) inside a network
namespace with nothing in it (rc 49, "HostConnectError", likewise). Option errors are rc 31/32/37 with
pgBackRest's own message; `WARN: configuration file contains invalid option` fails too.

Paths the backup command writes to (log, lock) and the repository path are moved to the temporary directory
on the command line, which takes precedence over the file; nothing else of the file is changed. A CA file
the build machine does not have is replaced: the fleet CA (which the apply stage provides) by a stand-in
certificate, any other by the system's CA bundle (noted in the output). Runs as the
`postgres` user (pgBackRest refuses some commands as root) under `unshare -n`: no packet can leave.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import AS_POSTGRES, chown_tree, joined, require, run, standin_certificates, substitute, tmpdir

CONF = "/etc/pgbackrest/pgbackrest.conf"
OK_CODES = {55: "empty repository (FileMissingError)", 49: "repository unreachable (HostConnectError)"}
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def options(text: str) -> tuple[str | None, dict[str, str]]:
    """The stanza (first non-global section) and the options of every section, later ones winning."""
    stanza, opts = None, {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^\[([^\]]+)\]$", line)
        if m:
            if stanza is None and not m.group(1).startswith("global"):
                stanza = m.group(1)
            continue
        key, _, value = line.partition("=")
        opts[key.strip()] = value.strip()
    return stanza, opts


def check_config(text: str, manifest: dict | None = None, timeout: float = 30) -> tuple[bool, str]:
    """Run pgBackRest's backup command on a configuration text (secrets already substituted)."""
    require("pgbackrest", package="pgbackrest")
    require("unshare", "setpriv", package="util-linux")
    stanza, opts = options(text)
    if not stanza:
        return False, "no stanza section in the file"
    notes = []
    with tmpdir("pgbackrest", owner="postgres") as tmp:
        conf = tmp / "pgbackrest.conf"
        conf.write_text(text)
        for d in ("repo", "log", "spool", "lock"):
            (tmp / d).mkdir()
        chown_tree(tmp)
        cmd = [
            "unshare", "-n", *AS_POSTGRES, "pgbackrest", f"--config={conf}", f"--stanza={stanza}",
            "--log-level-console=warn", "--log-level-file=off", f"--log-path={tmp / 'log'}",
            f"--lock-path={tmp / 'lock'}",
        ]  # fmt: skip
        if opts.get("repo1-type", "posix") == "posix":
            cmd.append(f"--repo1-path={tmp / 'repo'}")
        else:  # the endpoint cannot be resolved in the namespace: give up quickly instead of retrying for a minute
            cmd.append("--io-timeout=0.1")
        ca = opts.get("repo1-storage-ca-file")
        if ca and not Path(ca).exists():
            standin, said = standin_certificates(manifest or {}, [text], tmp)
            if ca in standin:  # the fleet CA comes with the apply stage
                chown_tree(tmp)
                cmd.append(f"--repo1-storage-ca-file={standin[ca]}")
                notes += [f"# {n}" for n in said]
            elif SYSTEM_CA.exists():
                cmd.append(f"--repo1-storage-ca-file={SYSTEM_CA}")
                notes.append(f"# {ca} is not on this machine: checked with {SYSTEM_CA}")
            else:
                return False, f"# {ca} is not on this machine"
        proc = run([*cmd, "backup"], timeout=timeout)
        out = joined(proc).replace(str(tmp), "/tmp/pgbackrest-check")
    bad = [line for line in out.splitlines() if line.startswith("WARN: configuration file contains")]
    ok = proc.returncode in OK_CODES and not bad
    if ok:
        notes.append(f"# rc {proc.returncode}: options valid, {OK_CODES[proc.returncode]}")
    return ok, out + "\n".join(notes)


@register("pgbackrest")
def check(ctx: CheckContext) -> CheckResult:
    path = next((f for f in ctx.files if f.endswith(".conf")), CONF)
    ok, out = check_config(substitute(ctx.path(path).read_text(), ctx.secret), ctx.manifest)
    return CheckResult("pgbackrest", ctx.files, PASS if ok else FAIL, out)
