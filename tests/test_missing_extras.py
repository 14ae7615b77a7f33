"""An optional dependency that is not installed is one line naming the extra that installs it, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.blocked_imports import run_without


@pytest.mark.parametrize(
    ("url", "driver", "extra"),
    [
        ("postgresql://postgres@127.0.0.1:5432/test", "psycopg", "postgres"),
        ("postgres://postgres@127.0.0.1/test", "psycopg", "postgres"),
        ("mysql://root@127.0.0.1:3306/test", "pymysql", "mysql"),
        ("mariadb+pymysql://root@127.0.0.1/test", "pymysql", "mysql"),
    ],
)
def test_a_database_url_without_its_driver_names_the_extra(url: str, driver: str, extra: str) -> None:
    result = run_without([driver], "threads", "--db", url)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("ironloop: error: cannot use "), result.stderr
    assert f"its driver {driver} is not installed; run: pip install 'ironloop[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_blocker_blocks_nothing_else(postgres_url: str) -> None:
    """The same command with another module blocked reaches the database: the line above comes from the driver."""
    result = run_without(["pymysql"], "threads", "--db", postgres_url)
    assert result.returncode == 0, result.stderr
    assert "ironloop[" not in result.stderr


def test_bench_chaos_without_matplotlib_stops_before_it_starts(tmp_path: Path) -> None:
    result = run_without(["matplotlib"], "bench", "chaos", "--tasks", "1", "--out-dir", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""  # no contender ran
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("ironloop bench chaos: the plot needs matplotlib"), result.stderr
    assert "pip install 'ironloop[bench]', or pass --no-plot" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_bench_chaos_without_matplotlib_runs_with_no_plot(tmp_path: Path) -> None:
    result = run_without(
        ["matplotlib"],
        *("bench", "chaos", "--tasks", "1", "--contenders", "ironloop", "--profile", "none", "--no-plot"),
        *("--no-parallel", "--out-dir", str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chaos-none.json", "chaos-none.md"]


def test_bench_scale_without_matplotlib_stops_before_it_starts(postgres_url: str) -> None:
    result = run_without(["matplotlib"], "bench", "scale", "--db", postgres_url, "--workers", "1", "--tasks", "1")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "the plot needs matplotlib" in result.stderr and "pip install 'ironloop[bench]'" in result.stderr
