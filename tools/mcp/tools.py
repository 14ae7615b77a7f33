"""An MCP server's tool as a LangChain tool whose calls go through the server's long-lived session.

The tool's arguments are the server's ``inputSchema`` (checked before dispatch like any dict schema). Its result
is the MCP content as LangChain content blocks (text → ``text``; image → ``image``; audio, resource links and
binary resources → ``file`` or ``image``; embedded text resources → ``text``), with ``structuredContent`` as the
artifact. An ``isError`` result is the tool's own error observation (``status="error"``, its content blocks),
retried only if its policy's ``retry_on`` says so (`tools.mcp.config.retry_on_error_text`).

A side-effect call sends its idempotency key in the request's ``_meta`` under ``io.ironloop/idempotency-key``,
so a server that deduplicates can honour it. Progress notifications become ``tool_progress`` events on the
graph's custom stream (and so in ``ironloop run``'s trajectory).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import mcp.types as types
from ironloop.tools.attempts import progress_made
from ironloop.tools.idempotency import current_idempotency_key
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langgraph.prebuilt.tool_node import ToolRuntime
from mcp.shared.session import ProgressFnT

IDEMPOTENCY_KEY_META = "io.ironloop/idempotency-key"
"""The ``_meta`` key of a side-effect call's idempotency key (reverse-DNS prefixed, as MCP asks of custom keys)."""

ContentBlock = dict[str, Any]


class CallTool(Protocol):
    """What a tool needs from its server: ``tools/call`` with ``_meta``, progress and a backstop timeout."""

    def __call__(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        meta: dict[str, Any] | None,
        progress: ProgressFnT | None,
        timeout_s: float | None,
    ) -> Awaitable[types.CallToolResult]: ...


class MCPToolError(ToolException):
    """The MCP tool answered ``isError``: its content is the observation (``blocks``), its text the message."""

    def __init__(self, blocks: list[ContentBlock]):
        super().__init__(text_of(blocks) or "the MCP tool reported an error and said nothing more")
        self.blocks = blocks


def make_tool(
    call_tool: CallTool,
    tool: types.Tool,
    *,
    name: str,
    server: str,
    timeout_s: float | None = None,
) -> BaseTool:
    """The LangChain tool ``name`` calling ``tool`` through ``call_tool``. ``timeout_s`` is the backstop of a
    call made outside ironloop's runtime (under it, the tool's policy times calls out first)."""

    async def call(ironloop_runtime: ToolRuntime | None = None, **arguments: Any) -> tuple[Any, Any]:
        result = await call_tool(
            tool.name,
            arguments,
            meta=_request_meta(),
            progress=_progress_reporter(ironloop_runtime, name),
            timeout_s=timeout_s,
        )
        blocks = content_blocks(result.content)
        if result.isError:
            raise MCPToolError(blocks)
        if not blocks:
            text = json.dumps(result.structuredContent) if result.structuredContent is not None else "(no output)"
            blocks = [_text_block(text)]
        artifact = {"structured_content": result.structuredContent} if result.structuredContent is not None else None
        return blocks, artifact

    annotations = tool.annotations.model_dump() if tool.annotations is not None else {}
    return StructuredTool(
        name=name,
        description=tool.description or tool.title or tool.name,
        args_schema=tool.inputSchema,
        coroutine=call,
        response_format="content_and_artifact",
        handle_tool_error=_error_blocks,
        metadata={**annotations, "mcp_server": server, "mcp_tool": tool.name},
    )


def content_blocks(content: list[types.ContentBlock]) -> list[ContentBlock]:
    """MCP content as LangChain content blocks (the mapping in the module docstring)."""
    return [_block(item) for item in content]


def _block(item: types.ContentBlock) -> ContentBlock:
    """One block, without the random ``id`` LangChain's block factories add (a result must read the same each
    time it is given, or the loop guard could not tell a repeated call)."""
    if isinstance(item, types.TextContent):
        return _text_block(item.text)
    if isinstance(item, types.ImageContent):
        return {"type": "image", "base64": item.data, "mime_type": item.mimeType}
    if isinstance(item, types.AudioContent):
        return {"type": "file", "base64": item.data, "mime_type": item.mimeType}
    if isinstance(item, types.ResourceLink):
        return _binary("url", str(item.uri), item.mimeType)
    if isinstance(item, types.EmbeddedResource):
        resource = item.resource
        if isinstance(resource, types.TextResourceContents):
            return _text_block(resource.text)
        return _binary("base64", resource.blob, resource.mimeType)
    return _text_block(f"[unsupported MCP content of type {getattr(item, 'type', '?')!r}]")


def _text_block(text: str) -> ContentBlock:
    return {"type": "text", "text": text}


def _binary(where: str, value: str, mime: str | None) -> ContentBlock:
    kind = "image" if mime and mime.startswith("image/") else "file"
    return {"type": kind, where: value, **({"mime_type": mime} if mime else {})}


def text_of(blocks: list[ContentBlock]) -> str:
    """The text blocks' text, one per line."""
    return "\n".join(block["text"] for block in blocks if block.get("type") == "text")


def _error_blocks(error: ToolException) -> Any:
    """``handle_tool_error``: an ``isError`` result becomes the observation, with its blocks as they are."""
    if isinstance(error, MCPToolError):
        return error.blocks or [_text_block(str(error))]
    raise error


def _request_meta() -> dict[str, Any] | None:
    """``_meta`` for the request: the idempotency key, when this is a side-effect call under the runtime."""
    try:
        return {IDEMPOTENCY_KEY_META: current_idempotency_key()}
    except RuntimeError:
        return None


def _progress_reporter(runtime: ToolRuntime | None, tool: str) -> ProgressFnT:
    """A progress callback that, in the calling context (whichever thread the session runs on): puts a
    ``tool_progress`` event on the graph's custom stream, and tells the runtime that the call progresses (its
    policy may then restart the attempt's timeout: `tools.attempts.progress_made`)."""
    writer: Callable[[Any], None] | None = runtime.stream_writer if runtime is not None else None
    tool_call_id = runtime.tool_call_id if runtime is not None else None
    loop = asyncio.get_running_loop()
    thread = threading.get_ident()
    context = contextvars.copy_context()  # LangGraph's writer and the attempt's timer live in the caller's context

    def progressed(event: dict[str, Any]) -> None:
        progress_made()
        if writer is not None:
            writer(event)

    async def report(progress: float, total: float | None, message: str | None) -> None:
        event: dict[str, Any] = {"event": "tool_progress", "tool": tool, "tool_call_id": tool_call_id}
        event["progress"] = progress
        if total is not None:
            event["total"] = total
        if message:
            event["message"] = message
        if threading.get_ident() == thread:
            context.run(progressed, event)
        else:
            loop.call_soon_threadsafe(progressed, event, context=context)

    return report
