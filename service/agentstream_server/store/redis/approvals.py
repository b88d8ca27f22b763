"""Interrupts in Redis: any replica resolves a run's interrupt exactly once, and the decision is routed to the
replica executing the run through its control stream (as cancels are)."""

from __future__ import annotations

import json
import time
from typing import Any

from agentstream_server.errors import InterruptAlreadyResolved, interrupt_not_found
from agentstream_server.runtime.events import Interrupt, TaskStatus
from agentstream_server.store.codec import decode_event, encode_event
from agentstream_server.store.redis.scripts import control_key, run_key

OPEN = """
redis.call('HSET', KEYS[1], ARGV[1], 'pending')
for i = 2, 3 do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl > 0 and ttl < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
end
redis.call('PEXPIRE', KEYS[1], math.max(redis.call('PTTL', KEYS[2]), 1))
local status = redis.call('HGET', KEYS[2], 'status')
if status == 'running' or status == 'input_required' then
  redis.call('HSET', KEYS[2], 'status', 'input_required', 'pending', ARGV[2])
end
return 1
"""
"""Records a waiting interrupt; the run (if still live) reports INPUT_REQUIRED with its pending interrupts. The
run's keys live at least ARGV[3] ms more: waiting for a person does not count against the run's time limit."""

CLOSE = """
local mine = 0
if redis.call('HGET', KEYS[1], ARGV[1]) == 'pending' then
  redis.call('HSET', KEYS[1], ARGV[1], 'resolved')
  mine = 1
end
if redis.call('HGET', KEYS[2], 'status') == 'input_required' then
  if ARGV[3] == '1' then
    redis.call('HSET', KEYS[2], 'pending', ARGV[2])
  else
    redis.call('HSET', KEYS[2], 'status', 'running')
    redis.call('HDEL', KEYS[2], 'pending')
  end
end
return mine
"""
"""The executor is done waiting: marks the interrupt resolved (1 if it still was pending) and updates the status."""

RESOLVE = """
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not state then return 0 end
if state ~= 'pending' then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], 'resolved')
local left = 0
for _, value in ipairs(redis.call('HVALS', KEYS[1])) do
  if value == 'pending' then left = left + 1 end
end
return 1 + left
"""
"""A decision from any replica: 0 unknown interrupt, -1 already resolved, else 1 + how many still wait."""

CONTROL_TTL_S = 60


class InterruptLedger:
    """The Redis side of interrupts: scripts registered once, used by the store's methods."""

    def __init__(self, redis: Any, live_ttl_s: int) -> None:
        """``live_ttl_s``: how long a live run's keys must outlast its next wait (the store's live TTL)."""
        self._redis = redis
        self._live_ttl_s = live_ttl_s
        self._open = redis.register_script(OPEN)
        self._close = redis.register_script(CLOSE)
        self._resolve = redis.register_script(RESOLVE)

    async def open(self, tenant: str, run_id: str, interrupt: Interrupt, pending: tuple[Interrupt, ...]) -> None:
        """Record a waiting interrupt for every replica to see."""
        keys = [run_key(tenant, run_id, ":interrupts"), run_key(tenant, run_id), run_key(tenant, run_id, ":events")]
        keep_ms = int((max(0.0, interrupt.expires_at - time.time()) + self._live_ttl_s) * 1000)
        await self._open(keys=keys, args=[interrupt.interrupt_id, encode_pending(pending), keep_ms])

    async def close(self, tenant: str, run_id: str, interrupt_id: str, pending: tuple[Interrupt, ...]) -> bool:
        """Mark it resolved unless a decision got there first (False then)."""
        keys = [run_key(tenant, run_id, ":interrupts"), run_key(tenant, run_id)]
        args = [interrupt_id, encode_pending(pending), "1" if pending else "0"]
        return bool(await self._close(keys=keys, args=args))

    async def resolve(
        self, tenant: str, run_id: str, owner: str, interrupt_id: str, approve: bool, message: str
    ) -> TaskStatus:
        """Claim the decision atomically, then route it to the executing replica."""
        result = int(await self._resolve(keys=[run_key(tenant, run_id, ":interrupts")], args=[interrupt_id]))
        if result == 0:
            raise interrupt_not_found(run_id, interrupt_id)
        if result < 0:
            raise InterruptAlreadyResolved(
                f"interrupt {interrupt_id!r} of run {run_id!r} was already resolved",
                field="interrupt_id",
                metadata={"run_id": run_id, "interrupt_id": interrupt_id},
            )
        decision = {
            "kind": "resolve", "tenant": tenant, "run_id": run_id, "interrupt_id": interrupt_id,
            "approve": "1" if approve else "0", "message": message,
        }  # fmt: skip
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(control_key(owner), decision, maxlen=1000)
            pipe.expire(control_key(owner), CONTROL_TTL_S)  # the owner may be gone: do not keep its stream
            await pipe.execute()
        return TaskStatus.INPUT_REQUIRED if result > 1 else TaskStatus.RUNNING


def encode_pending(pending: tuple[Interrupt, ...]) -> bytes:
    """A run's pending interrupts as kept in its registry entry."""
    return json.dumps([encode_event(i).decode() for i in pending]).encode()


def decode_pending(data: bytes | None) -> tuple[Interrupt, ...]:
    """The pending interrupts encode_pending wrote (empty for none or anything else)."""
    if not data:
        return ()
    events = tuple(decode_event(item.encode()) for item in json.loads(data))
    return tuple(event for event in events if isinstance(event, Interrupt))
