"""Domain events <-> protobuf: the only place proto messages are built (exhaustive over event kinds)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, assert_never

from google.protobuf import struct_pb2

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream_server.runtime.events import (
    Action,
    AgentStep,
    Chunk,
    GroupEvent,
    GroupKind,
    Interrupt,
    InterruptKind,
    MemoryAppended,
    Output,
    RunEvent,
    TaskFinished,
    TaskStarted,
    TaskStatus,
    ToolCall,
    ToolResult,
    Usage,
)
from agentstream_server.transport.validation import RunRequest

if TYPE_CHECKING:
    from agentstream_server.store.base import RunInfo
    from agentstream_server.store.sessions import SessionInfo

TASK_STATUS_TO_PROTO: dict[TaskStatus, pb.TaskStatus.ValueType] = {
    TaskStatus.RUNNING: pb.TASK_STATUS_RUNNING,
    TaskStatus.SUCCEEDED: pb.TASK_STATUS_SUCCEEDED,
    TaskStatus.FAILED: pb.TASK_STATUS_FAILED,
    TaskStatus.CANCELLED: pb.TASK_STATUS_CANCELLED,
    TaskStatus.TIMED_OUT: pb.TASK_STATUS_TIMED_OUT,
    TaskStatus.INTERRUPTED: pb.TASK_STATUS_INTERRUPTED,
    TaskStatus.INPUT_REQUIRED: pb.TASK_STATUS_INPUT_REQUIRED,
}


def _timeout(request: rpb.StreamingRunRequest | rpb.StartRunRequest) -> tuple[int, int] | None:
    # Raw (seconds, nanos): Duration's own conversions raise on out-of-range values; validation reports them.
    return (request.timeout.seconds, request.timeout.nanos) if request.HasField("timeout") else None


def _chunk_window_ms(request: rpb.StreamingRunRequest | rpb.StartRunRequest) -> int | None:
    return request.chunk_window_ms if request.HasField("chunk_window_ms") else None


def run_request_from_proto(request: rpb.StreamingRunRequest) -> RunRequest:
    """The raw (unvalidated) run request carried by a StreamingRunRequest."""
    return RunRequest(
        input=request.input,
        agent=request.agent,
        streaming_mode=int(request.streaming_mode),
        session_id=request.session_id,
        run_id=request.run_id,
        metadata=dict(request.metadata),
        timeout=_timeout(request),
        chunk_window_ms=_chunk_window_ms(request),
        on_disconnect=int(request.on_disconnect),
    )


def start_request_from_proto(request: rpb.StartRunRequest) -> RunRequest:
    """The raw run request carried by a StartRunRequest (its run continues without a caller)."""
    return RunRequest(
        input=request.input,
        agent=request.agent,
        session_id=request.session_id,
        run_id=request.run_id,
        metadata=dict(request.metadata),
        timeout=_timeout(request),
        chunk_window_ms=_chunk_window_ms(request),
        on_disconnect=rpb.ON_DISCONNECT_CONTINUE,
    )


def run_to_proto(info: RunInfo) -> rpb.Run:
    """The wire description of a run."""
    message = rpb.Run(
        run_id=info.run_id,
        agent=info.agent,
        status=TASK_STATUS_TO_PROTO[info.status],
        last_seq=info.last_seq,
        session_id=info.session_id,
    )
    message.created_at.FromNanoseconds(int(info.created_at * 1e9))
    if info.finished_at is not None:
        message.finished_at.FromNanoseconds(int(info.finished_at * 1e9))
    if info.terminal is not None:
        try:
            _fill_task_finished(message.response, info.terminal)
        except Exception:  # never let one bad field make a run undescribable
            message.response.Clear()
            message.response.CopyFrom(_placeholder_task())
    for interrupt in info.pending_interrupts:
        fill_interrupt(message.pending_interrupts.add(), interrupt)
    return message


def session_to_proto(info: SessionInfo) -> rpb.Session:
    """The wire description of a session (GetSession's answer)."""
    message = rpb.Session(
        session_id=info.session_id,
        run_ids=info.run_ids,
        live_run_id=info.live_run_id,
        turns=[
            rpb.SessionTurn(
                role=turn.role,
                content=turn.content,
                tool_calls=_actions(turn.tool_calls),
                tool_call_id=turn.tool_call_id,
                reasoning_content=turn.reasoning_content,
                run_id=turn.run_id,
                agent_name=turn.agent_name,
            )
            for turn in info.turns
        ],
    )
    message.created_at.FromNanoseconds(int(info.created_at * 1e9))
    message.updated_at.FromNanoseconds(int(info.updated_at * 1e9))
    return message


def to_proto(record: RunEvent) -> pb.Message:
    """The wire Message for one logged event."""
    # Per-token hot path: set only non-empty fields and fill the Timestamp directly (no Python helpers).
    event = record.event
    message = pb.Message(
        id=f"{record.run_id}:{record.seq}",
        run_id=record.run_id,
        seq=record.seq,
        category=event.category,
        topic=event.topic,
    )
    if record.session_id:
        message.session_id = record.session_id
    if record.sender:
        message.sender = record.sender
    if record.receiver:
        message.receiver = record.receiver
    if record.caller:
        message.caller = record.caller
    if record.headers:
        message.headers.update(record.headers)
    if record.depth:
        message.depth = record.depth
        message.parent_tool_call_id = record.parent_tool_call_id
    timestamp = message.timestamp
    timestamp.seconds, timestamp.nanos = divmod(record.timestamp_ns, 1_000_000_000)
    match event:
        case Chunk():
            chunk = message.chunk
            chunk.content = event.content
            chunk.model = event.model
            chunk.agent_name = event.agent_name
            chunk.step = event.step
            if event.reasoning_content:
                chunk.reasoning_content = event.reasoning_content
        case ToolCall():
            message.tool.actions.extend(_actions(event.actions))
        case ToolResult():
            result = message.tool_result
            result.tool_call_id = event.tool_call_id
            result.tool_name = event.tool_name
            result.content = event.content
            result.is_error = event.is_error
            result.duration.FromNanoseconds(int(event.duration_s * 1e9))
            result.agent_name = event.agent_name
            if event.mcp_server:
                result.mcp_server = event.mcp_server
        case AgentStep():
            step = message.agent
            step.agent_name = event.agent_name
            step.step = event.step
            step.content = event.content
            step.tool_calls.extend(_actions(event.tool_calls))
            step.finish_reason = event.finish_reason
            if event.usage is not None:
                _fill_usage(step.usage, event.usage)
            if event.reasoning_content:
                step.reasoning_content = event.reasoning_content
        case TaskStarted():
            message.task.status = pb.TASK_STATUS_RUNNING
            message.task.agent_name = event.agent_name
            message.task.input = event.input
        case TaskFinished():
            _fill_task_finished(message.task, event)
        case Output():
            message.output.content = event.content
            message.output.agent_name = event.agent_name
        case GroupEvent():
            group = message.group
            group.group_id = event.group_id
            group.members.extend(event.members)
            group.content = event.content
            group.kind = _GROUP_KINDS[event.kind]
            group.from_agent = event.from_agent
            group.to_agent = event.to_agent
            group.tool_call_id = event.tool_call_id
            group.depth = event.depth
            group.success = event.success
            if event.usage is not None:
                _fill_usage(group.usage, event.usage)
        case MemoryAppended():
            message.memory.role = event.role
            message.memory.content = event.content
            message.memory.agent_name = event.agent_name
        case Interrupt():
            fill_interrupt(message.interrupt, event)
        case _:
            assert_never(event)
    return message


def fill_interrupt(target: pb.InterruptPayload, event: Interrupt) -> None:
    """Fill an InterruptPayload (a streamed event, or one of GetRun's pending interrupts)."""
    target.interrupt_id = event.interrupt_id
    target.kind = _INTERRUPT_KINDS[event.kind]
    target.tool_calls.extend(_actions(event.tool_calls))
    target.question = event.question
    target.agent_name = event.agent_name
    if event.expires_at:
        target.expires_at.FromNanoseconds(int(event.expires_at * 1e9))
    target.approved = event.approved
    target.message = event.message
    target.resolved = event.resolved


_INTERRUPT_KINDS = {
    InterruptKind.TOOL_APPROVAL: pb.INTERRUPT_KIND_TOOL_APPROVAL,
    InterruptKind.INPUT: pb.INTERRUPT_KIND_INPUT,
}
_GROUP_KINDS = {
    GroupKind.HANDOFF: pb.GROUP_EVENT_KIND_HANDOFF,
    GroupKind.AGENT_START: pb.GROUP_EVENT_KIND_AGENT_START,
    GroupKind.AGENT_END: pb.GROUP_EVENT_KIND_AGENT_END,
}


def _actions(actions: Iterable[Action]) -> list[pb.ActionModel]:
    converted = []
    for action in actions:
        params = struct_pb2.Struct()
        params.update(action.params)
        converted.append(
            pb.ActionModel(
                tool_name=action.tool_name,
                action_name=action.action_name or action.tool_name,
                tool_call_id=action.tool_call_id,
                agent_name=action.agent_name,
                params=params,
            )
        )
    return converted


def _fill_usage(target: pb.Usage, usage: Usage) -> None:
    target.prompt_tokens = usage.prompt_tokens
    target.completion_tokens = usage.completion_tokens
    target.total_tokens = usage.total_tokens
    target.reasoning_tokens = usage.reasoning_tokens


def _fill_task_finished(task: pb.TaskPayload, event: TaskFinished) -> None:
    task.status = TASK_STATUS_TO_PROTO[event.status]
    task.success = event.success
    task.answer = event.answer
    task.msg = event.msg
    task.agent_name = event.agent_name
    _fill_usage(task.usage, event.usage)
    task.time_cost.FromNanoseconds(int(event.time_cost_s * 1e9))
    if event.error is not None:
        task.error.reason = event.error.reason
        task.error.code = event.error.code
        task.error.metadata.update(event.error.metadata)


class EncodeFailure(Exception):
    """An event could not be converted to protobuf; ``placeholder`` stands in for it on the wire."""

    def __init__(self, record: RunEvent, cause: Exception) -> None:
        super().__init__(f"event seq {record.seq} ({type(record.event).__name__}) could not be encoded: {cause!r}")
        self.placeholder = _placeholder(record)


def to_proto_checked(record: RunEvent) -> pb.Message:
    """``to_proto``, but a failure raises EncodeFailure carrying a message that can always be encoded.

    The placeholder keeps the event's seq, category and topic (so no reader sees a gap); for the terminal
    event it is a FAILED task response with reason INTERNAL, so every stream still ends with one.
    """
    try:
        return to_proto(record)
    except Exception as exc:
        raise EncodeFailure(record, exc) from exc


def _placeholder(record: RunEvent) -> pb.Message:
    event = record.event
    message = pb.Message(
        id=f"{record.run_id}:{record.seq}", run_id=record.run_id, seq=record.seq, category=event.category,
        topic=event.topic,
    )  # fmt: skip
    message.timestamp.FromNanoseconds(record.timestamp_ns)
    message.headers["agentstream-encode-error"] = "this event could not be encoded; its payload is omitted"
    if isinstance(event, TaskFinished):
        message.task.CopyFrom(_placeholder_task())
    return message


def _placeholder_task() -> pb.TaskPayload:
    task = pb.TaskPayload(
        status=pb.TASK_STATUS_FAILED, success=False, msg="the run ended, but its terminal response could not be encoded"
    )
    task.error.reason = "INTERNAL"
    task.error.code = "INTERNAL"
    return task
