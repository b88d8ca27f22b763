"""Per-run subscriber limits counted in Redis, so every replica's subscribers count toward one limit.

Each run has a sorted set of subscriber ids scored by the time their slot lapses (Redis server time, so
replicas' clocks do not matter). A replica renews the slots of its live subscribers with its leases; a
subscriber on a replica that died stops being renewed and its slot lapses after one lease.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from redis.exceptions import RedisError

from agentstream_server.errors import TooManySubscribers

logger = logging.getLogger("agentstream.redis")

# Drops lapsed slots, then takes one if fewer than ARGV[2] are held; returns {taken, held}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[2]) then return {0, held} end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {1, held + 1}
"""

# Pushes back the lapse time of the slots ARGV[2..] by ARGV[1] ms.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""


class SubscriberSlot:
    """One subscriber's place in a run's limit; it lapses unless held, until released."""

    def __init__(self, slots: SubscriberSlots, key: str, member: str) -> None:
        self._slots = slots
        self.key = key
        self.member = member

    def hold(self) -> None:
        """Keep the slot from lapsing (renewed with the replica's leases) until release()."""
        self._slots.held.setdefault(self.key, set()).add(self.member)

    async def release(self) -> None:
        """Give the slot back: stop renewing it and remove it from Redis (if Redis is gone, it lapses)."""
        members = self._slots.held.get(self.key)
        if members is not None:
            members.discard(self.member)
            if not members:
                del self._slots.held[self.key]
        await self._slots.remove(self.key, self.member)


class SubscriberSlots:
    """Takes and renews subscriber slots for this replica."""

    def __init__(
        self, redis: Any, replica_id: str, ttl_ms: int, spawn: Callable[[Coroutine[Any, Any, None]], object]
    ) -> None:
        """``ttl_ms``: how long a slot that is no longer renewed keeps counting; ``spawn`` runs background work."""
        self._redis = redis
        self._replica_id = replica_id
        self._ttl_ms = ttl_ms
        self.spawn = spawn
        self.held: dict[str, set[str]] = {}
        """Slots of the live subscribers here, by key: renewed by renew()."""
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)

    async def acquire(self, key: str, run_id: str, limit: int) -> SubscriberSlot:
        """Take a slot among the run's ``limit``, not yet held; raises TooManySubscribers when all are taken."""
        member = f"{self._replica_id}:{uuid.uuid4().hex[:12]}"
        taken, held = await self._acquire(keys=[key], args=[member, limit, self._ttl_ms])
        if not taken:
            raise TooManySubscribers(
                f"run {run_id} already has {held} subscribers across replicas, the limit",
                metadata={"limit": str(limit)},
            )
        return SubscriberSlot(self, key, member)

    async def renew(self, pipe: Any) -> None:
        """Queue the renewal of every held slot on a pipeline."""
        for key, members in self.held.items():
            await self._renew(keys=[key], args=[self._ttl_ms, *members], client=pipe)

    async def remove(self, key: str, member: str) -> None:
        """Remove a slot; when Redis cannot be reached the slot lapses on its own."""
        with contextlib.suppress(RedisError, OSError):
            await self._redis.zrem(key, member)
