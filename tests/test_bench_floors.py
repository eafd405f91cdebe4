"""tests/bench_floors.py measures and prints; these keep its arithmetic and its file walk honest."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_floors  # noqa: E402


def test_the_write_floor_writes_files_of_the_sizes_found(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    (outputs / "10.0.0.1" / "etc").mkdir(parents=True)
    (outputs / "10.0.0.1.yml").write_bytes(b"a" * 10)
    (outputs / "10.0.0.1" / "etc" / "hosts").write_bytes(b"b" * 300)
    (outputs / "10.0.0.1" / "etc" / "empty").write_bytes(b"")
    seconds, files, size = bench_floors.write_time(outputs, tmp_path / "scratch")
    assert (files, size) == (3, 310) and seconds >= 0
    written = {p.relative_to(tmp_path / "scratch"): p.stat().st_size for p in (tmp_path / "scratch").rglob("*")}
    assert written[Path("10.0.0.1/etc/hosts")] == 300 and written[Path("10.0.0.1.yml")] == 10
    assert not [p for p in written if p.name.endswith(".tmp")]  # every temporary renamed into place


@pytest.mark.parametrize(("scram_ms", "reachable"), [(0.0, True), (7.0, False)])
def test_a_full_build_is_called_out_of_reach_only_when_its_floor_passes_the_target(
    capsys: pytest.CaptureFixture[str], scram_ms: float, reachable: bool
) -> None:
    phases = {"wall": 20.0, "phases": {"render": {"cpu": 3.0}, "bundle": {"cpu": 5.0}, "diff": None}}
    bench_floors.report(1000, 0.07, 0.2, 0.2, 1200, scram_ms / 1000, 2.0, 52_000, 150 << 20, 3.0, 1.0, phases)
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("full build, 1000 hosts"))
    # floor = start + parse + (scram + write) / 2 = 0.2 + 0.2 + (1200 * scram + 2.0) / 2
    expected = 0.4 + (1.2 * scram_ms + 2.0) / 2
    assert f"floor {expected:5.1f} s" in line
    assert ("out of reach" in line) is not reachable
    assert "bundle 5.0, render 3.0" in out  # the one-worker build's CPU, largest first
