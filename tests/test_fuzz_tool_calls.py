"""Property-based fuzzing of model turns: whatever a model emits, the graph answers every call and runs no bad one.

Hypothesis writes model turns full of tool calls: real tool names and made-up ones, arguments that fit the
schema and arguments that do not (values that are not objects, huge strings, deep nesting, odd unicode,
big integers, floats), and ``invalid_tool_calls`` with raw strings for arguments. Each turn is replayed
through a real `build_agent` graph with a few small tools (sync, async, a JSON-schema dict tool, one that
fails or hangs on request), checkpointed at every step. Four properties must hold for every example:

1. the graph never raises (in particular, every step checkpoints: integers of 2^64 and more, nesting deeper than
   the serializer follows, are refused before the model's turn is stored);
2. every tool call and every invalid tool call gets exactly one ``ToolMessage`` with its id;
3. no tool is ever called with arguments its schema forbids (and calls built valid are dispatched);
4. no call is dispatched with arguments beyond JSON's safe integers or nested past `MAX_NESTING`.

The profile is derandomized: the same test selection sees the same examples on every run. (Hypothesis also
draws constants from the project modules that are loaded, so this file alone and the whole suite see two
different fixed sets.) A failure prints a ``@reproduce_failure`` blob; ``IRONLOOP_FUZZ_EXAMPLES`` raises the
count for a longer local run.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ironloop.graph import build_agent
from ironloop.tools.errors import PermanentToolError, TransientToolError
from ironloop.tools.policy import ToolPolicy
from ironloop.tools.storable import MAX_SAFE_INTEGER, storable_problem
from jsonschema import Draft202012Validator
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.memory import InMemorySaver

from tests.helpers import record, replay_model

EXAMPLES = int(os.environ.get("IRONLOOP_FUZZ_EXAMPLES", "300"))

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # same examples on every run: a CI failure reproduces locally
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

FAST = ToolPolicy(timeout_s=0.02, max_attempts=2, backoff_initial_s=0.0, backoff_max_s=0.001, deadline_s=0.2)
"""Tiny timeouts and backoffs: a hanging or failing call costs milliseconds, not seconds."""

received: list[tuple[str, dict[str, Any]]] = []
"""Every (tool, arguments) a tool function was actually called with."""


@tool
def add(a: int, b: int) -> int:
    """Add two integers (a sync tool: runs on its own thread)."""
    received.append(("add", {"a": a, "b": b}))
    return a + b


@tool
async def shout(text: str, times: int = 1) -> str:
    """Repeat a text in capitals (an async tool)."""
    received.append(("shout", {"text": text, "times": times}))
    return text.upper() * max(0, min(times, 3))


@tool
async def flaky(mode: Literal["ok", "transient", "permanent", "hang"]) -> str:
    """Succeed, fail in a way that is retried, fail for good, or hang past the timeout."""
    received.append(("flaky", {"mode": mode}))
    if mode == "transient":
        raise TransientToolError("service busy")
    if mode == "permanent":
        raise PermanentToolError("bad request")
    if mode == "hang":
        await asyncio.sleep(10)
    return "ok"


SEARCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {"type": "string"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
        "filters": {
            "type": "object",
            "properties": {"lang": {"enum": ["en", "fr"]}, "tags": {"type": "array", "items": {"type": "string"}}},
            "additionalProperties": False,
        },
        "cursor": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["query"],
}


def _search(**kwargs: Any) -> str:
    received.append(("search", kwargs))
    return json.dumps(kwargs, ensure_ascii=False)[:200]


search = StructuredTool.from_function(
    func=_search, name="search", description="Search (a tool with a JSON-schema dict).", args_schema=SEARCH_SCHEMA
)

TOOLS: list[BaseTool] = [add, shout, flaky, search]
NAMES = [t.name for t in TOOLS]

ORACLES = {
    t.name: Draft202012Validator({**convert_to_openai_tool(t)["function"]["parameters"], "additionalProperties": False})
    for t in TOOLS
}
"""What each tool accepts, written independently of `tools.validation`: its declared JSON schema, closed."""

# Values a model might put in arguments.

ODD = ["\x00", "\u202e", "\ufeff", "\u0301", "💥", "𝔘𝔫𝔦", "\ud800", "\n\r\t", "'\"\\", "null", "{}", "🏳️‍🌈"]

texts = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=12),  # lone surrogates included
    st.lists(st.sampled_from(ODD), max_size=6).map("".join),
)
huge_strings = st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "é", "💥", "\x00"]), st.integers(10_000, 300_000))
big_ints = st.one_of(
    st.integers(),
    st.integers(-(10**40), 10**40),
    st.sampled_from([2**53 - 1, 2**53, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, -(2**64), 10**400]),
)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.none(), st.booleans(), big_ints, floats, texts)


def _nest(depth: int, kind: str, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf] if kind == "list" else {"k": leaf}
    return leaf


deep = st.builds(_nest, st.integers(20, 300), st.sampled_from(["list", "dict"]), scalars)
"""Nesting up to 300 levels: deeper than any schema and than the checkpoint serializer follows (about 255 levels
with the message around them), within what ``json.loads`` and the scripted model's deep copy handle (about 330
levels break `ScriptedChatModel`'s ``Replay`` before the graph sees them)."""

json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(texts, children, max_size=4)),
    max_leaves=10,
)
any_value = st.one_of(json_values, json_values, deep, huge_strings)


@st.composite
def valid_args(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """Arguments the tool must accept (made unique per call later, so the loop guard never refuses them)."""
    if name == "add":
        return {"a": draw(st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)), "b": draw(st.integers(-5, 5))}
    if name == "shout":
        args: dict[str, Any] = {"text": draw(st.one_of(texts, huge_strings))}
        if draw(st.booleans()):
            args["times"] = draw(st.integers(0, 3))
        return args
    if name == "flaky":
        return {"mode": draw(st.sampled_from(["ok", "transient", "permanent", "hang"]))}
    args = {"query": draw(texts)}
    if draw(st.booleans()):
        args["limit"] = draw(st.integers(1, 50))
    if draw(st.booleans()):
        args["filters"] = {"lang": draw(st.sampled_from(["en", "fr"])), "tags": draw(st.lists(texts, max_size=3))}
    if draw(st.booleans()):
        args["cursor"] = draw(st.none() | texts)
    return args


@st.composite
def random_args(draw: st.DrawFn, name: str) -> Any:
    """Arguments with no regard for the schema: declared and invented keys, any values, or not an object."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.one_of(st.lists(json_values, max_size=3), texts, big_ints, st.none(), deep, huge_strings))
    declared = list(ORACLES.get(name, ORACLES["search"]).schema["properties"])
    keys = st.one_of(st.sampled_from(declared), texts)
    return draw(st.dictionaries(keys, any_value, max_size=4))


@st.composite
def near_misses(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """Valid arguments with one thing changed: a value replaced by any value, a key dropped, or one invented."""
    args = draw(valid_args(name))
    declared = list(ORACLES[name].schema["properties"])
    change = draw(st.sampled_from(["replace", "replace", "drop", "invent"]))
    if change == "replace":
        args[draw(st.sampled_from(declared))] = draw(any_value)
    elif change == "drop" and args:
        del args[draw(st.sampled_from(sorted(args)))]
    else:
        args[draw(texts)] = draw(any_value)
    return args


@st.composite
def tool_calls(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """One call, and whether it was built valid."""
    name = draw(st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES), texts, st.sampled_from(["Add", "add "])))
    if name not in NAMES:
        return {"name": name, "args": draw(random_args(name))}, False
    kind = draw(st.sampled_from(["valid", "valid", "near_miss", "near_miss", "random"]))
    if kind == "valid":
        return {"name": name, "args": draw(valid_args(name))}, True
    return {"name": name, "args": draw(near_misses(name) if kind == "near_miss" else random_args(name))}, False


invalid_calls = st.fixed_dictionaries(
    {
        "name": st.one_of(st.none(), st.sampled_from(NAMES), texts),
        "args": st.one_of(st.none(), texts, huge_strings, st.just('{"query": "unterminated'), st.text()),
        "error": st.one_of(st.none(), texts),
    }
)

turns = st.lists(
    st.tuples(st.lists(tool_calls(), max_size=6), st.lists(invalid_calls, max_size=3)).filter(lambda t: t[0] or t[1]),
    min_size=1,
    max_size=3,
)
"""One to three model turns, each with at least one call (a turn without calls would end the run early)."""


def build_turns(
    drawn: list[tuple[list[tuple[dict[str, Any], bool]], list[dict[str, Any]]]],
) -> tuple[list[AIMessage], dict[str, bool]]:
    """The model's messages, with unique ids; call id → built valid. Non-object arguments are set after the
    message is made, since ``AIMessage`` itself refuses them (a provider integration might not)."""
    messages: list[AIMessage] = []
    valid: dict[str, bool] = {}
    number = 0
    for calls, invalid in drawn:
        tool_calls_: list[dict[str, Any]] = []
        for call, is_valid in calls:
            number += 1
            call_id = f"call_{number}"
            args = call["args"]
            if is_valid and call["name"] in ("add", "shout", "search"):
                args = _unique(call["name"], args, number)
            tool_calls_.append({"name": call["name"], "args": args, "id": call_id})
            valid[call_id] = is_valid
        message = AIMessage(
            content="",
            tool_calls=[{**c, "args": c["args"] if isinstance(c["args"], dict) else {}} for c in tool_calls_],
            invalid_tool_calls=[
                {**bad, "id": f"bad_{number}_{i}", "type": "invalid_tool_call"} for i, bad in enumerate(invalid)
            ],
        )
        for made, drawn_call in zip(message.tool_calls, tool_calls_, strict=True):
            made["args"] = drawn_call["args"]
        messages.append(message)
    return messages, valid


def _unique(name: str, args: dict[str, Any], number: int) -> dict[str, Any]:
    if name == "add":
        return {**args, "b": number}
    key = "text" if name == "shout" else "query"
    return {**args, key: f"{args[key][:50]}#{number}"}


@pytest.fixture(autouse=True)
def _clear() -> None:
    received.clear()


def test_fuzzed_model_turns(capsys: pytest.CaptureFixture[str]) -> None:
    stats: Counter[str] = Counter()

    @FUZZ
    @given(drawn=turns, use_async=st.booleans())
    def run(drawn: list[Any], use_async: bool) -> None:
        received.clear()
        messages, built_valid = build_turns(drawn)
        # The loop guard would rightly refuse a valid call repeated many times: keep it out of this property.
        agent = build_agent(
            replay_model(*messages), TOOLS, default_policy=FAST, loop_limit=10_000, checkpointer=InMemorySaver()
        )
        state_in, config = {"messages": [("user", "fuzz")]}, {"configurable": {"thread_id": "fuzz"}}
        # 1. never raises
        state = asyncio.run(agent.ainvoke(state_in, config)) if use_async else agent.invoke(state_in, config)

        answers = [m for m in state["messages"] if isinstance(m, ToolMessage)]
        counts = Counter(m.tool_call_id for m in answers)
        ids = [c["id"] for m in messages for c in m.tool_calls] + [
            c["id"] for m in messages for c in m.invalid_tool_calls
        ]
        assert counts == Counter(ids), "2. exactly one ToolMessage per call, none for anything else"

        by_id = {m.tool_call_id: m for m in answers}
        for message in messages:
            for call in message.tool_calls:
                outcome = record(by_id[call["id"]])["outcome"]
                dispatched = outcome != "rejected"
                if dispatched:
                    assert call["name"] in ORACLES and ORACLES[call["name"]].is_valid(call["args"]), (
                        f"3. dispatched off-schema: {call['name']} {call['args']!r:.300}"
                    )
                    assert storable_problem(call["args"]) is None, f"4. dispatched {call['args']!r:.300}"
                stats["unstorable"] += storable_problem(call["args"]) is not None
                if built_valid[call["id"]] and call["name"] != "flaky":
                    assert dispatched, f"valid call refused: {by_id[call['id']].content:.300}"
                stats["dispatched" if dispatched else "rejected"] += 1
                stats["non_object_args"] += not isinstance(call["args"], dict)
            stats["invalid_tool_calls"] += len(message.invalid_tool_calls)
        for name, args in received:
            assert ORACLES[name].is_valid(args), f"3. {name} ran with {args!r:.300}"
        stats["tool_runs"] += len(received)
        stats["examples"] += 1
        stats["turns"] += len(messages)
        stats["async" if use_async else "sync"] += 1

    run()
    calls = stats["dispatched"] + stats["rejected"]
    with capsys.disabled():
        print(
            f"\nfuzz: {stats['examples']} examples, {stats['turns']} model turns, {calls} tool calls "
            f"({stats['dispatched']} dispatched, {stats['rejected']} refused, {stats['non_object_args']} with "
            f"non-object arguments, {stats['unstorable']} unstorable), {stats['invalid_tool_calls']} invalid tool "
            f"calls, {stats['tool_runs']} tool runs; {stats['sync']} via invoke, {stats['async']} via ainvoke"
        )
    assert stats["examples"] == EXAMPLES
    for kind in ("dispatched", "rejected", "non_object_args", "invalid_tool_calls", "unstorable", "sync", "async"):
        assert stats[kind] > 0, f"the fuzzer never produced {kind}"


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "💥\x00"])
def test_odd_but_valid_strings_reach_the_tool_unchanged(text: str) -> None:
    """Found by the fuzzer: a lone surrogate is a string pydantic's JSON parser refuses; the call is valid."""
    received.clear()
    message = AIMessage(content="", tool_calls=[{"name": "shout", "args": {"text": text}, "id": "c1"}])
    state = build_agent(replay_model(message), TOOLS, default_policy=FAST).invoke({"messages": [("user", "x")]})
    answer = next(m for m in state["messages"] if isinstance(m, ToolMessage))
    assert record(answer)["outcome"] == "ok", answer.content
    assert received == [("shout", {"text": text, "times": 1})]
