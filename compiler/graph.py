"""The fleet as a picture (`sty graph`): hosts grouped by cluster, each member's role, what each cluster serves,
its VIPs, the DCS link and which infra nodes scrape which hosts, as a text tree and as SVG.

Everything is read from what a build ships, never re-derived per module: identities, VIPs and ports are what the
modules declare in each host's bundle (the manifest's `identity` and `ports`), the links are the records they
publish on the board (`Dcs`, `DcsUser`, `ScrapeTarget`). So the picture is what a build ships, and a new module
shows up as a cluster of its own without a change here. Only roles add what Pigsty's parameters say beyond the
identity (`pg_offline_query`, `pg_upstream`, redis' `replica_of`).

A host can belong to several clusters (Pigsty's admin node is infra, etcd and pg-meta at once). It is drawn once,
in its *home*: its first cluster in `RANK` order (data before control, plain node cluster last); its other
clusters name it ("etcd-1 on pg-meta-1"). Output is deterministic: clusters by rank and name, members by sequence.
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from .contrib import Dcs, DcsUser, ScrapeTarget, ip_key, vip_of
from .errors import InventoryError, Report
from .pipeline import Compiled, render_host
from .render import RenderError

__all__ = ["Cluster", "Endpoint", "Member", "Scrape", "Topology", "fleet_graph", "render_svg", "render_text"]

# the order clusters are listed in and a host's home is chosen by; a module not named here ranks 3
RANK = {"pgsql": 0, "redis": 1, "minio": 2, "etcd": 4, "infra": 5, "node": 6}
CONTROL = ("etcd", "infra")  # what the others link to: the middle column of the SVG
HAPROXY = "haproxy:"  # the port component of an HAProxy service (`haproxy:<name>`)


@dataclass(frozen=True)
class Member:
    ip: str
    name: str  # its name in the cluster: pg-test-1, etcd-1, infra-1, redis-ms-1
    role: str  # "primary", "replica, offline queries" ... ; "" when the cluster has no roles
    seq: int


@dataclass(frozen=True)
class Endpoint:
    """A port a cluster exposes; `on` names the hosts serving it when they are not exactly the members."""

    name: str
    port: int
    on: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.name}:{self.port}" + (f" (on {', '.join(self.on)})" if self.on else "")


@dataclass
class Cluster:
    kind: str  # the module: pgsql, redis, minio, etcd, infra, or node for hosts in no other cluster
    name: str
    members: list[Member] = field(default_factory=list)
    services: list[Endpoint] = field(default_factory=list)  # HAProxy services
    ports: list[Endpoint] = field(default_factory=list)  # the module's other listeners
    vips: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # redis' mode ...
    dcs: str | None = None  # the DCS cluster it keeps its state in

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def title(self) -> str:
        return self.kind if self.name == self.kind else f"{self.kind} {self.name}"

    @property
    def ips(self) -> set[str]:
        return {m.ip for m in self.members}


@dataclass(frozen=True)
class Scrape:
    """An infra node whose VictoriaMetrics scrapes the published targets: the hosts and the jobs they are in."""

    ip: str
    name: str
    hosts: tuple[str, ...]
    jobs: tuple[str, ...]


@dataclass
class Topology:
    source: str  # the inventory's file name, for the title
    nodenames: dict[str, str]  # address -> node name, in host order
    home: dict[str, str]  # address -> the key of the cluster it is drawn in
    clusters: list[Cluster]
    scrapes: list[Scrape]

    def homed(self, cluster: Cluster) -> list[Member]:
        return [m for m in cluster.members if self.home[m.ip] == cluster.key]

    def guests(self, cluster: Cluster) -> list[Member]:
        return [m for m in cluster.members if self.home[m.ip] != cluster.key]

    def memberships(self, ip: str) -> list[tuple[Cluster, Member]]:
        return [(c, m) for c in self.clusters for m in c.members if m.ip == ip]


# -- the model ---------------------------------------------------------------------------------------------------


def fleet_graph(compiled: Compiled, source: str) -> Topology:
    """The topology of a compiled fleet. Raises InventoryError when a host cannot be rendered (as `sty build`)."""
    fleet = compiled.fleet
    order = sorted(fleet.hosts, key=ip_key)
    report, infos, ports = Report(), {}, {}
    for ip in order:
        try:
            bundle = render_host(fleet.hosts[ip], compiled)
        except RenderError as exc:
            report.error(fleet.hosts[ip].path, f"cannot render this host: {exc}")
            continue
        infos[ip], ports[ip] = bundle.info, sorted(bundle.ports, key=lambda p: (p.port, p.component, p.module))
    if report.errors:
        raise InventoryError(report)
    names = {ip: str(infos[ip].get("node", {}).get("nodename") or ip) for ip in order}
    clusters = _clusters(fleet, order, infos, names)
    home = {}
    for c in clusters:  # ranked: the first cluster of a host is its home
        for m in c.members:
            home.setdefault(m.ip, c.key)
    for ip in order:  # the others: their node cluster
        if ip not in home:
            cls = str(infos[ip].get("node", {}).get("cluster") or "nodes")
            node = next((c for c in clusters if c.key == f"node:{cls}"), None)
            if node is None:
                clusters.append(node := Cluster("node", cls))
            node.members.append(Member(ip, names[ip], "", len(node.members)))
            home[ip] = node.key
    clusters.sort(key=_rank)
    for c in clusters:
        _endpoints(c, ports, names, [o.name for o in clusters if o.kind == c.kind])
        _vips(c, infos, home)
    _node_services(clusters, ports, home, names)
    _dcs(clusters, fleet.board)
    return Topology(source, names, home, clusters, _scrapes(fleet.board, clusters, ports, names, order))


def _clusters(fleet: Any, order: list[str], infos: dict, names: dict[str, str]) -> list[Cluster]:
    """One cluster per (module, cluster) the bundles' identities declare, members in sequence order."""
    found: dict[str, Cluster] = {}
    for ip in order:
        for kind, ident in infos[ip].items():
            if kind == "node" or not isinstance(ident, dict):
                continue
            name = str(ident.get("cluster") or kind)
            cluster = found.setdefault(f"{kind}:{name}", Cluster(kind, name))
            seq = ident.get("seq", ident.get("node"))
            seq = seq if isinstance(seq, int) else 1 << 30
            member = _member_name(kind, name, ident, names[ip])
            cluster.members.append(Member(ip, member, _role(kind, ident, fleet.hosts[ip].params), seq))
            if kind == "redis" and ident.get("mode") and f"{ident['mode']} mode" not in cluster.notes:
                cluster.notes.append(f"{ident['mode']} mode")
    for c in found.values():
        c.members.sort(key=lambda m: (m.seq, ip_key(m.ip)))
    return sorted(found.values(), key=_rank)


def _rank(c: Cluster) -> tuple[int, str, str]:
    return RANK.get(c.kind, 3), c.kind, c.name


def _member_name(kind: str, cluster: str, ident: dict, nodename: str) -> str:
    for key in ("instance", "member", "name"):
        if isinstance(ident.get(key), str):
            return ident[key]
    seq = ident.get("seq", ident.get("node"))
    return f"{cluster}-{seq}" if isinstance(seq, int) else nodename


def _role(kind: str, ident: dict, params: Any) -> str:
    """The member's role as its identity declares it, with what Pigsty's parameters add to it."""
    if kind == "pgsql":
        role = [str(ident.get("role") or "")]
        if params.get("pg_offline_query") and role[0] != "offline":
            role.append("offline queries")
        if params.get("pg_upstream"):
            role.append(f"upstream {params.get('pg_upstream')}")
        return ", ".join(r for r in role if r)
    if kind == "redis":
        ports = sorted((ident.get("instances") or {}).values())
        if ident.get("mode") in ("sentinel", "cluster"):
            return f"{ident['mode']} " + " ".join(str(p) for p in ports)
        specs = {int(k): v for k, v in (params.get("redis_instances") or {}).items() if str(k).isdigit()}
        out = []
        for port in ports:
            upstream = (specs.get(port) or {}).get("replica_of") if isinstance(specs.get(port), dict) else None
            out.append(f"{port} replica of {':'.join(str(upstream).split())}" if upstream else f"{port} primary")
        return ", ".join(out)
    return str(ident.get("role") or "")


def _endpoints(c: Cluster, ports: dict, names: dict[str, str], peers: list[str]) -> None:
    """The module's listeners on the members (not loopback ones), and its HAProxy services wherever they run:
    `haproxy:<cluster>-<service>`, of the cluster with the longest name that fits (pg-test, not pg)."""
    found: dict[tuple[str, int], set[str]] = {}
    services: dict[tuple[str, int], set[str]] = {}
    for ip, listed in ports.items():
        for p in listed:
            if p.module != c.kind or p.address == "127.0.0.1":
                continue
            full = p.component[len(HAPROXY) :] if p.component.startswith(HAPROXY) else None
            if full is None:
                if ip in c.ips:
                    found.setdefault((p.component, p.port), set()).add(ip)
            elif max((n for n in peers if full.startswith(f"{n}-")), key=len, default=None) == c.name:
                services.setdefault((full[len(c.name) + 1 :], p.port), set()).add(ip)

    def endpoint(name: str, port: int, on: set[str]) -> Endpoint:
        where = () if on == c.ips else tuple(names[ip] for ip in sorted(on, key=ip_key))
        return Endpoint(name, port, where)

    c.ports = [endpoint(n, port, on) for (n, port), on in sorted(found.items(), key=lambda kv: kv[0][::-1])]
    c.services = [endpoint(n, port, on) for (n, port), on in sorted(services.items(), key=lambda kv: kv[0][::-1])]


def _vips(c: Cluster, infos: dict, home: dict[str, str]) -> None:
    """The cluster's own VIP (vip-manager), and the node VIPs (keepalived) of the hosts it is home to."""
    for m in c.members:
        own = infos[m.ip].get(c.kind, {}).get("vip") if c.kind != "node" else None
        if isinstance(own, dict) and vip_of(own.get("address")):
            c.vips.append(str(vip_of(own["address"])))
        node = infos[m.ip].get("node", {}).get("vip")
        if home[m.ip] == c.key and isinstance(node, dict) and vip_of(node.get("address")):
            c.vips.append(f"{vip_of(node['address'])} (node)")
    c.vips = list(dict.fromkeys(c.vips))


def _node_services(clusters: list[Cluster], ports: dict, home: dict[str, str], names: dict[str, str]) -> None:
    """HAProxy services of the node module (`haproxy_services`) are the host's: listed where the host is drawn."""
    for c in clusters:
        homed = {ip for ip in c.ips if home[ip] == c.key}
        found: dict[tuple[str, int], set[str]] = {}
        for ip in sorted(homed, key=ip_key):
            for p in ports[ip]:
                if p.module == "node" and p.component.startswith(HAPROXY):
                    found.setdefault((p.component[len(HAPROXY) :], p.port), set()).add(ip)
        for (name, port), on in sorted(found.items(), key=lambda kv: kv[0][::-1]):
            where = () if on == homed else tuple(names[ip] for ip in sorted(on, key=ip_key))
            c.services.append(Endpoint(name, port, where))


def _dcs(clusters: list[Cluster], board: Any) -> None:
    """Each DCS account (`DcsUser`) belongs to the cluster of the same name and members (a pgsql cluster)."""
    dcs = board.read(Dcs)
    if not dcs:
        return
    for user in board.read(DcsUser):
        same = [c for c in clusters if c.kind not in CONTROL and c.ips == set(user.hosts)]
        for c in [c for c in same if c.name == user.name] or same[:1]:
            c.dcs = dcs[0].name


def _scrapes(board: Any, clusters: list[Cluster], ports: dict, names: dict[str, str], order: list[str]) -> list:
    """Every infra node running VictoriaMetrics reads every published scrape target (INFRA's fan-in); the ping
    job only where blackbox runs beside it."""
    targets = [t for t in board.read(ScrapeTarget) if t.groups]
    infra = {m.ip: m.name for c in clusters if c.kind == "infra" for m in c.members}
    out = []
    for ip in order:
        components = {p.component for p in ports[ip]}
        if ip not in infra or "vmetrics" not in components:
            continue
        jobs: dict[str, set[str]] = {}
        for t in targets:
            if t.job == "ping" and "blackbox" not in components:
                continue
            for g in t.groups:
                if g.labels.get("ip") in names:
                    jobs.setdefault(g.labels["ip"], set()).add(t.job)
        hosts = tuple(sorted(jobs, key=ip_key))
        out.append(Scrape(ip, infra[ip], hosts, tuple(sorted({j for js in jobs.values() for j in js}))))
    return out


# -- text --------------------------------------------------------------------------------------------------------

WIDTH = 110  # wrap text lines here: readable in a terminal and in a pull request


def _summary(t: Topology) -> str:
    kinds: dict[str, int] = {}
    for c in t.clusters:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    counts = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    return f"fleet of {t.source}: {_hosts(len(t.nodenames))} in {counts} cluster(s)"


def _hosts(n: int) -> str:
    return f"{n} host" if n == 1 else f"{n} hosts"


def _scrape_lines(t: Topology, scrapes: list[Scrape]) -> list[str]:
    """One line per distinct set of scraped hosts and jobs: infra nodes share the fan-in, so usually one."""
    same: dict[tuple, list[Scrape]] = {}
    for s in scrapes:
        same.setdefault((s.hosts, s.jobs), []).append(s)
    out = []
    n = len(t.nodenames)
    for (hosts, jobs), group in same.items():
        which = f"all {_hosts(n)}" if len(hosts) == n else ", ".join(t.nodenames[ip] for ip in hosts)
        who = ", ".join(s.name for s in group)
        verb = "scrapes" if len(group) == 1 else "scrape"
        out.append(f"{who} {verb} {which} (jobs {', '.join(jobs) or 'none'})")
    return out


def _host_line(t: Topology, c: Cluster, m: Member) -> str:
    node = t.nodenames[m.ip]
    parts = [m.ip if node == m.ip else f"{m.ip} {node}"]
    if m.name != node:
        parts.append(f"{m.name}: {m.role}" if m.role else m.name)
    elif m.role:
        parts.append(m.role)
    also = [f"{om.name} in {oc.name}" for oc, om in t.memberships(m.ip) if oc.key != c.key]
    if also:
        parts.append("also " + ", ".join(also))
    return " · ".join(parts)


def _cluster_tree(t: Topology, c: Cluster) -> tuple[str, list]:
    head = [c.title, *c.notes]
    if c.vips:
        head.append("vip " + ", ".join(c.vips))
    if c.dcs:
        head.append(f"dcs {c.dcs}")
    kids: list = []
    if c.services:
        kids.append(("services: " + ", ".join(map(str, c.services)), []))
    if c.ports:
        kids.append(("ports: " + ", ".join(map(str, c.ports)), []))
    kids += [(_host_line(t, c, m), []) for m in t.homed(c)]
    for m in t.guests(c):
        kids.append((" · ".join(x for x in (f"{m.name} on {t.nodenames[m.ip]}", m.role) if x), []))
    return " · ".join(head), kids


def _tree_lines(nodes: list, prefix: str = "") -> list[str]:
    lines = []
    for i, (label, kids) in enumerate(nodes):
        last = i == len(nodes) - 1
        head, cont = prefix + ("└── " if last else "├── "), prefix + ("    " if last else "│   ")
        under = cont + ("│   " if kids else "    ")
        wrapped = textwrap.wrap(label, WIDTH - len(head), break_long_words=False, break_on_hyphens=False) or [""]
        lines.append(head + wrapped[0])
        lines += [(under + w).rstrip() for w in wrapped[1:]]
        lines += _tree_lines(kids, cont)
    return lines


def render_text(t: Topology) -> str:
    """A tree: one branch per cluster (its services, ports and members), then the links between clusters."""
    nodes = [_cluster_tree(t, c) for c in t.clusters]
    links = []
    clients = [c for c in t.clusters if c.dcs]
    if clients:
        links.append(("dcs: " + ", ".join(f"{c.name} → {c.dcs}" for c in clients), []))
    links += [("scrape: " + line, []) for line in _scrape_lines(t, t.scrapes)]
    if links:
        nodes.append(("links", links))
    return "\n".join([_summary(t), *_tree_lines(nodes)]) + "\n"


# -- SVG ---------------------------------------------------------------------------------------------------------

BOX_W, GAP, MARGIN, PAD = 360, 120, 24, 10
LINE, CHAR_W, HOST_LINE, GUEST_H = 15, 6.6, 14, 22
COLORS = {  # role -> (fill, stroke)
    "primary": ("#dbe9f6", "#1f5f99"),
    "replica": ("#dff2e1", "#2e7d32"),
    "other": ("#fdf1dc", "#b26a00"),
    "none": ("#f4f4f4", "#777777"),
}
CLUSTER_FILL = {"pgsql": "#f7fbff", "redis": "#fff7f7", "minio": "#fbf7ff", "etcd": "#fffbea", "infra": "#f5fff7"}
DCS_COLOR, SCRAPE_COLOR = "#c62828", "#6a1b9a"


def _role_kind(role: str) -> str:
    first = role.split(",")[0].split(" ")[0] if role else ""
    if first == "primary":
        return "primary"
    if first == "replica":
        return "replica"
    return "other" if first in ("offline", "standby", "delayed") else "none"


def _wrap(text: str, width: float) -> list[str]:
    return textwrap.wrap(text, max(10, int(width / CHAR_W)), break_long_words=True, break_on_hyphens=False)


def _fit(text: str, width: float) -> str:
    n = max(4, int(width / CHAR_W))
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass
class _Box:
    cluster: Cluster
    lines: list[str]  # header lines under the title
    hosts: list[tuple[Member, list[str]]]  # homed member, its lines
    guests: list[str]
    x: float = 0
    y: float = 0

    @property
    def height(self) -> float:
        head = PAD + LINE * (1 + len(self.lines)) + PAD
        hosts = sum(_host_height(lines) + 6 for _, lines in self.hosts)
        return head + hosts + len(self.guests) * (GUEST_H + 6) + PAD


def _host_height(lines: list[str]) -> float:
    return 8 + HOST_LINE * len(lines)


def _box(t: Topology, c: Cluster) -> _Box:
    inner = BOX_W - 2 * PAD
    head = [*c.notes]
    if c.vips:
        head.append("vip " + ", ".join(c.vips))
    if c.dcs:
        head.append(f"dcs → {c.dcs}")
    if c.services:
        head.append("services: " + ", ".join(map(str, c.services)))
    if c.ports:
        head.append("ports: " + ", ".join(map(str, c.ports)))
    head += _scrape_lines(t, [s for s in t.scrapes if c.kind == "infra" and s.ip in c.ips])
    lines = [w for h in head for w in _wrap(h, inner)]
    hosts = []
    for m in t.homed(c):
        _, _, rest = _host_line(t, c, m).partition(" · ")
        name = m.ip if t.nodenames[m.ip] == m.ip else f"{m.ip}  {t.nodenames[m.ip]}"
        hosts.append((m, [name, *_wrap(rest, inner - 2 * PAD)]))
    guests = [" · ".join(x for x in (f"{m.name} on {t.nodenames[m.ip]}", m.role) if x) for m in t.guests(c)]
    return _Box(c, lines, hosts, guests)


def _layout(boxes: list[_Box]) -> tuple[list[list[_Box]], float]:
    """Data clusters in two columns (each box into the shorter one), control clusters between them, so that every
    link to etcd or infra crosses only a gap; without control clusters, two columns side by side."""
    control = [b for b in boxes if b.cluster.kind in CONTROL]
    data = [b for b in boxes if b.cluster.kind not in CONTROL]
    left: list[_Box] = []
    right: list[_Box] = []
    for b in data:
        col = left if sum(x.height for x in left) <= sum(x.height for x in right) else right
        col.append(b)
    columns = [col for col in ([left, control, right] if control else [left, right]) if col]
    top = MARGIN + 30
    for i, col in enumerate(columns):
        y = top
        for b in col:
            b.x, b.y = MARGIN + i * (BOX_W + GAP), y
            y += b.height + 20
    height = max((b.y + b.height for b in boxes), default=top)
    return columns, height


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: Any) -> ET.Element:
    """A child element (`font_weight` is font-weight, `cls` class); numbers written shortest, so bytes are stable."""
    names = {k: "class" if k == "cls" else k.replace("_", "-") for k in attrs}
    values = {names[k]: f"{v:g}" if isinstance(v, float | int) else v for k, v in attrs.items()}
    el = ET.SubElement(parent, tag, values)
    el.text = text
    return el


EDGE = {
    "dcs": {"stroke": DCS_COLOR, "stroke_width": "2"},
    "scrape": {"stroke": SCRAPE_COLOR, "stroke_dasharray": "6 4"},
}


def _draw_box(svg: ET.Element, b: _Box, t: Topology) -> None:
    c = b.cluster
    g = _el(svg, "g", cls=f"cluster {c.kind}", id=f"cluster-{c.kind}-{c.name}")
    _el(g, "title", f"{c.kind} cluster {c.name}")
    fill = CLUSTER_FILL.get(c.kind, "#ffffff")
    _el(g, "rect", x=b.x, y=b.y, width=BOX_W, height=b.height, rx=8, fill=fill, stroke="#444444")
    y = b.y + PAD + 11
    _el(g, "text", c.title, x=b.x + PAD, y=y, font_weight="bold", font_size=13)
    for line in b.lines:
        y += LINE
        _el(g, "text", line, x=b.x + PAD, y=y)
    y += PAD + 6
    inner, x = BOX_W - 2 * PAD, b.x + PAD
    for m, lines in b.hosts:
        fill, stroke = COLORS[_role_kind(m.role)]
        h = _el(g, "g", cls="host", id=f"host-{m.ip}")
        _el(h, "title", _host_line(t, c, m))
        _el(h, "rect", x=x, y=y, width=inner, height=_host_height(lines), rx=4, fill=fill, stroke=stroke)
        for i, line in enumerate(lines):
            bold = {"font_weight": "bold"} if i == 0 else {}
            _el(h, "text", _fit(line, inner - PAD), x=x + PAD, y=y + 14 + i * HOST_LINE, **bold)
        y += _host_height(lines) + 6
    for guest in b.guests:
        member = _el(g, "g", cls="guest")
        _el(member, "title", guest)
        dashed = {"fill": "#ffffff", "stroke": "#999999", "stroke_dasharray": "4 3"}
        _el(member, "rect", x=x, y=y, width=inner, height=GUEST_H, rx=4, **dashed)
        _el(member, "text", _fit(guest, inner - PAD), x=x + PAD, y=y + 15)
        y += GUEST_H + 6


def _edges(svg: ET.Element, columns: list[list[_Box]], t: Topology) -> None:
    """DCS links (client cluster → etcd) and scrape links (infra → every cluster drawing a host it scrapes), one per
    pair of boxes; arrows reaching one side of a box are spread along it."""
    col = {id(b): i for i, boxes in enumerate(columns) for b in boxes}
    by_key = {b.cluster.key: b for boxes in columns for b in boxes}
    found: dict[tuple[int, int, str], tuple[_Box, _Box, str]] = {}
    for b in by_key.values():
        dcs = by_key.get(f"etcd:{b.cluster.dcs}")
        if dcs:
            found[(id(b), id(dcs), "dcs")] = (b, dcs, "dcs")
    for s in t.scrapes:
        src = next(by_key[c.key] for c, _ in t.memberships(s.ip) if c.kind == "infra")
        for dst in (by_key[t.home[ip]] for ip in s.hosts):
            if dst is not src:
                found.setdefault((id(src), id(dst), "scrape"), (src, dst, "scrape"))
    edges = [
        (a, b, kind, "l" if col[id(a)] < col[id(b)] else "r" if col[id(a)] > col[id(b)] else "v")
        for a, b, kind in found.values()
    ]
    slots: dict[tuple[int, str], int] = {}
    for _, dst, _, side in edges:
        slots[(id(dst), side)] = slots.get((id(dst), side), 0) + 1
    used: dict[tuple[int, str], int] = {}
    g = _el(svg, "g", cls="edges")
    for src, dst, kind, side in edges:
        k = used[(id(dst), side)] = used.get((id(dst), side), 0) + 1
        if side == "v":  # stacked in one column: between the facing edges
            x1 = x2 = src.x + BOX_W * (0.35 if kind == "dcs" else 0.65)
            y1, y2 = (src.y + src.height, dst.y) if src.y < dst.y else (src.y, dst.y + dst.height)
        else:
            x1, x2 = (src.x + BOX_W, dst.x) if side == "l" else (src.x, dst.x + BOX_W)
            y1, y2 = src.y + 22, dst.y + dst.height * k / (slots[(id(dst), side)] + 1)
        end = {"marker_end": f"url(#arrow-{kind})"}
        line = _el(g, "line", cls=kind, x1=x1, y1=y1, x2=x2, y2=y2, **EDGE[kind], **end)
        _el(line, "title", f"{kind}: {src.cluster.title} → {dst.cluster.title}")


def _legend(svg: ET.Element, y: float) -> None:
    g = _el(svg, "g", cls="legend")
    x = MARGIN
    roles = (("primary", "primary"), ("replica", "replica"), ("other", "offline/standby/delayed"), ("none", "no role"))
    for role, label in (*roles, ("guest", "member drawn in another cluster")):
        fill, stroke = COLORS.get(role, ("#ffffff", "#999999"))
        dashed = {"stroke_dasharray": "4 3"} if role == "guest" else {}
        _el(g, "rect", x=x, y=y, width=14, height=14, fill=fill, stroke=stroke, **dashed)
        _el(g, "text", label, x=x + 20, y=y + 11)
        x += 34 + len(label) * CHAR_W
    x, y = MARGIN, y + 24
    for kind, label in (("dcs", "keeps its state in the DCS (etcd)"), ("scrape", "the infra node scrapes its hosts")):
        _el(g, "line", None, x1=x, y1=y + 7, x2=x + 30, y2=y + 7, **EDGE[kind], marker_end=f"url(#arrow-{kind})")
        _el(g, "text", label, x=x + 40, y=y + 11)
        x += 60 + len(label) * CHAR_W


def render_svg(t: Topology) -> str:
    """Clusters as boxes with their members inside, DCS and scrape links as arrows, a legend; serialised from an
    element tree, so the bytes depend only on the topology."""
    boxes = [_box(t, c) for c in t.clusters]
    columns, bottom = _layout(boxes)
    width = max(MARGIN * 2 + len(columns) * BOX_W + (len(columns) - 1) * GAP, 760)
    height = bottom + 80
    view = {"width": width, "height": height, "viewBox": f"0 0 {width:g} {height:g}"}
    svg = ET.Element("svg", {"xmlns": "http://www.w3.org/2000/svg"})
    for key, value in {**view, "font-family": "monospace", "font-size": "11"}.items():
        svg.set(key, f"{value:g}" if isinstance(value, float | int) else value)
    _el(svg, "title", _summary(t))
    defs = _el(svg, "defs")
    for kind, edge in EDGE.items():
        arrow = {"viewBox": "0 0 10 10", "refX": 9, "refY": 5, "orient": "auto", "markerUnits": "userSpaceOnUse"}
        marker = _el(defs, "marker", id=f"arrow-{kind}", **arrow, markerWidth=9, markerHeight=9)
        _el(marker, "path", None, d="M 0 0 L 10 5 L 0 10 z", fill=edge["stroke"])
    _el(svg, "rect", None, width="100%", height="100%", fill="#ffffff")
    _el(svg, "text", _summary(t), x=MARGIN, y=MARGIN + 8, font_size=14, font_weight="bold")
    _edges(svg, columns, t)
    for b in boxes:
        _draw_box(svg, b, t)
    _legend(svg, bottom + 24)
    ET.indent(svg, space=" ")
    return ET.tostring(svg, encoding="unicode") + "\n"
