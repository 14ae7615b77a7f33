"""The local payments service: ``POST /charges`` with Stripe-style idempotency, behind faults.

- Same ``Idempotency-Key`` and same body → the stored response again (``Idempotent-Replayed: true``), no new
  charge; same key, different body → HTTP 422. No key → a new charge every time (what a blind retry does).
- ``GET /charges`` lists every charge made (the ledger tests read); ``GET /charges/{key}`` answers whether a
  key's charge happened (what a reconcile function asks).
- With an ``api_key``, every request must carry ``Authorization: Bearer <key>``; otherwise HTTP 401 (the body
  never quotes what was sent). Without one, no authentication (the offline demo and most tests).
- Faults, drawn per request from the profile: 503 before anything happens; ``commit_then_drop`` (the charge
  is made, then the connection dies mid-response); ``hang_after_commit`` (the charge is made, then no answer).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ironloop.demo.services.faults import HANG_S, DroppedResponse, Fault, FaultInjector
from ironloop.tools.credentials import Secret
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class Charge:
    id: str
    customer_id: str
    amount_cents: int
    idempotency_key: str | None


@dataclass
class PaymentsLedger:
    """Every charge the service made, and the stored response of each idempotency key."""

    charges: list[Charge] = field(default_factory=list)
    responses: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    """key → (fingerprint of the request body, the response body)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def charge(self, customer_id: str, amount_cents: int, key: str | None, fingerprint: str) -> tuple[int, dict]:
        with self.lock:
            if key is not None and key in self.responses:
                stored_fingerprint, body = self.responses[key]
                if stored_fingerprint != fingerprint:
                    return 422, {"error": "idempotency key reused with a different request body"}
                return 200, {**body, "replayed": True}
            charge = Charge(f"ch_{next(self._ids):06d}", customer_id, amount_cents, key)
            self.charges.append(charge)
            body = {"id": charge.id, "customer_id": customer_id, "amount_cents": amount_cents, "status": "succeeded"}
            if key is not None:
                self.responses[key] = (fingerprint, body)
            return 200, body

    def lookup(self, key: str) -> dict[str, Any] | None:
        with self.lock:
            stored = self.responses.get(key)
        return stored[1] if stored else None

    def snapshot(self) -> list[Charge]:
        with self.lock:
            return list(self.charges)


def create_payments_app(
    injector: FaultInjector,
    ledger: PaymentsLedger | None = None,
    *,
    on_commit: Callable[[Charge], None] | None = None,
    api_key: Secret | None = None,
) -> Starlette:
    """``on_commit`` is called right after a new charge is made, before any answer is sent (a test hook).
    ``api_key``: the bearer token every request must carry (``None``: no authentication)."""
    book = ledger if ledger is not None else PaymentsLedger()

    def authorised(request: Request) -> bool:
        if api_key is None:
            return True
        sent = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(sent, f"Bearer {api_key.reveal()}".encode())

    def refused() -> Response:
        return JSONResponse(
            {"error": "missing or wrong API key"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    async def create_charge(request: Request) -> Response:
        if not authorised(request):
            return refused()
        try:
            payload = await request.json()
            customer_id = str(payload["customer_id"])
            amount_cents = int(payload["amount_cents"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "body must be JSON with customer_id and amount_cents"}, status_code=400)
        if amount_cents <= 0:
            return JSONResponse({"error": "amount_cents must be positive"}, status_code=400)
        key = request.headers.get("idempotency-key")
        fault = injector.draw(f"charge:{key or customer_id}")
        if fault in (Fault.HTTP_503, Fault.OUTAGE):
            return JSONResponse({"error": "payments temporarily unavailable"}, status_code=503)
        fingerprint = hashlib.sha256(json.dumps([customer_id, amount_cents]).encode()).hexdigest()
        before = len(book.charges)
        status, body = book.charge(customer_id, amount_cents, key, fingerprint)
        committed = len(book.charges) > before
        if committed and on_commit is not None:
            on_commit(book.charges[-1])
        if committed and fault is Fault.COMMIT_THEN_DROP:
            return DroppedResponse()
        if committed and fault is Fault.HANG_AFTER_COMMIT:
            await asyncio.sleep(HANG_S)
        headers = {"Idempotent-Replayed": "true"} if body.get("replayed") else {}
        return JSONResponse(body, status_code=status, headers=headers)

    async def list_charges(request: Request) -> Response:
        if not authorised(request):
            return refused()
        return JSONResponse({"charges": [asdict(c) for c in book.snapshot()]})

    async def get_charge(request: Request) -> Response:
        if not authorised(request):
            return refused()
        body = book.lookup(request.path_params["key"])
        return JSONResponse(body or {"error": "no charge with that idempotency key"}, status_code=200 if body else 404)

    app = Starlette(
        routes=[
            Route("/charges", create_charge, methods=["POST"]),
            Route("/charges", list_charges, methods=["GET"]),
            Route("/charges/{key}", get_charge, methods=["GET"]),
        ]
    )
    app.state.ledger = book
    return app
