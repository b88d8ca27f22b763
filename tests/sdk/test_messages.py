"""from_proto: every payload kind becomes its SDK class with the payload's fields."""

from __future__ import annotations

import datetime

import pytest

from agentstream import messages as m
from agentstream.types import GroupEventKind, InterruptKind, TaskStatus
from agentstream.v1 import message_pb2 as pb
from agentstream_server.runtime import events as ev
from agentstream_server.transport.convert import to_proto
from tests.service.test_convert import SAMPLES

EXPECTED_CLASS = {
    ev.Chunk: m.ChunkMessage,
    ev.ToolCall: m.ToolMessage,
    ev.ToolResult: m.ToolResultMessage,
    ev.AgentStep: m.AgentMessage,
    ev.TaskStarted: m.TaskMessage,
    ev.TaskFinished: m.TaskMessage,
    ev.Output: m.OutputMessage,
    ev.GroupEvent: m.GroupMessage,
    ev.MemoryAppended: m.MemoryMessage,
    ev.Interrupt: m.InterruptMessage,
}


def round_trip(event: ev.Event) -> m.Message:
    record = ev.RunEvent(
        run_id="r1", seq=3, timestamp_ns=1700000000_250000000, event=event, session_id="s", headers={"a": "b"}
    )
    return m.from_proto(to_proto(record))


@pytest.mark.parametrize("kind", list(SAMPLES), ids=lambda k: k.__name__)
def test_every_server_event_kind_becomes_its_sdk_class(kind: type) -> None:
    message = round_trip(SAMPLES[kind][0])
    assert type(message) is EXPECTED_CLASS[kind]
    assert (message.id, message.run_id, message.session_id, message.seq) == ("r1:3", "r1", "s", 3)
    assert message.headers == {"a": "b"}
    assert message.timestamp == datetime.datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=datetime.UTC)


def test_tool_message_payload_is_a_list_of_actions_with_dict_params() -> None:
    message = round_trip(SAMPLES[ev.ToolCall][0])
    assert isinstance(message, m.ToolMessage)
    (action,) = message.payload
    assert (action.tool_name, action.tool_call_id, action.params) == ("calculator", "call_1", {"expression": "1+2"})


def test_tool_result_message_is_not_a_tool_message() -> None:
    message = round_trip(SAMPLES[ev.ToolResult][0])
    assert not isinstance(message, m.ToolMessage)
    assert isinstance(message, m.ToolResultMessage)
    assert (message.payload.content, message.payload.duration) == ("3", 0.25)


def test_terminal_task_message_carries_the_outcome() -> None:
    message = round_trip(SAMPLES[ev.TaskFinished][0])
    assert isinstance(message, m.TaskMessage)
    assert message.is_terminal
    task = message.payload
    assert (task.status, task.success, task.msg, task.time_cost) == (TaskStatus.FAILED, False, "boom", 1.5)
    assert task.usage == m.Usage(1, 2, 3)
    assert task.error == m.TaskError("LLM_UPSTREAM_ERROR", "UNAVAILABLE", {"http_status": "500"})


def test_a_message_without_payload_is_a_base_message() -> None:
    message = m.from_proto(pb.Message(id="x", seq=1, category="future"))
    assert type(message) is m.Message
    assert message.payload is None


PAYLOAD_FIELDS = [f.name for f in pb.Message.DESCRIPTOR.oneofs_by_name["payload"].fields]


@pytest.mark.parametrize("name", PAYLOAD_FIELDS)
def test_every_payload_of_the_contract_has_its_own_sdk_class(name: str) -> None:
    message = pb.Message(id="r:1", seq=1)
    getattr(message, name).SetInParent()
    converted = m.from_proto(message)
    assert type(converted) is not m.Message, f"from_proto does not convert payload {name!r}"
    assert converted.payload is not None


def test_payload_kinds_map_to_distinct_classes() -> None:
    kinds = set()
    for name in PAYLOAD_FIELDS:
        message = pb.Message()
        getattr(message, name).SetInParent()
        kinds.add(type(m.from_proto(message)))
    assert len(kinds) == len(PAYLOAD_FIELDS)


def test_a_payload_from_a_newer_contract_is_a_base_message_not_an_error() -> None:
    tag = 99 << 3 | 2  # payload field 99, length-delimited: a variant this SDK does not know
    unknown_variant = bytes([tag & 0x7F | 0x80, tag >> 7, 2]) + b"hi"
    message = pb.Message.FromString(pb.Message(id="r:1", seq=1, category="new").SerializeToString() + unknown_variant)
    assert message.WhichOneof("payload") is None
    converted = m.from_proto(message)
    assert type(converted) is m.Message
    assert (converted.id, converted.category, converted.payload) == ("r:1", "new", None)


def test_a_scripted_run_converts_field_by_field() -> None:
    from tests.sdk import calculator_run

    (start, first, _, tool, result, step, memory, _, output, group, end) = [m.from_proto(x) for x in calculator_run()]
    assert isinstance(start, m.TaskMessage) and not start.is_terminal
    assert (start.payload.status, start.payload.input, start.payload.usage) == (
        TaskStatus.RUNNING,
        "What is 2+2?",
        None,
    )
    assert first.payload == m.Chunk("Let me ", "m", "assistant", 1, "")
    assert (first.sender, first.caller, first.receiver, first.session_id) == ("assistant", "runtime", "", "s-1")
    assert first.timestamp == datetime.datetime(2023, 11, 14, 22, 13, 20, 2000, tzinfo=datetime.UTC)
    calc = m.ActionModel("calculator", "calculator", "c1", "assistant", {"expression": "2+2"})
    assert tool.payload == [calc]
    assert result.payload == m.ToolResult("c1", "calculator", "4", False, 0.25, "assistant")
    assert step.payload == m.AgentStep("assistant", 1, "Let me check.", [calc], "tool_calls", None)
    assert memory.payload == m.Memory("tool", "4", "assistant")
    assert output.payload == m.Output("It is 4.", "assistant")
    assert group.payload == m.Group("g", ["assistant"], "done")
    assert isinstance(end, m.TaskMessage) and end.is_terminal
    assert (end.payload.success, end.payload.answer, end.payload.time_cost, end.payload.error) == (
        True,
        "It is 4.",
        1.5,
        None,
    )


def test_a_nested_agent_end_converts_with_its_kind_agents_usage_and_nesting() -> None:
    wire = pb.Message(id="r:9", run_id="r", seq=9, category="group", topic="agent_end", depth=2,
                      parent_tool_call_id="c7", caller="triage")  # fmt: skip
    wire.group.kind = pb.GROUP_EVENT_KIND_AGENT_END
    wire.group.from_agent, wire.group.to_agent, wire.group.tool_call_id = "triage", "researcher", "c7"
    wire.group.success, wire.group.depth, wire.group.usage.total_tokens = True, 2, 12
    converted = m.from_proto(wire)
    assert isinstance(converted, m.GroupMessage)
    assert (converted.depth, converted.parent_tool_call_id, converted.caller) == (2, "c7", "triage")
    group = converted.payload
    assert (group.kind, group.from_agent, group.to_agent, group.tool_call_id, group.success, group.depth) == (
        GroupEventKind.AGENT_END, "triage", "researcher", "c7", True, 2,
    )  # fmt: skip
    assert group.usage == m.Usage(0, 0, 12, 0)


def test_an_interrupt_converts_to_its_own_message_class() -> None:
    wire = pb.Message(id="r:3", run_id="r", seq=3, category="task", topic="interrupt")
    wire.interrupt.interrupt_id, wire.interrupt.kind = "i1", pb.INTERRUPT_KIND_TOOL_APPROVAL
    wire.interrupt.tool_calls.add(tool_name="calculator", tool_call_id="c1", action_name="calculator")
    wire.interrupt.question, wire.interrupt.expires_at.seconds = "approve?", 1_700_000_000
    converted = m.from_proto(wire)
    assert isinstance(converted, m.InterruptMessage) and converted.is_pending
    payload = converted.payload
    assert (payload.interrupt_id, payload.kind, payload.question) == ("i1", InterruptKind.TOOL_APPROVAL, "approve?")
    assert [a.tool_name for a in payload.tool_calls] == ["calculator"]
    assert payload.expires_at == datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.UTC)


def test_an_enum_value_from_a_newer_contract_is_unspecified() -> None:
    wire = pb.Message(id="r:1", run_id="r", seq=1, category="group", topic="x")
    wire.group.kind = 99  # type: ignore[assignment]
    converted = m.from_proto(wire)
    assert isinstance(converted, m.GroupMessage) and converted.payload.kind is GroupEventKind.UNSPECIFIED
