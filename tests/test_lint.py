"""`sty lint` and the check runner.

Fast: the runner's rules (unknown checker, missing program, CI, things this machine cannot install, a
crashing checker) and lint's usage errors. Slow (real programs, root): `sty lint` passes the shipped
outputs/ with nothing skipped, names host, file and the program's message for a broken copy (exit 3), and
every Pigsty example inventory of ../shared/pigsty-conf builds and lints.

The corpus lint samples one host per distinct role of each inventory (its modules, its PostgreSQL role and
the set of checkers its manifest names): the other hosts of a role differ only in addresses and sequence
numbers. Peers are still every host of the inventory, so Patroni and etcd meet their real clusters.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from shared import CORPUS

from sty.apply import lint as lint_mod
from sty.apply.checks import CHECKERS, FAIL, PASS, SKIP, CheckContext, CheckResult
from sty.apply.checks.runner import run_check, run_host_checks
from sty.apply.checks.util import NotInstalled, Unavailable
from sty.cli import main

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ROOT / "outputs"

# the reasons a corpus check may be skipped for: what this machine cannot install
ALLOWED_SKIP = re.compile(
    r"PostgreSQL \d+ is not installed here and cannot be|extension \S+ \(shared_preload_libraries\) cannot be installed"
)
# known failures of the corpus, each a compiler bug reported in the issue: (checker, the program's message, why).
# A corpus test whose only failures are known ones is an xfail; test_known_corpus_failures_still_occur fails once
# one of them no longer occurs anywhere (fixed: remove it here).
KNOWN_FAILURES: dict[str, tuple[str, str, str]] = {
    # id: (checker, a line of the program's output, why) -- none today: pgBackRest's block option gets
    # `beta=y` on Debian 12 and pgsql declares the server certificate pgbouncer's TLS names
}


# --------------------------------------------------------------------------------------------------
# the runner's rules (fake checkers)
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_checkers():
    names = []

    def add(name, fn):
        CHECKERS[name] = fn
        names.append(name)

    yield add
    for n in names:
        CHECKERS.pop(n, None)


def _manifest(*checks):
    return {"address": "10.99.0.1", "checks": [{"checker": c, "files": ["/x"], "where": w} for c, w in checks]}


def test_runner_rules(tmp_path, fake_checkers, monkeypatch):
    monkeypatch.delenv("CI", raising=False)

    def missing(ctx):
        raise NotInstalled("sty-prog", "sty-pkg")

    def cannot(ctx):
        raise Unavailable("PostgreSQL 99 is not installed here and cannot be")

    def crash(ctx):
        raise KeyError("boom")

    fake_checkers("t-pass", lambda ctx: CheckResult("t-pass", ctx.files, PASS, "fine"))
    fake_checkers("t-missing", missing)
    fake_checkers("t-cannot", cannot)
    fake_checkers("t-crash", crash)
    fake_checkers(
        "t-selfskip", lambda ctx: CheckResult("t-selfskip", ctx.files, SKIP, reason="program x is not installed")
    )
    m = _manifest(
        ("t-pass", "build"), ("t-missing", "both"), ("t-cannot", "build"), ("t-crash", "build"),
        ("t-selfskip", "build"), ("t-nobody", "build"), ("t-pass", "host"),
    )  # fmt: skip
    results = run_host_checks(tmp_path, m, {"build", "both"})
    got = [(r.checker, r.status) for r in results]
    assert got == [
        ("t-pass", PASS), ("t-missing", SKIP), ("t-cannot", SKIP), ("t-crash", FAIL), ("t-selfskip", SKIP),
        ("t-nobody", SKIP),
    ]  # fmt: skip
    reasons = {r.checker: r.reason for r in results}
    assert reasons["t-missing"] == "program sty-prog is not installed (Debian package sty-pkg)"
    assert reasons["t-nobody"] == "no checker named t-nobody"
    assert "KeyError: 'boom'" in results[3].output
    # the apply stage runs host and both
    assert [r.checker for r in run_host_checks(tmp_path, m, {"host", "both"})] == ["t-missing", "t-pass"]
    # CI skips nothing that could be installed; what cannot be installed stays a skip
    monkeypatch.setenv("CI", "true")
    results = {r.checker: r for r in run_host_checks(tmp_path, m, {"build", "both"})}
    assert results["t-missing"].status == FAIL and "CI must skip nothing" in results["t-missing"].output
    assert results["t-selfskip"].status == FAIL
    assert results["t-cannot"].status == SKIP


def test_runner_passes_context(tmp_path, fake_checkers):
    seen = {}

    def spy(ctx: CheckContext):
        seen.update(host=ctx.host, files=ctx.files, secret=ctx.secret("a/b"), peers=ctx.peers, path=ctx.path("/x"))
        return CheckResult("t-spy", ctx.files, PASS)

    fake_checkers("t-spy", spy)
    run_host_checks(
        tmp_path, _manifest(("t-spy", "build")), {"build"}, secret=lambda n: f"S:{n}", peers={"p": tmp_path}
    )
    assert seen == {
        "host": "10.99.0.1",
        "files": ("/x",),
        "secret": "S:a/b",
        "peers": {"p": tmp_path},
        "path": tmp_path / "x",
    }
    ctx = CheckContext(tmp_path, "h", {}, ())
    assert run_check(ctx, "t-spy").status == PASS


def test_lint_needs_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(main, ["lint", "-o", str(OUTPUTS)])
    assert result.exit_code == 2
    assert "error: sty lint needs root" in result.output


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_lint_usage_errors(tmp_path):
    result = CliRunner().invoke(main, ["lint", "-o", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no such directory" in result.output
    result = CliRunner().invoke(main, ["lint", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "no host bundles" in result.output
    result = CliRunner().invoke(main, ["lint", "-o", str(OUTPUTS), "--limit", "sty-no-such-cluster"])
    assert result.exit_code == 2 and "target 'sty-no-such-cluster' is not" in result.output


def test_limit_grammar():
    manifests = {
        "10.0.0.1": {"groups": ["etcd", "infra"], "identity": {"pgsql": {"cluster": "pg-meta"}}},
        "10.0.0.2": {"groups": ["pg-test"], "identity": {"pgsql": {"cluster": "pg-test"}}},
    }
    assert lint_mod.select_bundles(manifests, None) == ["10.0.0.1", "10.0.0.2"]
    assert lint_mod.select_bundles(manifests, "pg-test") == ["10.0.0.2"]
    assert lint_mod.select_bundles(manifests, "etcd") == ["10.0.0.1"]
    assert lint_mod.select_bundles(manifests, "10.0.0.2,pg-meta") == ["10.0.0.1", "10.0.0.2"]
    with pytest.raises(lint_mod.UsageError):
        lint_mod.select_bundles(manifests, "nope")


# --------------------------------------------------------------------------------------------------
# sty lint on real bundles (slow, root)
# --------------------------------------------------------------------------------------------------


def _root():
    if os.geteuid() != 0:
        pytest.skip("sty lint needs root")


@pytest.mark.slow
def test_lint_shipped_outputs_pass_with_nothing_skipped():
    _root()
    start = time.monotonic()
    result = CliRunner().invoke(main, ["lint", "-o", str(OUTPUTS)])
    took = time.monotonic() - start
    assert result.exit_code == 0, result.output
    assert re.search(r"0 failed, 0 skipped in [\d.]+s", result.output), result.output
    assert "\n  skip " not in result.output and "skipped:" not in result.output, result.output
    print(f"sty lint on outputs/: {took:.1f}s")


@pytest.mark.slow
def test_lint_broken_copy_names_host_file_and_message(tmp_path):
    _root()
    out = tmp_path / "outputs"
    shutil.copytree(OUTPUTS, out)
    host = "10.10.10.11"
    cfg = sorted((out / host / "etc/haproxy/conf.d").glob("*.cfg"))[0]
    cfg.write_text(cfg.read_text().replace("option httpchk", "option httpchekk", 1))
    hba = out / host / "pg/conf/pg_hba.conf"
    hba.write_text(hba.read_text() + "host all all 127.0.0.1/33 scram-sha-256\n")
    result = CliRunner().invoke(main, ["lint", "-o", str(out), "--limit", host])
    assert result.exit_code == 3, result.output
    assert re.search(rf"^{re.escape(host)}: \d+ check\(s\): \d+ passed, [1-9]\d* failed", result.output, re.M)
    assert "FAIL haproxy: /etc/haproxy/haproxy.cfg, /etc/haproxy/conf.d" in result.output
    assert f"/etc/haproxy/conf.d/{cfg.name}:" in result.output and "unknown option 'httpchekk'" in result.output
    assert "FAIL postgres-hba: /pg/conf/pg_hba.conf" in result.output
    assert 'invalid CIDR mask in address "127.0.0.1/33"' in result.output


# --------------------------------------------------------------------------------------------------
# the corpus: every Pigsty example inventory builds and lints (slow, root)
# --------------------------------------------------------------------------------------------------

INVENTORIES = sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.yml"))


def _role(manifest: dict) -> tuple:
    pg = (manifest.get("identity") or {}).get("pgsql") or {}
    return (
        tuple(manifest.get("modules") or []),
        pg.get("role"),
        tuple(sorted({c["checker"] for c in manifest.get("checks") or []})),
    )


def sample(manifests: dict[str, dict]) -> list[str]:
    """One host per distinct role."""
    seen, chosen = set(), []
    for ip, m in manifests.items():
        if _role(m) not in seen:
            seen.add(_role(m))
            chosen.append(ip)
    return chosen


@pytest.fixture(scope="session")
def corpus_lint(tmp_path_factory):
    """{inventory: {ip: [CheckResult]}} for the sampled hosts of every corpus inventory, 2 hosts at a time."""
    _root()
    from sty.compiler.build import build
    from sty.compiler.pipeline import compile_fleet

    base = tmp_path_factory.mktemp("corpus-lint")
    jobs = []
    start = time.monotonic()
    for name in INVENTORIES:
        out = base / name.replace("/", "_").removesuffix(".yml")
        build(compile_fleet(CORPUS / name), out)
        manifests = lint_mod.discover(out)
        jobs += [(name, out, ip, manifests[ip], list(manifests)) for ip in sample(manifests)]
    lint_mod._lookup_packages([j[3] for j in jobs])
    built = time.monotonic()
    results: dict[str, dict[str, list[CheckResult]]] = {name: {} for name in INVENTORIES}
    with lint_mod._pg_templates([j[3] for j in jobs]), ThreadPoolExecutor(max_workers=2) as pool:
        futures = [(name, ip, pool.submit(lint_mod.lint_host, out, ip, m, hosts)) for name, out, ip, m, hosts in jobs]
        for name, ip, fut in futures:
            results[name][ip] = fut.result()
    print(
        f"corpus: {len(INVENTORIES)} inventories built in {built - start:.1f}s; {len(jobs)} sampled hosts "
        f"linted in {time.monotonic() - built:.1f}s"
    )
    return results


def _known(r: CheckResult) -> str | None:
    for key, (checker, message, _) in KNOWN_FAILURES.items():
        if r.checker == checker and message in (r.output or ""):
            return key
    return None


@pytest.mark.slow
@pytest.mark.parametrize("inventory", INVENTORIES)
def test_corpus_inventory_lints(inventory, corpus_lint):
    hosts = corpus_lint[inventory]
    assert hosts, f"{inventory}: no host sampled"
    problems, known = [], set()
    for ip, results in hosts.items():
        for r in results:
            where = f"{inventory} {ip} {r.checker} {', '.join(r.files)}"
            if r.status == FAIL and _known(r):
                known.add(_known(r))
            elif r.status == FAIL:
                problems.append(f"{where}: FAIL\n{r.output}")
            elif r.status == SKIP and not ALLOWED_SKIP.search(r.reason or ""):
                problems.append(f"{where}: skipped: {r.reason}")
    assert not problems, "\n".join(problems)
    if known:
        pytest.xfail("; ".join(KNOWN_FAILURES[k][2] for k in sorted(known)))


@pytest.mark.slow
def test_known_corpus_failures_still_occur(corpus_lint):
    seen = {_known(r) for hosts in corpus_lint.values() for rs in hosts.values() for r in rs if r.status == FAIL}
    fixed = sorted(set(KNOWN_FAILURES) - seen)
    assert not fixed, f"fixed, remove from KNOWN_FAILURES in tests/test_lint.py: {fixed}"
