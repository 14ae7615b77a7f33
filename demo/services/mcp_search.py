"""The bundled search, served over MCP: the same corpus and the same seeded faults as ``GET /search``.

A ``search(query)`` tool (read-only, open world) as an MCP server wrapping an HTTP API would report its
upstream's faults: a 503 or 429 as an ``isError`` result ("search service: HTTP 503 Service Unavailable"), a
reset as a JSON-RPC internal error, a delay or a hang as a late or missing answer. Faults are drawn by the same
`FaultInjector` key as the HTTP endpoint (``search:<query>``), so both meet the same fault sequence per query.

- `create_mcp_search_app`: streamable HTTP at ``/mcp`` (mounted by `server.start_tool_services(mcp=True)`);
- ``python -m ironloop.demo.services.mcp_search --profile reference --seed 7``: the same server over stdio.

Needs the ``mcp`` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import mcp.types as types
from ironloop.demo.services.faults import HANG_S, Fault, FaultInjector, profile_named
from ironloop.demo.services.search import bundled_corpus, search_corpus
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import McpError

if TYPE_CHECKING:
    from starlette.applications import Starlette

SEARCH_TOOL = types.Tool(
    name="search",
    description='Search the web for a short factual answer, e.g. "Paris population".',
    inputSchema={
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
        "additionalProperties": False,
    },
    annotations=types.ToolAnnotations(readOnlyHint=True, openWorldHint=True),
)


def create_mcp_search_server(injector: FaultInjector, corpus: tuple[dict[str, Any], ...] | None = None) -> Server:
    documents = corpus if corpus is not None else bundled_corpus()
    server: Server = Server("ironloop-search")

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [SEARCH_TOOL]

    async def call_tool(request: types.CallToolRequest) -> types.ServerResult:
        # Registered as the raw handler (not with @server.call_tool(), which turns every exception into
        # isError), so that a reset can answer a JSON-RPC error, as a broken server would.
        if request.params.name != "search":
            return types.ServerResult(_error(f"unknown tool {request.params.name!r}"))
        query = str((request.params.arguments or {}).get("query", "")).strip()
        fault = injector.draw(f"search:{query.lower()}")
        if fault in (Fault.HTTP_503, Fault.OUTAGE):
            return types.ServerResult(_error("search service: HTTP 503 Service Unavailable"))
        if fault is Fault.HTTP_429:
            after = injector.profile.retry_after_s
            return types.ServerResult(_error(f"search service: HTTP 429 Too Many Requests (retry after {after:g} s)"))
        if fault is Fault.HANG:
            await anyio.sleep(HANG_S)
        if fault is Fault.RESET:
            raise McpError(types.ErrorData(code=types.INTERNAL_ERROR, message="search service: connection reset"))
        if fault is Fault.MALFORMED:
            return types.ServerResult(_error("search service: the answer was not valid JSON"))
        if fault in (Fault.DELAY, Fault.TRICKLE):
            await anyio.sleep(injector.profile.delay_s if fault is Fault.DELAY else injector.profile.trickle_s)
        results = search_corpus(query, documents)
        if not results:
            return types.ServerResult(_error(f"no results for {query!r}; try other words"))
        text = "\n".join(f"{r['title']}: {r['snippet']}" for r in results)
        return types.ServerResult(types.CallToolResult(content=[types.TextContent(type="text", text=text)]))

    server.request_handlers[types.CallToolRequest] = call_tool
    return server


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)


def create_mcp_search_app(injector: FaultInjector, corpus: tuple[dict[str, Any], ...] | None = None) -> Starlette:
    """Streamable HTTP at ``/mcp``; the app's lifespan runs the session manager. (Imported here: the stdio
    server starts faster without the HTTP stack.)"""
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.applications import Starlette
    from starlette.routing import Mount

    # Like the other services (uvicorn at "critical"): a session cut at shutdown is not worth a traceback.
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.CRITICAL)
    manager = StreamableHTTPSessionManager(app=create_mcp_search_server(injector, corpus), json_response=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(routes=[Mount("/mcp", app=manager.handle_request)], lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ironloop.demo.services.mcp_search")
    parser.add_argument("--profile", default="none", help="fault profile (the search part of it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    server = create_mcp_search_server(FaultInjector(profile_named(args.profile).search, args.seed))

    async def serve() -> None:
        from mcp.server.stdio import stdio_server

        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(serve)


if __name__ == "__main__":
    main()
