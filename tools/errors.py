"""ironloop's one exception tree, and the one place foreign errors are classified.

Everything ironloop raises on purpose derives from `IronloopError`; catch it to catch them all. The root lives
here, at the bottom of the import graph, so every other module can derive from it; a class defined elsewhere is
named with its module (``mcp.errors``: `ironloop.tools.mcp.errors`). `tests/test_error_tree.py` checks that this
drawing and the classes agree.

    IronloopError
    ├── ToolError                      about one tool call; the runner turns each into an observation
    │   ├── TransientToolError         worth another attempt (backoff; ``retry_after_s`` honoured)
    │   │   ├── ToolTimeoutError       an attempt passed its ``timeout_s``
    │   │   │   └── MCPTimeoutError    the MCP SDK stopped waiting; the server was told to cancel (mcp.errors)
    │   │   ├── RateLimitTimeoutError  no rate-limit slot freed up before the call's deadline
    │   │   ├── NotSentError           the request never reached the service: it cannot have had an effect
    │   │   │   ├── MCPServerUnavailable  the MCP server could not be started or reached (mcp.errors)
    │   │   │   └── MCPSessionExpired  the MCP server no longer knew the session (mcp.errors)
    │   │   ├── MCPConnectionLost      the MCP session broke with the call in flight (mcp.errors)
    │   │   └── MCPTransientError      a JSON-RPC error that says "try again" (mcp.errors)
    │   └── PermanentToolError         another attempt would fail the same way; shown to the model
    │       ├── InvalidToolCallError   the call was never dispatched (unknown tool, arguments off-schema)
    │       ├── ToolErrorReport        the tool's own error answer, which its policy's ``retry_on`` wants retried
    │       ├── CircuitOpenError       the tool's circuit is open: the call was not sent
    │       ├── MissingCredentialError the tool needs a credential nobody configured
    │       ├── SandboxUnavailableError  the isolation ``run_python`` needs is missing; nothing ran
    │       └── MCPProtocolError       a JSON-RPC error another attempt would meet again (mcp.errors)
    ├── CredentialsConfigError (ValueError)   the credentials file or variables cannot be used
    ├── MCPConfigError (ValueError)           the MCP servers' configuration cannot be used (mcp.config)
    ├── ModelUnavailableError (RuntimeError)  every model failed; the run stopped at its last checkpoint
    ├── CheckpointStoreError           the checkpoint store (checkpoints.errors)
    │   ├── DatabaseUnavailableError   unreachable, or the connection dropped; nothing lost: retry later
    │   ├── InvalidDatabaseURLError (ValueError)  malformed URL, unknown dialect, missing driver
    │   ├── MissingDatabaseError (ValueError)     a SQLite file that is not there, opened only to read
    │   ├── InvalidKeyError (ValueError)          a key does not fit its column; refused before writing
    │   ├── SchemaError                the database's schema cannot be used as it is
    │   │   └── SchemaTooNewError      migrated by a newer ironloop
    │   ├── CorruptCheckpointError     a stored checkpoint cannot be decoded
    │   ├── ThreadLeaseError           a thread's lease could not be had or kept (checkpoints.leases)
    │   │   ├── ThreadBusyError        another live runner holds the thread
    │   │   └── LeaseLostError         this process can no longer vouch for its lease
    │   └── AlreadyDecidedError        another process decided these calls first (checkpoints.decisions)
    ├── DisallowedTypeError (ValueError)      a stored value names a type off the allow-list (checkpoints.serde)
    ├── AgentSpecError (ValueError)           ``--agent`` names no usable agent factory (distributed.agents)
    ├── FleetConfigError (ValueError)         a worker's configuration cannot work (distributed.checks)
    ├── SettingsError (ValueError)            ironloop.toml, a setting's variable or flag cannot be used (settings)
    └── WaitTimeoutError (TimeoutError)       a submitted run did not end within the wait (distributed.submission)

Outside the tree on purpose: `ironloop.commands.CommandError` (how a command exits, not what went wrong; its
module imports nothing, so ``ironloop --help`` stays quick) and `ironloop.tools.mcp.tools.MCPToolError` (LangChain's
``ToolException``: an MCP tool's own ``isError`` answer, which is its observation, not a failure of the call).

Tools may raise the `ToolError` classes directly. Errors from libraries are classified by `is_transient`
without being wrapped: timeouts, connection errors, and HTTP 408/425/429/500/502/503/504 are transient;
everything else, 4xx and validation errors included, is permanent. Programming mistakes are permanent too:
retrying a ``TypeError`` only burns the deadline.
"""

from __future__ import annotations

import email.utils
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the HTTP clients are imported on first classification: importing the tree stays quick
    import httpx
    import httpx2

TRANSIENT_HTTP_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Statuses that say "try again": timeouts, too early, rate limited, and the server-side 5xx family."""


class IronloopError(Exception):
    """Root of every error ironloop raises on purpose."""


class ToolError(IronloopError):
    """Root of the errors ironloop raises about a tool call."""


class TransientToolError(ToolError):
    """A fault that another attempt may not meet: raise it to ask for a retry.

    ``retry_after_s`` is the server's advice (a 429 or 503 ``Retry-After``); the runtime waits at least that
    long before the next attempt if the call's deadline allows it, and gives up now if it does not.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None, status_code: int | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.status_code = status_code


class ToolTimeoutError(TransientToolError):
    """An attempt did not answer within its timeout; the runtime stopped waiting for it."""


class NotSentError(TransientToolError):
    """The request never left (no connection, the server could not be started): retrying cannot duplicate it."""


class PermanentToolError(ToolError):
    """A fault another attempt would meet again (bad input, not found, forbidden): never retried."""

    def __init__(self, message: str, *, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class InvalidToolCallError(PermanentToolError):
    """The model's call cannot be dispatched: unknown tool, arguments that are not JSON or off-schema."""


class ToolErrorReport(PermanentToolError):
    """A tool answered with its own error report (``status="error"``: an MCP ``isError`` result, a handled
    ``ToolException``). Such an answer is the call's observation, never retried, unless the policy's ``retry_on``
    accepts this error: its text is the report's text (a server that reports an upstream 503 as a tool error
    can be retried like an HTTP 503). Raised by the runtime, not by tools; ``message`` is the answer."""

    def __init__(self, message: Any):
        text = getattr(message, "text", None) or str(getattr(message, "content", message))
        super().__init__(" ".join(text.split()) or "the tool reported an error")
        self.message = message


class RateLimitTimeoutError(TransientToolError):
    """No rate-limit slot freed up before the call's deadline (`tools.rate_limit`)."""


class ToolAbortedError(PermanentToolError):
    """The tool raised ``KeyboardInterrupt``, ``SystemExit`` or ``GeneratorExit`` itself (`tools.containment`):
    that call failed; the run goes on."""


class CircuitOpenError(PermanentToolError):
    """The tool's circuit is open: the call was not sent (a retry now would fail the same way; `tools.circuit`)."""


class MissingCredentialError(PermanentToolError):
    """A tool needs a credential nobody configured. The message says what to set, never a value."""


class SandboxUnavailableError(PermanentToolError):
    """The isolation ``run_python`` needs is not available on this machine; nothing was run."""


class CredentialsConfigError(IronloopError, ValueError):
    """The credentials configuration cannot be used (unreadable file, bad TOML, a value of the wrong shape)."""


class ModelUnavailableError(IronloopError, RuntimeError):
    """Every model failed. The run stopped at its last checkpoint; resuming the thread retries the model."""


def _errors_of(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The exception classes ``names`` of ``module`` if it was imported, else none: an error of a library nobody
    imported cannot exist, so classifying never pays for importing the OpenAI SDK (a second) or httpx."""
    loaded = sys.modules.get(module)
    found = (getattr(loaded, name, None) for name in names) if loaded is not None else ()
    return tuple(error for error in found if isinstance(error, type) and issubclass(error, BaseException))


def transient_transport_errors() -> tuple[type[BaseException], ...]:
    """Transport failures of httpx (a user's tool), httpx2 (ours) or the OpenAI SDK (its wrapper of transport
    errors and timeouts): worth another attempt."""
    transport = ("TimeoutException", "NetworkError", "RemoteProtocolError")
    return (
        *_errors_of("httpx", *transport),
        *_errors_of("httpx2", *transport),
        *_errors_of("openai", "APIConnectionError"),
    )


def not_sent_errors() -> tuple[type[BaseException], ...]:
    """Failures before the request left: it cannot have had an effect."""
    connect = ("ConnectError", "ConnectTimeout")
    return (NotSentError, *_errors_of("httpx", *connect), *_errors_of("httpx2", *connect), ConnectionRefusedError)


def status_code_of(exc: BaseException) -> int | None:
    """The HTTP status an error carries, whichever library raised it (httpx, requests, openai, ours)."""
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """The default ``retry_on`` of every policy: is this worth another attempt?"""
    if isinstance(exc, TransientToolError):
        return True
    if isinstance(exc, PermanentToolError):
        return False
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if isinstance(exc, transient_transport_errors()):
        return True
    status = status_code_of(exc)
    return status in TRANSIENT_HTTP_STATUSES


NOT_APPLIED_HTTP_STATUSES = frozenset({408, 425, 429, 503})
"""Statuses by which a server says it did not process the request (so repeating it cannot duplicate it)."""


def surely_not_applied(exc: BaseException) -> bool:
    """True only when the failed request certainly had no effect: it never reached the server, or the server
    said it did not process it. Timeouts, resets and other 5xx leave the outcome unknown."""
    if isinstance(exc, PermanentToolError | InvalidToolCallError):
        return True
    if isinstance(exc, not_sent_errors()):
        return True
    return status_code_of(exc) in NOT_APPLIED_HTTP_STATUSES


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait before trying again, from the error or its HTTP response."""
    advised = getattr(exc, "retry_after_s", None)
    if isinstance(advised, int | float):
        return max(0.0, float(advised))
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    return parse_retry_after(headers.get("retry-after"))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now if now is not None else time.time(), tz=UTC)
    return max(0.0, (when - current).total_seconds())


def describe(exc: BaseException, *, limit: int = 300) -> str:
    """A short, single-line description for the model and the ledger: class and message, no traceback."""
    status = status_code_of(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if status is not None and str(status) not in text:
        text = f"HTTP {status}: {text}"
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def error_class(exc: BaseException) -> str:
    """The name recorded for an error: the class, qualified unless it is a builtin."""
    return class_name(type(exc))


def class_name(cls: type) -> str:
    """`error_class` of an error of class ``cls``."""
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def raise_for_status(
    response: httpx.Response | httpx2.Response, *, what: str, redact: Callable[[str], str] | None = None
) -> None:
    """Translate an HTTP error status into the tree above, keeping the response for `retry_after_of`.

    ``redact`` cleans the error body's text before it is shortened (a service may echo a credential, and a
    shortened copy would no longer match the secret it must hide)."""
    if response.is_success:
        return
    status = response.status_code
    message = f"{what}: HTTP {status} {response.reason_phrase}".rstrip()
    detail = _error_detail(response, redact or (lambda text: text))
    if detail and detail.lower() != response.reason_phrase.lower():
        message += f" ({detail})"
    if status in TRANSIENT_HTTP_STATUSES:
        raise TransientToolError(
            message, status_code=status, retry_after_s=parse_retry_after(response.headers.get("retry-after"))
        )
    raise PermanentToolError(message, status_code=status)


def _error_detail(response: httpx.Response | httpx2.Response, redact: Callable[[str], str]) -> str:
    """The short reason an error body gives: its JSON ``error``/``message``/``detail`` field, or its text."""
    try:
        body = response.json()
    except ValueError:
        return redact(" ".join(response.text.split()))[:160]
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str):
                return redact(value)[:160]
    return ""
