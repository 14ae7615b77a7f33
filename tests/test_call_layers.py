"""Each piece around a tool call, alone: a layer gets a call and the next step, with no graph and no runner.

The graph-level tests (test_runtime, test_policy_pieces, test_exactly_once, test_approval, test_least_privilege)
show the pieces composed; these show that each does its one job with nothing else around it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Annotated, Any

import pytest
from ironloop.graph import build_agent
from ironloop.tools.attempts import AttemptContext, AttemptLoop, CircuitGuard, Hedge, RecordAttempt, Timeout
from ironloop.tools.circuit import CircuitBreaker
from ironloop.tools.credentials import Credentials, Secret
from ironloop.tools.errors import (
    CircuitOpenError,
    PermanentToolError,
    ToolTimeoutError,
    TransientToolError,
    error_class,
)
from ironloop.tools.events import CallEvents
from ironloop.tools.exactly_once import ExactlyOnce
from ironloop.tools.grants import CredentialGrants, SecretBoundTool
from ironloop.tools.idempotency import KeyEntry, KeyStatus, MemoryIdempotencyStore, idempotency_key_for
from ironloop.tools.observations import CapResult, Observe
from ironloop.tools.policy import NO_FALLBACK, ToolPolicy
from ironloop.tools.records import Attempt, AttemptOutcome, CallOutcome, CallRecord
from ironloop.tools.steps import CallContext, Result, chain
from ironloop.tools.untrusted import UntrustedOutput
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, InjectedToolArg, StructuredTool, tool
from langgraph.prebuilt.tool_node import ToolCallRequest, ToolRuntime

from tests.helpers import call, observations, record, replay_model, turn

FAST = ToolPolicy(timeout_s=5, max_attempts=3, backoff_initial_s=0.001, backoff_max_s=0.002, jitter=0.0)


@tool
def echo(text: str) -> str:
    """Echo."""
    return text


def context(
    policy: ToolPolicy = FAST, execute: Any = None, streamed: list[dict[str, Any]] | None = None
) -> CallContext:
    """A call of ``echo`` as a layer sees it, outside any graph; ``streamed`` collects what the stream would show."""
    tool_call = {"name": "echo", "args": {"text": "hi"}, "id": "call_1", "type": "tool_call"}
    streamed = [] if streamed is None else streamed
    runtime = ToolRuntime(
        state={}, context=None, config={}, stream_writer=streamed.append, tool_call_id="call_1", store=None
    )
    request = ToolCallRequest(tool_call=tool_call, tool=echo, state={}, runtime=runtime)  # type: ignore[arg-type]
    record = CallRecord(tool="echo", tool_call_id="call_1", thread_id="t")
    return CallContext(request, execute or answer("ok"), policy, record, CallEvents((), streamed.append))


def answer(text: str) -> Any:
    async def execute(request: ToolCallRequest) -> Result:
        return ToolMessage(content=text, name="echo", tool_call_id="call_1")

    return execute


def fails(*errors: BaseException, then: str = "ok") -> Any:
    """An execute that raises ``errors`` in turn, then answers ``then``; ``.calls`` counts its runs."""
    pending = list(errors)

    async def execute(request: ToolCallRequest) -> Result:
        execute.calls += 1  # type: ignore[attr-defined]
        if pending:
            raise pending.pop(0)
        return ToolMessage(content=then, name="echo", tool_call_id="call_1")

    execute.calls = 0  # type: ignore[attr-defined]
    return execute


def attempt_of(call: CallContext, deadline_at: float | None = None) -> AttemptContext:
    attempt = Attempt(number=len(call.record.attempts) + 1, outcome=AttemptOutcome.OK, started_at=0.0, ms=0.0)
    call.record.attempts.append(attempt)
    return AttemptContext(call, attempt, deadline_at)


async def run_tool(attempt: AttemptContext) -> Result:
    return await attempt.call.execute(attempt.call.request)


async def test_chain_runs_layers_outermost_first() -> None:
    seen: list[str] = []

    class Named:
        def __init__(self, name: str):
            self.name = name

        async def __call__(self, call: CallContext, proceed: Any) -> Result:
            seen.append(f"{self.name}>")
            result = await proceed(call)
            seen.append(f"<{self.name}")
            return result

    async def innermost(call: CallContext) -> Result:
        seen.append("tool")
        return await call.execute(call.request)

    await chain([Named("a"), Named("b")], innermost)(context())
    assert seen == ["a>", "b>", "tool", "<b", "<a"]


async def test_attempt_loop_retries_then_raises_the_last_error() -> None:
    streamed: list[dict[str, Any]] = []
    call = context(execute=fails(*[TransientToolError("503")] * 3), streamed=streamed)
    with pytest.raises(TransientToolError):
        await AttemptLoop(chain([RecordAttempt()], run_tool))(call)
    assert [a.outcome for a in call.record.attempts] == [AttemptOutcome.TRANSIENT_ERROR] * 3
    assert [(e["event"], e["number"]) for e in streamed] == [("tool_attempt", n) for n in (1, 2, 3)]


async def test_attempt_loop_follows_a_narrower_retry_predicate() -> None:
    execute = fails(TransientToolError("503"), TransientToolError("503"))
    call = context(execute=execute).but(retry_if=lambda error: False)
    with pytest.raises(TransientToolError):
        await AttemptLoop(chain([RecordAttempt()], run_tool))(call)
    assert execute.calls == 1


async def test_record_attempt_marks_a_tools_own_error_report_permanent() -> None:
    async def handled(request: ToolCallRequest) -> Result:
        return ToolMessage(content="bad input", name="echo", tool_call_id="call_1", status="error")

    call = context(execute=handled)
    attempt = attempt_of(call)
    await RecordAttempt()(attempt, run_tool)
    assert attempt.attempt.outcome is AttemptOutcome.PERMANENT_ERROR and attempt.attempt.error == "bad input"


async def test_timeout_stops_waiting_and_says_so() -> None:
    async def slow(request: ToolCallRequest) -> Result:
        await asyncio.sleep(5)
        raise AssertionError("not reached")

    call = context(FAST.but(timeout_s=0.05), slow)
    attempt = attempt_of(call)
    with pytest.raises(ToolTimeoutError):
        await chain([RecordAttempt(), Timeout(["echo"])], run_tool)(attempt)
    assert attempt.attempt.outcome is AttemptOutcome.TIMEOUT and attempt.attempt.abandoned_thread


async def test_circuit_guard_opens_after_failures_and_fails_fast() -> None:
    guard = CircuitGuard()
    policy = FAST.but(circuit_breaker=CircuitBreaker(failures=2, cooldown_s=60))
    execute = fails(*[TransientToolError("503")] * 5)
    for _ in range(2):
        with pytest.raises(TransientToolError):
            await guard(attempt_of(context(policy, execute)), run_tool)
    with pytest.raises(CircuitOpenError):
        await guard(attempt_of(context(policy, execute)), run_tool)
    assert execute.calls == 2  # the third attempt never reached the tool


async def test_hedge_races_a_slow_try() -> None:
    tries = 0

    async def first_slow(request: ToolCallRequest) -> Result:
        nonlocal tries
        tries += 1
        await asyncio.sleep(5 if tries == 1 else 0)
        return ToolMessage(content=f"try {tries}", name="echo", tool_call_id="call_1")

    attempt = attempt_of(context(FAST.but(hedge_after_s=0.05), first_slow))
    result = await Hedge()(attempt, run_tool)
    assert isinstance(result, ToolMessage) and result.content == "try 2" and attempt.attempt.hedge == "hedge"


async def test_observe_turns_the_last_error_into_a_fallback_or_an_error() -> None:
    async def broken(call: CallContext) -> Result:
        raise PermanentToolError("no such city")

    call = context(FAST.but(fallback=None))  # None is a fallback value like any other
    message = await Observe()(call, broken)
    assert isinstance(message, ToolMessage) and message.content.endswith("not a real result: None")
    assert call.record.outcome is CallOutcome.FALLBACK
    plain = context()
    assert plain.policy.fallback is NO_FALLBACK
    message = await Observe()(plain, broken)
    assert isinstance(message, ToolMessage) and message.status == "error" and "change the arguments" in message.content


async def test_cap_result_cuts_only_a_successful_text() -> None:
    call = context(execute=answer("x" * 50))

    async def once(call: CallContext) -> Result:
        call.record.attempts.append(Attempt(number=1, outcome=AttemptOutcome.OK, started_at=0.0, ms=0.0))
        return await call.execute(call.request)

    message = await CapResult(10)(call, once)
    assert isinstance(message, ToolMessage) and message.content.startswith("x" * 10 + "\n[cut: 40 of 50")


async def test_untrusted_output_wraps_and_marks_the_record() -> None:
    call = context(FAST.but(untrusted_output=True))

    async def ok(call: CallContext) -> Result:
        call.record.attempts.append(Attempt(number=1, outcome=AttemptOutcome.OK, started_at=0.0, ms=0.0))
        call.record.outcome = CallOutcome.OK
        return await call.execute(call.request)

    message = await UntrustedOutput()(call, ok)
    assert isinstance(message, ToolMessage) and '<untrusted-data source="echo">\nok\n' in message.content
    assert call.record.untrusted


async def test_untrusted_output_leaves_the_runtimes_own_words() -> None:
    """A call that never heard from its tool (it timed out; a human refused it) quotes nothing untrusted."""
    for attempts in (
        [Attempt(1, AttemptOutcome.TIMEOUT, 0.0, 0.0, error_class=error_class(ToolTimeoutError("slow")))],
        [],
    ):
        call = context(FAST.but(untrusted_output=True))

        async def silent(call: CallContext, attempts: list[Attempt] = attempts) -> Result:
            call.record.attempts.extend(attempts)
            call.record.outcome = CallOutcome.ERROR
            return ToolMessage(content="Error: echo failed: no answer", tool_call_id="c", status="error")

        message = await UntrustedOutput()(call, silent)
        assert isinstance(message, ToolMessage) and message.content == "Error: echo failed: no answer"
        assert not call.record.untrusted


async def test_credential_grants_bind_the_secret_for_one_call_and_scrub_it() -> None:
    received: list[Secret] = []

    async def charge(amount: int, api_key: Annotated[Secret, InjectedToolArg]) -> str:
        """Charge."""
        received.append(api_key)
        return f"charged {amount} with {api_key.reveal()}"

    charge_tool = StructuredTool.from_function(coroutine=charge, name="echo")
    grants = CredentialGrants({"echo": {"api_key": True}}, Credentials({"echo": {"api_key": "sk-test-1"}}))
    tools_seen: list[BaseTool | None] = []

    async def execute(request: ToolCallRequest) -> Result:  # what ToolNode does with the request it is handed
        tools_seen.append(request.tool)
        assert request.tool is not None
        return await request.tool.ainvoke({**request.tool_call, "args": {"amount": 5}, "type": "tool_call"})

    async def proceed(call: CallContext) -> Result:
        return await call.execute(call.request)

    call = context(execute=execute)
    call = call.but(request=call.request.override(tool=charge_tool))
    message = await grants(call, proceed)
    assert isinstance(tools_seen[0], SecretBoundTool) and received == [Secret("sk-test-1")]
    assert isinstance(message, ToolMessage) and message.content == "charged 5 with ***"
    assert "api_key" not in call.tool_call["args"]  # the call (and so the AIMessage) never held it

    missing = CredentialGrants({"echo": {"api_key": True}}, Credentials())
    refused = await missing(context(), proceed)
    assert isinstance(refused, ToolMessage) and "IRONLOOP_TOOL_ECHO_API_KEY" in refused.content


async def test_exactly_once_replays_a_completed_key_without_running_the_loop() -> None:
    store = MemoryIdempotencyStore()
    key = idempotency_key_for("t", "", "call_1")
    store.begin(KeyEntry(key, "echo", "call_1", KeyStatus.STARTED, "t"))
    store.finish(key, KeyStatus.COMPLETED, "charged once")

    async def loop(call: CallContext) -> Result:
        raise AssertionError("a completed call must not run again")

    call = context(FAST.but(side_effect=True))
    message = await ExactlyOnce(store)(call, loop)
    assert isinstance(message, ToolMessage) and message.content == "charged once"
    assert call.record.attempts[0].replayed and call.record.outcome is CallOutcome.OK


async def test_exactly_once_narrows_the_retries_of_the_loop_it_wraps() -> None:
    seen: list[Any] = []

    async def loop(call: CallContext) -> Result:
        seen.append(call.retry_if)
        call.record.attempts.append(Attempt(number=1, outcome=AttemptOutcome.OK, started_at=0.0, ms=0.0))
        return await call.execute(call.request)

    call = context(FAST.but(side_effect=True))
    await ExactlyOnce(MemoryIdempotencyStore())(call, loop)
    assert seen[0] is not None and seen[0](TimeoutError()) is False  # a timeout may have applied: not retried


def test_a_sync_basetool_subclass_runs_on_its_own_threads_with_its_secret() -> None:
    class Nap(BaseTool):
        name: str = "nap"
        description: str = "Sleeps a moment."

        def _run(self, x: int, api_key: Annotated[Secret, InjectedToolArg]) -> str:
            time.sleep(0.4)
            return f"{x} on {threading.current_thread().name} with {api_key.reveal()}"

    calls = [call("nap", x=i) for i in range(6)]
    forged = call("nap", x=9, api_key="forged")
    agent = build_agent(
        replay_model(turn(*calls, forged)),
        [Nap()],
        policies={"nap": FAST.but(credentials=("api_key",))},
        credentials=Credentials({"nap": {"api_key": "sk-nap"}}),
    )
    started = time.monotonic()
    seen = observations(agent.invoke({"messages": [("user", "go")]})["messages"])
    assert time.monotonic() - started < 0.4 * 6  # side by side, not one after another
    assert all(seen[c["id"]].content.startswith(f"{i} on ironloop-tool-") for i, c in enumerate(calls))
    assert all(seen[c["id"]].content.endswith("with ***") for c in calls)  # given, and scrubbed on the way out
    assert "unexpected argument 'api_key'" in seen[forged["id"]].content
    assert record(seen[calls[0]["id"]])["outcome"] == "ok"


def test_none_means_none_and_omitted_means_the_default() -> None:
    async def pay(api_key: Annotated[Secret, InjectedToolArg]) -> str:
        """Pay."""
        return "paid"

    tools = [StructuredTool.from_function(coroutine=pay, name="pay")]
    policies = {"pay": FAST.but(credentials=("api_key",))}
    c = call("pay")
    agent = build_agent(replay_model(turn(c)), tools, policies=policies, credentials=None)
    seen = observations(agent.invoke({"messages": [("user", "go")]})["messages"])
    assert "needs the credential 'api_key'" in seen[c["id"]].content  # None: no credentials at all
    for argument in ("default_policy", "model_policy", "idempotency_store"):
        with pytest.raises(TypeError, match=f"leave {argument} out"):
            build_agent(replay_model(), [echo], **{argument: None})
