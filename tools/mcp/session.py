"""One MCP server's session, kept for the life of the process and renewed when it breaks.

A `ServerConnection` starts its server (stdio) or opens its session (streamable HTTP, SSE) on first use, runs
``initialize`` and lists the tools, then serves every call over that one session. Each life of the session is
owned by one supervisor task (the SDK's transports and ``ClientSession`` must be entered and left by the same
task); calls only borrow it. The session is renewed when:

- the server process exits or the connection closes (the read stream ends: noticed at once);
- a call meets a broken transport, or the server no longer knows the session (HTTP 404 after a restart);
- a call that timed out is followed by an unanswered ``ping`` (a hung stdio server): the process is killed
  and started again.

A call in flight when its session dies is classified (`tools.mcp.errors`): never sent (its POST could not
connect, or the write failed) is `MCPServerUnavailable`, safe to retry; anything else is `MCPConnectionLost`,
an unknown outcome for the exactly-once rules. Starts that keep failing are paced (``Retry-After``-like).

Cancellation: `CancellingClientSession` sends ``notifications/cancelled`` with the request id whenever it stops
waiting for a request (its awaiting task was cancelled, or the SDK's read timeout fired), which the SDK's own
``ClientSession`` never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TextIO, TypeVar

import anyio
import httpx
import mcp.types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from ironloop.tools.mcp.config import ServerConfig
from ironloop.tools.mcp.errors import (
    CLOSED_STREAM_ERRORS,
    SDK_REQUEST_TIMEOUT,
    MCPConnectionLost,
    MCPServerUnavailable,
    MCPTimeoutError,
    classify,
    is_connection_failure,
)
from mcp import ClientSession, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from mcp.shared.message import MessageMetadata, SessionMessage
from mcp.shared.session import ProgressFnT, RequestId
from pydantic import BaseModel

logger = logging.getLogger(__name__)

ResultT = TypeVar("ResultT", bound=BaseModel)

CLIENT_INFO = types.Implementation(name="ironloop", version="1")

CANCEL_NOTICE_TIMEOUT_S = 5.0
"""Longest wait to hand ``notifications/cancelled`` to the transport (a wedged transport must not hold it)."""

LOST_GRACE_S = 0.25
"""After the session died, how long a call still waits for an answer that may already be on its way."""

DEFAULT_PING_TIMEOUT_S = 5.0
"""A server that does not answer a ping this fast after a call timed out is taken as hung and restarted."""

RESTART_BACKOFF_S = (0.05, 5.0)
"""First and longest wait between failed starts of a server (doubling): a crash-looping server is not
respawned at the pace of a read tool's retries."""

HTTP_TIMEOUT = httpx.Timeout(30.0, read=300.0)
"""The SDK's defaults: a response stream may stay open while a long tool reports progress."""

PostNotice = Callable[[types.ClientNotification], Awaitable[bool]]
"""Sends a notification by a route of its own; False if it could not (the SDK's route is then used)."""

Transport = tuple[
    MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage], PostNotice | None
]
"""A transport's ends (what the server sends, where to write to it) and, over streamable HTTP, a notice poster."""

NOTICE_FAILURES: tuple[type[BaseException], ...] = (
    TimeoutError,
    httpx.HTTPError,
    RuntimeError,  # httpx: "the client has been closed" (the session ended meanwhile)
    *CLOSED_STREAM_ERRORS,
)
"""Why a cancellation notice may not go out; none of them matters to the call it was about."""


class _LateAnswers(logging.Filter):
    """Drops the SDK's "Error parsing JSON response" tracebacks for answers that arrive after their session was
    closed (a session ended under load, a restart): the answer had no one left to take it, nothing failed."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, anyio.ClosedResourceError | anyio.BrokenResourceError)


logging.getLogger("mcp.client.streamable_http").addFilter(_LateAnswers())

_request_ids: contextvars.ContextVar[list[RequestId] | None] = contextvars.ContextVar(
    "ironloop_mcp_request_ids", default=None
)


class CancellingClientSession(ClientSession):
    """``ClientSession`` that tells the server when it stops waiting: ``notifications/cancelled`` with the
    request id and a reason, as the specification asks of a sender that times out or gives up.

    The notice is sent from a task of its own: the caller's cancellation completes at once (a retry or a hedge
    must not wait behind it). ``post_notice``, when given, sends it instead of the SDK's transport (see
    `ServerConnection._transport`)."""

    cancellations_sent = 0
    """How many ``notifications/cancelled`` this session sent (for tests and diagnostics)."""

    def __init__(self, *args: Any, post_notice: PostNotice | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.post_notice = post_notice
        self._notices: set[asyncio.Task[None]] = set()

    async def send_request(
        self,
        request: types.ClientRequest,
        result_type: type[ResultT],
        request_read_timeout_seconds: timedelta | None = None,
        metadata: MessageMetadata = None,
        progress_callback: ProgressFnT | None = None,
    ) -> ResultT:
        # The SDK numbers requests from this counter and reads it before its first await, so this is the id
        # the request is sent with. (The one private attribute relied on: tests pin it.)
        request_id: RequestId = self._request_id
        if (ids := _request_ids.get()) is not None:
            ids.append(request_id)
        try:
            return await super().send_request(
                request, result_type, request_read_timeout_seconds, metadata, progress_callback
            )
        except McpError as error:
            if error.error.code == SDK_REQUEST_TIMEOUT:
                self._notify_cancelled(request, request_id, "timed out")
            raise
        except asyncio.CancelledError:
            self._notify_cancelled(request, request_id, "the client stopped waiting")
            raise

    def _notify_cancelled(self, request: types.ClientRequest, request_id: RequestId, reason: str) -> None:
        if isinstance(request.root, types.InitializeRequest):
            return  # the specification forbids cancelling initialize
        notice = types.ClientNotification(
            types.CancelledNotification(params=types.CancelledNotificationParams(requestId=request_id, reason=reason))
        )
        task = asyncio.get_running_loop().create_task(self._send_notice(notice), context=contextvars.Context())
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def drain_notices(self) -> None:
        """Let the cancellation notices already on their way go out before the session closes (each is bounded
        by `CANCEL_NOTICE_TIMEOUT_S`): a run that ends right after a timed-out call still tells the server."""
        if self._notices:
            await asyncio.wait(set(self._notices), timeout=CANCEL_NOTICE_TIMEOUT_S)

    async def _send_notice(self, notice: types.ClientNotification) -> None:
        try:
            async with asyncio.timeout(CANCEL_NOTICE_TIMEOUT_S):
                if self.post_notice is None or not await self.post_notice(notice):
                    await self.send_notification(notice)
        except NOTICE_FAILURES:
            return  # a wedged transport, or the session is gone (and the request with it)
        self.cancellations_sent += 1


@dataclass(eq=False)
class _Life:
    """One life of a server's session, from start to stop."""

    number: int
    ended: asyncio.Future[str]
    """Resolved (with the reason) when this life is over; calls race it."""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    session: CancellingClientSession | None = None
    task: asyncio.Task[None] | None = None
    not_sent: dict[RequestId, BaseException] = field(default_factory=dict)
    """HTTP requests whose POST never reached the server, by JSON-RPC id."""
    health_check: asyncio.Task[None] | None = None
    protocol_version: str | None = None
    last_answer_at: float = field(default_factory=time.monotonic)
    """When the server last answered a call: one that answered lately is not hung."""

    def end(self, why: str) -> None:
        if not self.ended.done():
            self.ended.set_result(why)
        self.stop.set()

    @property
    def alive(self) -> bool:
        return self.session is not None and not self.ended.done()


class ServerConnection:
    """The long-lived session to one MCP server. All its methods run on the event loop that first used it."""

    def __init__(
        self, config: ServerConfig, *, ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S, errlog: TextIO | None = None
    ):
        self.config = config
        self.ping_timeout_s = ping_timeout_s
        self.errlog = errlog
        """Where a stdio server's stderr goes (default: ours)."""
        self.tools: list[types.Tool] = []
        """The tools the server listed at its first start."""
        self.server_info: types.Implementation | None = None
        self.starts = 0
        """Sessions started so far: 1 while the first holds, one more per restart."""
        self._life: _Life | None = None
        self._lock: asyncio.Lock | None = None
        self._supervisors: set[asyncio.Task[None]] = set()
        self._failed_starts = 0
        self._next_start_at = 0.0
        self._closed = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def session(self) -> CancellingClientSession | None:
        """The live session, if there is one (for diagnostics)."""
        return self._life.session if self._life is not None and self._life.alive else None

    async def start(self) -> list[types.Tool]:
        """Start the session now (not at the first call) and return the server's tools."""
        await self._live()
        return self.tools

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        meta: dict[str, Any] | None = None,
        progress: ProgressFnT | None = None,
        timeout_s: float | None = None,
    ) -> types.CallToolResult:
        """``tools/call`` on the live session (started or renewed as needed); failures raised classified.

        ``timeout_s`` is a backstop for callers without a runtime around them: past it the SDK gives up and
        the server is told to cancel. Under ironloop's runtime the tool's policy times the call out first.
        """
        life = await self._live()
        assert life.session is not None
        ids: list[RequestId] = []
        token = _request_ids.set(ids)
        try:
            call = asyncio.ensure_future(
                life.session.call_tool(
                    name,
                    arguments,
                    read_timeout_seconds=timedelta(seconds=timeout_s) if timeout_s is not None else None,
                    progress_callback=progress,
                    meta=meta,
                )
            )
        finally:
            _request_ids.reset(token)
        racing: set[asyncio.Future[Any]] = {call, life.ended}
        try:
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
            if not call.done():  # the session died first: an answer may still be on its way
                await asyncio.wait({call}, timeout=LOST_GRACE_S)
        except asyncio.CancelledError:
            call.cancel()  # the session sends notifications/cancelled
            self._check_health(life)
            raise
        if not call.done():
            call.cancel()
            if ids and ids[0] not in life.not_sent:
                raise MCPConnectionLost(
                    f"MCP server {self.name!r}: the session ended during the call ({life.ended.result()})"
                )
            raise MCPServerUnavailable(f"MCP server {self.name!r} is not reachable ({life.ended.result()})")
        try:
            result = call.result()
            life.last_answer_at = time.monotonic()
            return result
        except asyncio.CancelledError:
            raise MCPConnectionLost(f"MCP server {self.name!r}: the call was cut off") from None
        except Exception as exc:
            sent = bool(ids) and ids[0] not in life.not_sent and not isinstance(exc, CLOSED_STREAM_ERRORS)
            error = classify(life.not_sent.get(ids[0], exc) if ids else exc, server=self.name, sent=sent)
            if is_connection_failure(error):
                life.end(str(error))
            elif isinstance(error, MCPTimeoutError):
                self._check_health(life)
            raise error from exc

    async def aclose(self) -> None:
        """Stop the session (a stdio server gets its stdin closed, then SIGTERM, then SIGKILL) and wait."""
        self._closed = True
        if self._life is not None:
            self._life.end("closed")
        tasks = list(self._supervisors)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=10.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)

    # -- lives -----------------------------------------------------------------------------------------------

    async def _live(self) -> _Life:
        life = self._life
        if life is not None and life.alive:
            return life
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            life = self._life
            if life is not None and life.alive:
                return life
            if self._closed:
                raise MCPServerUnavailable(f"MCP server {self.name!r}: its connection is closed")
            wait = self._next_start_at - time.monotonic()
            if wait > 0:
                raise MCPServerUnavailable(
                    f"MCP server {self.name!r} failed to start {self._failed_starts} time(s) in a row; "
                    f"next try in {wait:.2g} s",
                    retry_after_s=wait,
                )
            try:
                life = await self._start()
            except MCPServerUnavailable:
                self._failed_starts += 1
                first, longest = RESTART_BACKOFF_S
                self._next_start_at = time.monotonic() + min(longest, first * 2 ** (self._failed_starts - 1))
                raise
            self._failed_starts = 0
            self._life = life
            return life

    async def _start(self) -> _Life:
        loop = asyncio.get_running_loop()
        self.starts += 1
        life = _Life(number=self.starts, ended=loop.create_future())
        ready: asyncio.Future[list[types.Tool]] = loop.create_future()
        # A clean context: the supervisor outlives the call that started it and must not carry its variables.
        life.task = loop.create_task(self._supervise(life, ready), context=contextvars.Context())
        self._supervisors.add(life.task)
        life.task.add_done_callback(self._supervisors.discard)
        try:
            async with asyncio.timeout(self.config.startup_timeout_s):
                tools = await asyncio.shield(ready)
        except TimeoutError:
            life.end("did not start in time")
            life.task.cancel()
            raise MCPServerUnavailable(
                f"MCP server {self.name!r} ({self.config.describe()}) did not answer initialize and tools/list "
                f"within {self.config.startup_timeout_s:g} s"
            ) from None
        except Exception as exc:
            life.end(f"failed to start: {exc}")
            error = classify(_leaf(exc), server=self.name, sent=False)
            raise MCPServerUnavailable(
                f"MCP server {self.name!r} ({self.config.describe()}) could not be started: {error}"
            ) from exc
        if not self.tools:
            self.tools = tools
        return life

    async def _supervise(self, life: _Life, ready: asyncio.Future[list[types.Tool]]) -> None:
        """Own one life of the session: open the transport and the session, serve until told to stop."""
        try:
            async with AsyncExitStack() as stack:
                read, write, post_notice = await stack.enter_async_context(self._transport(life))
                relay_in, session_read = anyio.create_memory_object_stream[SessionMessage | Exception](0)
                session = await stack.enter_async_context(
                    CancellingClientSession(session_read, write, client_info=CLIENT_INFO, post_notice=post_notice)
                )
                relay = await stack.enter_async_context(anyio.create_task_group())
                relay.start_soon(self._relay, read, relay_in, life)
                initialized = await session.initialize()
                life.protocol_version = str(initialized.protocolVersion)
                tools = await list_all_tools(session)
                self.server_info = initialized.serverInfo
                life.session = session
                if not ready.done():
                    ready.set_result(tools)
                await life.stop.wait()
                await session.drain_notices()
                relay.cancel_scope.cancel()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else MCPServerUnavailable(repr(exc)))
            life.end(f"{type(_leaf(exc)).__name__}: {_leaf(exc)}")
            if not isinstance(exc, Exception):
                raise
            logger.info("MCP server %r: session %d ended: %r", self.name, life.number, _leaf(exc))
        finally:
            life.end("stopped")

    @staticmethod
    async def _relay(
        source: MemoryObjectReceiveStream[SessionMessage | Exception],
        sink: MemoryObjectSendStream[SessionMessage | Exception],
        life: _Life,
    ) -> None:
        """Pass the transport's messages to the session, and notice at once when the server goes away."""
        try:
            async with sink:
                async for message in source:
                    await sink.send(message)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        life.end("the server closed the connection")

    @contextlib.asynccontextmanager
    async def _transport(self, life: _Life) -> AsyncIterator[Transport]:
        config = self.config
        if config.transport == "stdio":
            assert config.command is not None
            parameters = StdioServerParameters(
                command=config.command,
                args=list(config.args),
                env=dict(config.env) if config.env is not None else None,
                cwd=config.cwd,
            )
            async with stdio_client(parameters, errlog=self.errlog or sys.stderr) as (read, write):
                yield read, write, None
            return
        assert config.url is not None

        def client_factory(
            headers: dict[str, str] | None = None, timeout: httpx.Timeout | None = None, auth: httpx.Auth | None = None
        ) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                headers=headers,
                timeout=timeout or HTTP_TIMEOUT,
                auth=auth,
                transport=_NotSentRecorder(httpx.AsyncHTTPTransport(), life.not_sent),
            )

        if config.transport == "sse":
            async with sse_client(config.url, dict(config.headers), httpx_client_factory=client_factory) as (
                read,
                write,
            ):
                yield read, write, None
            return
        url = config.url
        async with (
            client_factory(headers=dict(config.headers)) as client,
            streamable_http_client(url, http_client=client) as (read, write, session_id),
        ):

            async def post_notice(notice: types.ClientNotification) -> bool:
                # The SDK's writer posts notifications one at a time, ahead of the requests queued behind them:
                # under load, a stream of cancellations would hold up every new call. Each goes in a POST of its
                # own instead, as the streamable HTTP transport allows (a redirect: back to the SDK's route).
                body = types.JSONRPCNotification(
                    jsonrpc="2.0", **notice.model_dump(by_alias=True, mode="json", exclude_none=True)
                ).model_dump(by_alias=True, mode="json", exclude_none=True)
                headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
                if (sid := session_id()) is not None:
                    headers["mcp-session-id"] = sid
                if life.protocol_version is not None:
                    headers["mcp-protocol-version"] = life.protocol_version
                response = await client.post(url, json=body, headers=headers)
                return not response.is_redirect

            yield read, write, post_notice

    def _check_health(self, life: _Life) -> None:
        """After a call was abandoned: if a stdio server has answered nothing for a while, ping it; one that
        does not answer the ping either is hung: its session ends, and the process is killed and started again.

        Only for stdio servers: a new HTTP session would not cure a hung remote server, and over HTTP the SDK
        posts notifications one at a time, so under overload a ping can wait behind a queue of cancellations
        and a busy server would pass for a hung one."""
        if self.config.transport != "stdio" or not life.alive:
            return
        if life.health_check is not None and not life.health_check.done():
            return
        if time.monotonic() - life.last_answer_at < self.ping_timeout_s:
            return  # it answered lately: a slow call, not a hung server
        life.health_check = asyncio.get_running_loop().create_task(self._ping(life), context=contextvars.Context())

    async def _ping(self, life: _Life) -> None:
        assert life.session is not None
        try:
            async with asyncio.timeout(self.ping_timeout_s):
                await life.session.send_ping()
        except Exception as exc:
            logger.warning("MCP server %r did not answer a ping (%r): its session ends", self.name, exc)
            life.end(f"the server stopped answering (no ping reply within {self.ping_timeout_s:g} s)")


async def list_all_tools(session: ClientSession) -> list[types.Tool]:
    """Every tool the server lists, page after page."""
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(1000):
        page = await session.list_tools(cursor=cursor)
        tools.extend(page.tools)
        if not page.nextCursor:
            return tools
        cursor = page.nextCursor
    raise MCPServerUnavailable("the server kept paging its tool list past 1000 pages")


class _NotSentRecorder(httpx.AsyncBaseTransport):
    """httpx transport that notes which JSON-RPC requests never reached the server (their POST could not
    connect), so a call lost with its session can be told apart: never sent, or outcome unknown."""

    def __init__(self, inner: httpx.AsyncBaseTransport, not_sent: dict[RequestId, BaseException]):
        self.inner = inner
        self.not_sent = not_sent

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if request.method == "POST" and (request_id := _jsonrpc_id(request)) is not None:
                self.not_sent[request_id] = exc
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


def _jsonrpc_id(request: httpx.Request) -> RequestId | None:
    try:
        body = json.loads(request.content)
    except (ValueError, httpx.RequestNotRead):
        return None
    request_id = body.get("id") if isinstance(body, dict) else None
    return request_id if isinstance(request_id, int | str) else None


def _leaf(error: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups, as anyio's task groups raise them."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error
