"""Chunk coalescing: first token at once, bursts merged, timer flush when the LLM goes quiet, order kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from agentstream_server.errors import LLMUpstreamError
from agentstream_server.runtime.coalesce import coalesce
from agentstream_server.runtime.model import Finish, LLMDelta, TextDelta, ToolCallDelta


async def source(*parts: LLMDelta | asyncio.Event | Exception) -> AsyncGenerator[LLMDelta, None]:
    for part in parts:
        if isinstance(part, asyncio.Event):
            await part.wait()
        elif isinstance(part, Exception):
            raise part
        else:
            yield part


async def test_first_token_passes_at_once_and_a_burst_is_merged() -> None:
    out = [d async for d in coalesce(source(*(TextDelta(c) for c in "abcdef"), Finish("stop")), 10.0)]
    assert out == [TextDelta("a"), TextDelta("bcdef"), Finish("stop")]


async def test_held_text_is_flushed_by_the_timer_when_the_llm_goes_quiet() -> None:
    resume = asyncio.Event()
    stream = coalesce(source(TextDelta("a"), TextDelta("b"), TextDelta("c"), resume, TextDelta("d")), 0.05)
    assert await anext(stream) == TextDelta("a")
    assert await anext(stream) == TextDelta("bc")  # flushed by the window's timer while the source waits
    resume.set()
    assert [d async for d in stream] == [TextDelta("d")]


async def test_other_deltas_flush_held_text_first_and_keep_their_order() -> None:
    call = ToolCallDelta(0, "c1", "calculator", "{}")
    out = [d async for d in coalesce(source(TextDelta("a"), TextDelta("b"), call, TextDelta("c")), 10.0)]
    assert out == [TextDelta("a"), TextDelta("b"), call, TextDelta("c")]


async def test_an_upstream_error_is_raised_unwrapped_after_the_text_before_it() -> None:
    received: list[LLMDelta] = []
    with pytest.raises(LLMUpstreamError, match="boom"):
        async for delta in coalesce(source(TextDelta("a"), TextDelta("b"), LLMUpstreamError("boom")), 10.0):
            received.append(delta)
    assert received == [TextDelta("a"), TextDelta("b")]
