"""Where a fleet's pieces are, read from the environment (the ``ironloop worker`` options set the same variables).

IRONLOOP_BROKER_URL      the broker (default ``amqp://guest:guest@127.0.0.1:5672//``; ``redis://...`` works too)
IRONLOOP_DB_URL          the checkpoint database every worker shares (PostgreSQL or MySQL/MariaDB for a fleet)
IRONLOOP_AGENT           ``module:factory`` building the agent from a checkpointer (default: the demo agent)
IRONLOOP_QUEUE           the queue workers consume and ``submit`` sends to (default ``ironloop``)
IRONLOOP_LEASE_TTL_S     how long a thread lease lasts unrenewed (default 30)
IRONLOOP_VISIBILITY_S    Redis broker only: a message unacknowledged this long is delivered again (default 300)
IRONLOOP_TRAFFIC_URL     ``redis://...``: rate limits and circuit breakers shared by every worker (default: per
                         process)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ironloop.checkpoints.database import default_db_url

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_AGENT = "ironloop.demo.worker:demo_agent"
DEFAULT_QUEUE = "ironloop"

BROKER_ENV = "IRONLOOP_BROKER_URL"
AGENT_ENV = "IRONLOOP_AGENT"
QUEUE_ENV = "IRONLOOP_QUEUE"
LEASE_TTL_ENV = "IRONLOOP_LEASE_TTL_S"
VISIBILITY_ENV = "IRONLOOP_VISIBILITY_S"


@dataclass(frozen=True)
class Settings:
    broker_url: str
    db_url: str
    agent: str
    queue: str
    lease_ttl_s: float
    visibility_s: float

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            broker_url=os.environ.get(BROKER_ENV) or DEFAULT_BROKER_URL,
            db_url=default_db_url(),
            agent=os.environ.get(AGENT_ENV) or DEFAULT_AGENT,
            queue=os.environ.get(QUEUE_ENV) or DEFAULT_QUEUE,
            lease_ttl_s=_seconds(LEASE_TTL_ENV, 30.0),
            visibility_s=_seconds(VISIBILITY_ENV, 300.0),
        )

    @property
    def redis_broker(self) -> bool:
        return self.broker_url.startswith(("redis://", "rediss://"))


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"${name} must be a number of seconds, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"${name} must be positive, got {text!r}")
    return value
