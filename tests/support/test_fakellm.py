"""The scripted LLM server, driven by the real openai client: it must look like OpenAI to the SDK."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.support.fakellm import (
    Chunks,
    FakeLLM,
    HTTPError,
    Stall,
    Text,
    ToolCalls,
    default_responder,
    paced,
)

USER: list[Any] = [{"role": "user", "content": "hi"}]
CALCULATOR: Any = {"type": "function", "function": {"name": "calculator", "parameters": {}}}


@pytest.fixture
async def client(fake_llm: FakeLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=fake_llm.base_url, api_key="k", max_retries=0) as client:
        yield client


async def test_text_streams_one_chunk_per_token_then_finish_then_usage(
    fake_llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    fake_llm.script(Text(["Hello", ", ", "world"], usage=(5, 3)))
    stream = await client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:4]] == ["Hello", ", ", "world"]
    assert chunks[4].choices[0].finish_reason == "stop"
    assert chunks[5].choices == []
    assert chunks[5].usage is not None
    assert (chunks[5].usage.prompt_tokens, chunks[5].usage.completion_tokens, chunks[5].usage.total_tokens) == (5, 3, 8)
    assert len(chunks) == 6
    assert fake_llm.requests == [
        {"model": "m", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    ]


async def test_no_usage_chunk_unless_asked_and_default_usage_counts(
    fake_llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    fake_llm.script(Text(["a", "b"]), Text(["a", "b"]))
    plain = [c async for c in await client.chat.completions.create(model="m", messages=USER, stream=True)]
    assert all(c.usage is None for c in plain)
    stream = await client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    usage = [c async for c in stream][-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (1, 2), "words in the messages, tokens sent"


async def test_tool_call_fragments_reassemble_into_the_calls(fake_llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    calls = [("calculator", {"expression": "12 * (3 + 4)"}), ("lookup", {"q": "weather in Paris"})]
    fake_llm.script(ToolCalls(calls, fragment_size=4))
    stream = await client.chat.completions.create(
        model="m", messages=USER, tools=[CALCULATOR], stream=True, stream_options={"include_usage": True}
    )
    ids: dict[int, str] = {}
    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    finish = None
    usage_chunks = 0
    async for chunk in stream:
        if not chunk.choices:
            usage_chunks += 1
            continue
        finish = chunk.choices[0].finish_reason or finish
        for call in chunk.choices[0].delta.tool_calls or ():
            if call.id:
                assert call.index not in ids, "the id comes once, on the first delta of a call"
                assert call.type == "function"
                ids[call.index] = call.id
            if call.function and call.function.name:
                names[call.index] = call.function.name
            if call.function and call.function.arguments:
                assert len(call.function.arguments) <= 4
                arguments[call.index] = arguments.get(call.index, "") + call.function.arguments
    assert [names[i] for i in (0, 1)] == ["calculator", "lookup"]
    assert [json.loads(arguments[i]) for i in (0, 1)] == [args for _, args in calls]
    assert len(set(ids.values())) == 2
    assert all(i.startswith("call_") for i in ids.values())
    assert (finish, usage_chunks) == ("tool_calls", 1)


async def test_http_error_raises_the_sdks_status_error(fake_llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake_llm.script(HTTPError(500, "boom"), HTTPError(400, body={"error": {"message": "bad", "code": "x"}}))
    with pytest.raises(openai.InternalServerError, match="boom"):
        await client.chat.completions.create(model="m", messages=USER, stream=True)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="m", messages=USER, stream=True)
    assert caught.value.code == "x"
    with pytest.raises(openai.InternalServerError, match="script exhausted"):
        await client.chat.completions.create(model="m", messages=USER)


async def test_chunks_sends_any_json_payloads_as_data_lines(fake_llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    payloads = [{"choices": "nope"}, [1, 2], 10**40, float("nan"), {"content": "\ud800"}]
    fake_llm.script(Chunks(payloads), Chunks([{}], done=False))

    async def lines() -> list[str]:
        async with client.chat.completions.with_streaming_response.create(
            model="m", messages=USER, stream=True
        ) as response:
            return [line async for line in response.iter_lines() if line]

    assert await lines() == [
        'data: {"choices": "nope"}',
        "data: [1, 2]",
        f"data: {10**40}",
        "data: NaN",
        'data: {"content": "\\ud800"}',
        "data: [DONE]",
    ]
    assert await lines() == ["data: {}"]


async def test_a_failing_responder_is_reported_as_a_500(fake_llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake_llm.responder = lambda body: body["missing"]
    with pytest.raises(openai.InternalServerError, match="responder failed"):
        await client.chat.completions.create(model="m", messages=USER)


async def test_non_streaming_requests_get_a_whole_completion(fake_llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake_llm.script(Text(["Hi ", "there"]), ToolCalls([("calculator", {"expression": "1+1"})]))
    text = await client.chat.completions.create(model="m", messages=USER)
    assert (text.choices[0].message.content, text.choices[0].finish_reason) == ("Hi there", "stop")
    tool = await client.chat.completions.create(model="m", messages=USER, tools=[CALCULATOR])
    [call] = tool.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("calculator", {"expression": "1+1"})


async def test_connections_are_kept_alive_and_closed_streams_are_seen(
    fake_llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    fake_llm.script(Text(["a"]), Text(["b"]), Stall(["x"]))
    for _ in range(2):
        _ = [c async for c in await client.chat.completions.create(model="m", messages=USER, stream=True)]
    assert (fake_llm.connections_accepted, fake_llm.open_connections) == (1, 1)
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    async for chunk in stream:
        if chunk.choices[0].delta.content == "x":
            break
    assert await fake_llm.wait_requests(3, 1.0)
    assert not await fake_llm.wait_closed(0.05), "the stalled stream holds its connection"
    await stream.close()
    await client.close()
    assert await fake_llm.wait_closed(1.0)


async def test_a_paced_stream_takes_its_time(fake_llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake_llm.script(Text(["a"] * 5, delay_s=0.04))
    loop = asyncio.get_running_loop()
    started = loop.time()
    chunks = [c async for c in await client.chat.completions.create(model="m", messages=USER, stream=True)]
    assert len(chunks) == 7
    assert 0.2 <= loop.time() - started < 1.0


async def test_fifty_thousand_tokens_stream_quickly(fake_llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake_llm.script(Text(["x "] * 50_000))
    loop = asyncio.get_running_loop()
    started = loop.time()
    lines = 0
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=USER, stream=True
    ) as response:
        async for line in response.iter_lines():
            lines += line.startswith("data: ")
    assert lines == 50_000 + 3
    assert loop.time() - started < 5.0, "the scripted server must not be the bottleneck of a benchmark"


def test_default_responder_calls_the_calculator_then_answers_else_echoes() -> None:
    ask = {"messages": [{"role": "user", "content": "What is (1 + 2) * 4?"}], "tools": [CALCULATOR]}
    assert default_responder(ask) == ToolCalls([("calculator", {"expression": "(1 + 2) * 4"})])
    answered = {**ask, "messages": [*ask["messages"], {"role": "tool", "content": "12"}]}
    assert default_responder(answered) == Text(["The ", "answer ", "is ", "12."])
    echo = Text(["You ", "said: ", "What ", "is ", "(1 ", "+ ", "2) ", "* ", "4?"])
    assert default_responder({"messages": ask["messages"]}) == echo, "no calculator offered"
    no_operator = {**ask, "messages": [{"role": "user", "content": "I am 42"}]}
    assert default_responder(no_operator) == Text(["You ", "said: ", "I ", "am ", "42"])
    assert paced(default_responder, 10)({"messages": ask["messages"]}) == Text(echo.tokens, delay_s=0.1)
    bench = default_responder({"messages": [{"role": "user", "content": "bench: tokens=3 rate=50 stamp"}]})
    assert bench == Text(["x "] * 3, delay_s=0.02, stamp=True)


async def test_standalone_mode_serves_the_default_responder_until_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.fakellm", "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        assert line.startswith("fakellm listening on http://127.0.0.1:")
        async with openai.AsyncOpenAI(base_url=line.split()[-1], api_key="k", max_retries=0) as client:
            chunks = [c async for c in await client.chat.completions.create(model="m", messages=USER, stream=True)]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "You said: hi"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
