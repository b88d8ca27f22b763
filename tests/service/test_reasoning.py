"""Reasoning models through the gRPC server on both stores: reasoning apart from content, counted, droppable."""

from __future__ import annotations

from typing import Any

import pytest

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from tests.service.helpers import collect, request, terminal_of
from tests.support.fakellm import Chunks, FakeLLM


def delta(**fields: Any) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "thinker",
        "choices": [{"index": 0, "delta": fields}],
    }


def reasoning_stream(key: str = "reasoning_content") -> Chunks:
    return Chunks(
        [
            delta(**{key: "The user "}),
            delta(**{key: "wants 4."}),
            delta(content="2+2 "),
            delta(content="is 4."),
            {"id": "c", "model": "thinker", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {
                "id": "c",
                "model": "thinker",
                "choices": [],
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": 9,
                    "total_tokens": 14,
                    "completion_tokens_details": {"reasoning_tokens": 6},
                },
            },
        ]
    )


def payloads(messages: list[pb.Message], kind: str) -> list[Any]:
    return [getattr(m, kind) for m in messages if m.WhichOneof("payload") == kind]


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
async def test_reasoning_streams_apart_from_content_and_the_step_and_usage_carry_it(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub, key: str
) -> None:
    fake_llm.script(reasoning_stream(key))
    messages = await collect(stub, request("2+2?"))
    chunks = payloads(messages, "chunk")
    assert [(c.content, c.reasoning_content) for c in chunks] == [
        ("", "The user "), ("", "wants 4."), ("2+2 ", ""), ("is 4.", ""),
    ]  # fmt: skip
    (step,) = payloads(messages, "agent")
    assert (step.content, step.reasoning_content) == ("2+2 is 4.", "The user wants 4.")
    assert (step.usage.reasoning_tokens, step.usage.completion_tokens) == (6, 9)
    task = terminal_of(messages)
    assert (task.answer, task.usage.reasoning_tokens) == ("2+2 is 4.", 6)


async def test_exclude_reasoning_drops_it_from_that_stream_only(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(reasoning_stream())
    messages = await collect(stub, request("2+2?", exclude_reasoning=True, on_disconnect=rpb.ON_DISCONNECT_CONTINUE))
    assert [c.content for c in payloads(messages, "chunk")] == ["2+2 ", "is 4."]
    assert not any(c.reasoning_content for c in payloads(messages, "chunk"))
    assert payloads(messages, "agent")[0].reasoning_content == ""
    seqs = [m.seq for m in messages]
    assert seqs == sorted(set(seqs))
    run_id = messages[0].run_id

    replay = [m async for m in stub.SubscribeRun(rpb.SubscribeRunRequest(run_id=run_id))]
    assert [c.reasoning_content for c in payloads(replay, "chunk")][:2] == ["The user ", "wants 4."]  # the log keeps it
    dropped = [m async for m in stub.SubscribeRun(rpb.SubscribeRunRequest(run_id=run_id, exclude_reasoning=True))]
    assert [m.seq for m in dropped] == seqs


async def test_the_steps_reasoning_goes_back_to_the_model_after_a_tool_call(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    """Within one run, the assistant message sent back after a tool call keeps the step's reasoning."""
    fake_llm.script(
        Chunks(
            [
                delta(reasoning_content="use the calculator"),
                delta(tool_calls=[{"index": 0, "id": "t1", "function": {"name": "calculator", "arguments": ""}}]),
                delta(tool_calls=[{"index": 0, "function": {"arguments": '{"expression": "2+2"}'}}]),
                {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            ]
        ),
        reasoning_stream(),
    )
    messages = await collect(stub, request("2+2?"))
    assert terminal_of(messages).success
    assistant = next(m for m in fake_llm.requests[1]["messages"] if m["role"] == "assistant")
    assert assistant["reasoning_content"] == "use the calculator"
