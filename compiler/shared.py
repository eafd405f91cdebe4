"""Parts of a bundle rendered once for every host that reads the same values.

Why: the members of a cluster, and often every node of a fleet, carry files that are byte for byte alike (the
pooler's configuration, the exporters' units, the sysctl drop-in, the resolver), and rendering them again for
each host was a fifth of a full build. A part is a render function run against a view of the host that records
every value it reads (parameters by name, the host's attributes) and a scratch bundle that receives what it
contributes. A later host whose values are the same, compared type for type and in order, gets that
contribution without running the function: a render function is deterministic given what it reads and what is
constant in the process (the compiled fleet, secrets.yml's values, sty's code), so the same reads mean the same
path through it and the same output. Extra arguments are compared as values when they are plain data, else by
identity (a cluster, the fleet), and parts are kept for one compiled fleet only (`begin`).

What a part may not do is refused, and the host is then rendered as usual (`NotShareable`): reading the bundle's
address or another module's identity, or a parameter method that escapes the record (`substitute`, iteration).
A part must not read what other renderers put in the bundle either (its files, units, ports ...): it writes into a
scratch bundle, so it would see only its own; no renderer reads them today, and the tests would see one that did.
tests/test_shared_parts.py renders every Pigsty example with and without sharing and requires the same bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .bundle import HostBundle
from .model import Host
from .resolve import Params

MAX_KEPT = 4  # recent parts kept per function: consecutive members of a cluster, and the fleet-wide variant

_MISSING: Any = object()
_HOST_FIELDS = frozenset({"ip", "path", "groups", "facts", "platform", "modules", "nodename", "derived_nodename"})
_PARAMS_ATTRIBUTES = frozenset(n for n in dir(Params) if not n.startswith("__")) | {"layers", "defaults", "secrets"}


class NotShareable(Exception):
    """The part did something its record cannot capture; the host is rendered without sharing."""


enabled = True  # tests turn sharing off to compare bytes


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down, dictionaries in the same order: a template prints `True`
    and `1` differently, and iterates a mapping in its order. Objects that are not plain data or dataclasses
    are the same only when they are the same object."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is str or kind is int or kind is bool:
        return a == b
    if kind is float:
        return a.hex() == b.hex()  # 0.0 and -0.0 are equal but print differently
    if kind is list or kind is tuple:
        return len(a) == len(b) and all(map(same, a, b))
    if kind is dict:
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if dataclasses.is_dataclass(kind):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return False


_VALUES = (str, int, bool, float, type(None), list, tuple, dict)


def _same_argument(a: Any, b: Any) -> bool:
    """An extra argument: plain data by value, any other object (a cluster, the fleet) by identity."""
    return a is b or (type(a) in _VALUES and same(a, b))


# -- the record of what a part read -----------------------------------------------------------------------


def _read(params: Params, how: str, key: str) -> Any:
    """What the view answered for one read, asked again of another host's parameters."""
    if how == "item":
        return params.get(key, _MISSING)
    if how == "raw":
        return params.raw(key, _MISSING)
    if how == "is_set":
        return params.is_set(key)
    if how == "source":
        return params.source(key)
    if how == "origin":
        return params.origin(key)
    if how == "combined":
        return params.combined(key)
    return params.ip  # "ip"


class ParamsView:
    """A host's parameters as a part sees them: every answer is recorded."""

    __slots__ = ("_params", "_reads")

    def __init__(self, params: Params, reads: list[tuple[str, str, Any]]):
        self._params = params
        self._reads = reads

    def _answer(self, how: str, key: str) -> Any:
        value = _read(self._params, how, key)
        self._reads.append((how, key, value))
        return value

    def __getitem__(self, key: str) -> Any:
        value = self._answer("item", key)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._answer("item", key)
        return default if value is _MISSING else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._answer("item", key) is not _MISSING

    def raw(self, key: str, default: Any = None) -> Any:
        value = self._answer("raw", key)
        return default if value is _MISSING else value

    def is_set(self, key: str) -> bool:
        return self._answer("is_set", key)

    def source(self, key: str) -> str:
        return self._answer("source", key)

    def origin(self, key: str) -> str | None:
        return self._answer("origin", key)

    def combined(self, key: str) -> list[Any]:
        return self._answer("combined", key)

    @property
    def ip(self) -> str:
        return self._answer("ip", "")

    def __getattr__(self, name: str) -> Any:
        if name in _PARAMS_ATTRIBUTES:  # a method of Params the record does not capture
            raise NotShareable(f"params.{name}")
        raise AttributeError(name)  # as Params: Jinja then asks for the item `p[name]`

    def __iter__(self):
        raise NotShareable("iterating the parameters")

    def __len__(self) -> int:
        raise NotShareable("counting the parameters")


class HostView:
    """A host as a part sees it: its parameters through a `ParamsView`, its attributes recorded."""

    __slots__ = ("_host", "_reads", "params")

    def __init__(self, host: Host, reads: list[tuple[str, str, Any]]):
        self._host = host
        self._reads = reads
        self.params = ParamsView(host.params, reads)

    def __getattr__(self, name: str) -> Any:
        if name not in _HOST_FIELDS:
            raise NotShareable(f"host.{name}")
        value = getattr(self._host, name)
        self._reads.append(("host", name, value))
        return value

    def pp(self, key: str) -> str:
        return self.params.source(key)


class _Closed(dict):
    """Another module's identity in the bundle: a part may neither read nor write it."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise NotShareable("the bundle's identity")

    __getitem__ = __setitem__ = __contains__ = get = setdefault = update = keys = items = values = _refuse


class Scratch(HostBundle):
    """The bundle a part writes into: everything but the host's address and identity."""

    def __getattribute__(self, name: str) -> Any:
        if name == "ip":
            raise NotShareable("the bundle's address")
        return super().__getattribute__(name)


@dataclass
class _Part:
    args: tuple[Any, ...]
    reads: list[tuple[str, str, Any]]
    bundle: Scratch
    hits: int = field(default=0)

    def fits(self, host: Host, args: tuple[Any, ...]) -> bool:
        if len(args) != len(self.args) or not all(map(_same_argument, args, self.args)):
            return False
        params = host.params
        for how, key, value in self.reads:
            now = getattr(host, key) if how == "host" else _read(params, how, key)
            if not same(now, value):
                return False
        return True


_KEPT: dict[Callable[..., None], list[_Part]] = {}
_REFUSED: set[Callable[..., None]] = set()


def shared(render: Callable[..., None], host: Host, b: HostBundle, *args: Any) -> None:
    """`render(host, b, *args)`, or what it contributed for an earlier host that read the same values."""
    if not enabled or render in _REFUSED:
        render(host, b, *args)
        return
    kept = _KEPT.setdefault(render, [])
    for part in kept:
        if part.fits(host, args):
            part.hits += 1
            _merge(part.bundle, b)
            return
    reads: list[tuple[str, str, Any]] = []
    scratch = Scratch("", overrides=b.overrides, info=_Closed())
    try:
        render(HostView(host, reads), scratch, *args)
    except NotShareable:
        _REFUSED.add(render)  # it will do the same for every host: stop trying
        render(host, b, *args)
        return
    kept.insert(0, _Part(args, reads, scratch))
    del kept[MAX_KEPT:]
    _merge(scratch, b)


def _merge(part: HostBundle, b: HostBundle) -> None:
    """What a part contributed, added to a host's bundle. Its files are shared between hosts (nothing changes a
    file after it is added) except a composed one, whose content the bundle's `finish` sets: that is copied."""
    files = b.files
    for path, spec in part.files.items():  # paths the scratch bundle's `add` accepted
        if path in files or spec.compose is not None:
            b.add(spec if spec.compose is None else dataclasses.replace(spec, actions=list(spec.actions)))
        else:
            files[path] = spec
    for path, fragments in part.contributions.items():
        b.contributions.setdefault(path, []).extend(fragments)
    b.ports |= part.ports
    b.units |= part.units
    b.packages |= part.packages
    b.users |= part.users
    b.directories |= part.directories
    b.checks |= part.checks
    b.certificates |= part.certificates
    b.trust |= part.trust
    b.secrets.update(part.secrets)


_BUILD: list[object] = [None]


def begin(build: object) -> None:
    """Parts are kept for one compiled fleet: what is constant for its hosts (the fleet, secrets.yml's values)
    is not for the next one a process compiles (tests, `sty diff` after a build)."""
    if _BUILD[0] is not build:
        _KEPT.clear()
        _REFUSED.clear()
        _BUILD[0] = build


__all__ = ["HostView", "NotShareable", "ParamsView", "begin", "same", "shared"]
