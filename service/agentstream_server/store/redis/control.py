"""A replica's control stream: cancels and interrupt decisions routed to the runs it executes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from redis.exceptions import RedisError

from agentstream_server.errors import AgentStreamError
from agentstream_server.store.base import RunControl
from agentstream_server.store.redis.scripts import control_key


async def watch_control(
    redis: Any, replica_id: str, controls: Mapping[tuple[str, str], RunControl], block_ms: int
) -> None:
    """Deliver every request in this replica's control stream to the run it names, for as long as it runs."""
    stream = control_key(replica_id)
    last = "0-0"  # the stream is this replica's alone (a new id per process): every entry in it is for us
    while True:
        try:
            replies = await redis.xread({stream: last}, block=block_ms, count=100)
        except (RedisError, OSError):
            await asyncio.sleep(block_ms / 1000)
            continue
        for _, entries in replies or ():
            for entry_id, fields in entries:
                last = entry_id
                control = controls.get((fields.get(b"tenant", b"").decode(), fields[b"run_id"].decode()))
                if control is not None:
                    deliver(control, fields)


def deliver(control: RunControl, fields: Mapping[bytes, bytes]) -> None:
    """Act on one control request: an interrupt decision, or a cancel."""
    if fields.get(b"kind") == b"resolve":
        with contextlib.suppress(AgentStreamError):  # the run's own approval timeout got there first
            control.resolve(
                fields[b"interrupt_id"].decode(), fields.get(b"approve") == b"1", fields.get(b"message", b"").decode()
            )
    else:
        control.cancel(fields.get(b"reason", b"").decode())
