"""One bench run streamed through the Python SDK, counting the tokens it delivers (shared by the figures)."""

from __future__ import annotations

import time

from agentstream import ChunkMessage, Client, StreamingMode, TaskMessage


async def stream_tokens(client: Client, tokens: int, window_ms: int = 0, *, rate: float = 0) -> tuple[int, float]:
    """Stream one CHUNK-mode run of N tokens (at `rate` per second when set); return (tokens received, seconds)."""
    start = time.perf_counter()
    received = 0
    prompt = f"bench: tokens={tokens}" + (f" rate={rate:g}" if rate else "")
    async for message in client.streaming_run(prompt, streaming_mode=StreamingMode.CHUNK, chunk_window_ms=window_ms):
        if isinstance(message, ChunkMessage):
            received += message.payload.content.count("x")
        elif isinstance(message, TaskMessage) and not message.payload.success:
            raise RuntimeError(f"run failed: {message.payload.msg}")
    return received, time.perf_counter() - start
