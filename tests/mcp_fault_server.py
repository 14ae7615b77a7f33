"""A fault-injecting MCP server for the tests, over stdio or streamable HTTP.

    python tests/mcp_fault_server.py --state DIR [--transport http --port N]

Everything it does is appended to ``DIR/ledger.jsonl`` (one JSON object a line), which the tests read as the
server's own account: ``start`` (pid), ``begin`` (a tool call started: tool, request id, ``_meta``), ``effect``
(a write happened), ``pausing`` (a call reached its pause), ``cancelled`` (the client's
``notifications/cancelled`` reached a running call), ``progress``.
Markers under ``DIR`` let a fault fire once across restarts (``pause_once_s``).

Tools (annotations chosen to cover every kind):

- ``read(item, pause_once_s=0)``: read-only, closed world. Pauses the first time it sees ``item`` (across
  restarts), so a test can kill the process mid-call and see the retry answer at once.
- ``flaky(item, failures)``: read-only; the first ``failures`` calls per item answer a JSON-RPC error -32603.
- ``upstream(item, failures)``: read-only, open world; the first ``failures`` calls per item (across restarts)
  answer ``isError`` "upstream search service: HTTP 503 Service Unavailable".
- ``hang()``: read-only; never answers (logs ``cancelled`` when the client cancels it).
- ``slow(steps, delay_s)``: read-only; reports progress ``steps`` times, then answers.
- ``picture()``: read-only; a text block and a PNG image block.
- ``write(item, pause_once_s=0)``: a side effect, not idempotent: every call is a new effect. The effect is
  made before the pause, so a process killed during the pause has done it without answering.
- ``keyed_write(item, pause_once_s=0)``: a side effect, idempotent: deduplicates by the request's
  ``_meta["io.ironloop/idempotency-key"]`` (a repeat returns the first result, no new effect).
- ``erase(item)``: destructive, idempotent. ``append(item)``: not destructive, not idempotent.
- ``plain()``: no annotations at all.
- ``freeze(seconds)``: blocks the server's event loop (a hung server that answers nothing, not even pings).
- ``crash()``: the process exits at once, mid-call.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import McpError

IDEMPOTENCY_KEY_META = "io.ironloop/idempotency-key"
RED_PIXEL_PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
        "0000000c4944415408d763f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
    )
).decode()


def annotations(**hints: bool) -> types.ToolAnnotations:
    return types.ToolAnnotations(**hints)


def schema(**properties: str) -> dict[str, Any]:
    kinds = {"str": {"type": "string"}, "int": {"type": "integer"}, "num": {"type": "number"}}
    required = [name for name, kind in properties.items() if not kind.endswith("?")]
    return {
        "type": "object",
        "properties": {name: kinds[kind.rstrip("?")] for name, kind in properties.items()},
        "required": required,
        "additionalProperties": False,
    }


READ = annotations(readOnlyHint=True, openWorldHint=False)
TOOLS = [
    types.Tool(name="read", description="Read an item.", inputSchema=schema(item="str", pause_once_s="num?"),
               annotations=READ),
    types.Tool(name="flaky", description="Read, failing first.", inputSchema=schema(item="str", failures="int"),
               annotations=READ),
    types.Tool(name="upstream", description="Search upstream.", inputSchema=schema(item="str", failures="int"),
               annotations=annotations(readOnlyHint=True, openWorldHint=True)),
    types.Tool(name="hang", description="Never answers.", inputSchema=schema(), annotations=READ),
    types.Tool(name="slow", description="Long work with progress.", inputSchema=schema(steps="int", delay_s="num"),
               annotations=READ),
    types.Tool(name="picture", description="A picture.", inputSchema=schema(), annotations=READ),
    types.Tool(name="write", description="Write an item (not idempotent).",
               inputSchema=schema(item="str", pause_once_s="num?"),
               annotations=annotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False,
                                       openWorldHint=False)),
    types.Tool(name="keyed_write", description="Write an item, once per idempotency key.",
               inputSchema=schema(item="str", pause_once_s="num?"),
               annotations=annotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True,
                                       openWorldHint=False)),
    types.Tool(name="erase", description="Erase an item.", inputSchema=schema(item="str"),
               annotations=annotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True,
                                       openWorldHint=False)),
    types.Tool(name="append", description="Append an item.", inputSchema=schema(item="str"),
               annotations=annotations(destructiveHint=False)),
    types.Tool(name="plain", description="No annotations.", inputSchema=schema()),
    types.Tool(name="freeze", description="Block the server.", inputSchema=schema(seconds="num"), annotations=READ),
    types.Tool(name="crash", description="Exit mid-call.", inputSchema=schema(), annotations=READ),
]  # fmt: skip


class Ledger:
    """The server's own account of what it did, shared by its restarts (append-only JSON lines)."""

    def __init__(self, state: Path):
        self.state = state
        self.path = state / "ledger.jsonl"

    def log(self, event: str, **fields: Any) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"event": event, "pid": os.getpid(), "at": time.time(), **fields}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def events(self, event: str) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [e for e in map(json.loads, lines) if e["event"] == event]

    def first_time(self, marker: str) -> bool:
        """True once per marker, across restarts."""
        path = self.state / f"marker-{marker}"
        try:
            path.touch(exist_ok=False)
        except FileExistsError:
            return False
        return True


def build_server(ledger: Ledger) -> Server:
    server: Server = Server("ironloop-fault-server")
    seen: Counter[str] = Counter()

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return TOOLS

    @server.call_tool()
    async def call_tool(name: str, arguments: dict[str, Any]) -> Any:
        context = server.request_context
        meta = context.meta.model_dump(exclude_none=True) if context.meta is not None else {}
        ledger.log("begin", tool=name, request_id=context.request_id, meta=meta, arguments=arguments)
        item = arguments.get("item", "")

        async def pause_once() -> None:
            if arguments.get("pause_once_s") and ledger.first_time(f"{name}-{item}"):
                ledger.log("pausing", tool=name, item=item)
                await anyio.sleep(float(arguments["pause_once_s"]))

        if name == "read":
            await pause_once()
            return [types.TextContent(type="text", text=f"value of {item}")]
        if name == "flaky":
            return [types.TextContent(type="text", text=f"value of {item} after {seen[f'flaky-{item}']} tries")]
        if name == "upstream":  # counted in the ledger: a session per call (a process per call) sees the same
            calls = [e for e in ledger.events("begin") if e["tool"] == name and e["arguments"].get("item") == item]
            if len(calls) <= int(arguments["failures"]):
                text = "upstream search service: HTTP 503 Service Unavailable"
                return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)
            return [types.TextContent(type="text", text=f"results for {item}")]
        if name == "hang":
            try:
                await anyio.sleep(3600)
            except anyio.get_cancelled_exc_class():
                ledger.log("cancelled", tool=name, request_id=context.request_id)
                raise
        if name == "slow":
            token = meta.get("progressToken")
            steps = int(arguments["steps"])
            for step in range(1, steps + 1):
                await anyio.sleep(float(arguments["delay_s"]))
                if token is not None:
                    await context.session.send_progress_notification(
                        token, step, steps, f"step {step} of {steps}", related_request_id=str(context.request_id)
                    )
                    ledger.log("progress", step=step)
            return [types.TextContent(type="text", text=f"did {steps} steps")]
        if name == "picture":
            return [
                types.TextContent(type="text", text="a red pixel"),
                types.ImageContent(type="image", data=RED_PIXEL_PNG, mimeType="image/png"),
            ]
        if name in ("write", "keyed_write", "erase", "append"):
            key = meta.get(IDEMPOTENCY_KEY_META)
            if name == "keyed_write" and key is not None:
                done = [e for e in ledger.events("effect") if e.get("key") == key]
                if done:
                    return [types.TextContent(type="text", text=done[0]["result"])]
            result = f"{name} {item}: done"
            ledger.log("effect", tool=name, item=item, key=key, result=result)
            await pause_once()  # the change is made; the answer is late (or never comes, if the process dies)
            return [types.TextContent(type="text", text=result)]
        if name == "plain":
            return [types.TextContent(type="text", text="plain")]
        if name == "freeze":
            time.sleep(float(arguments["seconds"]))  # blocks the event loop: nothing is answered meanwhile
            return [types.TextContent(type="text", text="thawed")]
        if name == "crash":
            os._exit(3)
        raise ValueError(f"unknown tool {name}")

    # Transient JSON-RPC errors come from outside the call_tool decorator (which turns exceptions into isError).
    answer = server.request_handlers[types.CallToolRequest]

    async def with_transient_errors(request: types.CallToolRequest) -> types.ServerResult:
        arguments = request.params.arguments or {}
        if request.params.name == "flaky":
            key = f"flaky-{arguments.get('item', '')}"
            seen[key] += 1
            if seen[key] <= int(arguments.get("failures", 0)):
                ledger.log("jsonrpc_error", tool="flaky", attempt=seen[key])
                raise McpError(types.ErrorData(code=types.INTERNAL_ERROR, message="internal error: pool exhausted"))
        return await answer(request)

    server.request_handlers[types.CallToolRequest] = with_transient_errors
    return server


async def serve_stdio(server: Server) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def serve_http(server: Server, port: int) -> None:
    import uvicorn
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.applications import Starlette
    from starlette.routing import Mount

    manager = StreamableHTTPSessionManager(app=server)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    app = Starlette(routes=[Mount("/mcp", app=manager.handle_request)], lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    ledger = Ledger(args.state)
    ledger.log("start", transport=args.transport)
    server = build_server(ledger)
    if args.transport == "stdio":
        anyio.run(serve_stdio, server)
    else:
        serve_http(server, args.port)
    sys.exit(0)


if __name__ == "__main__":
    main()
