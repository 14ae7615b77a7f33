"""Removing known secrets from what a tool hands back: its observation, and the error it raised.

A secret is looked for in every form text can carry it (`secret_forms`): as is, and escaped as a Python
``str``/``bytes`` literal (an HTTP client quoting ``b'Bearer ...'`` in its error), as a JSON string, percent-encoded
(a URL, a form body) and HTML-escaped. Each form is replaced by ``***``, so no escaped copy slips through.

A service may echo a credential (an error page quoting the ``Authorization`` header), and a tool may put the
answer into its result or its exception. Everything the runtime does with those afterwards (the model's next
prompt, the attempt ledger, the idempotency ledger, the trajectory, logs) starts from them, so the runner
scrubs both where they come out of the tool (`tools.runner.ToolCallRunner`), and granted tools are wrapped
(`scrubbing_tool`) so that even LangChain's callbacks, which see a tool's output first, get the scrubbed text.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, quote_plus

from ironloop.tools.errors import PermanentToolError, TransientToolError, is_transient, status_code_of
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool

Redact = Callable[[str], str]

REDACTED = "***"


def secret_forms(value: str) -> tuple[str, ...]:
    """Every distinct form ``value`` takes in text, longest first: raw; the inside of a Python ``str`` and
    ``bytes`` literal (with either quote escaped); of a JSON string (ASCII-escaped or not); percent-encoded as
    a path, a query value and a form field; HTML-escaped."""
    raw = value.encode("utf-8", "surrogatepass")
    forms = {
        value,
        repr(value)[1:-1],
        repr('"' + value)[2:-1],  # a literal quoted with ', so a ' inside is escaped
        repr(raw)[2:-1],
        repr(b'"' + raw)[3:-1],
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value),
        quote(value, safe=""),
        quote_plus(value),
        html.escape(value),
    }
    return tuple(sorted(forms, key=len, reverse=True))


def redact_forms(text: str, forms: Iterable[str]) -> str:
    """``text`` with each form (longest first, so none is half-replaced) replaced by ``***``."""
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def scrub_message(message: Any, redact: Redact) -> Any:
    """A ToolMessage whose text (content and string artifact) has the secrets replaced; other results as they are."""
    if not isinstance(message, ToolMessage):
        return message
    update: dict[str, Any] = {}
    content = _scrub_value(message.content, redact)
    if content != message.content:
        update["content"] = content
    if isinstance(message.artifact, str) and (artifact := redact(message.artifact)) != message.artifact:
        update["artifact"] = artifact
    return message.model_copy(update=update) if update else message


def _scrub_value(value: Any, redact: Redact) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_scrub_value(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_value(v, redact) for k, v in value.items()}
    return value


def scrub_exception(error: BaseException, redact: Redact) -> BaseException:
    """The error to propagate instead of ``error``: the same object with secrets cut from its text and from
    its chain (``__cause__``, ``__context__``, notes), or, if its text still shows one (a class whose ``str``
    does not come from ``args``), a `TransientToolError`/`PermanentToolError` with the scrubbed text.

    A replacement keeps the retry decision (`is_transient`) and the HTTP status; it loses "surely not applied"
    (a connection refused), so a side-effect call then errs towards "outcome unknown", the safe side.
    """
    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and all(link is not seen for seen in chain):
        chain.append(link)
        _scrub_in_place(link, redact)
        link = link.__cause__ or link.__context__
    if not any(_shows_secret(link, redact) for link in chain):
        return error
    text = _text(error)
    status = status_code_of(error)
    if is_transient(error):
        replacement: BaseException = TransientToolError(redact(text), status_code=status)
    else:
        replacement = PermanentToolError(redact(text), status_code=status)
    replacement.__cause__ = None
    replacement.__suppress_context__ = True
    return replacement


def _scrub_in_place(error: BaseException, redact: Redact) -> None:
    with contextlib.suppress(AttributeError, TypeError):  # an exception type with read-only args
        error.args = tuple(_scrub_value(a, redact) for a in error.args)
    for name, value in list(getattr(error, "__dict__", {}).items()):
        if isinstance(value, str | list | dict) and (scrubbed := _scrub_value(value, redact)) != value:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(error, name, scrubbed)


def _shows_secret(error: BaseException, redact: Redact) -> bool:
    return any(redact(shown) != shown for shown in (_text(error), _text(error, repr)))


def _text(error: BaseException, render: Callable[[Any], str] = str) -> str:
    try:
        return render(error)
    except Exception:  # a broken __str__ shows nothing
        return type(error).__name__


def scrubbing_tool(tool: BaseTool, redact_of: Callable[[], Redact]) -> BaseTool:
    """A copy of ``tool`` whose own result and error are scrubbed inside the tool, before LangChain's callbacks
    (``on_tool_end``/``on_tool_error``: tracing, the ``tools`` stream mode) see them. ``redact_of()`` gives the
    redaction at call time (the credentials may load lazily). Only a ``StructuredTool`` with a coroutine (what
    `tools.threads.ToolThreads.offload` makes of every sync one) can be wrapped; other tools are returned as
    they are, and the runner's scrub still covers everything the runtime records."""
    if not isinstance(tool, StructuredTool) or tool.coroutine is None:
        return tool
    inner = tool.coroutine

    @functools.wraps(inner)  # keeps the signature LangChain inspects to inject arguments
    async def coroutine(*args: Any, **kwargs: Any) -> Any:
        redact = redact_of()
        try:
            result = await inner(*args, **kwargs)
        except Exception as error:
            cleaned = scrub_exception(error, redact)
            if cleaned is error:
                raise
            raise cleaned from None
        if isinstance(result, str):
            return redact(result)
        if isinstance(result, ToolMessage):
            return scrub_message(result, redact)
        return result

    return tool.model_copy(update={"coroutine": coroutine})
