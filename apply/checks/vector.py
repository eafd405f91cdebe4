"""vector: a hand-written check of vector.yaml, since no vector binary installs here (not in Debian, not on
PyPI or npm).

What it judges, as `vector validate --no-environment` would, for the component types sty emits:
- the YAML parses; top-level keys are vector's;
- every source, transform and sink has a known `type`, its required options, no option that type lacks,
  and sane values for the options sty sets (`read_from`, `since_now`, unit lists, sink `uri`, `address`,
  `encoding.codec`);
- the graph: component ids are unique, every `inputs` entry (wildcards included) matches a source or
  transform, no transform cycle, no source or transform without a consumer (vector only warns about
  that; here it fails), and the event types agree (`prometheus_exporter` takes metrics only);
- VRL programs (remap `source`, filter `condition`) compile with PyPI `pyvrl` when it is installed. pyvrl
  embeds an older VRL: a function added to VRL later is reported as undefined. Without pyvrl the programs
  get a syntactic check only (string, regex and raw-string literals terminated, brackets balanced), and
  the result's reason says so.

Messages follow vector's own wording where vector has one (`Input "x" for sink "y" doesn't match any
components.`, `Data type mismatch between ...`, `Source "x" has no consumers`).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from typing import Any
from urllib.parse import urlsplit

import yaml

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import substitute

LOG, METRIC, TRACE = "Log", "Metric", "Trace"

TOP_LEVEL = {
    "acknowledgements",
    "api",
    "data_dir",
    "enrichment_tables",
    "expire_metrics_secs",
    "graceful_shutdown_duration",
    "healthchecks",
    "log_schema",
    "proxy",
    "schema",
    "secret",
    "sinks",
    "sources",
    "telemetry",
    "tests",
    "timezone",
    "transforms",
    "wildcard_matching",
}
API_KEYS = {"enabled", "address", "playground", "graphql"}
BUFFER_SINK = {"acknowledgements", "buffer", "healthcheck", "inputs", "type", "proxy"}


class Kind:
    """What one component type requires, allows and carries."""

    def __init__(
        self,
        required: set[str],
        optional: set[str],
        output: frozenset[str] | None = None,
        accepts: frozenset[str] = frozenset({LOG, METRIC, TRACE}),
    ):
        self.required = required | {"type"}
        self.allowed = self.required | optional
        self.output = output  # None: the union of its inputs' types
        self.accepts = accepts


SOURCES = {
    "file": Kind(
        {"include"},
        {
            "acknowledgements",
            "data_dir",
            "encoding",
            "exclude",
            "file_key",
            "fingerprint",
            "glob_minimum_cooldown_ms",
            "host_key",
            "ignore_checkpoints",
            "ignore_not_found",
            "ignore_older_secs",
            "internal_metrics",
            "line_delimiter",
            "max_line_bytes",
            "max_read_bytes",
            "multiline",
            "offset_key",
            "oldest_first",
            "read_from",
            "remove_after_secs",
            "rotate_wait_secs",
        },
        frozenset({LOG}),
    ),
    "journald": Kind(
        set(),
        {
            "acknowledgements",
            "batch_size",
            "current_boot_only",
            "data_dir",
            "emit_cursor",
            "exclude_matches",
            "exclude_units",
            "extra_args",
            "include_matches",
            "include_units",
            "journal_directory",
            "journal_namespace",
            "journalctl_path",
            "remap_priority",
            "since_now",
        },
        frozenset({LOG}),
    ),
    "internal_metrics": Kind(set(), {"namespace", "scrape_interval_secs", "tags"}, frozenset({METRIC})),
    "internal_logs": Kind(set(), {"host_key", "pid_key"}, frozenset({LOG})),
}
TRANSFORMS = {
    "remap": Kind(
        {"inputs"},
        {
            "source",
            "file",
            "files",
            "drop_on_error",
            "drop_on_abort",
            "reroute_dropped",
            "metric_tag_values",
            "timezone",
        },
    ),
    "filter": Kind({"inputs", "condition"}, set()),
    "log_to_metric": Kind({"inputs", "metrics"}, {"all_metrics"}, frozenset({METRIC}), frozenset({LOG})),
}
SINKS = {
    "http": Kind(
        {"inputs", "uri", "encoding"},
        BUFFER_SINK
        | {
            "auth",
            "batch",
            "compression",
            "framing",
            "headers",
            "method",
            "payload_prefix",
            "payload_suffix",
            "request",
            "tls",
        },
    ),
    "prometheus_exporter": Kind(
        {"inputs"},
        BUFFER_SINK
        | {
            "address",
            "auth",
            "buckets",
            "default_namespace",
            "distributions_as_summaries",
            "flush_period_secs",
            "quantiles",
            "suppress_timestamp",
            "tls",
        },
        accepts=frozenset({METRIC}),
    ),
    "console": Kind({"inputs", "encoding"}, BUFFER_SINK | {"framing", "target"}),
    "blackhole": Kind({"inputs"}, BUFFER_SINK | {"print_interval_secs", "rate"}),
}
KINDS = {"source": SOURCES, "transform": TRANSFORMS, "sink": SINKS}
CODECS = {"avro", "cef", "csv", "gelf", "json", "logfmt", "native", "native_json", "protobuf", "raw_message", "text"}
COMPRESSION = {"gzip", "none", "snappy", "zlib", "zstd"}
HTTP_METHODS = {"get", "head", "post", "put", "delete", "options", "trace", "patch"}


# --------------------------------------------------------------------------------------------------
# VRL
# --------------------------------------------------------------------------------------------------


def vrl_compiler() -> tuple[Any, str]:
    """(compile function or None, how VRL is judged)."""
    try:
        import pyvrl
    except ImportError:
        return None, "VRL checked syntactically only (PyPI pyvrl is not installed)"
    try:
        from importlib.metadata import version

        ver = version("pyvrl")
    except Exception:  # noqa: BLE001 - metadata is only decoration
        ver = "?"
    return pyvrl.Transform, f"VRL compiled with pyvrl {ver}"


def vrl_syntax_problems(program: str) -> list[str]:
    """Terminated literals and balanced brackets: what can be judged of VRL without its compiler."""
    problems: list[str] = []
    stack: list[tuple[str, int]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    i, line, n = 0, 1, len(program)
    while i < n:
        c = program[i]
        if c == "\n":
            line += 1
        elif c == "#":
            while i < n and program[i] != "\n":
                i += 1
            continue
        elif c == '"' or (c in "rst" and i + 1 < n and program[i + 1] == "'" and not program[i - 1 : i].isalnum()):
            quote = '"' if c == '"' else "'"
            start = line
            i += 1 if c == '"' else 2
            while i < n and program[i] != quote:
                if program[i] == "\\" and quote == '"':
                    i += 1
                elif program[i] == "\n":
                    line += 1
                i += 1
            if i >= n:
                problems.append(f"line {start}: unterminated string literal")
                return problems
        elif c in "([{":
            stack.append((c, line))
        elif c in ")]}":
            if not stack or stack[-1][0] != pairs[c]:
                problems.append(f"line {line}: unexpected '{c}'")
                return problems
            stack.pop()
        i += 1
    for opener, at in stack:
        problems.append(f"line {at}: '{opener}' is never closed")
    return problems


def vrl_problems(program: Any, compiler) -> list[str]:
    if not isinstance(program, str) or not program.strip():
        return ["the VRL program is empty"]
    if compiler is None:
        return vrl_syntax_problems(program)
    try:
        compiler(program)
    except Exception as exc:  # noqa: BLE001 - pyvrl raises ValueError with the compiler's diagnostics
        return [str(exc).strip() or type(exc).__name__]
    return []


# --------------------------------------------------------------------------------------------------
# the configuration
# --------------------------------------------------------------------------------------------------


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) and x for x in value)


def _address(value: Any) -> bool:
    """A socket address `host:port` as vector parses it (an IP, not a name)."""
    if not isinstance(value, str) or ":" not in value:
        return False
    host, _, port = value.rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return port.isdigit() and 0 < int(port) < 65536


def option_problems(kind: str, cid: str, spec: dict[str, Any]) -> list[str]:
    """Values of the options sty sets, for the types that have them."""
    t, out = spec.get("type"), []
    label = f'{kind} "{cid}"'
    if t == "file":
        if not _strings(spec.get("include")):
            out.append(f"{label}: `include` must be a non-empty list of path patterns")
        if "exclude" in spec and not _strings(spec["exclude"]) and spec["exclude"] != []:
            out.append(f"{label}: `exclude` must be a list of path patterns")
        if "read_from" in spec and spec["read_from"] not in ("beginning", "end"):
            out.append(f"{label}: unknown variant `{spec['read_from']}` for `read_from`, expected `beginning` or `end`")
    if t == "journald":
        for key in ("include_units", "exclude_units"):
            if key in spec and not (_strings(spec[key]) or spec[key] == []):
                out.append(f"{label}: `{key}` must be a list of unit names")
        for key in ("since_now", "current_boot_only", "remap_priority"):
            if key in spec and not isinstance(spec[key], bool):
                out.append(f"{label}: `{key}` must be true or false")
    if t == "remap" and not any(k in spec for k in ("source", "file", "files")):
        out.append(f"{label}: one of `source`, `file` or `files` is required")
    if t in ("http", "console"):
        enc = spec.get("encoding")
        if not isinstance(enc, dict) or "codec" not in enc:
            out.append(f"{label}: missing field `codec` in `encoding`")
        elif enc["codec"] not in CODECS:
            out.append(f"{label}: unknown variant `{enc['codec']}` for `encoding.codec`")
    if t == "http":
        uri = spec.get("uri")
        parts = urlsplit(str(uri))
        if not isinstance(uri, str) or parts.scheme not in ("http", "https") or not parts.netloc:
            out.append(f"{label}: `uri` {uri!r} is not an http(s) URL")
        if "compression" in spec and spec["compression"] not in COMPRESSION:
            out.append(f"{label}: unknown variant `{spec['compression']}` for `compression`")
        if "method" in spec and str(spec["method"]).lower() not in HTTP_METHODS:
            out.append(f"{label}: unknown variant `{spec['method']}` for `method`")
        headers = (spec.get("request") or {}).get("headers") if isinstance(spec.get("request"), dict) else None
        if headers is not None and not (
            isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())
        ):
            out.append(f"{label}: `request.headers` must map header names to strings")
    if t == "prometheus_exporter" and "address" in spec and not _address(spec["address"]):
        out.append(f"{label}: `address` {spec['address']!r} is not a socket address (IP:port)")
    return out


def check_config(doc: Any, compiler) -> list[str]:
    """Every problem of a parsed vector configuration (empty: valid)."""
    if not isinstance(doc, dict):
        return ["the configuration must be a mapping"]
    problems = _top_level_problems(doc)
    components: dict[str, tuple[str, dict[str, Any]]] = {}  # id -> (kind, spec)
    problems += _component_problems(doc, components, compiler)
    problems += _graph_problems(components)
    return problems


def _top_level_problems(doc: dict[str, Any]) -> list[str]:
    """The settings outside the component tables: known keys, an absolute data_dir, the api block."""
    problems = [f"unknown field `{k}` at the top level" for k in sorted(doc) if k not in TOP_LEVEL]
    if "data_dir" in doc and not (isinstance(doc["data_dir"], str) and doc["data_dir"].startswith("/")):
        problems.append("`data_dir` must be an absolute path")
    api = doc.get("api")
    if api is not None:
        if not isinstance(api, dict):
            problems.append("`api` must be a mapping")
        else:
            problems += [f"unknown field `{k}` in `api`" for k in sorted(api) if k not in API_KEYS]
            if "address" in api and not _address(api["address"]):
                problems.append(f"`api.address` {api['address']!r} is not a socket address (IP:port)")
    return problems


def _component_problems(doc: dict[str, Any], components: dict[str, tuple[str, dict[str, Any]]], compiler) -> list[str]:
    """Each source, transform and sink on its own; fills `components` with the well-formed ones, the graph's
    nodes (ids are unique across the three tables, as vector requires)."""
    problems: list[str] = []
    for kind, table in KINDS.items():
        section = doc.get(f"{kind}s") or {}
        if not isinstance(section, dict):
            problems.append(f"`{kind}s` must be a mapping of component ids")
            continue
        for cid, spec in section.items():
            cid = str(cid)
            if cid in components:
                problems.append(f'More than one component with name "{cid}" ({components[cid][0]}, {kind}).')
                continue
            if "." in cid or not cid:
                problems.append(f'{kind} "{cid}": component ids may not be empty or contain "."')
            if not isinstance(spec, dict):
                problems.append(f'{kind} "{cid}": must be a mapping with a `type`')
                continue
            components[cid] = (kind, spec)
            problems += _spec_problems(kind, table, cid, spec, compiler)
    return problems


def _spec_problems(kind: str, table: dict, cid: str, spec: dict[str, Any], compiler) -> list[str]:
    """One component: a known type, its required and allowed fields, its options, inputs and VRL programs."""
    t = spec.get("type")
    if t not in table:
        return [f'{kind} "{cid}": unknown {kind} type `{t}` (this check knows {", ".join(sorted(table))})']
    k = table[t]
    problems = [f'{kind} "{cid}": missing field `{key}`' for key in sorted(k.required - set(spec))]
    problems += [f'{kind} "{cid}": unknown field `{key}` for type `{t}`' for key in sorted(set(spec) - k.allowed)]
    problems += option_problems(kind, cid, spec)
    if kind != "source":
        inputs = spec.get("inputs")
        if not _strings(inputs):
            problems.append(f'{kind} "{cid}": `inputs` must be a non-empty list of component ids')
    if t == "remap" and "source" in spec:
        problems += [f'transform "{cid}": {p}' for p in vrl_problems(spec["source"], compiler)]
    if t == "filter":
        cond = spec.get("condition")
        program = cond.get("source") if isinstance(cond, dict) else cond
        problems += [f'transform "{cid}": {p}' for p in vrl_problems(program, compiler)]
    return problems


def _graph_problems(components: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
    """The topology: every input resolves (globs and named outputs as vector expands them), every source and
    transform has a consumer, no cycles, and each edge carries a data type its consumer accepts."""
    problems: list[str] = []
    upstream = [c for c, (k, _) in components.items() if k in ("source", "transform")]
    named_outputs = {
        f"{c}.dropped"
        for c, (k, s) in components.items()
        if k == "transform" and s.get("type") == "remap" and s.get("reroute_dropped")
    }
    edges: dict[str, list[str]] = {}  # consumer -> resolved inputs
    consumed: set[str] = set()
    for cid, (kind, spec) in components.items():
        if kind == "source" or not _strings(spec.get("inputs")):
            continue
        resolved: list[str] = []
        for pattern in spec["inputs"]:
            if pattern in named_outputs:
                hits = [pattern.split(".", 1)[0]]
            elif any(ch in pattern for ch in "*?["):
                hits = [c for c in upstream if fnmatch.fnmatchcase(c, pattern) and c != cid]
            else:
                hits = [pattern] if pattern in upstream else []
            if not hits:
                where = "sink" if kind == "sink" else "transform"
                problems.append(f'Input "{pattern}" for {where} "{cid}" doesn\'t match any components.')
            resolved += hits
        edges[cid] = resolved
        consumed.update(resolved)
    for cid in upstream:
        if cid not in consumed:
            problems.append(f'{components[cid][0].capitalize()} "{cid}" has no consumers')
    problems += _cycles(edges, components)
    problems += _type_mismatches(edges, components)
    return problems


def _cycles(edges: dict[str, list[str]], components) -> list[str]:
    state: dict[str, int] = {}
    out: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            chain = path[path.index(node) :] + [node]
            out.append(f"Cyclic dependency detected in the chain [ {' -> '.join(reversed(chain))} ]")
            return
        state[node] = 1
        for up in edges.get(node, []):
            if components.get(up, ("",))[0] == "transform":
                visit(up, [*path, node])
        state[node] = 2

    for node in sorted(edges):
        if components[node][0] == "transform":
            visit(node, [])
    return out


def _type_mismatches(edges: dict[str, list[str]], components) -> list[str]:
    memo: dict[str, frozenset[str]] = {}

    def output(cid: str, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        if cid in memo:
            return memo[cid]
        kind, spec = components[cid]
        k = KINDS[kind].get(spec.get("type"))
        if k is None or cid in seen:
            return frozenset({LOG, METRIC, TRACE})
        if k.output is not None:
            types = k.output
        else:
            types = frozenset().union(*(output(up, seen | {cid}) for up in edges.get(cid, []))) or frozenset()
        memo[cid] = types
        return types

    out = []
    for cid, ups in sorted(edges.items()):
        kind, spec = components[cid]
        k = KINDS[kind].get(spec.get("type"))
        if k is None:
            continue
        for up in ups:
            types = output(up)
            if types and not types & k.accepts:
                have = ", ".join(sorted(types))
                want = ", ".join(sorted(k.accepts))
                out.append(f"Data type mismatch between {up} ([{have}]) and {cid} ([{want}])")
    return out


@register("vector")
def check(ctx: CheckContext) -> CheckResult:
    compiler, how = vrl_compiler()
    outputs, ok = [], True
    for path in ctx.files:
        text = substitute(ctx.path(path).read_text(), ctx.secret)
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            outputs.append(f"{path}: cannot parse YAML: {exc}")
            ok = False
            continue
        problems = check_config(doc, compiler)
        if problems:
            ok = False
            outputs += [f"{path}: {p}" for p in problems]
        else:
            n = {k: len(doc.get(f"{k}s") or {}) for k in KINDS}
            outputs.append(f"{path}: valid ({n['source']} sources, {n['transform']} transforms, {n['sink']} sinks)")
    reason = f"hand-written check: no vector binary is installable here; {how}"
    return CheckResult("vector", ctx.files, PASS if ok else FAIL, "\n".join(outputs) + "\n", reason)
