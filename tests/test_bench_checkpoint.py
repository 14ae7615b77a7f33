"""Smoke test of `ironloop bench checkpoint`: every measure comes out, on SQLite and PostgreSQL (no timing checks)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ironloop.benchmarks import checkpoint

MEASURES = {"put", "put_writes", "get_tuple", "list", "demo_task"}


def test_checkpoint_benchmark_reports_every_measure(tmp_path: Path, postgres_url: str) -> None:
    parser = argparse.ArgumentParser()
    checkpoint.add_arguments(parser)
    out = tmp_path / "checkpoint.json"
    args = parser.parse_args(
        ["--rounds", "1", "--ops", "20", "--tasks", "2", "--postgres-url", postgres_url, "--out", str(out)]
    )
    assert checkpoint.run(args) == 0
    report = json.loads(out.read_text())
    for database in ("sqlite", "postgresql"):
        assert set(report[database]) == MEASURES
        for row in report[database].values():
            assert row["ironloop_ops_s"] > 0 and row["official_ops_s"] > 0 and row["ratio"] > 0
    assert report["ledger"]["ledger_rows_written"] > 0 and report["ledger"]["saver_and_ledger_tasks_s"] > 0
    assert "| PostgreSQL | put |" in out.with_suffix(".md").read_text()
