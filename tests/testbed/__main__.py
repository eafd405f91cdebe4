"""The command line: `python tests/testbed up|down|status|image|exec ...` (a directory with a
`__main__.py` is runnable; see the package's docstring for what each command makes and removes)."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python tests/testbed`: import the folder as the package `testbed`
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402

import testbed  # noqa: E402
from testbed import (  # noqa: E402
    DEFAULT_BRIDGE,
    DEFAULT_CACHE_DIR,
    DEFAULT_INVENTORY,
    DEFAULT_PREFIX,
    DEFAULT_SUBNET,
    STATE_ROOT,
    Image,
    Testbed,
    TestbedError,
    UsageError,
)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--inventory", "-i", default=str(DEFAULT_INVENTORY), help="inventory (default: %(default)s)")
    common.add_argument("--subnet", default=DEFAULT_SUBNET, help="test network (default: %(default)s)")
    common.add_argument(
        "--bridge", default=DEFAULT_BRIDGE, help="bridge name inside its namespace (default: %(default)s)"
    )
    common.add_argument(
        "--cgroup-prefix",
        default=DEFAULT_PREFIX,
        help="names of cgroups and namespaces start with it (default: %(default)s)",
    )
    common.add_argument("--state-dir", default=None, help=f"default: {STATE_ROOT}/<cgroup prefix>")
    common.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR), help="image cache (default: %(default)s)")
    parser = argparse.ArgumentParser(prog="python tests/testbed", description=(testbed.__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", parents=[common], help="build or reuse the image and start one container per host")
    up.add_argument("--boot-timeout", type=float, default=180, help="seconds per host to boot and answer ssh")
    up.add_argument("--keep-on-failure", action="store_true", help="leave a failed testbed for inspection")
    sub.add_parser(
        "down", parents=[common], help="stop the containers and remove every trace but the image cache and console logs"
    )
    sub.add_parser("status", parents=[common], help="the hosts and whether they run")
    image = sub.add_parser("image", parents=[common], help="build (or unpack) the cached image only")
    image.add_argument("--prune", action="store_true", help="remove cached images of other package lists")
    ex = sub.add_parser("exec", parents=[common], help="run CMD in the control namespace: exec -- CMD...")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        tb = Testbed(args.inventory, args.subnet, args.bridge, args.cgroup_prefix, args.state_dir, args.cache_dir)
        if args.command == "up":
            tb.boot_timeout = args.boot_timeout
            tb.up(keep_on_failure=args.keep_on_failure)
            t = tb.timings
            print(f"image: {Image(tb.cache_dir).rootfs} ({tb.image_status} in {t['image_s']:.1f} s)")
            for ip, h in tb.status().items():
                print(f"{ip}\t{h['name']}\tpid {h['pid']}\tnetns {tb.host_ns(ip)}")
            print(f"{len(tb.hosts)} host(s) up, ssh ready, in {t['start_s']:.1f} s (cleanup {t['cleanup_s']:.1f} s)")
            print(f"control side: {tb.control_ip} in netns {tb.control_ns}; ssh config: {tb.ssh_config()}")
            print(f"use: python tests/testbed exec -- ssh -F {tb.ssh_config()} {next(iter(tb.hosts))}")
        elif args.command == "down":
            tb.down()
            print(f"down in {tb.timings['down_s']:.1f} s")
        elif args.command == "status":
            status = tb.status()
            if not status:
                print("not up")
                return 3
            for ip, h in status.items():
                print(f"{ip}\t{h['name']}\t{'running' if h['running'] else 'stopped'}\tpid {h['pid']}")
            return 0 if all(h["running"] for h in status.values()) else 3
        elif args.command == "image":
            image = Image(tb.cache_dir)
            t = time.monotonic()
            rootfs, how = image.ensure()
            print(f"{rootfs} ({how} in {time.monotonic() - t:.1f} s); archive {image.tarball}")
            if args.prune:
                for path in image.prune():
                    print(f"removed {path}")
        elif args.command == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                raise UsageError("exec needs a command: python tests/testbed exec -- CMD...")
            if not tb.is_up() or not (Path("/run/netns") / tb.control_ns).exists():
                raise TestbedError(f"the testbed of {tb.state_dir} is not up")
            os.environ.update(tb.control_env())
            os.execvp("nsenter", ["nsenter", f"--net=/run/netns/{tb.control_ns}", "--", *cmd])
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
