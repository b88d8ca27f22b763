"""convert: every domain event kind becomes the matching protobuf payload, envelope intact."""

from __future__ import annotations

import typing

import pytest
from google.protobuf import duration_pb2

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream_server.runtime import events as ev
from agentstream_server.transport.convert import TASK_STATUS_TO_PROTO, run_request_from_proto, to_proto

ACTION = ev.Action(tool_name="calculator", tool_call_id="call_1", agent_name="a", params={"expression": "1+2"})
SAMPLES: dict[type, tuple[ev.Event, str]] = {
    ev.Chunk: (ev.Chunk(content="Hel", model="m", agent_name="a", step=1), "chunk"),
    ev.ToolCall: (ev.ToolCall(actions=(ACTION,)), "tool"),
    ev.ToolResult: (
        ev.ToolResult(
            tool_call_id="call_1",
            tool_name="calculator",
            content="3",
            is_error=False,
            duration_s=0.25,
            agent_name="a",
        ),
        "tool_result",
    ),
    ev.AgentStep: (
        ev.AgentStep(
            agent_name="a",
            step=1,
            content="",
            tool_calls=(ACTION,),
            finish_reason="tool_calls",
            usage=ev.Usage(1, 2, 3),
        ),
        "agent",
    ),
    ev.TaskStarted: (ev.TaskStarted(agent_name="a", input="hi"), "task"),
    ev.TaskFinished: (
        ev.TaskFinished(
            status=ev.TaskStatus.FAILED,
            success=False,
            answer="",
            msg="boom",
            agent_name="a",
            usage=ev.Usage(1, 2, 3),
            time_cost_s=1.5,
            error=ev.TaskError(reason="LLM_UPSTREAM_ERROR", code="UNAVAILABLE", metadata={"http_status": "500"}),
        ),
        "task",
    ),
    ev.Output: (ev.Output(content="done", agent_name="a"), "output"),
    ev.GroupEvent: (ev.GroupEvent(group_id="g", members=("a", "b"), content="x"), "group"),
    ev.MemoryAppended: (ev.MemoryAppended(role="user", content="hi", agent_name="a"), "memory"),
    ev.Interrupt: (
        ev.Interrupt(
            interrupt_id="i1",
            kind=ev.InterruptKind.TOOL_APPROVAL,
            tool_calls=(ev.Action("calculator", "c1", "a", {"expression": "1+1"}),),
            question="approve calculator?",
            agent_name="a",
            expires_at=1700000000.5,
        ),
        "interrupt",
    ),
}


def test_every_event_kind_has_a_sample() -> None:
    assert set(typing.get_args(ev.Event)) == set(SAMPLES)


@pytest.mark.parametrize("kind", list(SAMPLES), ids=lambda k: k.__name__)
def test_each_event_kind_converts_to_its_payload_with_the_envelope(kind: type) -> None:
    event, payload_case = SAMPLES[kind]
    record = ev.RunEvent(
        run_id="r1",
        seq=7,
        timestamp_ns=1700000000_500000000,
        event=event,
        session_id="s",
        sender="a",
        headers={"k": "v"},
    )
    message = to_proto(record)
    assert message.WhichOneof("payload") == payload_case
    assert (message.id, message.run_id, message.session_id, message.seq) == ("r1:7", "r1", "s", 7)
    assert (message.category, message.topic) == (event.category, event.topic)
    assert message.sender == "a"
    assert dict(message.headers) == {"k": "v"}
    assert message.timestamp.ToNanoseconds() == 1700000000500000000


def test_tool_call_params_become_a_struct() -> None:
    message = to_proto(ev.RunEvent(run_id="r", seq=1, timestamp_ns=0, event=SAMPLES[ev.ToolCall][0]))
    (action,) = message.tool.actions
    assert action.tool_name == "calculator"
    assert action.action_name == "calculator"
    assert action.tool_call_id == "call_1"
    assert dict(action.params) == {"expression": "1+2"}


def test_terminal_task_carries_the_response_fields() -> None:
    message = to_proto(ev.RunEvent(run_id="r", seq=9, timestamp_ns=0, event=SAMPLES[ev.TaskFinished][0]))
    task = message.task
    assert message.topic == "__task_response"
    assert task.status == pb.TASK_STATUS_FAILED
    assert (task.success, task.msg) == (False, "boom")
    assert (task.usage.prompt_tokens, task.usage.completion_tokens, task.usage.total_tokens) == (1, 2, 3)
    assert task.time_cost.ToNanoseconds() == 1_500_000_000
    assert (task.error.reason, task.error.code, dict(task.error.metadata)) == (
        "LLM_UPSTREAM_ERROR",
        "UNAVAILABLE",
        {"http_status": "500"},
    )


def test_every_task_status_maps_to_a_distinct_proto_value() -> None:
    assert set(TASK_STATUS_TO_PROTO) == set(ev.TaskStatus)
    assert len(set(TASK_STATUS_TO_PROTO.values())) == len(ev.TaskStatus)


def test_run_request_from_proto_reads_every_field() -> None:
    request = rpb.StreamingRunRequest(
        input="hi",
        agent="a",
        streaming_mode=rpb.STREAMING_MODE_ALL,
        session_id="s",
        run_id="r",
        metadata={"k": "v"},
        timeout=duration_pb2.Duration(seconds=2, nanos=500_000_000),
    )
    raw = run_request_from_proto(request)
    assert (raw.input, raw.agent, raw.streaming_mode, raw.session_id, raw.run_id) == ("hi", "a", 5, "s", "r")
    assert dict(raw.metadata) == {"k": "v"}
    assert raw.timeout == (2, 500_000_000)
    assert run_request_from_proto(rpb.StreamingRunRequest(input="x")).timeout is None
