"""Smoke test of ``ironloop bench overhead --quick``: every measure comes out for every contender, every task of the
overload measure answers correctly, and the table and plot are written (counts and shapes, no timing checks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ironloop.benchmarks.overhead import CONTENDERS, MEASURES


@pytest.mark.timeout(1200)  # a few minutes on a loaded 2-core machine
def test_quick_mode_reports_every_measure(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ironloop", "bench", "overhead", "--quick", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        env={k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IRONLOOP_"))},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "overhead-quick.json").read_text())
    results = report["results"]
    assert set(results) == set(MEASURES)
    for mode in ("invoke", "ainvoke", "invoke_sqlite"):
        assert set(results["cpu"][mode]["cpu_ms_per_task"]) == set(CONTENDERS)
    for row in results["overload"].values():
        for name in CONTENDERS:
            assert row[name]["correct"] == row[name]["tasks"]
    for row in results["calls_per_turn"].values():
        assert all(value > 0 for value in row["bytes_per_call"].values())
    assert all(results["memory"][name]["kib_per_task_in_flight"] is not None for name in CONTENDERS)
    table = (tmp_path / "overhead-quick.md").read_text()
    assert "| CPU ms per seed task, invoke |" in table and "tasks at once: correct" in table
    assert (tmp_path / "overhead-quick.png").stat().st_size > 0


def test_bad_options_are_one_line_and_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ironloop", "bench", "overhead", "--measures", "cpu,nonsense"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "ironloop bench overhead: unknown measure or contender: nonsense"
