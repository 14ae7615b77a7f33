"""LangGraph's checkpointer conformance suite against `SQLAlchemySaver` on SQLite, PostgreSQL and MariaDB.

Every base capability must pass, and so must every optional one: the saver implements them all, so the suite
detects and tests them all (a capability that stopped being detected fails too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from ironloop.checkpoints import SQLAlchemySaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.report import CapabilityReport

pytestmark = pytest.mark.timeout(120)


def summary(report: CapabilityReport) -> str:
    """One line per capability with its counts, then the conformance level."""
    lines = [f"{report.checkpointer_name}: {report.conformance_level()}"]
    for name, result in sorted(report.results.items()):
        state = "not detected" if not result.detected else ("ok" if result.passed else "FAILED")
        lines.append(
            f"  {name:16s} {state:12s} passed {result.tests_passed:2d}  failed {result.tests_failed:2d}"
            f"  skipped {result.tests_skipped}"
        )
        lines += [f"      {failure}" for failure in result.failures]
    return "\n".join(lines)


async def test_conformance(checkpoint_db_url: str) -> None:
    backend = checkpoint_db_url.split(":", 1)[0].split("+", 1)[0]

    @checkpointer_test(name=f"SQLAlchemySaver[{backend}]")
    async def saver() -> AsyncIterator[SQLAlchemySaver]:
        async with SQLAlchemySaver.from_url(checkpoint_db_url) as instance:
            yield instance

    report = await validate(saver)
    text = summary(report)
    print("\n" + text)

    assert report.passed_all_base(), text
    assert {name for name, result in report.results.items() if result.detected} == {c.value for c in ALL_CAPABILITIES}
    assert report.passed_all(), text
    assert report.conformance_level() == "FULL", text
    assert sum(r.tests_passed for r in report.results.values()) >= 80, text  # the whole suite ran, not a stub
    assert all(r.tests_failed == 0 for r in report.results.values()), text
