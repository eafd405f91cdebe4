"""Hostile inventories (issue 12): an inventory arrives in a pull request and sty may run as root, so every
failure is exit 2 (invalid input) or 3 (the operation failed) with one located sentence per problem, never a
traceback, and memory and time stay bounded whatever the input.

One regression test per finding (alias bomb and size limits, duplicate keys, non-string keys, a read-only or
unwritable output, over-long names, floats for integers and port ranges, whole-string patterns, sentences
instead of regular expressions, placeholder bombs), then a property: the shipped inventory mutated the way an
attacker would (non-string keys, deep nesting, aliases, huge strings, floats, control characters, wrong types,
duplicate keys) never crashes and never prints a password. tests/test_fuzz.py fuzzes parameter values and
the output directory; this file fuzzes the YAML itself.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import ROOT, dump_inventory, shipped_inventory
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sty.cli import main
from sty.compiler import loader
from sty.compiler.errors import InventoryError
from sty.compiler.schema import registry

SHIPPED_TEXT = (ROOT / "pigsty.yml").read_text(encoding="utf-8")
REGEX_LEAK = re.compile(r"\^\(|\[A-Za-z|\{0,62\}|\$\"?$")  # a pattern printed instead of a sentence


MEMORY_BOUND = 512 << 20  # the bound for any one hostile case


def invoke(*args: str, cwd: Path) -> Any:
    """Run `sty ARGS` in-process in cwd (click's runner catches any exception: it shows in .exception)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args))
    finally:
        os.chdir(old)


def assert_refused(result: Any, code: int, where: str) -> str:
    """Exit `code`, an `error: <where>...` line, no traceback; returns stderr."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        pytest.fail("".join(traceback.format_exception(result.exception)))
    out = result.output + result.stderr
    assert "Traceback" not in out, out
    assert result.exit_code == code, out
    unlocated = [re.sub(r"^\S+:\d+:\d+: ", "", line) for line in result.stderr.splitlines()]  # file:line:column
    assert any(line.startswith(f"error: {where}") for line in unlocated), result.stderr
    return result.stderr


def check_text(tmp_path: Path, text: str, *args: str) -> Any:
    (tmp_path / "inv.yml").write_text(text, encoding="utf-8")
    return invoke(*(args or ("check",)), "-i", "inv.yml", cwd=tmp_path)


def with_all_vars(extra: str) -> str:
    """The shipped inventory with YAML lines added to `all.vars` (indented four spaces); a parameter the
    shipped `all.vars` already sets is replaced, not given twice."""
    block = textwrap.indent(textwrap.dedent(extra).strip("\n"), "    ") + "\n"
    head, sep, tail = SHIPPED_TEXT.partition("  vars:\n    version:")
    for key in re.findall(r"^    ([a-z_0-9]+):", block, re.M):
        tail = re.sub(rf"^    {key}:.*\n", "", tail, flags=re.M)
    return head + "  vars:\n" + block + "    version:" + tail


# -- 1. bounded input -------------------------------------------------------------------------------------

BOMB = """\
b0: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b1: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
b2: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
b3: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
b4: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
b5: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
b6: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
b7: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
b8: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""

_BOUNDED_RUN = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from sty.cli import main
start = time.monotonic()
try:
    main(["check", "-i", sys.argv[1]])
finally:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stderr.write(f"\\nseconds={time.monotonic() - start:.2f} maxrss_kib={rss}\\n")
"""


def run_bounded(path: Path) -> subprocess.CompletedProcess:
    """`sty check` in a child with 1 GiB of address space: a bomb that expands dies there, not here."""
    return subprocess.run(
        [sys.executable, "-c", _BOUNDED_RUN, str(path)], capture_output=True, text=True, timeout=60, cwd=path.parent
    )


def test_alias_bomb_is_refused_in_bounded_memory_and_time(tmp_path):
    text = with_all_vars(BOMB)
    assert len(BOMB) < 700
    (tmp_path / "bomb.yml").write_text(text)
    start = time.monotonic()
    proc = run_bounded(tmp_path / "bomb.yml")
    assert time.monotonic() - start < 10
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert re.search(r"^error: \S*bomb\.yml:\d+:\d+: YAML aliases expand", proc.stderr, re.M), proc.stderr
    maxrss_mib = int(re.search(r"maxrss_kib=(\d+)", proc.stderr).group(1)) / 1024
    assert maxrss_mib < 512


def test_recursive_alias_and_deep_nesting_are_refused(tmp_path):
    stderr = assert_refused(check_text(tmp_path, with_all_vars("loop: &x [1, *x]")), 2, "inv.yml:")
    assert "contains it" in stderr
    deep = "deep: " + "[" * 200 + "]" * 200
    assert_refused(check_text(tmp_path, with_all_vars(deep)), 2, "inv.yml")


@pytest.mark.parametrize("anchored", [False, True])
def test_the_depth_limit_is_the_same_with_and_without_anchors(tmp_path, anchored):
    """A document with no `&` is measured by the tree walk, any other by the alias-aware one: the same limit."""
    anchor = "x-a: &a 1\n" if anchored else ""

    def nested(levels: int) -> Any:  # the document, all and vars are three levels, the innermost item one
        brackets = levels - 4
        return check_text(tmp_path, with_all_vars(anchor + "deep: " + "[" * brackets + "1" + "]" * brackets))

    assert "nested deeper than 64 levels" in assert_refused(nested(loader.MAX_DEPTH + 1), 2, "inv.yml:")
    assert "nested deeper" not in nested(loader.MAX_DEPTH).stderr


def test_an_inventory_with_too_many_values_and_no_alias_is_refused(tmp_path):
    many = "many: [" + ",".join(["0"] * loader.MAX_VALUES) + "]"
    stderr = assert_refused(check_text(tmp_path, with_all_vars(many)), 2, "inv.yml:")
    assert f"more than {loader.MAX_VALUES:,} values" in stderr


def test_the_tree_walk_and_the_alias_aware_walk_agree_on_a_real_inventory():
    """The shipped inventory has no `&`: both walks accept it and find nothing shared."""
    assert "&" not in SHIPPED_TEXT
    node = yaml.compose(SHIPPED_TEXT, Loader=yaml.SafeLoader)
    assert loader._measure(node, "x") == loader._measure_tree(node, "x") == set()


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all(tmp_path):
    (tmp_path / "inv.yml").write_text(SHIPPED_TEXT + "#" * (loader.MAX_BYTES + 10))
    stderr = assert_refused(invoke("check", "-i", "inv.yml", cwd=tmp_path), 2, "inv.yml: the file is larger than")
    assert "MiB" in stderr


def test_the_aliases_pigsty_users_write_still_load(tmp_path):
    # keys that only hold anchors are not Pigsty's parameters: --allow-unknown accepts them
    shared = "shared: &shared {pg_port: 5432, node_tune: oltp}\nother: *shared\nmore: {<<: *shared, pg_port: 5433}"
    result = check_text(tmp_path, with_all_vars(shared), "check", "--allow-unknown")
    assert result.exit_code == 0, result.stderr


# -- 2. duplicate keys --------------------------------------------------------------------------------------


def test_a_duplicate_key_names_both_places(tmp_path):
    text = SHIPPED_TEXT.replace("    admin_ip: 10.10.10.10\n", "    admin_ip: 10.10.10.10\n    admin_ip: 10.10.10.99\n")
    first = text.splitlines().index("    admin_ip: 10.10.10.10") + 1
    stderr = assert_refused(check_text(tmp_path, text), 2, f"inv.yml:{first + 1}:5:")
    assert f"first at line {first}, column 5" in stderr and "'admin_ip'" in stderr


def test_a_merged_key_may_be_overridden(tmp_path):
    result = check_text(tmp_path, with_all_vars("base: &b {x: 1}\nuse: {<<: *b, x: 2}"), "check", "--allow-unknown")
    assert result.exit_code == 0, result.stderr


# -- 3. non-string keys, number and string keys, the output directory, long names -------------------------


def test_a_non_string_key_inside_a_parameter_is_a_sentence(tmp_path):
    stderr = assert_refused(
        check_text(tmp_path, with_all_vars("pg_parameters: {1: a, b: c}")), 2, "all.vars.pg_parameters.1:"
    )
    assert "must be a string" in stderr


@pytest.mark.parametrize("key", ["true", "2024-01-01", "1.5", "null"])
def test_boolean_date_float_and_null_keys_are_refused(tmp_path, key):
    result = check_text(tmp_path, with_all_vars(f"pg_parameters: {{{key}: a, b: c}}"))
    assert_refused(result, 2, "all.vars.pg_parameters.")


def test_a_port_given_as_number_and_as_string_is_refused(tmp_path, inventory):
    hosts = inventory["all"]["children"]["pg-test"]["hosts"]
    hosts["10.10.10.12"].update(redis_node=1, redis_instances={6379: {}, "6379": {}})
    inventory["all"]["children"]["pg-test"]["vars"]["redis_cluster"] = "redis-x"
    dump_inventory(inventory, tmp_path / "inv.yml")
    result = invoke("check", "-i", "inv.yml", cwd=tmp_path)
    stderr = assert_refused(result, 2, "all.children.pg-test.hosts.10.10.10.12.redis_instances.6379:")
    assert "once as a number and once as a string" in stderr


def test_numeric_keys_where_pigsty_writes_them_still_load(tmp_path, inventory):
    inventory["all"]["children"]["redis-x"] = {
        "hosts": {"10.10.10.12": {"redis_node": 1, "redis_instances": {6379: {}, 6380: {}}}},
        "vars": {"redis_cluster": "redis-x"},
    }
    dump_inventory(inventory, tmp_path / "inv.yml")
    result = invoke("check", "-i", "inv.yml", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr


def test_an_unwritable_output_directory_is_exit_3_with_the_path(tmp_path):
    (tmp_path / "pigsty.yml").write_text(SHIPPED_TEXT)
    if os.geteuid() == 0:
        out = "/sys/sty-hostile-out"  # sysfs refuses root too
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        out = str(tmp_path / "ro" / "out")
    result = invoke("build", "-q", "-o", out, cwd=tmp_path)
    assert_refused(result, 3, out.rsplit("/", 1)[0])


def test_an_os_error_of_the_writer_is_one_sentence(tmp_path, monkeypatch):
    """Whatever the file system refuses (a name over 255 bytes, a full disk) and whoever forgets to wrap it,
    the command line reports the path and the reason, exit 3."""
    import errno

    import sty.compiler.build as build

    long_name = str(tmp_path / "out" / ("x" * 300 + ".cfg"))

    def refuse(*_args, **_kwargs):
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), long_name)

    monkeypatch.setattr(build, "build", refuse)
    (tmp_path / "pigsty.yml").write_text(SHIPPED_TEXT)
    stderr = assert_refused(invoke("build", "-q", "-o", "out", cwd=tmp_path), 3, long_name)
    assert "File name too long" in stderr


def test_an_over_long_cluster_name_is_reported_at_the_cluster_name(tmp_path):
    name = "pg-" + "t" * 300
    text = SHIPPED_TEXT.replace("pg_cluster: pg-test", f"pg_cluster: {name}")
    stderr = assert_refused(check_text(tmp_path, text), 2, "all.children.pg-test.vars.pg_cluster:")
    assert "longer than 63 characters" in stderr


# -- 4. integers are integers, ports are ports --------------------------------------------------------------


def _integer_params() -> list[str]:
    return sorted(n for n, s in registry().params.items() if s.schema.get("type") == "integer")


def test_every_integer_parameter_refuses_a_float_and_a_boolean():
    from sty.compiler.schema import iter_value_errors

    names = _integer_params()
    assert len(names) > 30
    for name in names:
        spec = registry().get(name)
        for bad in (9102.0, True):
            errors = list(iter_value_errors(spec, bad))
            assert errors and "expected an integer" in errors[0][1], (name, bad, errors)


def test_a_float_port_is_refused_at_its_parameter(tmp_path):
    stderr = assert_refused(
        check_text(tmp_path, with_all_vars("haproxy_exporter_port: 9102.0")), 2, "all.vars.haproxy_exporter_port:"
    )
    assert "9102.0" in stderr


def test_every_port_parameter_is_within_1_to_65535():
    from sty.compiler.schema import harden, iter_value_errors

    ports = [n for n in _integer_params() if n.endswith("_port")]
    assert ports
    for name in ports:
        spec = registry().get(name)
        for bad in (0, 65536):
            assert list(iter_value_errors(spec, bad)), (name, bad)
    # a port the schemas leave unbounded is bounded in code
    assert harden({"type": "integer"}, "x_port") == {"type": "integer", "minimum": 1, "maximum": 65535}


# -- 5. patterns match whole strings, at the right parameter ------------------------------------------------


def test_a_trailing_newline_is_refused_at_the_parameter_itself(tmp_path):
    text = SHIPPED_TEXT.replace("pg_cluster: pg-test", 'pg_cluster: "pg-test\\n"')
    result = check_text(tmp_path, text)
    stderr = assert_refused(result, 2, "all.children.pg-test.vars.pg_cluster:")
    assert all("pg_dns_suffix" not in line for line in stderr.splitlines())


# -- 6. sentences, not regular expressions ------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, where",
    [
        ("admin_ip: 10.10.10.300", "all.vars.admin_ip"),
        ("pg_conf: /etc/x.yml", "all.vars.pg_conf"),
        ("pgsodium_key: xyz", "all.vars.pgsodium_key"),
        ("node_cluster: -bad", "all.vars.node_cluster"),
    ],
)
def test_pattern_errors_are_sentences(tmp_path, line, where):
    stderr = assert_refused(check_text(tmp_path, with_all_vars(line)), 2, where)
    for text in stderr.splitlines():
        assert not REGEX_LEAK.search(text), text


def test_a_placeholder_bomb_is_refused_quickly(tmp_path):
    lines = ["ph0: x"] + [f'ph{i}: "' + f"${{ph{i - 1}}}" * 10 + '"' for i in range(1, 9)]
    lines.append('pg_dbsu_home: "${ph8}"')
    start = time.monotonic()
    result = check_text(tmp_path, with_all_vars("\n".join(lines)), "check", "--allow-unknown")  # ph*: not Pigsty's
    assert time.monotonic() - start < 10
    stderr = assert_refused(result, 2, "all.")
    assert "placeholders expand to more than" in stderr


# -- the property: hostile YAML never crashes and never prints a password --------------------------------------

SECRETS = {
    "pg_admin_password": "Canary-Admin-7f3a",
    "pg_monitor_password": "Canary-Monitor-9b1c",
    "pg_replication_password": "Canary-Repl-2d4e",
}
USER_SECRET = "Canary-User-5e6f"
INT_PARAMS = _integer_params()
ODD_KEYS = st.one_of(
    st.integers(-5, 70000),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just(datetime.date(2024, 1, 1)),
)
CONTROL = "".join(chr(c) for c in range(1, 32) if chr(c) not in "\n\t")
HOSTILE_KINDS = ["odd-key", "deep", "huge", "float-int", "control", "wrong-type", "numeric-dup", "none"]
TEXT_KINDS = ["plain", "duplicate", "alias-fan", "alias-cycle", "anchor-merge", "tabs"]


def _secret_inventory() -> dict:
    inv = shipped_inventory()
    inv["all"]["vars"].update(SECRETS)
    inv["all"]["children"]["pg-test"]["vars"]["pg_users"][0]["password"] = USER_SECRET
    return inv


def _mappings(value: Any, out: list[dict]) -> list[dict]:
    if isinstance(value, dict):
        out.append(value)
        for v in value.values():
            _mappings(v, out)
    elif isinstance(value, list):
        for v in value:
            _mappings(v, out)
    return out


def hostile_mutation(draw: Any, inv: dict) -> None:
    """One change an attacker could make to the parsed inventory, anywhere in it."""
    kind = draw(st.sampled_from(HOSTILE_KINDS))
    maps = _mappings(inv, [])
    target = maps[draw(st.integers(0, len(maps) - 1))]
    key = draw(st.sampled_from(sorted(map(str, target)) or ["x"]))
    if kind == "odd-key":
        target[draw(ODD_KEYS)] = draw(st.sampled_from(["a", 1, None, {}]))
    elif kind == "deep":
        depth = draw(st.integers(5, 120))
        nested: Any = "x"
        for _ in range(depth):
            nested = [nested] if draw(st.booleans()) else {"k": nested}
        target[key] = nested
    elif kind == "huge":
        target[key] = draw(st.sampled_from(["x", "${ip}", "é", "{{x}}"])) * draw(st.integers(1000, 300_000))
    elif kind == "float-int":
        inv["all"]["vars"][draw(st.sampled_from(INT_PARAMS))] = draw(st.sampled_from([9102.0, 1.5, -0.0, 1e300]))
    elif kind == "control":
        target[key] = "pg" + draw(st.text(alphabet=CONTROL, min_size=1, max_size=4)) + "test"
    elif kind == "wrong-type":
        target[key] = draw(st.sampled_from([[], {}, None, True, 0, -1, 2**64, "", [[{}]], {"a": [None]}]))
    elif kind == "numeric-dup":
        target[key] = {5432: {}, "5432": {}}


def hostile_text(draw: Any, inv: dict) -> str:
    text = yaml.safe_dump(inv, sort_keys=False, allow_unicode=True, width=4096)
    how = draw(st.sampled_from(TEXT_KINDS))
    if how == "duplicate":  # a key written twice under all.vars
        return text.replace("  vars:\n", "  vars:\n    pg_port: 5432\n    pg_port: 5433\n", 1)
    if how == "alias-fan":  # sharing that grows with the fan-out and the levels drawn
        fan, levels = draw(st.integers(2, 12)), draw(st.integers(1, 8))
        lines = ["    a0: &a0 [x, y]"] + [
            f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]" for i in range(1, levels + 1)
        ]
        return text.replace("  vars:\n", "  vars:\n" + "\n".join(lines) + "\n", 1)
    if how == "alias-cycle":
        return text.replace("  vars:\n", "  vars:\n    loop: &loop {self: *loop}\n", 1)
    if how == "anchor-merge":
        return text.replace("  vars:\n", "  vars:\n    shared: &s {pg_port: 5433}\n    <<: *s\n", 1)
    if how == "tabs":
        return text.replace("    ", "\t", 1)
    return text


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a whole CLI run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_hostile_inventories_fail_cleanly_and_keep_secrets(tmp_path_factory, data):
    work = tmp_path_factory.mktemp("hostile")
    inv = _secret_inventory()
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        hostile_mutation(data.draw, inv)
    try:
        text = hostile_text(data.draw, inv)
    except RecursionError:  # PyYAML's emitter gave up: nothing to test
        return
    (work / "inv.yml").write_text(text, encoding="utf-8", errors="surrogatepass")
    command = data.draw(st.sampled_from(["check", "build"]), label="command")
    args = [command, "-i", "inv.yml"] + (["-q", "-o", "out"] if command == "build" else [])
    tracemalloc.start()  # every Python object the case allocates, the loader's and the expanded aliases included
    try:
        result = invoke(*args, cwd=work)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"the case peaked at {peak >> 20} MiB\ninventory:\n{text[:2000]}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        pytest.fail("".join(traceback.format_exception(result.exception)) + f"\ninventory:\n{text[:2000]}")
    out = result.output + result.stderr
    assert "Traceback" not in out
    assert result.exit_code in (0, 2, 3), out[-3000:]
    if result.exit_code:
        assert any(" error: " in f" {line}" for line in result.stderr.splitlines()), result.stderr[-3000:]
    for secret in (*SECRETS.values(), USER_SECRET):
        assert secret not in out, f"{secret} printed:\n{out[-3000:]}"


@pytest.mark.parametrize(
    "key, value",
    [
        ("ansible_user", "root@evil"),
        ("ansible_user", "-oProxyCommand=x"),
        ("ansible_host", "-oProxyCommand=touch /tmp/x"),
        ("ansible_host", "10.10.10.11 evil"),
        ("node_admin_username", "../../root"),
        ("node_ssh_user", "a b"),
    ],
)
def test_connection_fields_reach_ssh_and_useradd_only_when_well_formed(compile_inv, inventory, key, value):
    """They become the rsync/ssh destination and `useradd --home-dir`: no options, spaces or paths."""
    inventory["all"]["children"]["pg-test"]["hosts"]["10.10.10.11"][key] = value
    with pytest.raises(InventoryError) as caught:
        compile_inv(inventory)
    problems = [p for p in caught.value.report.errors if p.path.endswith(f"10.10.10.11.{key}")]
    assert len(problems) == 1, caught.value.report.errors
    assert ("host name" if key == "ansible_host" else "is not a valid user name") in problems[0].message
