"""OpenTelemetry (issue 17): the spans and metrics of agent runs reach a real OTLP/HTTP receiver, and their tree is
the trajectory: one ``invoke_agent`` per run, a ``chat`` per model call, an ``execute_tool`` per tool call with one
attempt span per attempt (a retry is two attempt spans under one call span), a fallback and a replay from the
idempotency ledger marked, a resumed thread's trace linked to the run it continues. Off, nothing is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ironloop.benchmarks.otlp_receiver import OTLPReceiver, Received, Span, otlp_telemetry
from ironloop.graph import build_agent
from ironloop.observability import traced_run
from ironloop.tools import ToolPolicy
from ironloop.tools.approval import Approve
from ironloop.tools.circuit import CircuitBreaker
from ironloop.tools.errors import TransientToolError
from ironloop.tools.rate_limit import RateLimit
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from sqlalchemy import create_engine, text

from tests.helpers import call, replay_model, turn

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(backoff_initial_s=0.001, backoff_max_s=0.002, jitter=0.0)


@pytest.fixture
def otlp() -> Iterator[tuple[Received, Any, Any]]:
    with OTLPReceiver() as receiver, otlp_telemetry(receiver) as (telemetry, flush):
        yield receiver.received, telemetry, flush


def one(spans: list[Span], name: str) -> Span:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{len(found)} spans named {name!r}: {[s.name for s in spans]}"
    return found[0]


def children(spans: list[Span], parent: Span) -> list[Span]:
    return sorted((s for s in spans if s.parent_id == parent.span_id), key=lambda s: s.start_ns)


def attempts_of(spans: list[Span], call_span: Span) -> list[Span]:
    found = children(spans, call_span)
    assert all(s.name.startswith("attempt ") for s in found)
    return sorted(found, key=lambda s: s.attributes["ironloop.attempt.number"])


def totals(received: Received, metric: str, key: str) -> Counter[tuple[str, str]]:
    counted: Counter[tuple[str, str]] = Counter()
    for point in received.points:
        if point.metric == metric:
            counted[(point.attributes["gen_ai.tool.name"], point.attributes.get(key, ""))] += point.value
    return counted


def test_a_retry_a_fallback_a_rate_limit_and_an_open_circuit_are_in_the_spans_and_metrics(otlp) -> None:
    received, telemetry, flush = otlp
    tries = {"flaky": 0}

    @tool
    def flaky(q: str) -> str:
        """Busy once (asks to wait 20 ms), then answers."""
        tries["flaky"] += 1
        if tries["flaky"] == 1:
            raise TransientToolError("busy", retry_after_s=0.02)
        return f"found {q}"

    @tool
    def down(q: str) -> str:
        """Always unavailable."""
        raise TransientToolError("service unavailable")

    policies = {
        "flaky": ToolPolicy(max_attempts=3, rate_limit=RateLimit(calls=1000), **FAST),
        "down": ToolPolicy(
            max_attempts=2, fallback="no data", circuit_breaker=CircuitBreaker(failures=2, cooldown_s=60), **FAST
        ),
    }
    first, second, third = call("flaky", q="a"), call("down", q="a"), call("down", q="b")
    agent = build_agent(
        replay_model(turn(first, second), turn(third)), [flaky, down], policies=policies, telemetry=telemetry
    )
    agent.invoke({"messages": [("user", "go")]}, {"configurable": {"thread_id": "t-spans"}})
    flush()
    spans = received.spans

    run = one(spans, "invoke_agent ironloop")
    assert run.parent_id == "" and run.attributes["gen_ai.conversation.id"] == "t-spans"
    assert {s.trace_id for s in spans} == {run.trace_id}
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert len(chats) == 3 and all(s.parent_id == run.span_id for s in chats)  # two tool turns, then the answer
    calls = {s.attributes["gen_ai.tool.call.id"]: s for s in spans if s.name.startswith("execute_tool ")}
    assert set(calls) == {first["id"], second["id"], third["id"]}
    assert all(
        s.parent_id == run.span_id and s.attributes["gen_ai.operation.name"] == "execute_tool" for s in calls.values()
    )

    # The retry: two attempt spans under one call span, the second waited for the server's Retry-After.
    retried = calls[first["id"]]
    assert retried.attributes["gen_ai.tool.name"] == "flaky" and retried.attributes["ironloop.call.outcome"] == "ok"
    busy, answered = attempts_of(spans, retried)
    assert busy.error and busy.attributes["ironloop.attempt.outcome"] == "transient_error"
    assert busy.attributes["error.type"].endswith("TransientToolError")
    assert not answered.error and answered.attributes["ironloop.attempt.outcome"] == "ok"
    assert answered.attributes["ironloop.attempt.wait_reason"] == "retry_after"
    assert answered.attributes["ironloop.attempt.wait_before_s"] >= 0.02
    assert all("ironloop.attempt.rate_limit_wait_s" in a.attributes for a in (busy, answered))
    assert retried.start_ns <= busy.start_ns < busy.end_ns <= answered.start_ns < answered.end_ns <= retried.end_ns

    # The fallback: marked on the call, which is an error with both failed attempts under it.
    fell_back = calls[second["id"]]
    assert (
        fell_back.attributes["ironloop.call.outcome"] == "fallback" and fell_back.attributes["ironloop.call.fallback"]
    )
    assert fell_back.error and fell_back.attributes["error.type"].endswith("TransientToolError")
    assert [a.attributes["ironloop.attempt.circuit_state"] for a in attempts_of(spans, fell_back)] == ["closed"] * 2
    # Two failures opened the circuit: the next call is refused at once, and falls back.
    refused = calls[third["id"]]
    (only,) = attempts_of(spans, refused)
    assert only.attributes["ironloop.attempt.circuit_state"] == "open"
    assert only.attributes["error.type"].endswith("CircuitOpenError")
    assert refused.attributes["ironloop.call.outcome"] == "fallback"

    assert totals(received, "ironloop.tool.attempts", "ironloop.attempt.outcome") == {
        ("flaky", "transient_error"): 1,
        ("flaky", "ok"): 1,
        ("down", "transient_error"): 2,
        ("down", "permanent_error"): 1,
    }
    assert totals(received, "ironloop.tool.calls", "ironloop.call.outcome") == {
        ("flaky", "ok"): 1,
        ("down", "fallback"): 2,
    }
    assert totals(received, "ironloop.tool.call.duration", "ironloop.call.outcome")[("down", "fallback")] == 2
    assert sum(totals(received, "ironloop.tool.attempt.duration", "ironloop.attempt.outcome").values()) == 5
    assert totals(received, "ironloop.tool.rate_limit.wait", "") == {("flaky", ""): 2}
    assert totals(received, "ironloop.tool.circuit.state", "") == {("down", ""): 2}  # open
    chat_points = [p for p in received.points if p.metric == "gen_ai.client.operation.duration"]
    assert sum(p.value for p in chat_points) == 3 and chat_points[0].attributes["gen_ai.operation.name"] == "chat"


def test_a_replay_from_the_ledger_is_marked_and_no_idempotency_key_is_exported(otlp) -> None:
    from ironloop.demo.services.faults import FaultInjector, FaultProfile
    from ironloop.demo.services.payments import PaymentsLedger, create_payments_app
    from ironloop.demo.services.server import ServiceThread
    from ironloop.tools.builtin import CHARGE_POLICY, make_charge_tool
    from ironloop.tools.idempotency import MemoryIdempotencyStore

    received, telemetry, flush = otlp
    charge = call("charge_card", customer_id="cus_7", amount_cents=4200)
    ledger = PaymentsLedger()
    with ServiceThread(create_payments_app(FaultInjector(FaultProfile("none")), ledger)) as service:
        agent = build_agent(
            replay_model(turn(charge)),
            [make_charge_tool(service.url)],
            policies={"charge_card": CHARGE_POLICY.but(**FAST)},
            idempotency_store=MemoryIdempotencyStore(),
            checkpointer=InMemorySaver(),
            telemetry=telemetry,
        )
        config = {"configurable": {"thread_id": "t-replay"}}
        first = agent.invoke({"messages": [("user", "charge")]}, config)["messages"]
        before_tools = next(s for s in agent.get_state_history(config) if s.next == ("tools",))
        agent.invoke(None, before_tools.config)  # a fork re-runs the call: the ledger answers it
    flush()
    assert len(ledger.snapshot()) == 1  # charged once
    runs = [s for s in received.spans if s.name.startswith("invoke_agent")]
    executed, replayed = sorted(
        (s for s in received.spans if s.name == "execute_tool charge_card"), key=lambda s: s.start_ns
    )
    assert len(runs) == 2 and executed.parent_id == runs[0].span_id and replayed.parent_id == runs[1].span_id
    (ran,) = attempts_of(received.spans, executed)
    (answered,) = attempts_of(received.spans, replayed)
    assert not executed.attributes["ironloop.call.replayed"] and ran.attributes["ironloop.attempt.outcome"] == "ok"
    assert replayed.attributes["ironloop.call.replayed"] and answered.attributes["ironloop.attempt.replayed"]
    assert answered.attributes["ironloop.attempt.outcome"] == "replayed"  # not reported as newly executed
    assert replayed.attributes["ironloop.call.side_effect"]
    assert totals(received, "ironloop.tool.attempts", "ironloop.attempt.outcome") == {
        ("charge_card", "ok"): 1,
        ("charge_card", "replayed"): 1,
    }
    key = first[-2].response_metadata["ironloop"]["idempotency_key"]
    exported = b"".join(received.raw)
    assert key and key.encode() not in exported and b"cus_7" not in exported  # no key, no argument


def test_a_resumed_thread_links_to_the_run_it_continues(otlp) -> None:
    received, telemetry, flush = otlp

    @tool
    def wire(amount: int) -> str:
        """Move money (asks a human first)."""
        return f"sent {amount}"

    agent = build_agent(
        replay_model(turn(call("wire", amount=5))),
        [wire],
        policies={"wire": ToolPolicy(approval="always")},
        checkpointer=InMemorySaver(),
        telemetry=telemetry,
    )
    config: dict[str, Any] = {"configurable": {"thread_id": "t-link"}}
    with traced_run(agent, config):
        paused = agent.invoke({"messages": [("user", "pay")]}, config)
    assert paused["__interrupt__"]
    saved = agent.get_state({"configurable": {"thread_id": "t-link"}}).metadata["otel_traceparent"]
    resumed: dict[str, Any] = {"configurable": {"thread_id": "t-link"}}
    with traced_run(agent, resumed):
        done = agent.invoke(Command(resume=Approve(by="test")), resumed)
    assert done["messages"][-2].content == "sent 5"
    flush()
    first, second = sorted((s for s in received.spans if s.name.startswith("invoke_agent")), key=lambda s: s.start_ns)
    assert saved.startswith(f"00-{first.trace_id}-{first.span_id}-")  # W3C traceparent
    assert second.trace_id != first.trace_id and not first.error and not first.links
    assert second.links == [(first.trace_id, first.span_id, {"ironloop.link": "continues"})]
    # The pause (an approval's wait here) is the time from the paused run's last checkpoint to the resume.
    assert "ironloop.run.resumed_after_s" not in first.attributes
    assert 0 <= second.attributes["ironloop.run.resumed_after_s"] <= (second.start_ns - first.start_ns) / 1e9
    (approved,) = [s for s in received.spans if s.name == "execute_tool wire"]
    assert approved.trace_id == second.trace_id and approved.attributes["ironloop.approval.decision"] == "approve"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IRONLOOP_", "OTEL_"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_the_cli_demo_under_the_reference_faults_exports_the_trajectory(tmp_path: Path) -> None:
    """A real run: ``ironloop demo`` (search under the reference faults), configured only by ``OTEL_*``."""
    db = tmp_path / "demo.db"
    with OTLPReceiver() as receiver:
        env = _clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_SERVICE_NAME="ironloop-under-test")
        done = subprocess.run(
            [sys.executable, "-m", "ironloop", "demo", "--db", f"sqlite:///{db}", "--profile", "reference"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    received = receiver.received
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT tool_call_id, tool, attempt, outcome FROM tool_attempts ORDER BY tool_call_id, attempt")
            ).all()
            stored = {
                json.loads(m).get("otel_traceparent")
                for (m,) in connection.execute(text("SELECT metadata FROM ironloop_checkpoints"))
            }
    finally:
        engine.dispose()
    ledger: dict[str, list[str]] = {}
    for call_id, _tool, _number, outcome in rows:
        ledger.setdefault(call_id, []).append(outcome)
    assert any(len(outcomes) > 1 for outcomes in ledger.values()), "no retry under the reference faults: vacuous"

    spans = received.spans
    run = one(spans, "invoke_agent ironloop-demo")
    assert run.resource["service.name"] == "ironloop-under-test"
    assert run.attributes["gen_ai.conversation.id"] in done.stdout
    (traceparent,) = stored  # every checkpoint of the command names its one run span: a resume will link to it
    assert traceparent.startswith(f"00-{run.trace_id}-{run.span_id}-")
    calls = [s for s in spans if s.name.startswith("execute_tool ")]
    assert all(s.parent_id == run.span_id and s.trace_id == run.trace_id for s in calls)
    traced = {
        s.attributes["gen_ai.tool.call.id"]: [a.attributes["ironloop.attempt.outcome"] for a in attempts_of(spans, s)]
        for s in calls
    }
    assert traced == ledger  # the span tree is the ledger's trajectory, attempt by attempt
    turns = done.stdout.count("model →")
    assert len([s for s in spans if s.name.startswith("chat ")]) == turns
    assert totals(received, "ironloop.tool.attempts", "ironloop.attempt.outcome") == Counter(
        {(tool, outcome): n for (tool, outcome), n in Counter((r[1], r[3]) for r in rows).items()}
    )


def test_off_nothing_is_imported_and_a_programs_own_provider_is_used(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json, sys
        from ironloop.graph import build_agent
        from tests.helpers import call, replay_model, turn
        from langchain_core.tools import tool

        @tool
        def echo(q: str) -> str:
            '''Echo.'''
            return q

        def run():
            agent = build_agent(replay_model(turn(call("echo", q="x"))), [echo])
            agent.invoke({"messages": [("user", "go")]}, {"configurable": {"thread_id": "t"}})

        # langsmith (under langchain-core) imports a few OpenTelemetry modules when they are installed: ironloop
        # must import none beyond those, and none of its own telemetry.
        def loaded():
            return sorted(m for m in sys.modules if m.startswith(("opentelemetry", "ironloop.observability.")))

        baseline = loaded()
        run()
        off = sorted(set(loaded()) - set(baseline)) + [m for m in baseline if m.startswith("ironloop")]
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        run()
        print(json.dumps({"off": off, "own": sorted(s.name for s in exporter.get_finished_spans())}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=_clean_env(), cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["off"] == []  # off: nothing of OpenTelemetry imported by ironloop
    assert found["own"] == [
        "attempt echo",
        "chat ScriptedChatModel",
        "chat ScriptedChatModel",
        "execute_tool echo",
        "invoke_agent ironloop",
    ]


def test_a_model_call_shows_its_retries_and_token_usage(otlp) -> None:
    from ironloop.demo.scripted_model import ScriptedChatModel
    from ironloop.graph.model_call import ModelPolicy
    from langchain_core.messages import AIMessage

    received, telemetry, flush = otlp
    asked = {"n": 0}

    def script(messages: Any) -> AIMessage:
        asked["n"] += 1
        if asked["n"] == 1:
            raise ConnectionResetError("connection reset by peer")
        usage = {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15}
        return AIMessage(content="done", usage_metadata=usage, response_metadata={"model_name": "scripted-2"})

    agent = build_agent(
        ScriptedChatModel(script=script),
        [],
        model_policy=ModelPolicy(max_attempts=3, **FAST),
        telemetry=telemetry,
    )
    agent.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "t-model"}})
    flush()
    chat = one(received.spans, "chat ScriptedChatModel")
    assert chat.attributes["ironloop.model.attempts"] == 2 and not chat.error
    assert (chat.attributes["gen_ai.usage.input_tokens"], chat.attributes["gen_ai.usage.output_tokens"]) == (12, 3)
    assert chat.attributes["gen_ai.response.model"] == "scripted-2"
    assert chat.parent_id == one(received.spans, "invoke_agent ironloop").span_id
    retries = [p for p in received.points if p.metric == "ironloop.model.retries"]
    assert [(p.attributes["gen_ai.request.model"], p.value) for p in retries] == [("ScriptedChatModel", 1)]
    tokens = {
        p.attributes["gen_ai.token.type"]: p.value for p in received.points if p.metric == "gen_ai.client.token.usage"
    }
    assert tokens == {"input": 1, "output": 1}  # one recorded value of each kind
