"""Sessions in Redis: any replica continues any session; one live run per session, held with a lease.

Keys of a session share one hash tag (Redis Cluster keeps them on one shard): a hash (``created_at``,
``updated_at``, ``turns`` as JSON, ``holder``: the run that claimed it last), a list of its run ids, and a
lease naming the live run. The replica executing that run renews the lease with its run leases; a replica
that dies stops renewing, and the session is free again one lease later (its run, should it come back, can
no longer write: another run holds the session, or held it since).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from agentstream_server.runtime.history import Turn
from agentstream_server.store.codec import decode_turns, encode_turns
from agentstream_server.store.redis.scripts import PREFIX
from agentstream_server.store.sessions import MAX_SESSION_RUNS, SessionBounds, SessionInfo, bounded, busy, not_found

CLAIM = """
local holder = redis.call('GET', KEYS[2])
if holder then return {0, holder} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
if redis.call('HSETNX', KEYS[1], 'created_at', ARGV[3]) == 1 then
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[3], 'turns', '[]')
end
redis.call('HSET', KEYS[1], 'holder', ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return {1, redis.call('HGET', KEYS[1], 'turns')}
"""
"""Takes the session for run ARGV[1] unless a live run holds it: {1, turns} or {0, the live run id}."""

RELEASE = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'holder')
redis.call('DEL', KEYS[2])
if ARGV[2] == 'forget' then
  redis.call('LREM', KEYS[3], 0, ARGV[1])
  if redis.call('LLEN', KEYS[3]) == 0 and redis.call('HGET', KEYS[1], 'turns') == '[]' then
    redis.call('DEL', KEYS[1], KEYS[3])
    return 1
  end
elseif ARGV[2] == 'append' then
  redis.call('HSET', KEYS[1], 'turns', ARGV[3], 'updated_at', ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return 1
"""
"""Ends run ARGV[1]'s hold, unless another run claimed the session since (its hold lapsed): ARGV[2] 'append'
stores the history ARGV[3] (computed under the hold), 'forget' removes the run, 'keep' changes nothing."""

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

DELETE = """
local holder = redis.call('GET', KEYS[2])
if holder then return {0, holder} end
local turns = redis.call('HGET', KEYS[1], 'turns')
if not turns then return {-1, ''} end
redis.call('DEL', KEYS[1], KEYS[3])
return {1, turns}
"""


def session_keys(tenant: str, session_id: str) -> list[str]:
    """[hash, lease, run ids] of a session: namespaced by tenant, the session id hex-encoded (any text is safe)."""
    namespace = f"{tenant.encode().hex()}/" if tenant else ""
    base = f"{PREFIX}:session:{{{namespace}{session_id.encode().hex()}}}"
    return [base, f"{base}:lease", f"{base}:runs"]


class RedisSessions:
    """The Redis store's sessions (see SessionStore)."""

    def __init__(
        self,
        redis: Any,
        store_errors: Callable[[], AbstractContextManager[None]],
        *,
        lease_ms: int,
        live_ttl_s: int,
        bounds: SessionBounds,
    ) -> None:
        """``store_errors``: the store's boundary (Redis failures become RunStoreUnavailable);
        ``live_ttl_s``: expiry of a held session's keys (the longest a run can last, and then its idle TTL)."""
        self.bounds = bounds
        self._redis = redis
        self._store_errors = store_errors
        self._lease_ms = lease_ms
        self._live_ttl_s = live_ttl_s
        self._idle_ttl_s = max(1, int(bounds.idle_ttl_s))
        self._claim = redis.register_script(CLAIM)
        self._release = redis.register_script(RELEASE)
        self._renew = redis.register_script(RENEW)
        self._delete = redis.register_script(DELETE)
        self._held: dict[tuple[str, str], str] = {}
        """The sessions runs executing here hold: (tenant, session id) -> run id."""

    async def claim(self, session_id: str, run_id: str, *, tenant: str = "") -> tuple[Turn, ...]:
        """Make run_id the live run; its history (see SessionStore)."""
        with self._store_errors():
            taken, value = await self._claim(
                keys=session_keys(tenant, session_id),
                args=[run_id, self._lease_ms, repr(time.time()), self._live_ttl_s, MAX_SESSION_RUNS],
            )
            if not taken:
                raise busy(session_id, value.decode())
            self._held[tenant, session_id] = run_id
            return decode_turns(value)

    async def release(self, session_id: str, run_id: str, added: Sequence[Turn] | None, *, tenant: str = "") -> None:
        """End run_id's hold, appending its turns (see SessionStore)."""
        keys = session_keys(tenant, session_id)
        try:
            with self._store_errors():
                turns, holder = await self._redis.hmget(keys[0], "turns", "holder")
                if turns is None or holder != run_id.encode():
                    return  # deleted or expired, or another run claimed it after this run's hold lapsed
                action, history = "keep", ""
                if added is None:
                    action = "forget"
                elif added:
                    action, history = "append", encode_turns(bounded([*decode_turns(turns), *added], self.bounds))
                await self._release(
                    keys=keys,
                    args=[run_id, action, history, repr(time.time()), self._idle_ttl_s],
                )
        finally:
            if self._held.get((tenant, session_id)) == run_id:
                del self._held[tenant, session_id]

    async def describe(self, session_id: str, *, tenant: str = "") -> SessionInfo:
        """The session (see SessionStore)."""
        keys = session_keys(tenant, session_id)
        with self._store_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hmget(keys[0], "turns", "created_at", "updated_at")
                pipe.get(keys[1])
                pipe.lrange(keys[2], 0, -1)
                (turns, created_at, updated_at), live, run_ids = await pipe.execute()
            if turns is None:
                raise not_found(session_id, self.bounds)
            return SessionInfo(
                session_id=session_id,
                turns=decode_turns(turns),
                run_ids=tuple(r.decode() for r in run_ids),
                created_at=float(created_at or 0),
                updated_at=float(updated_at or 0),
                live_run_id=live.decode() if live else "",
            )

    async def delete(self, session_id: str, *, tenant: str = "") -> int:
        """Forget the session (see SessionStore)."""
        with self._store_errors():
            outcome, value = await self._delete(keys=session_keys(tenant, session_id))
            if outcome == 0:
                raise busy(session_id, value.decode())
            if outcome == -1:
                raise not_found(session_id, self.bounds)
            return len(decode_turns(value))

    async def renew(self, pipe: Any) -> None:
        """Queue the renewal of every lease held here on the replica's lease pipeline."""
        for (tenant, session_id), run_id in list(self._held.items()):
            await self._renew(keys=[session_keys(tenant, session_id)[1]], args=[run_id, self._lease_ms], client=pipe)
