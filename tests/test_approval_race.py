"""Issue 12, item 5: ``ironloop resume T --approve`` and ``ironloop resume T --reject`` started together.

Real processes race on one paused thread, on SQLite and PostgreSQL: the first decision wins and runs; the second
is told "already decided: ... approved by X at T" (exit 1) and runs nothing. One decision is recorded, the
payments service agrees with the thread's final answer, and the thread never forks into two model branches (its
checkpoints form one chain, written by one runner at a time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from ironloop.checkpoints import make_engine
from ironloop.checkpoints.leases import writer_record
from ironloop.checkpoints.schema import checkpoints

from tests.injection import QUESTION, injection_services, obedient_script
from tests.openai_server import OpenAIStub

EXIT_PAUSED = 3


def command(db: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "ironloop", *args, "--db", db]


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IRONLOOP_"))}


def together(*commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Start the processes at once; wait for all."""
    started = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
        for c in commands
    ]
    done = []
    for process, argv in zip(started, commands, strict=True):
        out, err = process.communicate(timeout=240)
        done.append(subprocess.CompletedProcess(argv, process.returncode, out, err))
    return done


@pytest.fixture(params=["sqlite", "postgresql"])
def race_db(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'race.db'}"
    return request.getfixturevalue("scratch_databases").new("postgresql")


@pytest.mark.timeout(600)
def test_approve_and_reject_at_once_one_decision_wins(race_db: str) -> None:
    with injection_services() as (url, payments), OpenAIStub(script=obedient_script) as stub:
        model = ["--model", "m", "--api-key", "k", "--base-url", stub.base_url, "--search-url", url]
        runs = together(*[command(race_db, "run", QUESTION, *model) for _ in range(3)])
        assert all(r.returncode == EXIT_PAUSED for r in runs), [r.stderr for r in runs]
        threads = [r.stdout.splitlines()[0].split()[1] for r in runs]
        # Two threads get --approve and --reject at once, the third two --approve at once.
        pairs = [("--approve",), ("--reject", "no")], [("--approve",), ("--reject", "no")], [("--approve",)] * 2
        argv = [
            command(race_db, "resume", t, *flags, *model)
            for t, pair in zip(threads, pairs, strict=True)
            for flags in pair
        ]
        results = together(*argv)
        charges = Counter(c.customer_id for c in payments.snapshot())
    engine = make_engine(race_db)
    try:
        log = json.loads(subprocess.run(command(race_db, "report", "--approvals", "--json"), capture_output=True,
                                        text=True, env=environment(), timeout=120).stdout)["approvals"]  # fmt: skip
        for index, thread in enumerate(threads):
            first, second = results[2 * index], results[2 * index + 1]
            outcome = [first.returncode, second.returncode]
            assert sorted(outcome) == [0, 1], (first.stdout, first.stderr, second.stdout, second.stderr)
            winner, loser = (first, second) if first.returncode == 0 else (second, first)
            assert "already decided: charge_card [" in loser.stderr, loser.stderr
            assert "Traceback" not in loser.stderr and "APPROVED" not in loser.stdout + "REJECTED" not in loser.stdout
            decided = [r for r in log if r["thread_id"] == thread]
            assert len(decided) == 1, decided  # one decision recorded
            approved = "--approve" in winner.args
            assert decided[0]["decision"] == ("approve" if approved else "reject")
            final = winner.stdout.strip().splitlines()[-1]
            if approved:
                assert final.startswith("Final: Charged cus_evil 99900 cents"), final
                assert "approved by" in loser.stderr
            else:
                assert final.startswith("Final: Not run"), final
                assert "rejected" in loser.stderr
            assert writer_record(engine, thread).problems == []
            with engine.connect() as connection:
                parents = Counter(
                    row[0]
                    for row in connection.execute(
                        checkpoints.select()
                        .with_only_columns(checkpoints.c.parent_checkpoint_id)
                        .where(checkpoints.c.thread_id == thread, checkpoints.c.checkpoint_ns == "")
                    )
                )
            assert max(parents.values()) == 1, parents  # one chain of checkpoints: no second model branch
        approvals_won = sum(
            1
            for i in range(3)
            if "--approve" in (results[2 * i] if results[2 * i].returncode == 0 else results[2 * i + 1]).args
        )
        assert charges["cus_evil"] == approvals_won  # the service charged exactly for the approvals that won
    finally:
        engine.dispose()
