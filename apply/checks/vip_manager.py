"""vip-manager judges its configuration together with the unit that starts it.

vip-manager has no check mode: it is started as its unit's ExecStart would start it (the configuration path
moved to a temporary copy) under `timeout 2`, inside a private network namespace that holds the interface:
a veth named as the file's `interface`, or, for `pg_vip_interface: auto`, one carrying the host's address, so
the unit's own lookup of the interface is exercised too. Still running after two seconds (rc 124) means the
file was accepted; a bad value or a missing interface makes it exit (rc 1) with vip-manager's message.
Its etcd endpoints are unreachable in the namespace, so nothing leaves it and no VIP is ever bound outside.
"""

from __future__ import annotations

import re
import shlex

import yaml

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import joined, netns, replace_paths, require, standin_certificates, substitute, tmpdir

CONF = "/etc/default/vip-manager.yml"
UNIT = "/etc/systemd/system/vip-manager.service"
AUTO_IFACE = "styvip0"  # the interface `auto` finds in the namespace


def exec_start(unit_text: str) -> list[str]:
    """The ExecStart command line of a unit as argv (systemd's `$$` and `%%` unescaped)."""
    for line in unit_text.splitlines():
        m = re.match(r"\s*ExecStart\s*=\s*(.*)$", line)
        if m:
            return [a.replace("$$", "$").replace("%%", "%") for a in shlex.split(m.group(1))]
    raise ValueError("the unit has no ExecStart")


def check_files(conf_text: str, unit_text: str, host: str, conf_path: str = CONF) -> tuple[bool, str]:
    require("vip-manager", package="vip-manager")
    require("ip", package="iproute2")
    require("timeout", package="coreutils")
    conf = yaml.safe_load(conf_text) or {}
    iface = str(conf.get("interface") or AUTO_IFACE)
    argv = exec_start(unit_text)
    if argv[0] not in ("/usr/bin/vip-manager", "/bin/sh") or "vip-manager" not in " ".join(argv):
        raise ValueError(f"the unit does not start vip-manager: {' '.join(argv)}")
    with tmpdir("vip-manager") as tmp, netns([]) as ns:
        path = tmp / "vip-manager.yml"
        path.write_text(conf_text)
        argv = [a.replace(conf_path, str(path)) for a in argv]
        for cmd in (
            ["ip", "link", "add", iface, "type", "veth", "peer", "name", "stypeer0"],
            ["ip", "addr", "add", f"{host}/24", "dev", iface],
            ["ip", "link", "set", iface, "up"],
            ["ip", "link", "set", "stypeer0", "up"],
        ):
            setup = ns.run(cmd)
            if setup.returncode != 0:
                return False, f"cannot prepare the namespace: {' '.join(cmd)}: {joined(setup)}"
        proc = ns.run(["timeout", "2", *argv], timeout=20)
        out = joined(proc).replace(str(path), conf_path)
    note = f"# interface {iface} in a private namespace holding {host}/24; exit code {proc.returncode}"
    return proc.returncode == 124, out + note


@register("vip_manager")
def check(ctx: CheckContext) -> CheckResult:
    conf = next((f for f in ctx.files if f.endswith((".yml", ".yaml"))), CONF)
    unit = next((f for f in ctx.files if f.endswith(".service")), UNIT)
    text = substitute(ctx.path(conf).read_text(), ctx.secret)
    with tmpdir("vip-manager-tls") as tmp:
        # the etcd CA, certificate and key come with the apply stage: vip-manager reads stand-ins for them
        standins, notes = standin_certificates(ctx.manifest, [text], tmp)
        try:
            ok, out = check_files(replace_paths(text, standins), ctx.path(unit).read_text(), ctx.host, conf)
        except ValueError as exc:
            return CheckResult("vip_manager", ctx.files, FAIL, str(exc))
        for host_path, standin in standins.items():
            out = out.replace(standin, host_path)
    return CheckResult("vip_manager", ctx.files, PASS if ok else FAIL, out, "; ".join(notes))
