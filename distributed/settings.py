"""Where a fleet's pieces are: the fleet's view of `ironloop.settings` (the environment over ``ironloop.toml``;
the ``ironloop worker`` options set the same variables).

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

from dataclasses import dataclass

from ironloop.checkpoints.database import default_db_url
from ironloop.settings import DEFAULT_AGENT, DEFAULT_BROKER_URL, DEFAULT_QUEUE, ENVIRONMENT, load

__all__ = ["AGENT_ENV", "BROKER_ENV", "DEFAULT_AGENT", "DEFAULT_BROKER_URL", "DEFAULT_QUEUE", "QUEUE_ENV", "Settings"]

BROKER_ENV = ENVIRONMENT["broker_url"]
AGENT_ENV = ENVIRONMENT["agent"]
QUEUE_ENV = ENVIRONMENT["queue"]
LEASE_TTL_ENV = ENVIRONMENT["lease_ttl_s"]
VISIBILITY_ENV = ENVIRONMENT["visibility_s"]


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
        """From `ironloop.settings.load`: the environment, then ``ironloop.toml``, then the defaults
        (`ironloop.settings.SettingsError`, a ``ValueError``, names a bad value and where it came from)."""
        settings = load()
        return cls(
            broker_url=settings.broker_url,
            db_url=settings.db_url or default_db_url(),
            agent=settings.agent,
            queue=settings.queue,
            lease_ttl_s=settings.lease_ttl_s,
            visibility_s=settings.visibility_s,
        )

    @property
    def redis_broker(self) -> bool:
        return self.broker_url.startswith(("redis://", "rediss://"))
