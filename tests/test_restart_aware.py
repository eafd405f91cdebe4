"""Restart-aware changes: a PostgreSQL setting read only at start is planned as a rolling restart, named in the
plan, and a major-version change is refused by build instead of being shipped as a configuration change."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import dump_inventory, render_fleet, run_sty

from sty.compiler.modules.pgsql.restart import RESTART_FILE, postmaster_settings


def _pg_test(data: dict) -> dict:
    return data["all"]["children"]["pg-test"]["vars"]


def _build(work: Path) -> None:
    run_sty("build", "-q", cwd=work, check_rc=0)


def test_restart_record_holds_only_postmaster_settings(inventory, tmp_path):
    _pg_test(inventory)["pg_parameters"] = {"work_mem": "8MB", "max_connections": 150, "pg_stat_statements.max": 3000}
    fleet = render_fleet(inventory, tmp_path)
    record = fleet.yaml("10.10.10.11", RESTART_FILE)
    assert record["max_connections"] == "150" and record["pg_stat_statements.max"] == "3000"
    assert record["shared_buffers"] and record["shared_preload_libraries"] and record["port"] == "5432"
    assert "work_mem" not in record and "log_min_duration_statement" not in record
    entry = next(f for f in fleet.manifest("10.10.10.11")["files"] if f["path"] == RESTART_FILE)
    assert entry["actions"] == [{"action": "pg-rolling-restart"}]


def test_postmaster_settings_follow_the_major():
    doc = {
        "bootstrap": {"dcs": {"postgresql": {"parameters": {"max_connections": "100"}}}},
        "postgresql": {"listen": "0.0.0.0:5432", "parameters": {"io_method": "worker", "autovacuum_max_workers": "3"}},
    }
    assert "io_method" not in postmaster_settings(doc, 17) and "autovacuum_max_workers" in postmaster_settings(doc, 17)
    assert postmaster_settings(doc, 18)["io_method"] == "worker"  # postmaster from 18 on
    assert "autovacuum_max_workers" not in postmaster_settings(doc, 18)  # sighup from 18 on


def test_impact_line_names_the_rolling_restart(workdir: Path):
    _build(workdir)
    data = yaml.safe_load((workdir / "pigsty.yml").read_text())
    _pg_test(data)["pg_parameters"] = {"max_connections": 150, "shared_preload_libraries": "pg_stat_statements"}
    dump_inventory(data, workdir / "pigsty.yml")
    out = run_sty("diff", "--stat", cwd=workdir, check_rc=1).stdout
    assert out.startswith("~ pg-test: 3 hosts (10.10.10.11, 10.10.10.12, 10.10.10.13): changes"), out
    lines = out.splitlines()
    assert "    => restart: rolling restart of pg-test: max_connections, shared_preload_libraries" in lines, out
    assert "    => reload: patroni-dcs-config (once)" in lines  # the DCS change that carries max_connections


def test_a_reloadable_change_plans_no_restart(workdir: Path):
    _build(workdir)
    data = yaml.safe_load((workdir / "pigsty.yml").read_text())
    _pg_test(data)["pg_parameters"] = {"work_mem": "8MB"}
    dump_inventory(data, workdir / "pigsty.yml")
    out = run_sty("diff", "--stat", cwd=workdir, check_rc=1).stdout
    assert "patroni-reload" in out and "rolling restart" not in out, out


def test_a_new_member_plans_no_restart(workdir: Path):
    _build(workdir)
    data = yaml.safe_load((workdir / "pigsty.yml").read_text())
    data["all"]["children"]["pg-test"]["hosts"]["10.10.10.14"] = {"pg_seq": 4, "pg_role": "replica"}
    dump_inventory(data, workdir / "pigsty.yml")
    out = run_sty("diff", "--stat", cwd=workdir, check_rc=1).stdout
    assert "+ 10.10.10.14 (pg-test): new host" in out, out
    assert "rolling restart" not in out and "pg-rolling-restart" not in out, out


def test_major_version_change_is_refused(workdir: Path):
    _build(workdir)
    before = {p: p.read_bytes() for p in (workdir / "outputs").rglob("*") if p.is_file()}
    data = yaml.safe_load((workdir / "pigsty.yml").read_text())
    _pg_test(data)["pg_version"] = 16
    dump_inventory(data, workdir / "pigsty.yml")
    build = run_sty("build", cwd=workdir, check_rc=2)
    said = build.stderr
    assert "all.children.pg-test.vars.pg_version: pg-test runs PostgreSQL" in said, said
    assert "docs/operations.md" in said and "Traceback" not in said
    assert said.count("pg-test runs PostgreSQL") == 1  # one sentence for the cluster, not one per member
    assert {p: p.read_bytes() for p in (workdir / "outputs").rglob("*") if p.is_file()} == before
    assert run_sty("diff", "--stat", cwd=workdir, check_rc=2).stderr.count("major-version change") == 1
    run_sty("build", "-q", "--allow-upgrade", cwd=workdir, check_rc=0)
    manifest = yaml.safe_load((workdir / "outputs" / "10.10.10.11.yml").read_text())
    assert manifest["identity"]["pgsql"]["version"] == 16
    run_sty("build", "-q", cwd=workdir, check_rc=0)  # accepted once: the new version is the one outputs/ holds


def test_major_version_is_read_from_committed_manifests(workdir: Path):
    """A fresh clone has outputs/ but no incremental state: the committed manifests pin the version."""
    import shutil

    _build(workdir)
    shutil.rmtree(workdir / ".sty")
    data = yaml.safe_load((workdir / "pigsty.yml").read_text())
    _pg_test(data)["pg_version"] = 17
    dump_inventory(data, workdir / "pigsty.yml")
    assert "pg-test runs PostgreSQL" in run_sty("build", cwd=workdir, check_rc=2).stderr


def test_misspelt_or_foreign_settings_are_errors_with_a_suggestion(inventory, compile_inv):
    import pytest

    from sty.compiler.errors import InventoryError

    _pg_test(inventory)["pg_parameters"] = {"max_conections": 100, "io_method": "worker", "pg_stat_statements.max": 1}
    with pytest.raises(InventoryError) as caught:
        compile_inv(inventory)
    said = {p.path: p.message for p in caught.value.report.errors}
    base = "all.children.pg-test.vars.pg_parameters"
    assert said[f"{base}.max_conections"].endswith("has no setting max_conections; did you mean max_connections?")
    assert "has no setting io_method" in said[f"{base}.io_method"]  # io_method arrived in PostgreSQL 18
    assert len(said) == 2  # extension settings (with a dot) are not judged
    _pg_test(inventory)["pg_parameters"] = {"io_method": "worker"}
    _pg_test(inventory)["pg_version"] = 18
    compile_inv(inventory)
