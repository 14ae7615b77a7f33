"""The contenders of ``ironloop bench chaos``: the same scripted model and tools, four ways of running them.

Every contender gets the same model (`ScriptedChatModel` playing `graph.scenario.demo_script`), the same
``search`` and ``calc`` implementations, and a ``charge_card`` that posts to the same payments service. They
differ only in what runs the tool calls:

- ``ironloop``: `graph.demo.build_demo_agent` (the built-in policies, no checkpointer);
- ``create_agent``: ``langchain.agents.create_agent`` with ``ToolRetryMiddleware()`` at its defaults, the
  strongest stock configuration users build today;
- ``create_react_agent``: ``langgraph.prebuilt.create_react_agent`` at its defaults;
- ``plain_loop``: a hand-written loop: tool calls one after another, three attempts with a fixed back-off,
  then a fallback value.

Two more put ``search`` behind MCP (`demo.services.mcp_search`, streamable HTTP, the same faults: a 503 is an
``isError`` result, as MCP servers wrapping an HTTP API report it); they run only when named in ``--contenders``:

- ``ironloop_mcp``: ironloop with the MCP ``search`` from `tools.mcp.MCPServers` (one long-lived session), under
  the built-in search policy with longer attempts (`MCP_SEARCH_POLICY_CHANGES`), plus
  ``retry_on_error_text(["HTTP 503", "HTTP 429"])`` for its ``isError`` results;
- ``create_agent_mcp``: ``create_agent`` + ``ToolRetryMiddleware()`` with the MCP ``search`` loaded by
  langchain-mcp-adapters at its defaults (``MultiServerMCPClient.get_tools()``: a new session per call).

The stock contenders have no idempotency keys, so their ``charge_card`` posts without an ``Idempotency-Key``
(``make_charge_tool(url, send_idempotency_key=False)``), as user code does today: the payments service then
charges again on every retry, which is the duplicate the benchmark counts. ironloop uses its own
``charge_card``, which sends the call's key.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the contenders' packages are imported when one is built: `bench chaos --help` stays quick
    from ironloop.demo.scripted_model import ScriptedChatModel
    from langchain_core.messages import AnyMessage, ToolCall
    from langchain_core.runnables import Runnable, RunnableConfig
    from langchain_core.tools import BaseTool

CONTENDERS: dict[str, str] = {
    "ironloop": "ironloop (default policies)",
    "create_agent": "create_agent + ToolRetryMiddleware()",
    "create_react_agent": "create_react_agent (defaults)",
    "plain_loop": "hand-written loop (3 tries, fixed back-off)",
    "ironloop_mcp": "ironloop, search over MCP (one session)",
    "create_agent_mcp": "create_agent + ToolRetryMiddleware(), search over MCP (adapters' defaults)",
}
"""Contender key → the label printed in tables and plots."""

DEFAULT_CONTENDERS = ("ironloop", "create_agent", "create_react_agent", "plain_loop")
STOCK_CONTENDERS = ("create_agent", "create_react_agent", "plain_loop", "create_agent_mcp")
MCP_CONTENDERS = ("ironloop_mcp", "create_agent_mcp")
"""Contenders whose search is an MCP tool: their services also serve search over MCP."""

LOOP_ATTEMPTS = 3
LOOP_BACKOFF_S = 0.5
"""The hand-written loop's fixed wait between attempts: what a ``for attempt in range(3): ... sleep(0.5)`` does."""
LOOP_MAX_TURNS = 10
"""Model calls the hand-written loop allows per task (ironloop's default ``max_turns`` too)."""


@dataclass
class Progress:
    """What a task has produced so far, kept by the contender as it goes.

    The bench reads it after the task ends, raises or is abandoned at its deadline, so a task that never
    returns still reports the model calls it made (counted from the messages, the same way for everyone).
    """

    messages: list[AnyMessage] = field(default_factory=list)


class Contender(Protocol):
    """One way of running the scenario: answers one question, recording its messages in ``progress``.
    ``start`` runs before the clock starts (connections), ``aclose`` after it stops."""

    name: str

    async def start(self) -> None: ...

    async def run(self, question: str, thread_id: str, progress: Progress) -> None: ...

    async def aclose(self) -> None: ...


def scripted_model() -> ScriptedChatModel:
    """The model every contender gets: instant and deterministic, reading only the observations' text."""
    from ironloop.demo.scenario import demo_script
    from ironloop.demo.scripted_model import ScriptedChatModel

    return ScriptedChatModel(script=demo_script)


def stock_tools(url: str) -> list[BaseTool]:
    """The tools the stock contenders get: ironloop's ``search`` and ``calc``, and the unkeyed ``charge_card``."""
    from ironloop.tools.builtin import calc, make_charge_tool, make_search_tool
    from langchain_core.tools import StructuredTool

    return [
        make_search_tool(url),
        StructuredTool.from_function(calc),
        make_charge_tool(url, send_idempotency_key=False),
    ]


class GraphContender:
    """A compiled LangGraph agent, streamed so that its state is known even if it raises or never ends."""

    def __init__(self, name: str, graph: Runnable):
        self.name = name
        self.graph = graph

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def run(self, question: str, thread_id: str, progress: Progress) -> None:
        from langchain_core.messages import HumanMessage

        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        async for state in self.graph.astream({"messages": [HumanMessage(question)]}, config, stream_mode="values"):
            progress.messages = list(state["messages"])


class PlainLoop:
    """The hand-written ReAct loop: no framework, each tool call in turn, ``LOOP_ATTEMPTS`` tries, a fallback.

    Any exception is retried after a fixed ``LOOP_BACKOFF_S``; once the tries are spent the model gets the
    fallback observation ``[fallback] <tool> failed: <error>``. The tools' own HTTP timeout (30 s) is the only
    timeout, as in most such loops.
    """

    name = "plain_loop"

    def __init__(self, model: ScriptedChatModel, tools: Sequence[BaseTool]):
        self.model = model.bind_tools(list(tools))
        self.tools = {t.name: t for t in tools}

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def run(self, question: str, thread_id: str, progress: Progress) -> None:
        from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

        messages: list[AnyMessage] = [HumanMessage(question)]
        progress.messages = messages
        for _ in range(LOOP_MAX_TURNS):
            reply = await self.model.ainvoke(messages)
            assert isinstance(reply, AIMessage)
            messages.append(reply)
            if not reply.tool_calls:
                return
            for call in reply.tool_calls:
                messages.append(ToolMessage(await self._call(call), tool_call_id=call["id"], name=call["name"]))

    async def _call(self, call: ToolCall) -> str:
        tool = self.tools.get(call["name"])
        if tool is None:
            return f"[fallback] unknown tool {call['name']}"
        error: BaseException | None = None
        for attempt in range(LOOP_ATTEMPTS):
            try:
                return str(await tool.ainvoke(call["args"]))
            except Exception as exc:
                error = exc
                if attempt + 1 < LOOP_ATTEMPTS:
                    await asyncio.sleep(LOOP_BACKOFF_S)
        return f"[fallback] {call['name']} failed: {error}"


def build_ironloop(url: str) -> Contender:
    from ironloop.demo.agent import build_demo_agent

    return GraphContender("ironloop", build_demo_agent(url))


def build_create_agent(url: str) -> Contender:
    from langchain.agents import create_agent
    from langchain.agents.middleware import ToolRetryMiddleware

    return GraphContender(
        "create_agent", create_agent(scripted_model(), stock_tools(url), middleware=[ToolRetryMiddleware()])
    )


def build_create_react_agent(url: str) -> Contender:
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():  # deprecated in favour of create_agent, yet what most code still calls
        warnings.simplefilter("ignore")
        return GraphContender("create_react_agent", create_react_agent(scripted_model(), stock_tools(url)))


def build_plain_loop(url: str) -> Contender:
    return PlainLoop(scripted_model(), stock_tools(url))


MCP_SEARCH_POLICY_CHANGES = {"timeout_s": 1.0, "hedge_after_s": 0.25, "hedges": 1}
"""How ``ironloop_mcp``'s search policy differs from the HTTP search's (`tools.builtin.SEARCH_POLICY`): a call
through the MCP SDK (client and server) costs a few times a plain HTTP GET (``ironloop bench mcp_sessions``), so
on a loaded machine the HTTP search's 100 ms attempts and 20 ms hedges would time most MCP calls out, and each
abandoned call costs one more request (its ``notifications/cancelled``). Retries stay as many and as quick."""


class MCPContender(GraphContender):
    """A graph whose ``search`` is the MCP tool at ``mcp_url``, made (connections opened) in `start`."""

    def __init__(self, name: str, url: str, make: Callable[[str, str], Any]):
        super().__init__(name, graph=None)  # type: ignore[arg-type]
        self.url = url
        self.make = make
        self.servers: Any = None

    async def start(self) -> None:
        self.graph, self.servers = await self.make(self.url, f"{self.url}/mcp/")

    async def aclose(self) -> None:
        if self.servers is not None:
            await self.servers.aclose()


async def make_ironloop_mcp(url: str, mcp_url: str) -> tuple[Runnable, Any]:
    from ironloop.graph.agent import build_agent
    from ironloop.tools.builtin import BUILTIN_POLICIES, SEARCH_POLICY, calc, make_charge_tool
    from ironloop.tools.mcp import MCPServers, retry_on_error_text
    from langchain_core.tools import StructuredTool

    policy = SEARCH_POLICY.but(**MCP_SEARCH_POLICY_CHANGES, retry_on=retry_on_error_text(["HTTP 503", "HTTP 429"]))
    servers = MCPServers.from_config(
        {"mcpServers": {"search": {"url": mcp_url, "trust": True, "policies": {"search": policy}}}}
    )
    await servers.start()
    tools = [*servers.tools, StructuredTool.from_function(calc), make_charge_tool(url)]
    graph = build_agent(scripted_model(), tools, policies={**BUILTIN_POLICIES, **servers.policies}, name="ironloop-mcp")
    return graph, servers


async def make_create_agent_mcp(url: str, mcp_url: str) -> tuple[Runnable, Any]:
    from langchain.agents import create_agent
    from langchain.agents.middleware import ToolRetryMiddleware
    from langchain_mcp_adapters.client import MultiServerMCPClient

    client = MultiServerMCPClient({"search": {"url": mcp_url, "transport": "streamable_http"}})
    tools = [*await client.get_tools(), *stock_tools(url)[1:]]
    return create_agent(scripted_model(), tools, middleware=[ToolRetryMiddleware()]), None


BUILDERS: dict[str, Callable[[str], Contender]] = {
    "ironloop": build_ironloop,
    "create_agent": build_create_agent,
    "create_react_agent": build_create_react_agent,
    "plain_loop": build_plain_loop,
    "ironloop_mcp": lambda url: MCPContender("ironloop_mcp", url, make_ironloop_mcp),
    "create_agent_mcp": lambda url: MCPContender("create_agent_mcp", url, make_create_agent_mcp),
}
