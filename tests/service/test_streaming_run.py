"""StreamingRun end to end: real server, real openai client, scripted LLM over HTTP."""

from __future__ import annotations

import json

import pytest

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.runs.modes import MODE_CATEGORIES, Mode
from tests.service.helpers import collect, request, terminal_of
from tests.support.fakellm import FakeLLM, Text, ToolCalls

ALL = rpb.STREAMING_MODE_ALL


async def test_all_mode_numbers_every_event_one_to_n_and_ends_with_one_terminal(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(Text(["Roses ", "are ", "red."]))
    messages = await collect(stub, request("Write a poem", streaming_mode=ALL, session_id="sess-1"))
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    task = terminal_of(messages)
    assert task.status == pb.TASK_STATUS_SUCCEEDED
    assert task.success
    assert task.answer == "Roses are red."
    assert "".join(m.chunk.content for m in messages if m.category == "chunk") == "Roses are red."
    assert {m.run_id for m in messages} == {messages[0].run_id}
    assert {m.session_id for m in messages} == {"sess-1"}
    assert all(m.id == f"{m.run_id}:{m.seq}" for m in messages)
    assert messages[0].category == "task" and messages[0].task.status == pb.TASK_STATUS_RUNNING
    assert [m.output.content for m in messages if m.category == "output"] == ["Roses are red."]
    assert task.usage.total_tokens > 0
    assert task.time_cost.ToNanoseconds() > 0


def tool_round_trip(fake_llm: FakeLLM) -> None:
    fake_llm.script(
        ToolCalls([("calculator", {"expression": "12 * (3 + 4)"})], text_tokens=["Let me ", "compute."]),
        Text(["The ", "answer ", "is ", "84."]),
    )


async def test_tool_call_round_trip_runs_the_tool_and_returns_its_result_to_the_model(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    tool_round_trip(fake_llm)
    messages = await collect(stub, request("What is 12 * (3 + 4)?"))
    (call,) = [m for m in messages if m.WhichOneof("payload") == "tool"]
    (action,) = call.tool.actions
    assert action.tool_name == "calculator"
    assert dict(action.params) == {"expression": "12 * (3 + 4)"}
    (result,) = [m.tool_result for m in messages if m.WhichOneof("payload") == "tool_result"]
    assert (result.tool_call_id, result.tool_name, result.is_error) == (
        action.tool_call_id,
        "calculator",
        False,
    )
    assert result.content == "84"
    second_request = fake_llm.requests[1]
    tool_messages = [m for m in second_request["messages"] if m["role"] == "tool"]
    assert tool_messages == [{"role": "tool", "tool_call_id": action.tool_call_id, "content": "84"}]
    steps = [m.agent for m in messages if m.category == "agent"]
    assert [s.step for s in steps] == [1, 2]
    assert steps[0].finish_reason == "tool_calls" and len(steps[0].tool_calls) == 1
    assert terminal_of(messages).answer == "The answer is 84."


@pytest.mark.parametrize("mode", list(Mode), ids=lambda m: m.name)
async def test_each_mode_passes_exactly_its_categories_plus_the_terminal(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub, mode: Mode
) -> None:
    tool_round_trip(fake_llm)
    everything = await collect(stub, request("What is 12 * (3 + 4)?", streaming_mode=ALL))
    tool_round_trip(fake_llm)
    filtered = await collect(stub, request("What is 12 * (3 + 4)?", streaming_mode=int(mode)))
    allowed = MODE_CATEGORIES[mode]
    expected = [
        (m.seq, m.category, m.topic)
        for m in everything
        if allowed is None or m.category in allowed or m.topic == "__task_response"
    ]
    assert [(m.seq, m.category, m.topic) for m in filtered] == expected
    terminal_of(filtered)


async def test_unspecified_mode_is_core(fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub) -> None:
    tool_round_trip(fake_llm)
    messages = await collect(stub, request("What is 12 * (3 + 4)?"))
    categories = {m.category for m in messages}
    assert categories <= {"agent", "tool", "chunk", "task", "group"}
    assert {"agent", "tool", "chunk", "task"} <= categories


async def test_parallel_tool_calls_each_get_a_result(fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub) -> None:
    fake_llm.script(
        ToolCalls([("calculator", {"expression": "2 + 2"}), ("calculator", {"expression": "3 * 3"})]),
        Text(["4 and 9."]),
    )
    messages = await collect(stub, request("2+2 and 3*3?"))
    (call,) = [m.tool for m in messages if m.WhichOneof("payload") == "tool"]
    results = {m.tool_result.tool_call_id: m.tool_result.content for m in messages if m.HasField("tool_result")}
    assert results == {call.actions[0].tool_call_id: "4", call.actions[1].tool_call_id: "9"}
    assert terminal_of(messages).success


async def test_a_tool_that_raises_becomes_an_error_result_and_the_run_goes_on(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(ToolCalls([("explode", {"reason": "kaboom"})]), Text(["Sorry, that failed."]))
    messages = await collect(stub, request("break it", agent="tester"))
    (result,) = [m.tool_result for m in messages if m.HasField("tool_result")]
    assert result.is_error
    assert "kaboom" in result.content
    tool_message = next(m for m in fake_llm.requests[1]["messages"] if m["role"] == "tool")
    assert "kaboom" in tool_message["content"]
    assert terminal_of(messages).success


async def test_metadata_is_echoed_on_the_first_message(fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub) -> None:
    fake_llm.script(Text(["ok"]))
    messages = await collect(stub, request("hi", metadata={"tenant": "t1"}, run_id="my-run.1"))
    assert dict(messages[0].headers) == {"tenant": "t1"}
    assert {m.run_id for m in messages} == {"my-run.1"}


async def test_the_agents_instructions_and_input_reach_the_llm(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(Text(["ok"]))
    await collect(stub, request("what time is it?"))
    sent = fake_llm.requests[0]
    assert sent["stream"] is True
    assert sent["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert sent["messages"][-1] == {"role": "user", "content": "what time is it?"}
    assert sorted(t["function"]["name"] for t in sent["tools"]) == ["calculator", "current_time"]
    json.dumps(sent)  # the request body is plain JSON


async def test_chunk_coalescing_merges_deltas_at_the_source_keeping_seq_gap_free(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    tokens = [f"t{i} " for i in range(200)]
    fake_llm.script(Text(tokens))
    messages = await collect(stub, request("long answer", streaming_mode=ALL, chunk_window_ms=1000))
    chunks = [m.chunk.content for m in messages if m.category == "chunk"]
    assert "".join(chunks) == "".join(tokens)
    assert chunks[0] == "t0 ", "the first token is never delayed"
    assert len(chunks) < len(tokens)
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    assert terminal_of(messages).answer == "".join(tokens)
