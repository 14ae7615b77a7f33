"""Shared HTTP clients for tools: one ``httpx2.AsyncClient`` per event loop, reused across calls.

A new client per call costs a connection and its set-up (about 2 ms here, more with TLS); a client cannot
cross event loops. So each loop gets its own client, kept open for reuse and closed when the loop shuts down:
the client is held by a small async generator, which asyncio closes in ``loop.shutdown_asyncgens()`` (what
``asyncio.run`` does on exit).

The client is ``httpx2`` (pydantic's maintained fork of httpx, which the OpenAI SDK also uses), not ``httpx``:
httpcore 1.0.9, under httpx 0.28, leaks a pool slot when a request is cancelled while it waits for a connection
(encode/httpcore#1093, unfixed upstream). ironloop cancels requests all the time (attempt timeouts, hedge
losers), so under contention the pool filled with orphaned slots and every later request timed out: the chaos
benchmark wedged after ~4,700 tasks, and `tests/test_http_pool.py` wedges a 4-slot pool in seconds. httpx2
reclaims them.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
from collections.abc import AsyncIterator
from functools import cache

import httpx2


@cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client: building one loads the CA bundle, ~20 ms each time."""
    return ssl.create_default_context()


class LoopClients:
    """``await clients.get()``: this event loop's client (created on first use)."""

    def __init__(self, *, timeout: httpx2.Timeout, limits: httpx2.Limits | None = None):
        self.timeout = timeout
        self.limits = limits or httpx2.Limits()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx2.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncIterator[None]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    async def get(self) -> httpx2.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
        if client is not None and not client.is_closed:
            return client
        client = httpx2.AsyncClient(timeout=self.timeout, limits=self.limits, verify=tls_context())
        keeper = _close_at_shutdown(client)
        await anext(keeper)  # started: the loop now tracks it and closes it at shutdown
        with self._lock:
            self._clients[loop] = client
            self._keepers[loop] = keeper
        return client


async def _close_at_shutdown(client: httpx2.AsyncClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await client.aclose()
