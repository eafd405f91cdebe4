"""dnsmasq: the configuration (`dnsmasq --test`) and the DNS record files of its hosts directory.

`--test` parses the configuration only and stops at the first error; it does not read hosts files. So the
record files are then loaded by a dnsmasq in the foreground (`--addn-hosts` per file, no upstream servers,
a loopback port, `unshare -n`), which says what it cannot use ("bad address at … line N", "bad name at …")
and how many names it read from each file; that count must match the file's. It is stopped as soon as it
has read every file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import free_port, joined, require, run, stop, substitute, tmpdir, wait_for

_DIR_OPTION = re.compile(r"^(hostsdir|addn-hosts|conf-dir)=(.*)$", re.M)


def names_in(text: str) -> int:
    """Names on the records of a hosts file (comments and blank lines ignored), as dnsmasq counts them."""
    return sum(max(len(line.split("#", 1)[0].split()) - 1, 0) for line in text.splitlines())


def _records(ctx: CheckContext, tmp: Path) -> dict[str, Path]:
    """Host path -> copy, for every record file (the directories among the files, and plain files after the
    configuration)."""
    out: dict[str, Path] = {}
    for path in ctx.files[1:]:
        src = ctx.path(path)
        files = sorted(p for p in src.iterdir() if p.is_file()) if src.is_dir() else [src]
        for f in files:
            host_path = f"{path.rstrip('/')}/{f.name}" if src.is_dir() else path
            dst = tmp / "records" / f"{len(out):03d}-{f.name}"
            dst.parent.mkdir(exist_ok=True)
            dst.write_text(substitute(f.read_text(), ctx.secret))
            out[host_path] = dst
    return out


def _load(records: dict[str, Path], tmp: Path, timeout: float) -> tuple[list[str], list[str]]:
    """(problems, dnsmasq's log) of loading every record file."""
    log = tmp / "dnsmasq.log"
    port = free_port()
    hosts = " ".join(f"--addn-hosts={f}" for f in records.values())
    cmd = (
        "ip link set lo up && exec dnsmasq -d --conf-file=/dev/null --no-hosts --no-resolv --pid-file= "
        f"{hosts} --port {port} --listen-address=127.0.0.1 --bind-interfaces"
    )
    with open(log, "wb") as fh:
        proc = subprocess.Popen(["unshare", "-n", "sh", "-c", cmd], stdout=fh, stderr=subprocess.STDOUT)
    try:
        done = wait_for(
            lambda: all(f"read {f} " in log.read_text(errors="replace") for f in records.values()),
            timeout,
            alive=proc,
        )
    finally:
        stop(proc)
    text = log.read_text(errors="replace")
    for host_path, f in records.items():
        text = text.replace(str(f), host_path)
    lines = [line for line in text.splitlines() if "exiting on receipt" not in line]
    bad = [line for line in lines if "bad address" in line or "bad name" in line or "failed" in line]
    if not done:
        bad.append(f"dnsmasq did not read every record file (it exited or took longer than {timeout}s)")
        return bad, lines
    for host_path, f in records.items():
        want = names_in(f.read_text())
        read = next((line for line in lines if f"read {host_path} " in line), "")
        if f"- {want} names" not in read and f"- {want} addresses" not in read and not bad:
            bad.append(f"dnsmasq read a different number of names from {host_path} than its {want}: {read}")
    return bad, lines


@register("dnsmasq")
def check(ctx: CheckContext, timeout: float = 10) -> CheckResult:
    require("dnsmasq", package="dnsmasq-base")
    require("unshare", package="util-linux")
    conf_path = ctx.files[0]
    with tmpdir("dnsmasq") as tmp:
        records = _records(ctx, tmp)
        text = substitute(ctx.path(conf_path).read_text(), ctx.secret)
        # directories the configuration names are this bundle's copies (or an empty stand-in directory)
        empty = tmp / "empty"
        empty.mkdir()
        conf = tmp / "dnsmasq.conf"
        conf.write_text(_DIR_OPTION.sub(lambda m: f"{m.group(1)}={tmp / 'records' if records else empty}", text))
        proc = run(["unshare", "-n", "dnsmasq", "--test", f"--conf-file={conf}"])
        out = joined(proc).replace(str(conf), conf_path)
        if proc.returncode != 0:
            return CheckResult("dnsmasq", ctx.files, FAIL, out)
        problems, lines = _load(records, tmp, timeout) if records else ([], [])
    report = "\n".join([out.strip(), *problems, "", *lines]).strip() + "\n"
    return CheckResult("dnsmasq", ctx.files, FAIL if problems else PASS, report)
