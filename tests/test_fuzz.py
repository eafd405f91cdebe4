"""Bad input never crashes `sty build`: a property-based test mutates valid inventories (the shipped
pigsty.yml and two corpus files) and runs the command line in-process (click's CliRunner, which catches any
exception) into a directory that already holds a previous build.

Every run must end with exit 0, or exit 2 with every stderr line naming a location (`error: <path>: …`,
warnings and notes alike, plus the closing "N error(s); nothing was written") and the output directory left
byte for byte as it was. Never a traceback, never another exit code.

Mutations: wrong types, missing identity, duplicate seqs, two primaries, port clashes, strings with quotes,
newlines, `{{`, `${`, non-ASCII and very long values in parameters and in list items (users, databases,
services, HBA rules), unknown YAML aliases, anchors and merge keys, empty files, YAML that is not a
mapping, broken YAML. A fixed sample of the successful builds (the examples are derandomized) also goes
through the haproxy, postgres-hba and pgbouncer checkers (slow test below).
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import tempfile
import tracemalloc
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from shared import CORPUS

from sty.cli import main

ROOT = Path(__file__).resolve().parents[1]
BASES = {
    "pigsty.yml": ROOT / "pigsty.yml",
    "ha/trio.yml": CORPUS / "ha/trio.yml",
    "demo/el.yml": CORPUS / "demo/el.yml",
}
_DATA = {name: yaml.safe_load(p.read_text()) for name, p in BASES.items()}
# file:line:column when the path was written in the file, then the path: dotted, or file:line:column; or a
# summary of one kind of warning
LOCATED = re.compile(r"^(\S+:\d+:\d+: )?(error|warning|note): \S.*")
SUMMARY = re.compile(r"^\S+: \d+ error\(s\); nothing was written$")
SUCCESSES: list[str] = []  # inventory texts that built, in example order (derandomized: a fixed sample)

NASTY_STRINGS = [
    "",
    " ",
    "a'b",
    'a"b',
    "a\nb",
    "line\n  bind *:1",
    "x\r\ny",
    "{{ 7*7 }}",
    "{% raw %}",
    "${admin_ip}",
    "${nope}",
    "$(id)",
    "`id`",
    "a;b",
    "a b",
    "a=b",
    "a#b",
    "a\\b",
    "a%b",
    "\x00",
    "é漢字🙂",
    "x" * 5000,
    "- item",
    "key: value",
    "*",
    "10.10.10.300",
    "-1",
    "1e309",
]
nasty_scalar = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.text(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
nasty_value = st.one_of(
    nasty_scalar,
    st.lists(nasty_scalar, max_size=3),
    st.dictionaries(st.sampled_from(["name", "port", "x", "y", "", "ip"]), nasty_scalar, max_size=3),
)
IDENTITY = ["pg_cluster", "pg_seq", "pg_role", "etcd_seq", "etcd_cluster", "infra_seq"]
PORTS = ["pg_port", "pgbouncer_port", "patroni_port", "haproxy_exporter_port", "node_exporter_port", "etcd_port"]
LISTS = ["pg_users", "pg_databases", "pg_services", "pg_hba_rules", "pgb_hba_rules", "haproxy_services"]


def _schemas() -> dict[str, dict]:
    from sty.compiler.schema import registry

    return {name: spec.schema for name, spec in registry().params.items()}


SCHEMAS = _schemas()
PARAMS = sorted(SCHEMAS)
KINDS = [
    "set", "set-known", "drop-identity", "dup-seq", "two-primaries", "port-clash", "list-item", "list-type",
    "typed", "typed", "hba-alias", "service", "portal", "structure",
]  # fmt: skip
ADDRS = ["infra", "infraa", "world", "intra", "cluster", "local", "localhost", "admin", "${admin_ip}/33",
         "10.0.0.0/33", "", "10.10.10.10", "::1/128", "samenet", "+x"]  # fmt: skip
AUTHS = ["pwd", "ssl", "trust", "deny", "scram-sha-256", "md5", "cert", "ident", "sspi", "", "pwd\nx"]
SERVICE_VALUES = {
    "selector": ["[]", "[? pg_role == `primary`]", "[? bad", "`1`", "[].nope", "@", "[? pg_seq > `1`]"],
    "backup": ["[? pg_role == `primary`]", "[", "[]"],
    "dest": ["default", "postgres", "pgbouncer", 5432, 0, "nope", -1],
    "check": ["/", "/sync", "/primary", "no-slash", ""],
    "ip": ["*", "10.10.10.2", "nope", "", "::"],
    "maxconn": [0, -1, 10**9, "many"],
}


@st.composite
def typed_value(draw, schema: dict):
    """A value of the schema's type, chosen among its edges."""
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    t = draw(st.sampled_from([x for x in types if x] or ["string"]))
    if t == "integer":
        lo, hi = schema.get("minimum", -(2**31)), schema.get("maximum", 2**31)
        return draw(st.sampled_from([lo, hi, lo - 1, hi + 1, 0, 1, 65535, 65536]))
    if t == "number":
        return draw(st.sampled_from([0.0, -0.5, 1e-9, 1e9, 1.5]))
    if t == "boolean":
        return draw(st.booleans())
    if t == "array":
        return draw(st.lists(st.one_of(nasty_scalar, st.dictionaries(st.sampled_from(["name", "x"]), nasty_scalar)),
                             max_size=2))  # fmt: skip
    if t == "object":
        return draw(st.dictionaries(st.sampled_from(["a", "name", "x.y", ""]), nasty_scalar, max_size=2))
    if "enum" in schema:
        return draw(st.sampled_from(list(schema["enum"]) + [""]))
    return draw(st.sampled_from(NASTY_STRINGS))


# --------------------------------------------------------------------------------------------------
# mutations on the parsed inventory
# --------------------------------------------------------------------------------------------------


def _blocks(inv: dict) -> list[dict]:
    """Every vars mapping of the inventory: all.vars, group vars, host vars."""
    out = []
    a = inv.get("all") if isinstance(inv, dict) else None
    if not isinstance(a, dict):
        return out
    if isinstance(a.get("vars"), dict):
        out.append(a["vars"])
    for group in (a.get("children") or {}).values():
        if not isinstance(group, dict):
            continue
        if isinstance(group.get("vars"), dict):
            out.append(group["vars"])
        hosts = group.get("hosts")
        for host in hosts.values() if isinstance(hosts, dict) else []:
            if isinstance(host, dict):
                out.append(host)
    return out


def _hosts(inv: dict) -> list[dict]:
    out = []
    a = inv.get("all") if isinstance(inv, dict) else None
    children = a.get("children") if isinstance(a, dict) else None
    for group in children.values() if isinstance(children, dict) else []:
        hosts = group.get("hosts") if isinstance(group, dict) else None
        if isinstance(hosts, dict):
            out += [h for h in hosts.values() if isinstance(h, dict)]
    return out


def mutate(data, inv: dict) -> None:
    """One mutation of `inv` in place (a plain function over st.data(), so the inventory is never repr'd)."""
    draw = data.draw
    kind = draw(st.sampled_from(KINDS))
    blocks = _blocks(inv)
    if not blocks:
        return
    block = blocks[draw(st.integers(0, len(blocks) - 1))]
    if kind == "set":
        block[draw(st.sampled_from(PARAMS))] = draw(nasty_value)
    elif kind == "set-known":
        keys = sorted(block) or PARAMS
        block[draw(st.sampled_from(keys))] = draw(nasty_value)
    elif kind == "drop-identity":
        for b in blocks:
            b.pop(draw(st.sampled_from(IDENTITY)), None)
    elif kind == "dup-seq":
        hosts = [h for h in _hosts(inv) if "pg_seq" in h or "etcd_seq" in h]
        for h in hosts:
            for key in ("pg_seq", "etcd_seq"):
                if key in h:
                    h[key] = 1
    elif kind == "two-primaries":
        for h in _hosts(inv):
            if "pg_role" in h or "pg_seq" in h:
                h["pg_role"] = "primary"
    elif kind == "port-clash":
        a, b = draw(st.sampled_from(PORTS)), draw(st.sampled_from(PORTS))
        block[a] = block[b] = draw(st.sampled_from([5432, 6432, 8008, 2379, 9101, 0, 70000]))
    elif kind == "list-item":
        key = draw(st.sampled_from(LISTS))
        items = [i for b in blocks for i in (b.get(key) or []) if isinstance(i, dict)] if True else []
        if items:
            item = items[draw(st.integers(0, len(items) - 1))]
            field = draw(st.sampled_from(sorted(item) + ["name", "title", "options", "comment", "db", "user"]))
            item[field] = draw(nasty_value)
        else:
            block[key] = [{draw(st.sampled_from(["name", "port", "title"])): draw(nasty_value)}]
    elif kind == "list-type":
        block[draw(st.sampled_from(LISTS))] = draw(nasty_value)
    elif kind == "typed":  # a value of the parameter's own type, at its edges
        name = draw(st.sampled_from(PARAMS))
        block[name] = draw(typed_value(SCHEMAS.get(name) or {}))
    elif kind == "hba-alias":
        rule = {"user": "all", "db": "all", "addr": draw(st.sampled_from(ADDRS)), "auth": draw(st.sampled_from(AUTHS))}
        if draw(st.booleans()):
            rule["title"] = draw(st.sampled_from(NASTY_STRINGS))
        block.setdefault("pg_hba_rules", [])
        if isinstance(block["pg_hba_rules"], list):
            block["pg_hba_rules"].append(rule)
    elif kind == "service":
        svc = {"name": draw(st.sampled_from(["s", "standby", "replica", "x" * 70, "a b"])), "port": 5440}
        for key in draw(
            st.lists(st.sampled_from(["selector", "backup", "dest", "check", "ip", "maxconn"]), max_size=3)
        ):
            svc[key] = draw(st.sampled_from(SERVICE_VALUES[key]))
        block["pg_services"] = [svc]
    elif kind == "portal":
        block["infra_portal"] = {
            draw(st.sampled_from(["home", "x", "a b"])): {
                "domain": draw(st.sampled_from(NASTY_STRINGS + ["x.pigsty"])),
                "endpoint": draw(
                    st.sampled_from(["10.10.10.10:3000", "${admin_ip}:3000", "x", "a:b:c", "10.0.0.1:99999"])
                ),
            }
        }
    elif kind == "structure":  # the shape of the inventory itself
        children = (inv.get("all") or {}).get("children") if isinstance(inv.get("all"), dict) else None
        if isinstance(children, dict) and children:
            gname = draw(st.sampled_from(sorted(children)))
            how = draw(st.sampled_from(["none", "list", "str", "hosts-list", "host-key", "vars-null", "host-none"]))
            group = children[gname]
            if how == "none":
                children[gname] = None
            elif how == "list":
                children[gname] = [group]
            elif how == "str":
                children[gname] = "pg-test"
            elif isinstance(group, dict) and how == "hosts-list":
                group["hosts"] = list((group.get("hosts") or {}).keys())
            elif isinstance(group, dict) and how == "host-key" and group.get("hosts"):
                first = next(iter(group["hosts"]))
                group["hosts"][draw(st.sampled_from(["not-an-ip", "10.10.10.300", "::1", "10.10.10.11 "]))] = group[
                    "hosts"
                ].pop(first)
            elif isinstance(group, dict) and how == "vars-null":
                group["vars"] = None
            elif isinstance(group, dict) and how == "host-none" and group.get("hosts"):
                group["hosts"][next(iter(group["hosts"]))] = None


TEXT_MUTATIONS = ["none", "alias", "anchor-merge", "empty", "list", "scalar", "truncate", "tab"]


def to_text(inv, how: str, cut: int) -> str:
    text = yaml.safe_dump(inv, sort_keys=False, allow_unicode=True, width=4096)
    if how == "alias":  # an alias nobody defined
        return text.replace("vars:\n", "vars:\n    sty_alias: *undefined_anchor\n", 1)
    if how == "anchor-merge":  # Pigsty users share blocks with anchors and merge keys
        lines = text.splitlines()
        out, done = [], False
        for line in lines:
            out.append(line)
            if not done and re.match(r"^  vars:$", line):
                out.append("    sty_shared: &shared {pg_port: 5433, node_tune: oltp}")
                done = True
        text = "\n".join(out) + "\n"
        return re.sub(r"(\n(\s+)vars:\n)", r"\1\2  <<: *shared\n", text, count=2) if done else text
    if how == "empty":
        return ""
    if how == "list":
        return "- all\n- vars\n"
    if how == "scalar":
        return "just a string\n"
    if how == "truncate":
        return text[: max(1, cut % max(len(text), 1))]
    if how == "tab":
        return text.replace("  ", "\t", 1)
    return text


# --------------------------------------------------------------------------------------------------
# the property
# --------------------------------------------------------------------------------------------------


def _snapshot(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def previous_build(tmp_path_factory) -> Path:
    """A directory with the shipped inventory built into out/ (copied per example)."""
    d = tmp_path_factory.mktemp("fuzz-base")
    shutil.copy(ROOT / "pigsty.yml", d / "pigsty.yml")
    old = os.getcwd()
    os.chdir(d)
    try:
        r = CliRunner().invoke(main, ["build", "-q", "-i", "pigsty.yml", "-o", "out"])
    finally:
        os.chdir(old)
    assert r.exit_code == 0, r.output
    return d


def run_build(base: Path, text: str):
    work = Path(tempfile.mkdtemp(prefix="sty-fuzz-"))
    try:
        shutil.copytree(base / "out", work / "out")
        if (base / ".sty").exists():
            shutil.copytree(base / ".sty", work / ".sty")
        inv = work / "inv.yml"
        inv.write_text(text, encoding="utf-8", errors="surrogatepass")
        before = _snapshot(work)
        old = os.getcwd()
        os.chdir(work)
        tracemalloc.start()  # every Python object the build allocates: the issue bounds a case at 512 MiB
        try:
            result = CliRunner().invoke(main, ["build", "-q", "-i", "inv.yml", "-o", "out"])
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            os.chdir(old)
        assert peak < 512 << 20, f"the build peaked at {peak >> 20} MiB\ninventory:\n{text[:3000]}"
        after = _snapshot(work)
        return result, before, after
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_outcome(text: str, result, before, after) -> None:
    out = result.output + (result.stderr if hasattr(result, "stderr") else "")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"sty build crashed:\n{tb}\ninventory:\n{text[:3000]}")
    assert "Traceback" not in out, out
    assert result.exit_code in (0, 2), f"exit {result.exit_code}\n{out}\ninventory:\n{text[:3000]}"
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert any(" error: " in f" {line}" for line in lines), f"exit 2 without an error line:\n{result.stderr}"
        for line in lines:
            assert LOCATED.match(line) or SUMMARY.match(line), f"stderr line without a location: {line!r}"
        assert before == after, "a failed build changed the output directory"


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: it costs minutes on inventories this size
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_mutated_inventories_never_crash(previous_build, data):
    name = data.draw(st.sampled_from(sorted(BASES)), label="base")
    inv = copy.deepcopy(_DATA[name])
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        mutate(data, inv)
    how = data.draw(st.sampled_from(TEXT_MUTATIONS), label="text")
    text = to_text(inv, how, data.draw(st.integers(0, 10**6), label="cut"))
    result, before, after = run_build(previous_build, text)
    check_outcome(text, result, before, after)
    if result.exit_code == 0 and len(SUCCESSES) < 3 and name == "pigsty.yml" and how == "none":
        SUCCESSES.append(text)


# --------------------------------------------------------------------------------------------------
# fixed reproducers (each a crash or escape found by the property; kept so they stay fixed)
# --------------------------------------------------------------------------------------------------


def _shipped_with(mutate) -> str:
    inv = copy.deepcopy(_DATA["pigsty.yml"])
    mutate(inv)
    return yaml.safe_dump(inv, sort_keys=False, allow_unicode=True)


REPRODUCERS: dict[str, tuple[str, str | None]] = {  # id -> (inventory text, xfail reason or None)
    "portal-domain-newline": (
        _shipped_with(lambda inv: inv["all"]["vars"].update(infra_portal={"home": {"domain": "i.pigsty\nx"}})),
        None,  # fixed: a message's line breaks are escaped, one problem stays one line
    ),
    "alias-undefined": (_shipped_with(lambda inv: None).replace("  vars:\n", "  vars:\n    x: *nope\n", 1), None),
    "not-a-mapping": ("- all\n", None),
    "empty": ("", None),
}


@pytest.mark.parametrize(
    "case",
    [pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=v[1])) if v[1] else k for k, v in REPRODUCERS.items()],
)
def test_reproducers(previous_build, case):
    text = REPRODUCERS[case][0]
    check_outcome(text, *run_build(previous_build, text))


# --------------------------------------------------------------------------------------------------
# a fixed sample of successful builds through the real checkers
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_successful_fuzzed_builds_pass_the_checkers(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the checkers need root")
    from sty.apply.checks import FAIL
    from sty.apply.checks.runner import run_host_checks

    samples = list(SUCCESSES)
    if not samples:  # run alone: the shipped inventory itself
        samples = [yaml.safe_dump(_DATA["pigsty.yml"], sort_keys=False)]
    for i, text in enumerate(samples):
        work = tmp_path / f"s{i}"
        work.mkdir()
        (work / "inv.yml").write_text(text)
        old = os.getcwd()
        os.chdir(work)
        try:
            r = CliRunner().invoke(main, ["build", "-q", "-i", "inv.yml", "-o", "out"])
        finally:
            os.chdir(old)
        assert r.exit_code == 0, r.output
        out = work / "out"
        hosts = sorted(p.stem for p in out.glob("*.yml"))
        ip = next(h for h in hosts if (out / h / "etc/pgbouncer").is_dir())
        m = yaml.safe_load((out / f"{ip}.yml").read_text())
        results = run_host_checks(out / ip, m, {"build", "both"}, only={"haproxy", "postgres-hba", "pgbouncer"})
        assert {r.checker for r in results} == {"haproxy", "postgres-hba", "pgbouncer"}
        bad = [f"{r.checker}: {r.output}" for r in results if r.status == FAIL]
        assert not bad, f"sample {i}:\n" + "\n".join(bad) + f"\ninventory:\n{text[:2000]}"
