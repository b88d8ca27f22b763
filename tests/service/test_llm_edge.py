"""What the LLM endpoint sends never breaks a run's stream: regressions of issue #9 against a live server."""

from __future__ import annotations

import json

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from tests.service.helpers import collect, request, terminal_of
from tests.support.fakellm import Chunks, FakeLLM, Text


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
