"""Seeded fault injection for the local services.

Each request draws its fault from a `FaultProfile`. The draw is a pure function of (seed, key, n): the
key names what was asked (``search:paris population``) and n counts earlier requests with the same key. So
the fault sequence for a query does not depend on how concurrent requests for other queries interleave, and
two contenders replayed against the same seed meet the same faults.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send


class Fault(StrEnum):
    NONE = "none"
    HTTP_503 = "http_503"
    """Service unavailable, answered at once."""
    DELAY = "delay"
    """A correct answer after ``delay_s``."""
    HTTP_429 = "http_429"
    """Rate limited, with a ``Retry-After`` of ``retry_after_s``."""
    MALFORMED = "malformed"
    """HTTP 200 with a body that is not JSON."""
    HANG = "hang"
    """No answer at all (the client must time out)."""
    RESET = "reset"
    """The connection dies mid-response."""
    TRICKLE = "trickle"
    """A correct answer whose body arrives a few bytes at a time, over ``trickle_s``."""
    OUTAGE = "outage"
    """HTTP 503 because the whole service is down for a stretch (see `FaultProfile.outage`)."""
    COMMIT_THEN_DROP = "commit_then_drop"
    """A write service makes the change, then the connection dies before the answer is complete."""
    HANG_AFTER_COMMIT = "hang_after_commit"
    """A write service makes the change, then never answers."""


@dataclass(frozen=True)
class FaultProfile:
    name: str
    weights: tuple[tuple[Fault, float], ...] = ()
    """Probability of each fault per request; the rest of the mass is ``Fault.NONE``."""
    delay_s: float = 0.4
    retry_after_s: float = 0.05
    trickle_s: float = 1.0
    outage: tuple[float, float] | None = None
    """(starts after, lasts) in seconds from the service's start: every request in that stretch gets 503."""

    def __post_init__(self) -> None:
        total = sum(p for _, p in self.weights)
        if not 0.0 <= total <= 1.0 or any(p < 0 for _, p in self.weights):
            raise ValueError(f"fault probabilities of profile {self.name!r} must be >= 0 and sum to <= 1")

    def pick(self, u: float) -> Fault:
        """The fault for a uniform draw ``u`` in [0, 1)."""
        for fault, probability in self.weights:
            if u < probability:
                return fault
            u -= probability
        return Fault.NONE


NO_FAULTS = FaultProfile("none")


@dataclass(frozen=True)
class ServiceProfile:
    """Fault profiles per endpoint, chosen together by name (``--profile``)."""

    name: str
    search: FaultProfile = NO_FAULTS
    payments: FaultProfile = NO_FAULTS


PROFILES: dict[str, ServiceProfile] = {
    "none": ServiceProfile("none"),
    "reference": ServiceProfile(
        "reference", search=FaultProfile("reference", ((Fault.HTTP_503, 0.45), (Fault.DELAY, 0.15)), delay_s=0.4)
    ),
    "harsh": ServiceProfile(
        "harsh",
        search=FaultProfile(
            "harsh",
            (
                (Fault.HTTP_503, 0.15),
                (Fault.HTTP_429, 0.08),
                (Fault.DELAY, 0.08),
                (Fault.HANG, 0.04),
                (Fault.RESET, 0.05),
                (Fault.TRICKLE, 0.04),
                (Fault.MALFORMED, 0.05),
            ),
        ),
        payments=FaultProfile(
            "harsh", ((Fault.HTTP_503, 0.1), (Fault.COMMIT_THEN_DROP, 0.1), (Fault.HANG_AFTER_COMMIT, 0.05))
        ),
    ),
    "outage": ServiceProfile(
        "outage",
        search=FaultProfile("outage", ((Fault.HTTP_503, 0.1),), outage=(1.0, 2.0)),
        payments=FaultProfile("outage", ((Fault.HTTP_503, 0.1),), outage=(1.0, 2.0)),
    ),
    "lost-responses": ServiceProfile(
        "lost-responses",
        payments=FaultProfile(
            "lost-responses",
            ((Fault.HTTP_503, 0.15), (Fault.COMMIT_THEN_DROP, 0.2), (Fault.HANG_AFTER_COMMIT, 0.05)),
        ),
    ),
}
"""``reference`` is the search profile the stock agent was measured under (45 % 503, 15 % a 0.4 s delay);
``harsh`` mixes every fault kind; ``outage`` takes both services down from 1 s to 3 s after start;
``lost-responses`` makes payments fail around the commit, where only idempotency keys prevent duplicates."""


@dataclass
class FaultInjector:
    profile: FaultProfile
    seed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    """Faults served so far, by name (for tests and the service's /stats)."""
    started_at: float = field(default_factory=time.monotonic)
    _seen: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def draw(self, key: str) -> Fault:
        with self._lock:
            n = self._seen[key]
            self._seen[key] += 1
        digest = hashlib.blake2b(f"{self.seed}\x1f{key}\x1f{n}".encode(), digest_size=8).digest()
        fault = Fault.OUTAGE if self.in_outage() else self.profile.pick(int.from_bytes(digest, "big") / 2**64)
        with self._lock:
            self.counts[str(fault)] += 1
        return fault

    def in_outage(self) -> bool:
        if self.profile.outage is None:
            return False
        after, lasting = self.profile.outage
        return after <= time.monotonic() - self.started_at < after + lasting


def profile_named(name: str) -> ServiceProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown fault profile {name!r}; choose one of: {', '.join(PROFILES)}") from None


HANG_S = 3600.0
"""How long a hanging service waits before answering: longer than any client waits."""


class DroppedResponse(Response):
    """Announces a body it never sends: the server closes the connection mid-response (a lost answer)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b'{"results": [', "more_body": False})


def trickle(body: bytes, over_s: float, pieces: int = 20) -> StreamingResponse:
    """A correct body sent in ``pieces`` chunks spread over ``over_s`` seconds."""
    size = max(1, -(-len(body) // pieces))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), size):
            yield body[start : start + size]
            await asyncio.sleep(over_s / pieces)

    return StreamingResponse(chunks(), media_type="application/json")
