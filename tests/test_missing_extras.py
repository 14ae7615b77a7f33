"""An optional dependency that is not installed is one line naming the extra that installs it, not a traceback."""

from __future__ import annotations

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
