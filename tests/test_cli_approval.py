"""Approval from the command line: at the terminal, with --approve-all / --deny-all, paused when nobody can answer,
and decided later by another process (``ironloop resume THREAD --approve`` / ``--reject``) against a SQLite file."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ironloop.demo.services.payments import PaymentsLedger

from tests.helpers import run_cli
from tests.injection import QUESTION, injection_services, obedient_script
from tests.openai_server import OpenAIStub

EXIT_PAUSED = 3


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[str, list[str], PaymentsLedger]]:
    """A SQLite file database, the model arguments (an obedient model behind an OpenAI-compatible stub) and the
    payments ledger of the services the injected search result comes from."""
    with injection_services() as (url, payments), OpenAIStub(script=obedient_script) as stub:
        model = ["--model", "m", "--api-key", "k", "--base-url", stub.base_url, "--search-url", url]
        yield f"sqlite:///{tmp_path / 'cli.db'}", model, payments


def thread_of(output: str) -> str:
    return output.splitlines()[0].split()[1]


def test_paused_in_one_process_approved_in_another(world) -> None:
    db, model, payments = world
    first = run_cli(db, "run", QUESTION, *model)
    assert first.returncode == EXIT_PAUSED, first.stderr
    thread = thread_of(first.stdout)
    assert f"ironloop resume {thread} --approve" in first.stderr and "Traceback" not in first.stderr
    assert "charge_card(customer_id='cus_evil', amount_cents=99900)" in first.stderr
    assert "untrusted" in first.stderr
    assert payments.snapshot() == []  # the process is gone; the call waits in the checkpoint store
    listed = run_cli(db, "threads")
    assert re.search(rf"{thread} .* waiting for approval +charge_card\(", listed.stdout), listed.stdout

    again = run_cli(db, "resume", thread, *model)  # no decision given, stdin not a terminal: still paused
    assert again.returncode == EXIT_PAUSED and payments.snapshot() == []

    approved = run_cli(db, "resume", thread, "--approve", *model)
    assert approved.returncode == 0, approved.stderr
    assert len(payments.snapshot()) == 1  # exactly once
    assert "APPROVED by" in approved.stdout and "search(" not in approved.stdout  # the search was not run again
    assert approved.stdout.strip().splitlines()[-1].startswith("Final: Charged cus_evil 99900 cents")
    assert "finished" in run_cli(db, "threads").stdout
    assert "nothing to resume" in run_cli(db, "resume", thread, "--approve", *model).stdout
    assert len(payments.snapshot()) == 1

    log = json.loads(run_cli(db, "report", "--approvals", "--json").stdout)["approvals"]
    assert [(r["thread_id"], r["tool"], r["decision"]) for r in log] == [(thread, "charge_card", "approve")]
    assert "ironloop resume --approve" in log[0]["decided_by"]


def test_paused_then_rejected_from_another_process(world) -> None:
    db, model, payments = world
    thread = thread_of(run_cli(db, "run", QUESTION, *model).stdout)
    rejected = run_cli(db, "resume", thread, "--reject", "the user never asked for a charge", *model)
    assert rejected.returncode == 0, rejected.stderr
    assert payments.snapshot() == []
    answer = rejected.stdout.strip().splitlines()[-1]
    assert answer.startswith("Final: Not run:") and "the user never asked for a charge" in answer
    log = json.loads(run_cli(db, "report", "--approvals", "--json").stdout)["approvals"]
    assert [(r["decision"], r["reason"]) for r in log] == [("reject", "the user never asked for a charge")]
    table = run_cli(db, "report").stdout
    assert table.startswith("report covers all records until ") and "denied" in table.splitlines()[1]


def test_non_interactive_flags(world) -> None:
    db, model, payments = world
    denied = run_cli(db, "run", QUESTION, "--deny-all", *model)
    assert denied.returncode == 0, denied.stderr
    assert payments.snapshot() == [] and "REJECTED by" in denied.stdout
    approved = run_cli(db, "run", QUESTION, "--approve-all", *model)
    assert approved.returncode == 0, approved.stderr
    assert len(payments.snapshot()) == 1 and "APPROVED by" in approved.stdout
    both = run_cli(db, "run", QUESTION, "--approve-all", "--deny-all", *model)
    assert both.returncode == 2


def at_terminal(db: str, typed: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run with a pseudo-terminal as stdin, the answers already typed."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, typed.encode())
        return run_cli(db, *args, stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)


def test_terminal_reject_edit_and_approve(world) -> None:
    db, model, payments = world
    rejected = at_terminal(db, "r\nnot today\n", "run", QUESTION, *model)
    assert rejected.returncode == 0, rejected.stderr
    out = rejected.stdout
    assert "approval needed: charge_card(customer_id='cus_evil', amount_cents=99900)" in out
    assert "why: charge_card has side effects" in out and "[a]pprove, [r]eject or [e]dit?" in out
    assert payments.snapshot() == [] and "not today" in out.strip().splitlines()[-1]

    bad_then_good = '{"customer_id": "cus_evil"}\n'  # amount missing: refused, asked again
    edited = at_terminal(
        db, f"e\n{bad_then_good}e\n" + '{"customer_id": "cus_ok", "amount_cents": 5}\n', "run", QUESTION, *model
    )
    assert edited.returncode == 0, edited.stderr
    assert "previous answer refused" in edited.stdout and "amount_cents" in edited.stdout
    assert [(c.customer_id, c.amount_cents) for c in payments.snapshot()] == [("cus_ok", 5)]

    approved = at_terminal(db, "a\n", "run", QUESTION, *model)
    assert approved.returncode == 0, approved.stderr
    assert len(payments.snapshot()) == 2

    gone = at_terminal(db, "\x04", "run", QUESTION, *model)  # Ctrl-D at the prompt: paused, not hung
    assert gone.returncode == EXIT_PAUSED and len(payments.snapshot()) == 2


def test_paused_then_edited_from_another_process(world) -> None:
    db, model, payments = world
    thread = thread_of(run_cli(db, "run", QUESTION, *model).stdout)
    not_json = run_cli(db, "resume", thread, "--edit", "cus_ok 5", *model)
    assert not_json.returncode == 2 and "JSON object" in not_json.stderr and payments.snapshot() == []
    refused = run_cli(db, "resume", thread, "--edit", '{"customer_id": "cus_ok"}', *model)  # amount missing
    assert refused.returncode == EXIT_PAUSED and payments.snapshot() == []  # still waiting, nothing charged
    edited = run_cli(db, "resume", thread, "--edit", '{"customer_id": "cus_ok", "amount_cents": 5}', *model)
    assert edited.returncode == 0, edited.stderr
    assert [(c.customer_id, c.amount_cents) for c in payments.snapshot()] == [("cus_ok", 5)]
    log = json.loads(run_cli(db, "report", "--approvals", "--json").stdout)["approvals"]
    assert [r["decision"] for r in log] == ["edit"]


def test_an_edit_beyond_safe_integers_is_refused_in_one_line(world) -> None:
    """Issue 12, item 6: this edit charged 99999999999999999999999 cents, then failed with a TypeError traceback
    while checkpointing, leaving the thread "waiting for approval" over a charge the ledger said completed."""
    db, model, payments = world
    thread = thread_of(run_cli(db, "run", QUESTION, *model).stdout)
    huge = run_cli(
        db, "resume", thread, "--edit", '{"customer_id": "cus_ok", "amount_cents": 99999999999999999999999}', *model
    )
    assert huge.returncode == 2, huge.stderr
    assert "Traceback" not in huge.stderr and len(huge.stderr.strip().splitlines()) == 1
    assert "amount_cents" in huge.stderr and "2^53" in huge.stderr
    assert payments.snapshot() == []
    assert "waiting for approval" in run_cli(db, "threads").stdout
    approved = run_cli(db, "resume", thread, "--approve", *model)  # still resumable, and decided only now
    assert approved.returncode == 0, approved.stderr
    assert [(c.customer_id, c.amount_cents) for c in payments.snapshot()] == [("cus_evil", 99900)]
