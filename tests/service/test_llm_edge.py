"""What the LLM endpoint sends never breaks a run's stream: regressions of issue #9 against a live server."""

from __future__ import annotations

import asyncio
import json
import logging

import grpc
import pytest

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from tests.conftest import StartServer
from tests.service.helpers import collect, request, terminal_of
from tests.support.fakellm import Chunks, FakeLLM, HTTPError, NoAnswer, Text


def calculator_call(arguments: str) -> Chunks:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": arguments}}
    return Chunks(
        [
            {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        ]
    )


async def test_regression_content_as_number_ends_the_run_in_band_not_as_a_call_error(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(Chunks([{"choices": [{"index": 0, "delta": {"content": 5}, "finish_reason": "stop"}]}]))
    task = terminal_of(await collect(stub, request("hi")))
    assert (task.status, task.error.reason, task.error.code) == (
        pb.TASK_STATUS_FAILED,
        "LLM_UPSTREAM_ERROR",
        "UNAVAILABLE",
    )
    assert task.msg == "LLM stream sent a malformed chunk: choices[].delta.content is a number, expected a string"


async def test_regression_lone_surrogate_in_content_streams_as_a_replacement_character(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(Chunks([{"choices": [{"index": 0, "delta": {"content": "a\ud800"}, "finish_reason": "stop"}]}]))
    messages = await collect(stub, request("hi", streaming_mode=rpb.STREAMING_MODE_CHUNK_OUTPUT))
    assert [m.chunk.content for m in messages if m.HasField("chunk")] == ["a\ufffd"]
    task = terminal_of(messages)
    assert (task.status, task.answer) == (pb.TASK_STATUS_SUCCEEDED, "a\ufffd")


async def test_regression_tool_argument_number_too_large_for_protobuf_is_told_to_the_model(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(calculator_call(json.dumps({"expression": 10**400})), Text(["sorry"]))
    messages = await collect(stub, request("hi", streaming_mode=rpb.STREAMING_MODE_ALL))
    (result,) = [m.tool_result for m in messages if m.HasField("tool_result")]
    assert result.is_error
    assert result.content == "the arguments for calculator were not usable (a number is too large); call it again"
    assert fake_llm.requests[1]["messages"][-1]["content"] == result.content
    assert terminal_of(messages).status == pb.TASK_STATUS_SUCCEEDED


# ------------------------------------------------------------------------------ secrets (issue #9, item 5)

PASSWORD, URL_KEY, API_KEY = "p4ss-w0rd", "sekrit-123", "sk-test-LEAKY-9876"


def assert_never_shown(secrets: list[str], task: pb.TaskPayload, caplog: pytest.LogCaptureFixture) -> None:
    shown = [task.msg, *(record.getMessage() for record in caplog.records)]
    for secret in secrets:
        assert not [text for text in shown if secret in text], f"{secret!r} leaked"


@pytest.mark.parametrize("reachable", [True, False], ids=["reachable", "unreachable"])
async def test_regression_base_url_credentials_never_reach_callers_or_logs(
    fake_llm: FakeLLM, start: StartServer, caplog: pytest.LogCaptureFixture, reachable: bool
) -> None:
    # The openai client appends the path after the query, so the fake LLM answers 404 quoting the secret it got.
    port = fake_llm.port if reachable else 1
    caplog.set_level(logging.DEBUG)
    server = await start(openai_base_url=f"http://agent:{PASSWORD}@127.0.0.1:{port}/v1?api-key={URL_KEY}&v=1")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        task = terminal_of(await collect(rpb_grpc.RunnerServiceStub(channel), request("hi")))
    assert task.error.reason == "LLM_UPSTREAM_ERROR"
    if reachable:
        assert task.msg == "LLM endpoint returned HTTP 404 (Not Found)"
        assert any("no route POST /v1/?api-key=***" in m for m in caplog.messages), "the detail is logged, redacted"
    else:
        assert task.msg.startswith("cannot reach the LLM endpoint http://agent:***@127.0.0.1:1/v1/?api-key=***&v=1")
    assert any(f"agent:***@127.0.0.1:{port}/v1?api-key=***&v=1" in m for m in caplog.messages), "start-up line"
    assert_never_shown([PASSWORD, URL_KEY], task, caplog)


async def test_regression_401_body_echoing_the_api_key_never_leaks_to_the_caller_or_the_log(
    fake_llm: FakeLLM, start: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_llm.script(HTTPError(401, f"Incorrect API key provided: {API_KEY}. You can find your API key at ..."))
    server = await start(openai_api_key=API_KEY)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        task = terminal_of(await collect(rpb_grpc.RunnerServiceStub(channel), request("hi")))
    assert task.msg == "LLM endpoint returned HTTP 401 (Unauthorized)"
    assert task.error.metadata["http_status"] == "401"
    assert any("Incorrect API key provided: ***." in m for m in caplog.messages), "the detail is logged, redacted"
    assert_never_shown([API_KEY], task, caplog)


# ------------------------------------------------------------- request bounds (issue #9, items 3 and 4)


@pytest.mark.parametrize(
    ("overrides", "sent"), [({}, 4096), ({"llm_max_tokens": 300}, 300), ({"llm_max_tokens": 0}, None)]
)
async def test_max_tokens_is_sent_on_every_llm_request(
    fake_llm: FakeLLM, start: StartServer, overrides: dict[str, int], sent: int | None
) -> None:
    fake_llm.script(calculator_call('{"expression": "1 + 1"}'), Text(["2"]))
    server = await start(**overrides)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        task = terminal_of(await collect(rpb_grpc.RunnerServiceStub(channel), request("1 + 1?")))
    assert task.status == pb.TASK_STATUS_SUCCEEDED
    assert [r.get("max_tokens") for r in fake_llm.requests] == [sent, sent]


async def test_regression_an_endpoint_that_never_answers_ends_the_run_within_the_turn_timeout(
    fake_llm: FakeLLM, start: StartServer
) -> None:
    fake_llm.responder = lambda body: NoAnswer()
    server = await start(llm_timeout_s=0.4, llm_max_retries=2, llm_turn_timeout_s=0.6)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel, asyncio.timeout(1.0):
        task = terminal_of(await collect(rpb_grpc.RunnerServiceStub(channel), request("hi")))
    assert (task.status, task.error.reason) == (pb.TASK_STATUS_FAILED, "LLM_UPSTREAM_ERROR")
    assert task.msg == "no response from the LLM endpoint within 0.6 s (including retries)"
