"""MINIO's model: names and paths, MinIO's ellipsis notation, MINIO_VOLUMES, and the members of each cluster."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from ...model import Fleet, Host

MODULE = "minio"
# Pigsty v4.5 runs the Silo build of the MinIO server (`minio_type: silo`, the only engine it accepts)
SERVER = "silo"
UNIT = f"{SERVER}.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
ENV_FILE = f"/etc/default/{SERVER}"
LEGACY_ENV_FILE = "/etc/default/minio"  # read first by the unit, as Pigsty's does, for hosts moved from minio
LEGACY_UNIT = "minio.service"
SERVER_BIN = f"/usr/bin/{SERVER}"
PACKAGES = (SERVER, "mcli")
PROVISION_DIR = "/etc/minio"
PROVISION_FILE = f"{PROVISION_DIR}/provision.sh"
MCLI_DIR = "/root/.mcli"  # the mcli configuration (aliases) of root, who runs the provisioning
MCLI_CA = f"{MCLI_DIR}/certs/CAs/ca.crt"
METRICS_JOB = "minio"  # MINIO_PROMETHEUS_JOB_ID: the scrape job's name
BUILTIN_POLICIES = ("readwrite", "readonly", "writeonly", "diagnostics", "consoleAdmin")
ANONYMOUS = ("none", "download", "upload", "public")

ELLIPSIS = re.compile(r"\{([0-9]+)\.\.\.([0-9]+)\}")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
DATA_PATH = re.compile(r"^/[A-Za-z0-9_./{}-]*$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
ACCESS_KEY = re.compile(r"^[A-Za-z0-9_.@+-]{3,128}$")
POLICY = re.compile(r"^[A-Za-z0-9_.-]+$")
ALIAS = re.compile(r"^[A-Za-z0-9_-]+$")
OS_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
URL = re.compile(r"^(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/?$")
VOLUME_URL = re.compile(r"^(https?)://([A-Za-z0-9.{}-]+)(:[0-9]{1,5})?(/.*)$")
VOLUME_CHARS = re.compile(r"[^A-Za-z0-9_.:/{}@+=,-]")
ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
ENV_VALUE_FORBIDDEN = set("'\"`$\\\n\r\x00")


# -- MinIO's ellipsis notation ----------------------------------------------------------------------------------


def ellipsis_problem(pattern: str) -> str | None:
    """Why `pattern` is not well-formed `{x...y}` notation (None when it is)."""
    rest = ELLIPSIS.sub("", pattern)
    if "{" in rest or "}" in rest:
        return "braces must enclose a range written {x...y} with integers x <= y, e.g. /data{1...4}"
    for m in ELLIPSIS.finditer(pattern):
        if int(m.group(1)) > int(m.group(2)):
            return f"the range {m.group(0)} is descending; write {{x...y}} with x <= y"
    return None


def expand(pattern: str) -> list[str]:
    """`/data{1...4}` -> `/data1` ... `/data4` (every range, cartesian; zero padding kept)."""
    pieces = ELLIPSIS.split(pattern)
    texts, ranges = pieces[0::3], []
    for lo, hi in zip(pieces[1::3], pieces[2::3], strict=True):
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        ranges.append([str(n).zfill(width) for n in range(int(lo), int(hi) + 1)])
    out = []
    for combo in itertools.product(*ranges):
        out.append("".join(t + c for t, c in zip(texts, [*combo, ""], strict=True)))
    return out


def volume_problem(volumes: str) -> str | None:
    """Problems of a MINIO_VOLUMES value: pools separated by spaces, each a path or a URL, all one kind."""
    words = volumes.split()
    if not words:
        return "MINIO_VOLUMES is empty"
    kinds = set()
    for word in words:
        if VOLUME_CHARS.search(word):
            return f"'{word}' may only contain letters, digits and _.:/{{}}@+=,-"
        problem = ellipsis_problem(word)
        if problem:
            return f"'{word}': {problem}"
        m = VOLUME_URL.match(word)
        if m:
            kinds.add(m.group(1))
            if m.group(3) and not 0 < int(m.group(3)[1:]) < 65536:
                return f"'{word}': port {m.group(3)[1:]} is outside 1-65535"
            if not m.group(4).startswith("/") or len(m.group(4)) < 2:
                return f"'{word}': the drive path after the host must be absolute"
        elif word.startswith("/"):
            kinds.add("path")
        else:
            return f"'{word}' is neither an absolute path nor an http(s):// URL"
    if len(kinds) > 1:
        return "all pools must be local paths or all URLs of one scheme, not a mix"
    return None


def extra_vars(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """`minio_extra_vars` as (name, value) pairs, and the problems of its lines."""
    pairs, problems = [], []
    for n, line in enumerate(str(text or "").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].strip()
        m = ENV_LINE.match(line)
        if not m:
            problems.append(f"line {n} '{line[:40]}' is not NAME=value")
            continue
        name, value = m.group(1), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        bad = sorted(ENV_VALUE_FORBIDDEN & set(value))
        if bad:
            problems.append(f"the value of {name} may not contain {' '.join(repr(c) for c in bad)}")
            continue
        pairs.append((name, value))
    return pairs, problems


# -- the model --------------------------------------------------------------------------------------------------


@dataclass
class MinioMember:
    host: Host
    seq: int
    nodename: str
    drives: list[str]


@dataclass
class MinioCluster:
    name: str
    members: list[MinioMember] = field(default_factory=list)
    volumes: str = ""

    @property
    def first(self) -> MinioMember:
        return self.members[0]


@dataclass
class MinioModel:
    clusters: dict[str, MinioCluster]
    member_of: dict[str, MinioMember]  # host ip -> member
    cluster_of: dict[str, MinioCluster]  # host ip -> cluster


def minio_model(fleet: Fleet) -> MinioModel:
    return fleet.derived[MODULE]


def scheme(p: Any) -> str:
    return "https" if p.get("minio_https") else "http"


def instance(cluster: str, seq: int) -> str:
    """Pigsty's instance name `<minio_cluster>-<minio_seq>` (certificate SAN, DNS name, scrape target)."""
    return f"{cluster}-{seq}"


def endpoint(p: Any) -> str:
    """The mcli alias' endpoint: `minio_endpoint`, else `<scheme>://<minio_domain>:<minio_port>`."""
    return str(p.get("minio_endpoint") or f"{scheme(p)}://{p['minio_domain']}:{p['minio_port']}")


def generated_volumes(cluster: MinioCluster) -> str:
    """Pigsty's MINIO_VOLUMES: the data pattern alone on one node, else `<scheme>://<node pattern with
    ${minio_seq} as {first...last}>:<port><data>`."""
    p = cluster.first.host.params
    data = str(p["minio_data"])
    if len(cluster.members) == 1:
        return data
    seqs = f"{{{cluster.members[0].seq}...{cluster.members[-1].seq}}}"
    pattern = p.substitute(str(p.raw("minio_node")).replace("${minio_seq}", seqs))
    return f"{scheme(p)}://{pattern}:{p['minio_port']}{data}"
