"""Load a Pigsty inventory and flatten its group tree into vars blocks, groups and hosts.

The loader keeps every vars block with its inventory path so that later stages can say
exactly where a value came from. It does not interpret parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import InventoryError, Report, join_path
from .limits import MAX_BYTES, MAX_CHARS, MAX_DEPTH, MAX_VALUES

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml is a declared requirement
    _Loader = yaml.SafeLoader


@dataclass
class VarsBlock:
    """One `vars:` mapping (or a host's own vars) and where it sits in the inventory."""

    path: str  # e.g. all.children.pg-test.vars
    data: dict[str, Any]
    level: str  # all | group | host


@dataclass
class Group:
    name: str
    path: str
    vars: VarsBlock
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    depth: int = 1


@dataclass
class HostDecl:
    """A host as declared: every place it appears, in inventory order."""

    name: str
    path: str  # first declaration, e.g. all.children.pg-test.hosts.10.10.10.11
    blocks: list[VarsBlock] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)


@dataclass
class Inventory:
    source: str
    data: dict[str, Any]
    all_vars: VarsBlock
    groups: dict[str, Group]
    hosts: dict[str, HostDecl]
    # where each key and item was written: for messages only, never part of a digest or the build cache
    positions: Positions | None = field(default=None, repr=False, compare=False)


# A mapping: key -> (line, column, what the value holds); a sequence: one such triple per item; a scalar: None.
_Shape = dict[str, "tuple[int, int, _Shape]"] | list["tuple[int, int, _Shape]"] | None


@dataclass(frozen=True)
class Positions:
    """Where every mapping key and sequence item of the inventory file was written (1-based line and column),
    found by inventory path. It is a tree shaped like the YAML node graph, not a table of expanded paths:
    an alias shares its anchor's subtree, so its size follows the file (one small tuple per node), never
    what aliases expand to."""

    source: str
    root: _Shape = None
    # (line, column) of a mapping key whose value defines a YAML anchor there -> (anchor name, whether an alias
    # or a merge key `<<` uses it elsewhere in the file)
    anchors: dict[tuple[int, int], tuple[str, bool]] = field(default_factory=dict)

    def find(self, path: str) -> tuple[str, int, int] | None:
        """(file, line, column) of `all.children.pg-test.vars.pg_users[0].name`, or None when that path was
        not written in the file (a default, a derived value). Keys may hold dots (`10.10.10.11`), so every
        split point is tried, the longest key first."""
        found = _find(self.root, path) if path else None
        return (self.source, found[0], found[1]) if found else None

    def anchor(self, path: str) -> tuple[str, bool] | None:
        """(name, used) when the key at `path` was written with an anchor on its value (`x-users: &users`),
        `used` telling whether an alias (`*users`, `<<: *users`) refers to it; None otherwise."""
        found = _find(self.root, path) if path and self.anchors else None
        return self.anchors.get(found) if found else None

    def holds_anchor(self, path: str) -> bool:
        """The key at `path` only holds a value that aliases reuse elsewhere: an anchor holder, not a parameter
        (docs/architecture.md, validate)."""
        found = self.anchor(path)
        return found is not None and found[1]


_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"


class _InventoryLoader(_Loader):  # type: ignore[misc, valid-type]
    """libyaml's parser and composer (fast), with two refusals PyYAML does not make: a composed graph whose
    aliases expand beyond the budgets (an alias bomb is a few hundred bytes), and a key given twice in one
    mapping (YAML keeps the last one silently, so a reviewer reading the first would be misled)."""

    def __init__(self, stream: str, source: str):
        # libyaml's mark index skips a byte order mark: without it, `text[mark.index]` is the node's first character
        self.text = stream.removeprefix("\ufeff")
        super().__init__(self.text)
        self.source = source
        self.problems: list[tuple[str, str]] = []
        self.positions = Positions(source)
        self._shared: set[int] = set()
        self._amp = False
        self._anchors: dict[tuple[int, int], tuple[str, bool]] = {}

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        # no `&` in the text: no anchor, so no alias, and every node is reached once (the common case, measured
        # three times faster); any `&` (an anchor, or one inside a string) takes the alias-aware walk
        self._shared = _measure(node, self.source) if "&" in self.text else _measure_tree(node, self.source)
        data = self.construct_document(node)
        if self.problems:
            report = Report()
            for where, message in self.problems:
                report.error(where, message)
            raise InventoryError(report)
        # libyaml's composer keeps no anchor names on nodes: an anchor is found by the `&` where a value starts
        self._amp = "&" in self.text
        self.positions = Positions(self.source, self._shape(node, {}), self._anchors)
        return data

    def _shape(self, node: Any, memo: dict[int, _Shape]) -> _Shape:
        """The positions below one node, each node once (aliases share). Construction has already flattened
        merge keys (`<<`) into the mapping, the merged pairs first, so a key written here wins as in the data.
        Depth is bounded by `_measure`."""
        if id(node) in memo:
            return memo[id(node)]
        shape: _Shape = None
        if isinstance(node, yaml.MappingNode):
            keys: dict[str, tuple[int, int, _Shape]] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE:
                    key = key_node.value if key_node.tag == _STR else str(self.construct_object(key_node))
                    mark = key_node.start_mark
                    keys[key] = (mark.line + 1, mark.column + 1, self._shape(value_node, memo))
                    if self._amp:
                        self._anchor(mark, value_node)
            shape = keys
        elif isinstance(node, yaml.SequenceNode):
            shape = [(n.start_mark.line + 1, n.start_mark.column + 1, self._shape(n, memo)) for n in node.value]
        memo[id(node)] = shape
        return shape

    def _anchor(self, key_mark: Any, value_node: Any) -> None:
        """Record the anchor a key's value defines right there. An alias's node is its anchor's node, whose mark
        lies before the aliasing key: only the value written after its own key is the definition."""
        at = value_node.start_mark.index
        if at <= key_mark.index or not self.text.startswith(("&", "!"), at):
            return
        found = _ANCHOR.match(self.text, at)
        if found is not None:
            used = id(value_node) in self._shared
            self._anchors[(key_mark.line + 1, key_mark.column + 1)] = (found.group(1), used)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            self._duplicates(node)
        return super().construct_mapping(node, deep=deep)

    def _duplicates(self, node: yaml.MappingNode) -> None:
        """Keys written twice in this mapping (merged `<<` keys may be overridden: that is what merging is for)."""
        first: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
                continue
            # a plain string key is its own value; other tags (`1`, `01`, `yes`) compare as YAML constructs them
            key = key_node.value if key_node.tag == _STR else self.construct_object(key_node)
            try:
                hash(key)
            except TypeError:
                continue  # PyYAML refuses unhashable keys itself, with a mark
            if key in first:
                was = first[key].start_mark
                self.problems.append(
                    (
                        _where(self.source, key_node.start_mark),
                        f"the key '{key}' is given twice in one mapping (first at line {was.line + 1}, "
                        f"column {was.column + 1}); YAML would silently keep only the last one",
                    )
                )
            first.setdefault(key, key_node)


_INDEX = re.compile(r"\[([0-9]{1,9})\]")  # a list index as join_path writes it
# a node's properties as written: an optional tag, then the anchor (YAML also allows the anchor first)
_ANCHOR = re.compile(r"(?:![^\s,\[\]{}]*\s+)?&([^\s,\[\]{}]+)")


def _find(shape: _Shape, path: str) -> tuple[int, int] | None:
    """(line, column) of the node at `path` below `shape` (`name.sub[2].x`), trying each way to cut the path."""
    if isinstance(shape, list):
        index = _INDEX.match(path)
        if index is None or int(index.group(1)) >= len(shape):
            return None
        return _step(shape[int(index.group(1))], path[index.end() :])
    if not isinstance(shape, dict):
        return None
    cuts = [i for i, c in enumerate(path) if c in ".["] + [len(path)]
    for cut in reversed(cuts):  # the longest key first: `10.10.10.11` before `10`
        entry = shape.get(path[:cut])
        if entry is not None:
            found = _step(entry, path[cut:])
            if found is not None:
                return found
    return None


def _step(entry: tuple[int, int, _Shape], rest: str) -> tuple[int, int] | None:
    if not rest:
        return entry[0], entry[1]
    return _find(entry[2], rest[1:] if rest.startswith(".") else rest)


def _where(source: str, mark: Any) -> str:
    return f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _measure(root: Any, source: str) -> set[int]:
    """Refuse a node graph that is recursive, too deep, or that expands beyond the budgets once aliases are
    followed. Each node is visited once (sizes are memoised), so the bomb is measured, never expanded.
    Returns the nodes reached more than once: those an alias (or a merge key) refers to."""
    shared: set[int] = set()
    values: dict[int, int] = {}
    chars: dict[int, int] = {}
    height: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        nid = id(node)
        if expanded:
            kids = _children(node)
            values[nid] = 1 + sum(values[id(k)] for k in kids)
            chars[nid] = sum(chars[id(k)] for k in kids) if kids else len(str(node.value))
            height[nid] = 1 + max((height[id(k)] for k in kids), default=0)
            if values[nid] > MAX_VALUES or chars[nid] > MAX_CHARS:
                raise _fail(
                    _where(source, node.start_mark),
                    f"YAML aliases expand this value beyond sty's limit ({MAX_VALUES:,} values or "
                    f"{MAX_CHARS // 2**20} MiB of text); an inventory this large is refused as an alias bomb",
                )
            if height[nid] > MAX_DEPTH:
                raise _fail(_where(source, node.start_mark), f"the YAML is nested deeper than {MAX_DEPTH} levels")
            continue
        if nid in height:
            shared.add(nid)
            continue
        if nid in values:  # entered but not finished: this node contains itself
            raise _fail(_where(source, node.start_mark), "a YAML alias refers to a node that contains it")
        values[nid] = -1
        stack.append((node, True))
        stack.extend((k, False) for k in reversed(_children(node)))
    return shared


def _measure_tree(root: Any, source: str) -> set[int]:
    """`_measure` for a document without anchors: a tree, so its size is its node count (its text is within
    MAX_BYTES, below MAX_CHARS) and its depth is counted on the way down. Nothing is shared."""
    count = 0
    stack: list[tuple[Any, int]] = [(root, 1)]
    mapping = yaml.MappingNode
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise _fail(
                _where(source, root.start_mark),
                f"the inventory holds more than {MAX_VALUES:,} values; an inventory this large is refused",
            )
        if depth > MAX_DEPTH:
            raise _fail(_where(source, node.start_mark), f"the YAML is nested deeper than {MAX_DEPTH} levels")
        kids = node.value
        if type(kids) is list:
            depth += 1
            if isinstance(node, mapping):
                for key, value in kids:
                    stack.append((key, depth))
                    stack.append((value, depth))
            else:
                stack.extend((kid, depth) for kid in kids)
    return set()


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; syntax errors become one problem naming file, line and column."""
    return read_marked(path)[0]


def read_marked(path: Path) -> tuple[Any, Positions]:
    """The parsed file and where each of its keys and items was written (`Positions`)."""
    try:
        with path.open("rb") as handle:  # never more than the limit, even from /dev/zero
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise _fail(str(path), "the inventory file does not exist") from None
    except OSError as exc:
        raise _fail(str(path), f"cannot read the file: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise _fail(str(path), f"the file is larger than {MAX_BYTES // 2**20} MiB; sty refuses inventories this large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(str(path), f"the file is not UTF-8 text (byte {exc.start})") from None
    loader = _InventoryLoader(text, str(path))
    try:
        data = loader.get_single_data()
        _drop_anchor_holders(data, loader.positions)
        return data, loader.positions
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        raise _fail(_where(str(path), mark), f"YAML syntax error: {what}") from None
    except yaml.YAMLError as exc:
        raise _fail(str(path), f"YAML error: {exc}") from None
    except RecursionError:
        raise _fail(str(path), "YAML nesting is too deep") from None
    finally:
        loader.dispose()


_STRUCTURE = ("hosts", "vars", "children")


def _drop_anchor_holders(data: Any, positions: Positions) -> None:
    """Remove the keys beside `all`, and beside a group's hosts, vars and children, that only hold a value
    aliases reuse elsewhere (`x-pg-defaults: &pg {...}`): they are no part of the inventory's structure. Any
    other key there stays, for the shape check to name. Holders among parameters are validate's to judge."""
    if not positions.anchors or not isinstance(data, dict):
        return
    _drop_holders_in(data, "", ("all",), positions)
    root = data.get("all")
    if isinstance(root, dict):
        _drop_holders_in(root, "all", _STRUCTURE, positions)
        _drop_group_holders(root.get("children"), "all.children", positions, 1)


def _drop_group_holders(children: Any, where: str, positions: Positions, depth: int) -> None:
    if not isinstance(children, dict) or depth > MAX_DEPTH:
        return
    for name, body in children.items():
        if isinstance(body, dict):
            gpath = join_path(where, str(name))
            _drop_holders_in(body, gpath, _STRUCTURE, positions)
            _drop_group_holders(body.get("children"), join_path(gpath, "children"), positions, depth + 1)


def _drop_holders_in(mapping: dict[Any, Any], where: str, keep: tuple[str, ...], positions: Positions) -> None:
    for key in [k for k in mapping if k not in keep]:
        if isinstance(key, str) and positions.holds_anchor(join_path(where, key)):
            del mapping[key]


def _fail(path: str, message: str) -> InventoryError:
    report = Report()
    report.error(path, message)
    return InventoryError(report)


def load_inventory(path: str | Path) -> Inventory:
    path = Path(path)
    data, positions = read_marked(path)
    return parse_inventory(data, str(path), positions)


def parse_inventory(data: Any, source: str = "<inventory>", positions: Positions | None = None) -> Inventory:
    """Flatten `all` into groups and hosts. Shape errors are collected, then raised together."""
    report = Report()
    if not isinstance(data, dict):
        report.error(source, "the inventory must be a YAML mapping with a top-level `all` key")
        raise InventoryError(report)
    root = data.get("all")
    if not isinstance(root, dict):
        report.error("all", "the inventory needs an `all` mapping (with `children` and `vars`)")
        raise InventoryError(report)

    all_vars = _vars_block(root.get("vars"), "all.vars", "all", report)
    tree = _Tree(report)
    for key in root:
        if key not in ("hosts", "vars", "children"):
            report.error(join_path("all", str(key)), f"unknown key '{key}' under `all`; use hosts, vars or children")
    tree.add_hosts(root.get("hosts"), "all.hosts", None)
    tree.walk(root.get("children"), "all.children", 1, None)
    tree.inherit_hosts()

    if report.errors:
        if positions is not None:
            report.locate(positions.find)
        raise InventoryError(report)
    return Inventory(
        source=source, data=data, all_vars=all_vars, groups=tree.groups, hosts=tree.hosts, positions=positions
    )


@dataclass
class _Tree:
    """The groups and hosts met so far while walking `all`; shape problems go to the report, not raised,
    so that one run names every one of them."""

    report: Report
    groups: dict[str, Group] = field(default_factory=dict)
    hosts: dict[str, HostDecl] = field(default_factory=dict)

    def add_hosts(self, entries: Any, where: str, group: str | None) -> list[str]:
        """Record a `hosts` mapping; a host declared in several groups keeps every vars block, in order."""
        names: list[str] = []
        if entries is None:
            return names
        if not isinstance(entries, dict):
            self.report.error(where, "`hosts` must be a mapping of host address to host vars")
            return names
        for raw_name, hvars in entries.items():
            name = str(raw_name)
            hpath = join_path(where, name)
            block = _vars_block(hvars, hpath, "host", self.report)
            decl = self.hosts.get(name)
            if decl is None:
                decl = self.hosts[name] = HostDecl(name=name, path=hpath)
            decl.blocks.append(block)
            if group and group not in decl.groups:
                decl.groups.append(group)
            names.append(name)
        return names

    def walk(self, children: Any, where: str, depth: int, parent: Group | None) -> None:
        """Record a `children` mapping and, depth first, the groups below it."""
        if children is None:
            return
        if not isinstance(children, dict):
            self.report.error(where, "`children` must be a mapping of group name to group")
            return
        for raw_name, body in children.items():
            name = str(raw_name)
            gpath = join_path(where, name)
            body = {} if body is None else body
            group = self._group(name, body, gpath, depth)
            if group is None:
                continue
            group.hosts.extend(self.add_hosts(body.get("hosts"), join_path(gpath, "hosts"), name))
            if parent is not None:
                parent.children.append(name)
            self.walk(body.get("children"), join_path(gpath, "children"), depth + 1, group)

    def _group(self, name: str, body: Any, gpath: str, depth: int) -> Group | None:
        """A new group with its vars, or None when its body is malformed or the name is taken."""
        if not isinstance(body, dict):
            self.report.error(gpath, "a group must be a mapping with `hosts`, `vars` or `children`")
            return None
        for key in body:
            if key not in ("hosts", "vars", "children"):
                self.report.error(
                    join_path(gpath, str(key)),
                    f"unknown group key '{key}'; a group holds only `hosts`, `vars` and `children`",
                )
        group = self.groups.get(name)
        if group is not None:
            self.report.error(gpath, f"group '{name}' is defined twice (first at {group.path})")
            return None
        vars_block = _vars_block(body.get("vars"), join_path(gpath, "vars"), "group", self.report)
        group = self.groups[name] = Group(name=name, path=gpath, vars=vars_block, depth=depth)
        return group

    def inherit_hosts(self) -> None:
        """A host in a child group is also a member of every ancestor group (Ansible semantics)."""
        for group in sorted(self.groups.values(), key=lambda g: -g.depth):
            for child in group.children:
                for host in self.groups[child].hosts:
                    if host not in group.hosts:
                        group.hosts.append(host)
                        self.hosts[host].groups.append(group.name)


def _vars_block(value: Any, path: str, level: str, report: Report) -> VarsBlock:
    if value is None:
        return VarsBlock(path, {}, level)
    if not isinstance(value, dict):
        report.error(path, "vars must be a mapping of parameter name to value")
        return VarsBlock(path, {}, level)
    data = {}
    for key, val in value.items():
        if not isinstance(key, str):
            report.error(join_path(path, str(key)), f"parameter names must be strings, not {type(key).__name__}")
            continue
        data[key] = val
    return VarsBlock(path, data, level)
