"""Chunk coalescing: merges LLM text deltas that arrive within a window into one delta, at the source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from agentstream_server.runtime.model import LLMDelta, TextDelta

QUEUE_BOUND = 1024


@dataclass(frozen=True, slots=True)
class _End:
    error: Exception | None = None


async def coalesce(deltas: AsyncIterator[LLMDelta], window_s: float) -> AsyncGenerator[LLMDelta, None]:
    """Yield deltas with text deltas merged per window; other deltas pass through, in order.

    The first text after a quiet period (no text sent within the last window) goes out at once; text
    arriving while a window is open is held until the window closes or another kind of delta arrives, and
    never longer: a timer flushes it even when the LLM goes quiet. The caller closes ``deltas``.
    """
    queue: asyncio.Queue[LLMDelta | _End] = asyncio.Queue(maxsize=QUEUE_BOUND)

    async def pump() -> None:
        try:
            async for delta in deltas:
                await queue.put(delta)
        except Exception as exc:  # handed to the consumer, which re-raises it unwrapped
            await queue.put(_End(exc))
            return
        await queue.put(_End())

    loop = asyncio.get_running_loop()
    held: list[str] = []
    flush_at = 0.0
    last_sent = -window_s
    error: Exception | None = None
    # The pump is a plain task, not a TaskGroup member: this generator yields, and closing it at a yield
    # (GeneratorExit) inside a TaskGroup would surface as an ExceptionGroup instead of a clean close.
    pumping = asyncio.create_task(pump())
    try:
        while True:
            if held:
                try:
                    async with asyncio.timeout_at(flush_at):
                        item = await queue.get()
                except TimeoutError:
                    yield TextDelta("".join(held))
                    held.clear()
                    last_sent = loop.time()
                    continue
            else:
                item = await queue.get()
            if type(item) is TextDelta and not item.reasoning:
                now = loop.time()
                if not held and now - last_sent >= window_s:
                    last_sent = now
                    yield item
                else:
                    if not held:
                        flush_at = last_sent + window_s
                    held.append(item.content)
                continue
            if held:
                yield TextDelta("".join(held))
                held.clear()
                last_sent = loop.time()
            if isinstance(item, _End):
                error = item.error
                break
            yield item
    finally:
        if not pumping.done():
            pumping.cancel()
            await asyncio.wait([pumping])
    if error is not None:
        raise error
