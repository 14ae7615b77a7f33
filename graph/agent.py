"""`build_agent`: the ReAct loop as a LangGraph ``StateGraph``.

    START ─┬─ (orphaned tool calls) → repair ─┐
           └──────────────────────────────────┴→ model ─┬─ no tool calls ──────────────→ END
                                                        ├─ one Send per valid call ──→ tools ──→ model
                                                        ├─ one Send per invalid call → reject ─→ model
                                                        └─ a budget spent ───────────→ finish ─→ END

Each tool call is its own ``tools`` task (a ``Send``), so LangGraph checkpoints each call's result on its
own and a resumed run re-executes only the calls that had not finished. That is also what lets a call that waits
for a human's approval (an ``interrupt`` inside its task, `tools.approval`) pause alone: its siblings finish, are
kept as pending writes, and are not run again when the decision arrives. The ``tools`` node is LangGraph's
``ToolNode``; what happens inside one call (policy, timeout, retries, fallback) lives in `tools.runner`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, get_type_hints

from ironloop.graph.inline import Inline
from ironloop.graph.loop_guard import DEFAULT_LOOP_LIMIT
from ironloop.graph.model_call import DEFAULT_MODEL_POLICY, ModelCaller, ModelPolicy, model_name
from ironloop.graph.nodes import DEFAULT_MAX_CALLS_PER_TURN, ReActLoop
from ironloop.graph.repair import OrphanRepair
from ironloop.graph.state import AgentState, InputState
from ironloop.graph.structured import StructuredAnswer, with_structured_response
from ironloop.graph.tool_node import PolicyToolNode
from ironloop.observability import agent_telemetry
from ironloop.tools.approval import RequestFormat
from ironloop.tools.budget import Budgets, TaskBudget
from ironloop.tools.credentials import Credentials
from ironloop.tools.idempotency import IdempotencyStore, MemoryIdempotencyStore
from ironloop.tools.policy import DEFAULT_POLICY, ToolPolicy
from ironloop.tools.records import CallListener
from ironloop.tools.runner import DEFAULT_MAX_RESULT_CHARS, ToolCallRunner
from ironloop.tools.schemas import openai_tool_specs
from ironloop.tools.sentinels import DEFAULT, Default
from ironloop.tools.threads import DEFAULT_MAX_THREADS
from ironloop.tools.untrusted import check_state_schema
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from typing_extensions import TypedDict

if TYPE_CHECKING:
    from ironloop.observability.telemetry import Telemetry

DEFAULT_TASK_BUDGET = TaskBudget()


def build_agent(
    model: BaseChatModel | str,
    tools: Sequence[BaseTool | Callable[..., Any]],
    *,
    policies: Mapping[str, ToolPolicy] | None = None,
    default_policy: ToolPolicy = DEFAULT_POLICY,
    checkpointer: BaseCheckpointSaver | None = None,
    max_turns: int = 10,
    system_prompt: str | None = None,
    max_concurrency: int = DEFAULT_MAX_THREADS,
    listeners: Iterable[CallListener] = (),
    model_policy: ModelPolicy = DEFAULT_MODEL_POLICY,
    fallback_models: Sequence[BaseChatModel | str] = (),
    loop_limit: int = DEFAULT_LOOP_LIMIT,
    max_calls_per_turn: int | None = DEFAULT_MAX_CALLS_PER_TURN,
    max_result_chars: int | None = DEFAULT_MAX_RESULT_CHARS,
    idempotency_store: IdempotencyStore | Default = DEFAULT,
    task_budget: TaskBudget | None = DEFAULT_TASK_BUDGET,
    credentials: Credentials | Default | None = DEFAULT,
    name: str = "ironloop",
    telemetry: bool | Telemetry | None = None,
    state_schema: type[AgentState] | None = None,
    context_schema: type[Any] | None = None,
    store: BaseStore | None = None,
    response_format: Any = None,
    approval_format: RequestFormat = "ironloop",
) -> CompiledStateGraph:
    """Compile a ReAct agent whose tool calls run under per-tool policies.

    ``model`` is any LangChain chat model with ``bind_tools``, or its name for LangChain's ``init_chat_model``
    (``"openai:gpt-4.1"``; needs ``langchain``); ``tools`` are LangChain tools or plain
    functions with type hints and a docstring; ``policies`` maps a tool name to its `ToolPolicy`
    (``default_policy``, `DEFAULT_POLICY` unless given, covers the rest). ``max_turns`` caps model calls per user
    message; when it is spent the run ends with an answer that says so. ``max_concurrency`` caps the calls (and
    sync-tool threads) that run at once in the process; the others wait in line, their timeouts not yet started
    (`tools.admission`). The model is called under ``model_policy`` (`DEFAULT_MODEL_POLICY`
    unless given), then each of ``fallback_models`` in turn. A call identical to ``loop_limit`` earlier ones is
    refused; results longer than ``max_result_chars`` are cut. A turn runs at most ``max_calls_per_turn`` calls;
    the rest are answered "not run: too many calls in one turn".

    Side-effect tools record their calls in ``idempotency_store``; omitted, it is the checkpoint database when
    the checkpointer is a `checkpoints.SQLAlchemySaver` (durable across crashes), else process memory.
    ``task_budget`` caps the retries and the wall time of each task (`DEFAULT_TASK_BUDGET` unless given).
    ``credentials`` holds the tools' secrets (`tools.credentials`); omitted, they are loaded from the environment
    and ``ironloop.toml`` when a tool granted some (``ToolPolicy.credentials``) is first called.

    ``telemetry``: OpenTelemetry spans and metrics (`observability`): ``None`` (default) reports when an OTLP
    endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT``), ``$IRONLOOP_OTEL`` is set or the program installed
    a tracer provider; ``True``/``False`` force it; a `observability.telemetry.Telemetry` reports to its providers.

    As in ``create_agent``: ``state_schema`` extends `AgentState` (``class MyState(ironloop.AgentState)``),
    ``context_schema`` types the run's ``context`` (tools read it through ``ToolRuntime``), ``store`` is the
    graph's long-term store, and ``response_format`` (a Pydantic model, TypedDict or JSON schema) adds a
    structured final answer, ``structured_response``, made by one more model call (`graph.structured`).
    ``approval_format="langchain"`` adds LangChain's HITL keys to approval requests (`tools.approval`).
    LangChain's ``AgentMiddleware`` is not taken: to combine it with ironloop's runtime, use ``create_agent``
    with `graph.middleware.IronloopToolMiddleware`.

    ``None`` always means "none" or "off" (``telemetry`` aside): no checkpointer, no system prompt, no cap on results
    (``max_result_chars``) or on calls per turn (``max_calls_per_turn``), no task budget, no credentials.
    Arguments for which "none" means nothing (the policies, the ledger) do not take ``None``; leave them out for
    their default.
    """
    for argument, value in (
        ("default_policy", default_policy),
        ("model_policy", model_policy),
        ("idempotency_store", idempotency_store),
    ):
        if value is None:
            raise TypeError(f"build_agent({argument}=None): leave {argument} out for its default")
    if max_turns < 1:
        raise ValueError(f"max_turns must be at least 1, got {max_turns}")
    if loop_limit < 1:
        raise ValueError(f"loop_limit must be at least 1, got {loop_limit}")
    if max_calls_per_turn is not None and max_calls_per_turn < 1:
        raise ValueError(f"max_calls_per_turn must be at least 1, got {max_calls_per_turn}")
    state: type = AgentState if state_schema is None else checked_state(state_schema)
    models = [chat_model(m) for m in (model, *fallback_models)]
    if idempotency_store is DEFAULT:
        idempotency_store = default_idempotency_store(checkpointer)
    budgets = Budgets(task_budget) if task_budget is not None else None
    reporter = agent_telemetry(telemetry)
    runner = ToolCallRunner.for_tools(
        tools,
        policies,
        default_policy,
        listeners=listeners,
        max_result_chars=max_result_chars,
        idempotency_store=idempotency_store,
        budgets=budgets,
        credentials=credentials,
        max_concurrency=max_concurrency,
        approval_format=approval_format,
        state_schema=state,
        max_in_flight=max_concurrency,
    )
    catalog = runner.catalog
    observed = None
    if reporter is not None:
        circuits = [n for n in catalog.tools if runner.policy_for(n).circuit_breaker is not None]
        observed = reporter.for_agent(name, checkpointer, models, circuits)
        runner.listeners.append(observed.tools)
    tool_node = PolicyToolNode(
        [runner.prepare(t) for t in catalog.tools.values()],
        awrap_tool_call=runner.awrap_tool_call,
        handle_tool_errors=False,  # the runner turns every failure into an observation itself
    )
    tool_list = list(catalog.tools.values())
    caller = ModelCaller(
        [(model_name(m), bind_tools(m, tool_list)) for m in models],
        model_policy,
        observer=observed.models if observed is not None else None,
    )
    loop = ReActLoop(
        caller=caller,
        catalog=catalog,
        runner=runner,
        max_turns=max_turns,
        loop_limit=loop_limit,
        system_prompt=system_prompt,
        budgets=budgets,
        max_calls_per_turn=max_calls_per_turn,
    )

    answer = StructuredAnswer(models[0], response_format, model_policy, system_prompt) if response_format else None
    if answer is not None:
        state = with_structured_response(state)
    inputs = InputState if state_schema is None else input_schema_of(state_schema)
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(state, input_schema=inputs, context_schema=context_schema)
    builder.add_node("model", loop.call_model_node())
    builder.add_node("tools", tool_node)
    builder.add_node("reject", Inline(loop.reject_call))
    builder.add_node("finish", Inline(loop.finish_out_of_budget))
    repair = OrphanRepair(runner)  # may ask the SQL ledger: left on LangGraph's executor
    builder.add_node("repair", repair)
    builder.add_conditional_edges(
        START, Inline(lambda state, _: repair.route(state), name="route_start"), ["repair", "model"]
    )
    builder.add_edge("repair", "model")
    if answer is None:
        builder.add_conditional_edges("model", Inline(loop.route_model_output), ["tools", "reject", "finish", END])
    else:
        builder.add_node("respond", answer.node())
        builder.add_edge("respond", END)
        routed = Inline(answer.routed(loop.route_model_output), name="route_model_output")
        builder.add_conditional_edges("model", routed, ["tools", "reject", "finish", "respond"])
    builder.add_edge("tools", "model")
    builder.add_edge("reject", "model")
    builder.add_edge("finish", END)
    compiled = builder.compile(checkpointer=checkpointer, store=store, name=name)
    # LangGraph's sync runner sizes its task pool from max_concurrency (default: cores + 4 threads).
    if observed is not None:  # the run handler opens each run's invoke_agent span
        return compiled.with_config(max_concurrency=max_concurrency, callbacks=[observed.runs])
    return compiled.with_config(max_concurrency=max_concurrency)


def chat_model(model: BaseChatModel | str) -> BaseChatModel:
    """A chat model, or one named as LangChain's ``init_chat_model`` reads it (``"openai:gpt-4.1"``)."""
    if not isinstance(model, str):
        return model
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        raise ImportError(
            f"a model given by name ({model!r}) needs langchain: pip install 'ironloop[langchain]'"
        ) from None
    return init_chat_model(model)


def checked_state(schema: type[AgentState]) -> type[AgentState]:
    """``schema`` if it has every channel the agent uses (it extends `AgentState`), else a one-line `ValueError`."""
    check_state_schema(schema)
    hints = get_type_hints(schema, include_extras=True)
    if missing := [key for key in get_type_hints(AgentState) if key not in hints]:
        raise ValueError(
            f"build_agent(state_schema={schema.__name__}): it has no {', '.join(missing)}; subclass ironloop.AgentState"
        )
    return schema


def input_schema_of(schema: type[AgentState]) -> type:
    """What a caller may pass: the state's channels but the managed ``remaining_steps`` (LangGraph refuses it)."""
    hints = get_type_hints(schema, include_extras=True)
    hints.pop("remaining_steps", None)
    return TypedDict(f"{schema.__name__}Input", hints, total=False)  # type: ignore[operator]


def default_idempotency_store(checkpointer: BaseCheckpointSaver | None) -> IdempotencyStore:
    """The ledger of side-effect calls lives where the checkpoints do, when they are in SQL."""
    from ironloop.checkpoints import SQLAlchemySaver

    if isinstance(checkpointer, SQLAlchemySaver):
        from ironloop.checkpoints.idempotency import SQLIdempotencyStore

        return SQLIdempotencyStore(checkpointer.engine)
    return MemoryIdempotencyStore()


def bind_tools(model: BaseChatModel, tools: list[BaseTool]) -> Runnable:
    """The model with the tools bound: for OpenAI-compatible endpoints, strict schemas where the schema allows
    it and parallel calls on; for any other chat model, its own ``bind_tools``."""
    if not tools:
        return model
    try:
        if _is_openai_model(model):
            return model.bind_tools(openai_tool_specs(tools), parallel_tool_calls=True)
        return model.bind_tools(tools)
    except (AttributeError, NotImplementedError) as exc:
        raise TypeError(f"{type(model).__name__} cannot bind tools; ironloop needs a tool-calling chat model") from exc


def _is_openai_model(model: Any) -> bool:
    """A langchain-openai chat model, found without importing langchain-openai (and the OpenAI SDK, a second of
    start-up) for the other models: an instance of its classes exists only once it was imported."""
    module = sys.modules.get("langchain_openai.chat_models.base")
    return module is not None and isinstance(model, module.BaseChatOpenAI)
