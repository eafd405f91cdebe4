"""The local multi-host testbed: one systemd-nspawn container (real systemd as PID 1) per inventory host,
on a bridge that lives in a network namespace of its own.

    python tests/testbed up   [--inventory conf/testbed.yml] [--subnet 10.10.10.0/24] [--bridge stybr0]
                              [--cgroup-prefix sty-testbed] [--state-dir DIR] [--cache-dir DIR]
    python tests/testbed exec -- CMD...     # CMD runs in the control namespace (`sty apply` goes here)
    python tests/testbed status | down | image

What it makes, with P the cgroup prefix (every name derives from the parameters, so leftovers of a killed
run are found again and removed by the next `up` or `down`):

    netns P-net       the bridge (no address), one veth end per host and one for the control side
    netns P-ctl       eth0 = the control side's address (the subnet's last host address, .254 in a /24)
    netns P-<ip>      eth0 = the host's address; the container's network namespace
    cgroups           <hierarchy>/P/<ip> in the `name=systemd` and cgroup2 hierarchies, one per container
    mounts            none in the machine's mount namespace: each container's overlayfs (lower = the cached
                      image, upper/work under the state dir) is mounted in a private mount namespace made for
                      its systemd-nspawn and disappears with it, even when everything is killed
    state dir         state.json (what was made: namespaces, cgroups, pids), id_ed25519 (the testbed key),
                      known_hosts and ssh_config for the control side, hosts/<ip>/, logs/<ip>.log (console)
    cache dir         debian12-<key>.tar.zst, the image, keyed by a hash of its package list and recipe, and
                      debian12-<key>.rootfs, the same tree unpacked (the overlay's read-only lower layer)

Network safety: the machine's own network namespace gets nothing; veths are created inside P-net with their
peer placed directly in the host or control namespace. No namespace has a route out: a packet can only reach
the test hosts' addresses on the bridge. Run everything that talks to the hosts through `control_run()` or
`python tests/testbed exec`.

Containers and the kernel: /proc/sys is read-only in a container and the clock is the machine's. The testbed
adds no capability (no CAP_SYS_TIME, default system-call filter); conf/testbed.yml turns sysctl tuning and
chrony off instead (`node_tune: none`, empty `node_sysctl_params`, `node_ntp_enabled: false`).

The package: `common` (defaults, errors, running programs), `procs` (this machine's processes, cgroups and
mounts), `image` (the cached image), `state` (names, paths, state.json), `network` (namespaces, veths, the
control side), `containers` (systemd-nspawn), `lifecycle` (`Testbed`: up and down), `__main__` (the
command line). Tests import the names below from here (`from testbed import Testbed`).
"""

from __future__ import annotations

from .common import (
    DEFAULT_BRIDGE,
    DEFAULT_CACHE_DIR,
    DEFAULT_INVENTORY,
    DEFAULT_PREFIX,
    DEFAULT_SUBNET,
    KEYGEN,
    PATH,
    ROOT,
    STATE_ROOT,
    TestbedError,
    UsageError,
    locked,
    log,
    run,
)
from .containers import LAUNCH, NSPAWN_RUN
from .image import (
    BASE_PACKAGES,
    DBSU_HOME,
    DBSU_UID,
    FLEET_PACKAGES,
    HOST_KEY_TYPES,
    IMAGE_RECIPE,
    SUITE,
    Image,
    apt_mirrors,
)
from .lifecycle import Testbed
from .network import veth_name
from .procs import (
    alive,
    cgroup_procs,
    cgroup_roots,
    kill,
    limits_warning,
    missing_requirements,
    mounts_under,
    remove_cgroup_tree,
    starttime,
)
from .state import inventory_hosts

__all__ = [
    "BASE_PACKAGES",
    "DBSU_HOME",
    "DBSU_UID",
    "DEFAULT_BRIDGE",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_INVENTORY",
    "DEFAULT_PREFIX",
    "DEFAULT_SUBNET",
    "FLEET_PACKAGES",
    "HOST_KEY_TYPES",
    "IMAGE_RECIPE",
    "KEYGEN",
    "LAUNCH",
    "NSPAWN_RUN",
    "PATH",
    "ROOT",
    "STATE_ROOT",
    "SUITE",
    "Image",
    "Testbed",
    "TestbedError",
    "UsageError",
    "alive",
    "apt_mirrors",
    "cgroup_procs",
    "cgroup_roots",
    "inventory_hosts",
    "kill",
    "limits_warning",
    "locked",
    "log",
    "missing_requirements",
    "mounts_under",
    "remove_cgroup_tree",
    "run",
    "starttime",
    "veth_name",
]
