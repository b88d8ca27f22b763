"""OpenAIChatModel: the real openai client over HTTP against the scripted server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from agentstream_server.errors import LLMUpstreamError
from agentstream_server.runtime.events import Usage
from agentstream_server.runtime.llm import (
    Finish,
    LLMDelta,
    OpenAIChatModel,
    TextDelta,
    ToolCallDelta,
    UsageReport,
    make_openai_client,
)
from tests.support.fakellm import Broken, FakeLLM, HTTPError, RawSSE, Stall, Text, ToolCalls

USER = [{"role": "user", "content": "hi"}]
CALCULATOR = {"type": "function", "function": {"name": "calculator", "description": "", "parameters": {}}}


@pytest.fixture
async def model(fake_llm: FakeLLM) -> AsyncIterator[OpenAIChatModel]:
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=5, max_retries=0)
    yield OpenAIChatModel(client, "fake-model")
    await client.close()


async def collect(model: OpenAIChatModel, tools: Sequence[Mapping[str, Any]] = ()) -> list[LLMDelta]:
    return [d async for d in model.stream(USER, tools)]


async def test_text_deltas_arrive_in_order_with_finish_and_usage(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(Text(["a", "b", "c"], usage=(4, 3)))
    deltas = await collect(model)
    assert deltas == [TextDelta("a"), TextDelta("b"), TextDelta("c"), Finish("stop"), UsageReport(Usage(4, 3, 7))]
    request = fake_llm.requests[0]
    assert (request["stream"], request["stream_options"]) == (True, {"include_usage": True})
    assert "tools" not in request
    assert "temperature" not in request


async def test_tools_and_temperature_are_sent_when_given(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(Text(["ok"]))
    _ = [d async for d in model.stream(USER, [CALCULATOR], temperature=0.2)]
    request = fake_llm.requests[0]
    assert (request["model"], request["tools"], request["temperature"]) == ("fake-model", [CALCULATOR], 0.2)
    assert model.label == "fake-model"


async def test_tool_call_fragments_are_passed_through(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    calls = [("calculator", {"expression": "1 + 2"}), ("calculator", {"expression": "3 * 3"})]
    fake_llm.script(ToolCalls(calls, text_tokens=["Let me see."], fragment_size=5))
    deltas = await collect(model, [CALCULATOR])
    assert deltas[0] == TextDelta("Let me see.")
    fragments = [d for d in deltas if isinstance(d, ToolCallDelta)]
    for index, (name, arguments) in enumerate(calls):
        mine = [f for f in fragments if f.index == index]
        assert (mine[0].name, mine[0].arguments) == (name, "")
        assert mine[0].id
        assert all(f.id is None and f.name is None for f in mine[1:])
        assert len(mine) > 2, "the arguments arrive in several fragments"
        assert json.loads("".join(f.arguments for f in mine)) == arguments
    assert deltas[-2:] == [Finish("tool_calls"), UsageReport(Usage(1, 20, 21))]


@pytest.mark.parametrize(("status", "text"), [(500, "HTTP 500"), (401, "HTTP 401"), (429, "HTTP 429")])
async def test_http_errors_become_upstream_errors(
    fake_llm: FakeLLM, model: OpenAIChatModel, status: int, text: str
) -> None:
    fake_llm.script(HTTPError(status, "nope"))
    with pytest.raises(LLMUpstreamError, match=text) as caught:
        await collect(model)
    assert caught.value.metadata["http_status"] == str(status)
    assert "nope" in caught.value.message


async def test_always_500_with_the_default_two_retries_fails_well_within_five_seconds(fake_llm: FakeLLM) -> None:
    # The SDK waits 0.5 s * 2**n minus up to 25% jitter between tries: 0.375-0.5 s, then 0.75-1 s.
    fake_llm.responder = lambda body: HTTPError(500, "always down")
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=5, max_retries=2)
    started = time.monotonic()
    with pytest.raises(LLMUpstreamError, match="HTTP 500: always down"):
        await collect(OpenAIChatModel(client, "m"))
    assert time.monotonic() - started < 3
    assert len(fake_llm.requests) == 3, "the first try and two retries"
    await client.close()


async def test_a_malformed_stream_is_an_upstream_error(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(Broken(["x"]))
    received: list[LLMDelta] = []
    with pytest.raises(LLMUpstreamError, match="malformed JSON"):
        async for delta in model.stream(USER, []):
            received.append(delta)
    assert received == [TextDelta("x")]


async def test_a_stream_cut_off_mid_body_is_an_upstream_error(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(Broken(["x"], malformed=False))
    with pytest.raises(LLMUpstreamError, match="LLM stream broke"):
        await collect(model)


async def test_a_stream_that_ends_before_finishing_is_an_upstream_error(
    fake_llm: FakeLLM, model: OpenAIChatModel
) -> None:
    fake_llm.script(RawSSE(['data: {"choices": [{"index": 0, "delta": {"content": "x"}}]}']))
    with pytest.raises(LLMUpstreamError, match="ended before"):
        await collect(model)


async def test_an_error_payload_in_the_stream_is_an_upstream_error(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(RawSSE(["event: error", 'data: {"error": {"message": "overloaded", "type": "server_error"}}']))
    with pytest.raises(LLMUpstreamError, match="overloaded"):
        await collect(model)


async def test_comments_event_lines_and_reasoning_are_handled(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(
        RawSSE(
            [
                ": keep-alive",
                'event: message\ndata: {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}',
                'data: {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}',
                "data: [DONE]",
            ]
        )
    )
    assert await collect(model) == [TextDelta("", "hmm"), TextDelta("ok"), Finish("stop")]


async def test_a_stalled_stream_times_out_as_an_upstream_error(fake_llm: FakeLLM) -> None:
    fake_llm.script(Stall(["x"]))
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=0.3, max_retries=0)
    with pytest.raises(LLMUpstreamError, match="timed out"):
        await collect(OpenAIChatModel(client, "m"))
    await client.close()
    assert await fake_llm.wait_closed(1.0)


async def test_an_unreachable_endpoint_is_an_upstream_error() -> None:
    client = make_openai_client("http://127.0.0.1:1/v1", "k", timeout_s=2, max_retries=0)
    with pytest.raises(LLMUpstreamError, match=re.escape("cannot reach the LLM endpoint http://127.0.0.1:1/v1")):
        await collect(OpenAIChatModel(client, "m"))
    await client.close()


async def test_cancelling_mid_stream_closes_the_connection(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(Stall(["x"]))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in model.stream(USER, []):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await fake_llm.wait_closed(1.0)


async def test_closing_the_stream_early_closes_the_connection(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(Stall(["x", "y"]))
    async with contextlib.aclosing(model.stream(USER, [])) as deltas:
        assert await anext(deltas) == TextDelta("x")
    assert await fake_llm.wait_closed(1.0)


async def test_a_finished_stream_leaves_the_connection_for_reuse(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(Text(["a"]), Text(["b"]))
    assert TextDelta("a") in await collect(model)
    assert TextDelta("b") in await collect(model)
    assert fake_llm.connections_accepted == 1
