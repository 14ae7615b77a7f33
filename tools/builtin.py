"""The built-in tools (``search``, ``calc``, ``charge_card``) and the policies they ship with."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import httpx2
from ironloop.tools.calc import evaluate, format_number
from ironloop.tools.credentials import Secret, env_var
from ironloop.tools.errors import PermanentToolError, TransientToolError, raise_for_status
from ironloop.tools.http import LoopClients, tls_context
from ironloop.tools.idempotency import Reconcile, Reconciled, Reconciliation, current_idempotency_key
from ironloop.tools.policy import ToolPolicy
from langchain_core.tools import BaseTool, InjectedToolArg, StructuredTool

SEARCH_URL_ENV = "IRONLOOP_SEARCH_URL"
PAYMENTS_URL_ENV = "IRONLOOP_PAYMENTS_URL"
"""The environment variables the command line reads the services' URLs from (the tools themselves take URLs)."""

ServiceURL = str | Callable[[], str] | Callable[[], Awaitable[str]]
"""A service's base URL, or a function giving it (sync or async), asked at each call."""

SEARCH_POLICY = ToolPolicy(
    timeout_s=0.1,
    timeout_growth=2.0,
    hedge_after_s=0.02,
    hedges=2,
    max_attempts=40,
    backoff_initial_s=0.002,
    backoff_max_s=0.05,
    jitter=0.5,
    deadline_s=5.0,
    untrusted_output=True,
)
"""A read-only lookup: retried freely and fast, hedged when slow. The service answers in a millisecond or two
when healthy, so a try still silent after 20 ms is raced by a second one, and at 40 ms by a third (with 15 % slow
answers, one hedge leaves 2.25 % of attempts to time out, two leave 0.34 %), and an attempt silent after 100 ms
is abandoned for a fresh one; each attempt after a timed-out one waits twice as long (0.1, 0.2, 0.4 s... and
hedges at 20, 40, 80 ms...), while a fast 503 keeps the next try short. A fixed 100 ms timeout was measured to
collapse under load: 10 tasks at once on 2 cores shared with 8 busy processes slowed answers past it, every
attempt was abandoned and retries fed the load (0 % success, a retry storm); with the growing timeout the same
run succeeds. Up to 40 attempts, at most 50 ms apart, ride out a service down for about 2 s (16 gave up after
0.8 s: 97.6 % of `outage` tasks succeeded, 99.0 % with 40); the task's retry budget still caps the total. Its
results are text from the web: untrusted output."""

CALC_POLICY = ToolPolicy(timeout_s=2.0, max_attempts=1, deadline_s=2.0)
"""Local and deterministic: a failure will not go away by retrying."""

CHARGE_POLICY = ToolPolicy(
    side_effect=True,
    honours_idempotency_key=True,
    timeout_s=2.0,
    max_attempts=6,
    backoff_initial_s=0.02,
    backoff_max_s=0.5,
    deadline_s=20.0,
    credentials=("api_key",),
)
"""A payment: exactly once. The payments service deduplicates by Idempotency-Key, so even an attempt whose
answer was lost is retried safely with the same key. Authenticates with ``api_key`` when one is configured
(``$IRONLOOP_TOOL_CHARGE_CARD_API_KEY``); the bundled payments service asks for none unless started with one.

Being a side effect, it waits for a human's approval once untrusted output (a search result) has entered the
thread (``approval="on_untrusted"``, the default)."""

BUILTIN_POLICIES: dict[str, ToolPolicy] = {"search": SEARCH_POLICY, "calc": CALC_POLICY, "charge_card": CHARGE_POLICY}


def calc(expr: str) -> str:
    """Evaluate an arithmetic expression (numbers, + - * / // % ** and parentheses), e.g. "2160000 + 513000"."""
    return format_number(evaluate(expr))


def make_search_tool(url: ServiceURL, *, http_timeout_s: float = 30.0) -> BaseTool:
    """The ``search`` tool, calling a search service's ``GET /search?q=`` over HTTP.

    ``url`` is the service's base URL, or a function returning it (or an awaitable of it), resolved at each call.
    """
    base_url_of = _resolver(url)
    clients = LoopClients(timeout=httpx2.Timeout(http_timeout_s, connect=min(5.0, http_timeout_s)))

    async def search(query: str) -> str:
        """Search the web for a short factual answer, e.g. "Paris population"."""
        client = await clients.get()
        response = await client.get(f"{await base_url_of()}/search", params={"q": query})
        raise_for_status(response, what="search service")
        try:
            results = json.loads(response.content)["results"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientToolError("the search service sent a malformed answer") from exc
        if not results:
            raise PermanentToolError(f"no results for {query!r}; try other words")
        return "\n".join(f"{r['title']}: {r['snippet']}" for r in results)

    return StructuredTool.from_function(coroutine=search, name="search")


def make_charge_tool(url: ServiceURL, *, http_timeout_s: float = 30.0, send_idempotency_key: bool = True) -> BaseTool:
    """The ``charge_card`` tool: ``POST /charges`` on a payments service, sending the call's idempotency key.

    ``url`` as for `make_search_tool`.
    ``send_idempotency_key=False`` is the tool as code without an idempotency layer writes it (the chaos
    benchmark gives it to the stock agents): every retry is a new charge.
    """
    base_url_of = _resolver(url)
    clients = LoopClients(timeout=httpx2.Timeout(http_timeout_s, connect=min(5.0, http_timeout_s)))

    async def charge_card(
        customer_id: str, amount_cents: int, api_key: Annotated[Secret | None, InjectedToolArg] = None
    ) -> str:
        """Charge a customer's card on file. amount_cents is in cents: 1250 charges $12.50."""
        headers = {"Idempotency-Key": current_idempotency_key()} if send_idempotency_key else {}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key.reveal()}"
        client = await clients.get()
        response = await client.post(
            f"{await base_url_of()}/charges",
            json={"customer_id": customer_id, "amount_cents": amount_cents},
            headers=headers,
        )
        if response.status_code == 401 and api_key is None:
            raise PermanentToolError(
                f"the payments service wants an API key and none is configured: set {env_var('charge_card', 'api_key')}"
            )
        raise_for_status(response, what="payments service", redact=api_key.redact if api_key else None)
        try:
            charge = json.loads(response.content)
        except ValueError as exc:
            raise TransientToolError("the payments service sent a malformed answer") from exc
        return charge_text(charge)

    return StructuredTool.from_function(coroutine=charge_card, name="charge_card")


def charge_text(charge: dict[str, Any]) -> str:
    """The observation for a charge (the same whether it was just made, replayed or reconciled)."""
    return f"Charged {charge['customer_id']} {charge['amount_cents']} cents: charge {charge['id']} {charge['status']}."


def charge_reconciler(url: ServiceURL, *, api_key: Secret | None = None) -> Reconcile:
    """A reconcile function for ``charge_card``: asks the payments service whether the key's charge exists."""
    base_url_of = _resolver(url)
    headers = {"Authorization": f"Bearer {api_key.reveal()}"} if api_key is not None else {}

    async def reconcile(key: str, args: dict[str, Any]) -> Reconciliation:
        async with httpx2.AsyncClient(timeout=10.0, verify=tls_context(), headers=headers) as client:
            response = await client.get(f"{await base_url_of()}/charges/{key}")
        if response.status_code == 404:
            return Reconciliation(Reconciled.NOT_HAPPENED)
        if response.is_success:
            charge = response.json()
            return Reconciliation(Reconciled.HAPPENED, charge_text(charge))
        return Reconciliation(Reconciled.UNKNOWN)

    return reconcile


def builtin_tools(search_url: ServiceURL, payments_url: ServiceURL | None = None) -> list[BaseTool]:
    """``search``, ``calc`` and ``charge_card``, talking to the given services. The demo's local services serve
    search and payments on one URL, so ``payments_url`` defaults to ``search_url``."""
    return [
        make_search_tool(search_url),
        StructuredTool.from_function(calc),
        make_charge_tool(payments_url if payments_url is not None else search_url),
    ]


def _resolver(url: ServiceURL) -> Callable[[], Awaitable[str]]:
    """The base URL of a service, resolved at call time."""
    if isinstance(url, str):
        fixed = url

        async def given() -> str:
            return fixed

        return given
    if not callable(url):
        raise TypeError(f"a service URL is a string or a function returning one, got {type(url).__name__}")

    async def resolve() -> str:
        value = url()
        return await value if inspect.isawaitable(value) else value

    return resolve
