"""Runs whose replica died: ended with an INTERRUPTED terminal event, exactly once, by whoever notices first."""

from __future__ import annotations

import time
from typing import Any

from redis.exceptions import ResponseError

from agentstream_server.errors import RunInterrupted
from agentstream_server.runtime.events import RunEvent, TaskError, TaskFinished, TaskStatus
from agentstream_server.store.codec import encode_record, encode_terminal
from agentstream_server.store.redis.scripts import run_key, seq_of

INTERRUPTED_MESSAGE = "run interrupted: the replica executing it stopped renewing its lease"
ATTEMPTS = 5
"""Tries when the run's log grows between reading its top and appending (the script refuses a stale top)."""


async def interrupt_if_orphaned(redis: Any, script: Any, run: tuple[str, str], ttl_s: int) -> bool:
    """Append the interrupted terminal to a run whose executor's lease has expired; True if this call did.

    ``script`` is the registered INTERRUPT script: it checks the lease and the log's top atomically, so
    any number of replicas noticing at once end the run once.
    """
    tenant, run_id = run
    key = run_key(tenant, run_id, ":events")
    for _ in range(ATTEMPTS):
        if await redis.exists(run_key(tenant, run_id, ":lease")):
            return False
        top = await redis.xrevrange(key, count=1)
        top_id = top[0][0].decode() if top else "0-0"
        seq = seq_of(top_id) + 1
        entry = await redis.hgetall(run_key(tenant, run_id))
        terminal = TaskFinished(
            status=TaskStatus.INTERRUPTED, success=False, answer="", msg=INTERRUPTED_MESSAGE,
            agent_name=entry.get(b"agent", b"").decode(),
            error=TaskError(reason=RunInterrupted.reason, code=RunInterrupted.code),
        )  # fmt: skip
        record = RunEvent(
            run_id=run_id, seq=seq, timestamp_ns=time.time_ns(), event=terminal,
            session_id=entry.get(b"session_id", b"").decode(), sender="agentstream",
        )  # fmt: skip
        try:
            result = await script(
                keys=[key, run_key(tenant, run_id, ":lease"), run_key(tenant, run_id)],
                args=[top_id, f"{seq}-0", encode_record(record), TaskStatus.INTERRUPTED.value, repr(time.time()),
                      seq, encode_terminal(terminal)],
            )  # fmt: skip
        except ResponseError:
            return False
        if result != -1:
            if result == 1:
                for suffix in ("", ":events"):
                    await redis.expire(run_key(tenant, run_id, suffix), ttl_s)
            return bool(result)
    return False
