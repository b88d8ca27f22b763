"""OpenAIChatModel: the real openai client over HTTP against the scripted server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from service.errors import LLMUpstreamError
from service.runtime.events import Usage
from service.runtime.llm import Finish, OpenAIChatModel, TextDelta, ToolCallDelta, UsageReport, make_openai_client
from tests.support.fakellm import Broken, FakeLLM, HTTPError, Stall, Text, ToolCalls

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def model(fake_llm: FakeLLM) -> AsyncIterator[OpenAIChatModel]:
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=5, max_retries=0)
    yield OpenAIChatModel(client, "fake-model")
    await client.close()


async def test_text_deltas_arrive_in_order_with_finish_and_usage(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(Text(["a", "b", "c"], usage=(4, 3)))
    deltas = [d async for d in model.stream(USER, [])]
    assert deltas == [TextDelta("a"), TextDelta("b"), TextDelta("c"), Finish("stop"), UsageReport(Usage(4, 3, 7))]
    assert fake_llm.requests[0]["stream_options"] == {"include_usage": True}
    assert "tools" not in fake_llm.requests[0]


async def test_tool_call_fragments_are_passed_through(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(ToolCalls([("calculator", {"expression": "1 + 2"})], fragment_size=5))
    deltas = [d async for d in model.stream(USER, [{"type": "function", "function": {"name": "calculator"}}])]
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert calls[0].name == "calculator"
    assert calls[0].id
    assert "".join(c.arguments for c in calls) == '{"expression": "1 + 2"}'
    assert Finish("tool_calls") in deltas


@pytest.mark.parametrize(("status", "text"), [(500, "HTTP 500"), (401, "HTTP 401"), (429, "HTTP 429")])
async def test_http_errors_become_upstream_errors(
    fake_llm: FakeLLM, model: OpenAIChatModel, status: int, text: str
) -> None:
    fake_llm.script(HTTPError(status, "nope"))
    with pytest.raises(LLMUpstreamError, match=text) as caught:
        async for _ in model.stream(USER, []):
            pass
    assert caught.value.metadata["http_status"] == str(status)
    assert "nope" in caught.value.message


async def test_a_broken_stream_is_an_upstream_error(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(Broken(["x"]))
    with pytest.raises(LLMUpstreamError):
        async for _ in model.stream(USER, []):
            pass


async def test_an_unreachable_endpoint_is_an_upstream_error() -> None:
    client = make_openai_client("http://127.0.0.1:1/v1", "k", timeout_s=2, max_retries=0)
    with pytest.raises(LLMUpstreamError, match="cannot reach"):
        async for _ in OpenAIChatModel(client, "m").stream(USER, []):
            pass
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
