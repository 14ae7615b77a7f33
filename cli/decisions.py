"""One runner per thread and one decision per waiting call, for the commands that run a thread in this process.

`one_runner` wraps a run: it claims the command's decision (``--approve``, ``--reject``, ``--edit``) for the calls
the user saw waiting, before anything else (the first process to claim wins: `AlreadyDecidedError`), then holds
the thread's lease for the whole run (`checkpoints.leases`; a second process waits for the first to finish). The
run answers approval requests with `RecordedApprover`: a call someone already decided gets that decision; any
other is asked of the command's own approver (terminal, flags), and that answer is claimed before it is used.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ironloop.checkpoints.decisions import AlreadyDecidedError, DecisionBook, DecisionRun, WaitingCall
from ironloop.checkpoints.leases import Runner, ThreadLeases
from ironloop.cli.approver import Approver, describe_request, who
from ironloop.graph.status import pending_approvals
from langgraph.types import Interrupt
from sqlalchemy import Engine


class NothingToDecide(Exception):
    """A decision was given for a thread where no call waits for one (and nobody decided one)."""


class ContinuedElsewhere(Exception):
    """The decision this command claimed was applied by another process while this one waited for the thread."""


def checkpoint_of(snapshot: Any) -> str:
    return str(snapshot.config["configurable"]["checkpoint_id"])


@dataclass
class RecordedApprover:
    """Answers with the recorded decisions; asks ``inner`` only for calls nobody decided, and records its answers."""

    run: DecisionRun
    agent: Any
    config: dict[str, Any]
    inner: Approver
    out: Any = None
    told: set[str] = field(default_factory=set)

    def decide(self, requests: Sequence[Interrupt]) -> dict[str, Any] | None:
        checkpoint = checkpoint_of(self.agent.get_state(self.config))
        found, missing = self.run.answers(checkpoint, requests)
        if missing:
            answers = self.inner.decide(missing)
            if answers is None:
                return None
            try:
                for request in missing:
                    call = WaitingCall.of(request)
                    self.run.book.claim(self.run.thread_id, checkpoint, [call], answers[request.id])
            except AlreadyDecidedError:  # decided elsewhere meanwhile: the first decision stands
                found, missing = self.run.answers(checkpoint, requests)
                if missing:
                    return None
            else:
                found, _ = self.run.answers(checkpoint, requests)
        for request in requests:
            standing = self.run.standing(checkpoint, WaitingCall.of(request).tool_call_id)
            if standing is not None and standing.key not in self.told:
                self.told.add(standing.key)
                value = dict(request.value) if isinstance(request.value, Mapping) else {}
                print(f"approval: {describe_request(value)} {standing.describe().split('] ', 1)[1]}", file=self.out)
        return found


@contextlib.contextmanager
def one_runner(
    engine: Engine,
    agent: Any,
    config: dict[str, Any],
    approver: Approver,
    decision: Mapping[str, Any] | None = None,
    *,
    command: str = "ironloop",
) -> Iterator[RecordedApprover]:
    """Claim ``decision`` for the calls waiting now (if any), then hold the thread's lease while the block runs.

    Raises `AlreadyDecidedError` when another process decided first, and `ContinuedElsewhere` when the claimed
    decision was applied by another process while this one waited for the thread.
    """
    thread = config["configurable"]["thread_id"]
    book = DecisionBook(engine)
    run = DecisionRun(book, thread)
    claimed: list[str] = []
    if decision is not None:
        snapshot = agent.get_state(config)
        waiting = [WaitingCall.of(request) for request in pending_approvals(snapshot)]
        if not waiting:  # decided and moving on (another process got there first), or never waiting
            last = book.last(thread, limit=1)
            if last:
                raise AlreadyDecidedError(last)
            raise NothingToDecide(
                f"no call of thread {thread} waits for a decision; `ironloop resume {thread}` continues it"
            )
        book.claim(thread, checkpoint_of(snapshot), waiting, decision)
        claimed = [call.tool_call_id for call in waiting]
    leases = ThreadLeases(engine, runner=Runner.this_process(f"{who(command)} pid {os.getpid()}"))
    lease = leases.try_acquire(thread)
    if lease is None:
        holder = leases.holder(thread)
        print(
            f"thread {thread} is being run by {holder.describe() if holder else 'another process'}; waiting for it",
            file=sys.stderr,
            flush=True,
        )
        lease = leases.acquire(thread)
    with lease:
        if claimed:
            still = {WaitingCall.of(r).tool_call_id for r in pending_approvals(agent.get_state(config))}
            if not set(claimed) <= still:
                raise ContinuedElsewhere(
                    f"thread {thread} was continued by another process, with this decision, while this one waited"
                )
        yield RecordedApprover(run, agent, config, approver)
