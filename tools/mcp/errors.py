"""What can go wrong calling an MCP tool, sorted into the runtime's error tree (`tools.errors`).

    ToolError
    ├── TransientToolError
    │   ├── NotSentError
    │   │   ├── MCPServerUnavailable   the server could not be started or reached: the request never left
    │   │   └── MCPSessionExpired      the server no longer knew the session (HTTP 404): it did not run the call
    │   ├── MCPConnectionLost          the session broke while the call was in flight: its outcome is unknown
    │   ├── MCPTimeoutError            the SDK stopped waiting (JSON-RPC 408): outcome unknown, server told to stop
    │   └── MCPTransientError          a JSON-RPC error that says "try again": internal error, or an HTTP-like
    │                                  408/425/429/500/502/503/504 code (429 and 503 mean "not processed")
    └── PermanentToolError
        └── MCPProtocolError           a JSON-RPC error another attempt would meet again: parse error, invalid
                                       request or params, unknown method, a result that breaks its schema

A tool that runs and fails answers with an ``isError`` result instead, which is not an exception here: it is the
tool's observation (`tools.mcp.tools`), retried only when its policy's ``retry_on`` says so.

`classify` is the one place SDK and transport exceptions are translated; the original is chained.
"""

from __future__ import annotations

import anyio
import httpx
from ironloop.tools.errors import (
    TRANSIENT_HTTP_STATUSES,
    NotSentError,
    PermanentToolError,
    ToolError,
    ToolTimeoutError,
    TransientToolError,
)
from mcp.shared.exceptions import McpError
from mcp.types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR

SDK_REQUEST_TIMEOUT = 408
"""The code the SDK's ``ClientSession`` gives its own read timeout."""

SDK_SESSION_TERMINATED = 32600
"""The code the SDK's streamable-HTTP transport gives a request answered 404 (the server forgot the session)."""

PERMANENT_CODES = frozenset({PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS})
"""JSON-RPC errors that describe the request itself: the server did not run it, and would refuse it again."""

CLOSED_STREAM_ERRORS: tuple[type[BaseException], ...] = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    BrokenPipeError,
    ConnectionResetError,
)
"""The transport's streams were closed under the session (the server process died, the connection dropped)."""


class MCPServerUnavailable(NotSentError):
    """The MCP server could not be started, initialised or reached; the call was never sent."""


class MCPSessionExpired(NotSentError):
    """The server answered that it does not know the session (it restarted): the call did not run there."""


class MCPConnectionLost(TransientToolError):
    """The server's session broke while the call was in flight: the call may or may not have run."""


class MCPTimeoutError(ToolTimeoutError):
    """The SDK's own read timeout fired; the server was sent ``notifications/cancelled``."""


class MCPTransientError(TransientToolError):
    """A JSON-RPC error worth another attempt; ``code`` is the JSON-RPC error code."""

    def __init__(self, message: str, *, code: int, status_code: int | None = None):
        super().__init__(message, status_code=status_code)
        self.code = code


class MCPProtocolError(PermanentToolError):
    """A JSON-RPC error (or an invalid result) that another attempt would meet again."""

    def __init__(self, message: str, *, code: int | None = None):
        super().__init__(message)
        self.code = code


def classify(error: BaseException, *, server: str, sent: bool) -> ToolError:
    """The runtime's error for a failure of a request to ``server``. ``sent``: whether the request may have
    reached the server (a failure before it left is `MCPServerUnavailable`, never an unknown outcome)."""
    if isinstance(error, ToolError):
        return error
    where = f"MCP server {server!r}"
    if isinstance(error, McpError):
        return _classify_jsonrpc(error, where)
    if isinstance(error, (*CLOSED_STREAM_ERRORS, httpx.TransportError)):
        if not sent or isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
            return MCPServerUnavailable(f"{where} is not reachable: {_text(error)}")
        return MCPConnectionLost(f"{where}: the connection broke during the call ({_text(error)})")
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        message = f"{where} answered HTTP {status}"
        if status in TRANSIENT_HTTP_STATUSES:
            return MCPTransientError(message, code=status, status_code=status)
        return MCPProtocolError(message, code=status)
    if isinstance(error, RuntimeError) and "structured content" in str(error):
        return MCPProtocolError(f"{where}: {error}")  # the SDK checks results against the tool's outputSchema
    if isinstance(error, OSError) and not sent:
        return MCPServerUnavailable(f"{where} could not be started: {_text(error)}")
    return MCPConnectionLost(f"{where}: {_text(error)}") if sent else MCPServerUnavailable(f"{where}: {_text(error)}")


def _classify_jsonrpc(error: McpError, where: str) -> ToolError:
    code, message = error.error.code, error.error.message
    text = f"{where}: {message} (JSON-RPC {code})"
    if code == CONNECTION_CLOSED:
        return MCPConnectionLost(f"{where}: the connection closed during the call")
    if code == SDK_REQUEST_TIMEOUT and message.startswith("Timed out"):
        return MCPTimeoutError(f"{where}: {message}")
    if code == SDK_SESSION_TERMINATED:
        return MCPSessionExpired(f"{where} no longer knows this session (it restarted?); the call was not run")
    if code in PERMANENT_CODES:
        return MCPProtocolError(text, code=code)
    if code == INTERNAL_ERROR:
        return MCPTransientError(text, code=code)
    if code in TRANSIENT_HTTP_STATUSES:
        return MCPTransientError(text, code=code, status_code=code)
    return MCPProtocolError(text, code=code)


def is_connection_failure(error: ToolError) -> bool:
    """The error shows the session itself is unusable: the next call needs a new one."""
    return isinstance(error, MCPServerUnavailable | MCPSessionExpired | MCPConnectionLost)


def _text(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
