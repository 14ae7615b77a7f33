"""The local search service: ``GET /search?q=...`` answered from a small bundled corpus, behind faults."""

from __future__ import annotations

import asyncio
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from ironloop.demo.services.faults import HANG_S, DroppedResponse, Fault, FaultInjector, trickle
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

WORD = re.compile(r"[a-z0-9]+")


@cache
def bundled_corpus() -> tuple[dict[str, Any], ...]:
    text = resources.files("ironloop.demo.services").joinpath("corpus.json").read_text(encoding="utf-8")
    return tuple(json.loads(text)["documents"])


GENERIC_WORDS = frozenset({"population", "people", "inhabitants", "height", "tall", "high", "the", "of"})


def search_corpus(query: str, corpus: tuple[dict[str, Any], ...], limit: int = 3) -> list[dict[str, str]]:
    """Documents sharing a specific word with the query (a place, a thing), best match first; none if no match.

    A specific word counts double a generic one, so "Lyon population" ranks Lyon above other population pages.
    """
    words = set(WORD.findall(query.lower()))
    scored = []
    for index, doc in enumerate(corpus):
        common = words & (set(doc["keywords"]) | set(WORD.findall(doc["title"].lower())))
        specific = common - GENERIC_WORDS
        if specific:
            scored.append((-(2 * len(specific) + len(common) - len(specific)), index, doc))
    scored.sort(key=lambda item: item[:2])
    return [{"title": doc["title"], "snippet": doc["snippet"]} for _, _, doc in scored[:limit]]


def create_search_app(injector: FaultInjector, corpus: tuple[dict[str, Any], ...] | None = None) -> Starlette:
    documents = corpus if corpus is not None else bundled_corpus()

    async def search(request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        if not query:
            return JSONResponse({"error": "missing query parameter q"}, status_code=400)
        fault = injector.draw(f"search:{query.lower()}")
        if fault in (Fault.HTTP_503, Fault.OUTAGE):
            return JSONResponse({"error": "service unavailable"}, status_code=503)
        if fault is Fault.HANG:
            await asyncio.sleep(HANG_S)
        if fault is Fault.RESET:
            return DroppedResponse()
        if fault is Fault.HTTP_429:
            retry_after = f"{injector.profile.retry_after_s:g}"
            return JSONResponse({"error": "rate limited"}, status_code=429, headers={"Retry-After": retry_after})
        if fault is Fault.MALFORMED:
            return PlainTextResponse('{"results": [{"title": "trunc', media_type="application/json")
        if fault is Fault.DELAY:
            await asyncio.sleep(injector.profile.delay_s)
        body = {"query": query, "results": search_corpus(query, documents)}
        if fault is Fault.TRICKLE:
            return trickle(json.dumps(body).encode(), injector.profile.trickle_s)
        return JSONResponse(body)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "profile": injector.profile.name, "seed": injector.seed})

    async def stats(request: Request) -> Response:
        return JSONResponse({"faults": dict(injector.counts)})

    return Starlette(
        routes=[Route("/search", search), Route("/health", health), Route("/stats", stats)],
    )
