"""A circuit breaker whose state lives in Redis, so every worker process sees the same circuit per tool.

Same states and rules as `tools.circuit.Circuit` (closed → open after ``failures`` in a row → half-open after
``cooldown_s`` → one probe), kept in one Redis hash per tool and changed by Lua scripts (atomic, on Redis's
clock). A probe slot expires after the cool-down, so a worker that died mid-probe does not hold it forever.
Chosen with ``CircuitBreaker(storage_uri="redis://...")`` or, for every breaker that names no storage,
``$IRONLOOP_TRAFFIC_URL`` (``ironloop worker --traffic``); per process stays the default. If Redis cannot be
reached the circuit lets calls through (it is a protection, not a dependency) and says so in the log.
"""

from __future__ import annotations

import logging
from typing import Any

from ironloop.tools.circuit import Circuit, CircuitBreaker, CircuitState
from ironloop.tools.errors import CircuitOpenError
from ironloop.tools.rate_limit import shared_storage_uri

log = logging.getLogger(__name__)

KEY_PREFIX = "ironloop:circuit:"

_ADMIT = """
local now = redis.call('TIME'); now = now[1] * 1000 + math.floor(now[2] / 1000)
local cooldown = tonumber(ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
if state == 'open' and now - opened >= cooldown then
  state = 'half_open'
  redis.call('HSET', KEYS[1], 'state', state)
end
if state == 'closed' then return {'closed', 0} end
local probe = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if state == 'half_open' and probe < now then
  redis.call('HSET', KEYS[1], 'probe_until', now + cooldown)
  return {'half_open', 0}
end
return {'open', math.max(0, cooldown - (now - opened))}
"""

_RECORD = """
local now = redis.call('TIME'); now = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('HDEL', KEYS[1], 'probe_until')
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
  return 'closed'
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'half_open' or failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
  return 'open'
end
return state
"""


def open_circuit(config: CircuitBreaker, tool: str) -> Circuit:
    """The circuit of ``tool``: in Redis if its breaker (or ``$IRONLOOP_TRAFFIC_URL``) names a Redis URL, else in
    this process."""
    url = config.storage_uri or shared_storage_uri()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisCircuit(config, tool, url)
    return Circuit(config)


class RedisCircuit(Circuit):
    """`tools.circuit.Circuit` (``admit``, ``forget``, ``record``) over a Redis hash shared by every process."""

    def __init__(self, config: CircuitBreaker, tool: str, url: str):
        import redis

        super().__init__(config)
        self.key = f"{KEY_PREFIX}{tool}"
        self._client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._admit = self._client.register_script(_ADMIT)
        self._record = self._client.register_script(_RECORD)
        self._cooldown_ms = int(config.cooldown_s * 1000)

    def admit(self, tool: str) -> CircuitState:
        try:
            state, left_ms = self._admit(keys=[self.key], args=[self._cooldown_ms])
        except Exception as exc:
            log.warning("circuit of %s: Redis unreachable (%s); letting the call through", tool, exc)
            return CircuitState.CLOSED
        state = state.decode() if isinstance(state, bytes) else str(state)
        if state != "open":
            return CircuitState(state)
        raise CircuitOpenError(
            f"circuit open: {tool} failed {self.config.failures} times in a row (across workers); not calling it "
            f"for {int(left_ms) / 1000:.1f} s more"
        )

    def forget(self) -> None:
        self._call(lambda: self._client.hdel(self.key, "probe_until"))

    def record(self, success: bool) -> None:
        self._call(lambda: self._record(keys=[self.key], args=["1" if success else "0", self.config.failures]))

    def _call(self, action: Any) -> None:
        try:
            action()
        except Exception as exc:
            log.warning("circuit %s: Redis unreachable (%s); state not updated", self.key, exc)
