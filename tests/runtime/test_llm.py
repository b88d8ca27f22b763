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
from agentstream_server.runtime.llm import OpenAIChatModel, make_openai_client
from agentstream_server.runtime.model import Finish, LLMDelta, TextDelta, ToolCallDelta, UsageReport
from tests.support.fakellm import Broken, Chunks, FakeLLM, HTTPError, NoAnswer, RawSSE, Stall, Text, ToolCalls

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


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (500, "LLM endpoint returned HTTP 500 (Internal Server Error)"),
        (401, "LLM endpoint returned HTTP 401 (Unauthorized)"),
        (429, "LLM endpoint returned HTTP 429 (Too Many Requests)"),
    ],
)
async def test_http_errors_become_upstream_errors_with_the_detail_in_the_log(
    fake_llm: FakeLLM, model: OpenAIChatModel, caplog: pytest.LogCaptureFixture, status: int, text: str
) -> None:
    fake_llm.script(HTTPError(status, "nope"))
    with pytest.raises(LLMUpstreamError) as caught:
        await collect(model)
    assert caught.value.message == text
    assert caught.value.metadata["http_status"] == str(status)
    (record,) = [r for r in caplog.records if r.name == "agentstream.llm"]
    assert f"returned HTTP {status}" in record.getMessage()
    assert "nope" in record.getMessage()


async def test_an_upstream_error_code_is_passed_on(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    body = {"error": {"message": "too long", "code": "context_length_exceeded"}}
    fake_llm.script(HTTPError(400, body=body), HTTPError(400, body={"error": {"message": "x", "code": "not a code!"}}))
    with pytest.raises(LLMUpstreamError) as caught:
        await collect(model)
    assert caught.value.message == "LLM endpoint returned HTTP 400 (Bad Request): context_length_exceeded"
    with pytest.raises(LLMUpstreamError) as caught:
        await collect(model)
    assert caught.value.message == "LLM endpoint returned HTTP 400 (Bad Request)"


async def test_always_500_with_the_default_two_retries_fails_well_within_five_seconds(fake_llm: FakeLLM) -> None:
    # The SDK waits 0.5 s * 2**n minus up to 25% jitter between tries: 0.375-0.5 s, then 0.75-1 s.
    fake_llm.responder = lambda body: HTTPError(500, "always down")
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=5, max_retries=2)
    started = time.monotonic()
    with pytest.raises(LLMUpstreamError, match="HTTP 500"):
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


# ------------------------------------------------------------------ issue #9: wrong-typed upstream JSON


def chunk(delta: Any = None, finish_reason: Any = None, **fields: Any) -> dict[str, Any]:
    """One chat.completion.chunk payload with a single choice (fields override or add top-level keys)."""
    return {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **fields}


def call(**fields: Any) -> dict[str, Any]:
    return chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}} | fields]})


async def test_regression_content_as_number_is_an_upstream_error(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(Chunks([chunk({"content": "ok"}), chunk({"content": 5})]))
    received: list[LLMDelta] = []
    with pytest.raises(LLMUpstreamError, match=r"malformed chunk: choices\[\]\.delta\.content is a number"):
        async for delta in model.stream(USER, []):
            received.append(delta)
    assert received == [TextDelta("ok")]


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"choices": "abc"}, "choices is a string"),
        ({"choices": {}}, "choices is an object"),
        ({"choices": [5]}, r"choices\[\] is a number"),
        (chunk([{"content": "x"}]), r"choices\[\]\.delta is an array"),
        (chunk({"content": False}), r"delta\.content is a boolean"),
        (chunk({"content": ["x"]}), r"delta\.content is an array"),
        (chunk({"reasoning_content": 3}), r"delta\.reasoning_content is a number"),
        (chunk({"reasoning": {"text": "x"}}), r"delta\.reasoning_content is an object"),
        (chunk({}, finish_reason=7), r"finish_reason is a number"),
        (chunk({}, finish_reason=["stop"]), r"finish_reason is an array"),
        (chunk({"tool_calls": {"index": 0}}), r"tool_calls is an object"),
        (chunk({"tool_calls": ["call"]}), r"tool_calls\[\] is a string"),
        (call(index="abc"), r"tool_calls\[\]\.index is a string"),
        (call(index=True), r"tool_calls\[\]\.index is a boolean"),
        (call(index=1.0), r"tool_calls\[\]\.index is a number, expected an integer"),
        (call(id=12345), r"tool_calls\[\]\.id is a number"),
        (call(function="f"), r"tool_calls\[\]\.function is a string"),
        (call(function={"name": ["f"]}), r"function\.name is an array"),
        (call(function={"name": "f", "arguments": {"expression": "1+1"}}), r"function\.arguments is an object"),
        ({"choices": [], "usage": "lots"}, "usage is a string"),
        ({"choices": [], "usage": {"prompt_tokens": "5"}}, r"usage\.prompt_tokens is a string"),
        ({"choices": [], "usage": {"completion_tokens": True}}, r"usage\.completion_tokens is a boolean"),
        ({"choices": [], "usage": {"total_tokens": 1.5}}, r"usage\.total_tokens is a number, expected an integer"),
        ({"choices": [], "usage": {"total_tokens": float("nan")}}, r"usage\.total_tokens is a number"),
    ],
)
async def test_regression_wrong_typed_chunk_fields_are_upstream_errors(
    fake_llm: FakeLLM, model: OpenAIChatModel, payload: dict[str, Any], where: str
) -> None:
    fake_llm.script(Chunks([payload, chunk({}, "stop")]))
    with pytest.raises(LLMUpstreamError, match=where):
        await collect(model)


@pytest.mark.parametrize("index", [-1, 128, 10**30])
async def test_regression_tool_call_index_out_of_range_is_an_upstream_error(
    fake_llm: FakeLLM, model: OpenAIChatModel, index: int
) -> None:
    fake_llm.script(Chunks([call(index=index)]))
    with pytest.raises(LLMUpstreamError, match=r"tool_calls\[\]\.index is out of range \(0 to 127\)"):
        await collect(model)


async def test_regression_negative_and_huge_token_counts_are_clamped(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    usage = {"prompt_tokens": -1, "completion_tokens": 10**30, "total_tokens": 2**31 - 1}
    fake_llm.script(Chunks([chunk({}, "stop"), {"choices": [], "usage": usage}]))
    assert await collect(model) == [Finish("stop"), UsageReport(Usage(0, 2**31 - 1, 2**31 - 1))]


async def test_regression_lone_surrogates_in_chunk_strings_are_replaced(
    fake_llm: FakeLLM, model: OpenAIChatModel
) -> None:
    lone = "a\ud800b\udfff"
    fake_llm.script(
        Chunks(
            [
                chunk({"content": lone, "reasoning_content": lone}),
                call(id=lone, function={"name": lone, "arguments": lone}),
                chunk({"content": "pair \U0001f600 ok"}, finish_reason=lone),  # a real pair is kept
            ]
        )
    )
    safe = "a\ufffdb\ufffd"
    assert await collect(model) == [
        TextDelta(safe, safe),
        ToolCallDelta(0, safe, safe, safe),
        TextDelta("pair \U0001f600 ok"),
        Finish(safe),
    ]


async def test_null_and_missing_chunk_fields_mean_nothing(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(
        Chunks(
            [
                {"choices": None, "usage": None},
                {"choices": [{"delta": None, "finish_reason": None}]},
                chunk({"content": None, "reasoning_content": None, "tool_calls": None}),
                chunk({"tool_calls": [{"function": None}, {"index": 1, "id": None, "function": {"name": None}}]}),
                {"choices": [], "usage": {"prompt_tokens": None}},
                chunk({}, "stop"),
            ]
        )
    )
    assert await collect(model) == [
        ToolCallDelta(0, None, None, ""),
        ToolCallDelta(1, None, None, ""),
        UsageReport(Usage(0, 0, 0)),
        Finish("stop"),
    ]


async def test_regression_deeply_nested_chunk_is_an_upstream_error(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(RawSSE(["data: " + "[" * 100_000 + "]" * 100_000]))
    with pytest.raises(LLMUpstreamError, match="malformed JSON"):
        await collect(model)


async def test_regression_malformed_chunk_error_names_the_field_never_the_value(
    fake_llm: FakeLLM, model: OpenAIChatModel
) -> None:
    fake_llm.script(Chunks([chunk({"content": {"leak": "sk-secret-" + "x" * 10_000}})]))
    with pytest.raises(LLMUpstreamError) as caught:
        await collect(model)
    assert "sk-secret" not in caught.value.message
    assert len(caught.value.message) < 200


async def test_regression_error_payload_message_is_bounded(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    fake_llm.script(Chunks([{"error": {"message": "overloaded " + "x" * 100_000 + "\ud800"}}]))
    with pytest.raises(LLMUpstreamError, match="overloaded") as caught:
        await collect(model)
    assert len(caught.value.message) < 1000
    caught.value.message.encode()


# ------------------------------------------------------------------- issue #9: request bounds (max_tokens, turn)


async def test_max_tokens_is_sent_when_given(fake_llm: FakeLLM) -> None:
    fake_llm.script(Text(["a"]), Text(["b"]))
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=5, max_retries=0)
    await collect(OpenAIChatModel(client, "m", max_tokens=123))
    await collect(OpenAIChatModel(client, "m"))
    await client.close()
    assert fake_llm.requests[0]["max_tokens"] == 123
    assert "max_tokens" not in fake_llm.requests[1]


TIMER_RESOLUTION_S = 0.002
"""libuv rounds timers to whole milliseconds, so a 0.6 s timeout can fire at 0.5999 s by time.monotonic()."""


async def test_regression_an_endpoint_that_never_answers_fails_within_the_turn_timeout(fake_llm: FakeLLM) -> None:
    # Without the turn bound: 3 tries of 0.4 s plus about 1.1-1.5 s of backoff.
    fake_llm.responder = lambda body: NoAnswer()
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=0.4, max_retries=2)
    started = time.monotonic()
    with pytest.raises(LLMUpstreamError) as caught:
        await collect(OpenAIChatModel(client, "m", turn_timeout_s=0.6))
    elapsed = time.monotonic() - started
    await client.close()
    assert caught.value.message == "no response from the LLM endpoint within 0.6 s (including retries)"
    assert 0.6 - TIMER_RESOLUTION_S <= elapsed < 1.0  # uvloop (libuv) timers fire on millisecond ticks
    assert await fake_llm.wait_closed(1.0), "the pending request is abandoned"


async def test_the_turn_timeout_bounds_the_wait_for_headers_not_the_whole_stream(fake_llm: FakeLLM) -> None:
    fake_llm.script(Text(["a", "b", "c", "d", "e"], delay_s=0.2))
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=5, max_retries=0)
    deltas = await collect(OpenAIChatModel(client, "m", turn_timeout_s=0.3))
    await client.close()
    assert Finish("stop") in deltas


async def test_with_a_turn_timeout_per_try_timeouts_and_retries_still_apply(fake_llm: FakeLLM) -> None:
    fake_llm.responder = lambda body: NoAnswer()
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=0.2, max_retries=1)
    with pytest.raises(LLMUpstreamError, match="timed out"):
        await collect(OpenAIChatModel(client, "m", turn_timeout_s=30))
    await client.close()
    assert len(fake_llm.requests) == 2


async def test_regression_an_sse_line_without_a_newline_is_bounded(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    from agentstream_server.runtime.llm import MAX_SSE_LINE_BYTES

    fake_llm.script(RawSSE(["data: " + "x" * (MAX_SSE_LINE_BYTES + 1024)]))
    with pytest.raises(LLMUpstreamError, match=f"longer than {MAX_SSE_LINE_BYTES} bytes"):
        await collect(model)


async def test_a_long_chunk_split_across_many_reads_arrives_whole(fake_llm: FakeLLM, model: OpenAIChatModel) -> None:
    content = "z" * (2 * 1024 * 1024)
    chunk = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": "stop"}]}
    fake_llm.script(RawSSE([f"data: {json.dumps(chunk)}", "data: [DONE]"]))
    deltas = await collect(model)
    assert [d.content for d in deltas if isinstance(d, TextDelta)] == [content]
