"""One blocking XREAD per replica over every run stream followed here, fanned out to the local followers.

Followers then hold no Redis connection while they wait: N followers on a replica cost one connection,
not N, and each entry is decoded once per replica. Entry IDs are ``SEQ-0`` (the store writes them so),
so positions are plain seqs.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agentstream_server.runtime.events import RunEvent
from agentstream_server.store.codec import decode_record

logger = logging.getLogger("agentstream.redis")

WAKE_TTL_S = 60

Entry = tuple[int, RunEvent]
"""(seq, the decoded event)."""


def seq_of(entry_id: bytes | str) -> int:
    """The seq of a ``SEQ-0`` stream entry ID."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


@dataclass(eq=False)
class _Stream:
    run: tuple[str, str]
    """(tenant, run id)."""
    top: int
    """Highest seq read from the stream: the window ends there."""
    followers: int = 0
    window: collections.deque[Entry] = field(default_factory=collections.deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None
    quiet_since: float = 0.0

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class StreamTail:
    """Reads every followed stream in one loop and keeps each one's latest entries for its followers."""

    def __init__(
        self,
        redis: Any,
        wake_key: str,
        on_quiet: Callable[[tuple[str, str]], Awaitable[object]],
        *,
        block_ms: int,
        batch: int,
    ) -> None:
        """``on_quiet((tenant, run_id))`` runs for a stream that has had no entry for ``block_ms`` (checked that often);
        ``wake_key`` is a stream written to make the loop pick up a newly followed stream at once."""
        self._redis = redis
        self._wake_key = wake_key
        self._on_quiet = on_quiet
        self._block_ms = block_ms
        self._batch = batch
        self._window = 2 * batch
        self._streams: dict[str, _Stream] = {}

    async def watch(self, run: tuple[str, str], key: str, position: int) -> None:
        """Start (or join) tailing ``key`` after seq ``position``; pair with unwatch(). Redis errors propagate."""
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(run, position, quiet_since=_now())
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1)
                pipe.expire(self._wake_key, WAKE_TTL_S)
                await pipe.execute()
        stream.followers += 1

    def unwatch(self, key: str) -> None:
        """A follower of ``key`` is gone; the last one stops the tailing."""
        stream = self._streams.get(key)
        if stream is not None:
            stream.followers -= 1
            if stream.followers <= 0:
                del self._streams[key]

    def read(self, key: str, after: int) -> list[Entry] | None:
        """The entries after seq ``after`` that the tail holds: [] if none is known yet, None if the window
        no longer reaches back to ``after`` (read those from Redis)."""
        stream = self._streams[key]
        if stream.top <= after:
            return []
        window = stream.window
        if not window or window[0][0] > after + 1:
            return None
        return [entry for entry in window if entry[0] > after]

    async def wait(self, key: str, after: int) -> None:
        """Return once the stream has an entry after seq ``after``; raises what made the tail fail."""
        stream = self._streams[key]
        while stream.top <= after:
            if stream.error is not None:
                raise stream.error
            await stream.changed.wait()

    async def run(self) -> None:
        """The loop: XREAD every followed stream, append to the windows, wake followers. Runs until cancelled."""
        wake = "0-0"
        while True:
            keys = {self._wake_key: wake, **{key: f"{s.top}-0" for key, s in self._streams.items()}}
            try:
                replies = await self._redis.xread(keys, block=self._block_ms, count=self._batch)
                for stream in self._streams.values():
                    stream.error = None
                for name, entries in replies or ():
                    key = name.decode()
                    if key == self._wake_key:
                        wake = entries[-1][0]
                    elif (followed := self._streams.get(key)) is not None:
                        self._append(followed, entries)
                await self._check_quiet()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis failed (or a bug): every follower hears it, none hangs
                logger.warning("tailing run streams failed: %s: %s", type(exc).__name__, exc)
                for stream in self._streams.values():
                    stream.error = exc
                    stream.notify()
                await asyncio.sleep(self._block_ms / 1000)

    def _append(self, stream: _Stream, entries: list[Any]) -> None:
        for entry_id, fields in entries:
            seq = seq_of(entry_id)
            if seq <= stream.top:
                continue
            if stream.window and seq != stream.top + 1:  # trimmed under us: the window restarts here
                stream.window.clear()
            stream.window.append((seq, decode_record(fields[b"m"])))
            if len(stream.window) > self._window:
                stream.window.popleft()
            stream.top = seq
        stream.quiet_since = _now()
        stream.notify()

    async def _check_quiet(self) -> None:
        now = _now()
        for stream in list(self._streams.values()):
            if now - stream.quiet_since >= self._block_ms / 1000:
                stream.quiet_since = now
                await self._on_quiet(stream.run)


def _now() -> float:
    return asyncio.get_running_loop().time()
