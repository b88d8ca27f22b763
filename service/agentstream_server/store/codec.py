"""Run events as bytes for a shared store: compact JSON arrays, exhaustive over event kinds, no protobuf.

JSON with ASCII escapes round-trips every Python string (lone surrogates included), and decoding never
executes anything, whatever a compromised store holds: a malformed entry is a CodecError.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, assert_never

from agentstream_server.runtime.events import (
    Action,
    AgentStep,
    Chunk,
    Event,
    GroupEvent,
    GroupKind,
    Interrupt,
    InterruptKind,
    MemoryAppended,
    Output,
    RunEvent,
    TaskError,
    TaskFinished,
    TaskStarted,
    TaskStatus,
    ToolCall,
    ToolResult,
    Usage,
)
from agentstream_server.runtime.history import Turn

_STATUSES = {status.value: status for status in TaskStatus}
_GROUP_KINDS = {kind.value: kind for kind in GroupKind}
_INTERRUPT_KINDS = {kind.value: kind for kind in InterruptKind}
_encode_json = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps builds one per call


class CodecError(ValueError):
    """Stored bytes are not an encoded run event."""


def encode_record(record: RunEvent) -> bytes:
    """One logged event as bytes."""
    envelope = [
        record.seq, record.timestamp_ns, record.run_id, record.session_id, record.sender, record.receiver,
        record.caller, dict(record.headers), _event(record.event), record.parent_tool_call_id, record.depth,
    ]  # fmt: skip
    return _encode_json(envelope).encode()


def decode_record(data: bytes) -> RunEvent:
    """The event encode_record wrote; raises CodecError on anything else."""
    try:
        (seq, timestamp_ns, run_id, session_id, sender, receiver, caller, headers, event, parent,
         depth) = json.loads(data)  # fmt: skip
        return RunEvent(
            run_id=run_id, seq=seq, timestamp_ns=timestamp_ns, event=_decode_event(event), session_id=session_id,
            sender=sender, receiver=receiver, caller=caller, headers=headers, parent_tool_call_id=parent, depth=depth,
        )  # fmt: skip
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise CodecError(f"not an encoded run event: {type(exc).__name__}: {exc}") from None


def encode_event(event: Event) -> bytes:
    """One domain event alone (e.g. a run's pending interrupts, kept in its registry entry)."""
    return _encode_json(_event(event)).encode()


def decode_event(data: bytes) -> Event:
    """The event encode_event wrote; raises CodecError on anything else."""
    try:
        return _decode_event(json.loads(data))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise CodecError(f"not an encoded event: {type(exc).__name__}: {exc}") from None


def encode_terminal(event: TaskFinished) -> bytes:
    """A terminal response alone (what a run registry keeps for describing a finished run)."""
    return _encode_json(_event(event)).encode()


def decode_terminal(data: bytes) -> TaskFinished:
    """The response encode_terminal wrote; raises CodecError on anything else."""
    try:
        event = _decode_event(json.loads(data))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise CodecError(f"not an encoded terminal response: {type(exc).__name__}: {exc}") from None
    if not isinstance(event, TaskFinished):
        raise CodecError(f"not an encoded terminal response: a {type(event).__name__}")
    return event


def _event(event: Event) -> list[Any]:
    if type(event) is Chunk:  # the per-token case first
        return ["chunk", event.content, event.model, event.agent_name, event.step, event.reasoning_content]
    match event:
        case Chunk():
            return ["chunk", event.content, event.model, event.agent_name, event.step, event.reasoning_content]
        case ToolCall():
            return ["tool", [_action(a) for a in event.actions]]
        case ToolResult():
            return ["tool_result", event.tool_call_id, event.tool_name, event.content, event.is_error,
                    event.duration_s, event.agent_name, event.mcp_server]  # fmt: skip
        case AgentStep():
            usage = None if event.usage is None else _usage(event.usage)
            return ["agent", event.agent_name, event.step, event.content, [_action(a) for a in event.tool_calls],
                    event.finish_reason, usage, event.reasoning_content]  # fmt: skip
        case TaskStarted():
            return ["task_started", event.agent_name, event.input]
        case TaskFinished():
            error = None if event.error is None else [event.error.reason, event.error.code, dict(event.error.metadata)]
            return ["task_finished", event.status.value, event.success, event.answer, event.msg, event.agent_name,
                    _usage(event.usage), event.time_cost_s, error]  # fmt: skip
        case Output():
            return ["output", event.content, event.agent_name]
        case GroupEvent():
            usage = None if event.usage is None else _usage(event.usage)
            return ["group", event.group_id, list(event.members), event.content, event.kind.value, event.from_agent,
                    event.to_agent, event.tool_call_id, event.depth, usage, event.success]  # fmt: skip
        case MemoryAppended():
            return ["memory", event.role, event.content, event.agent_name]
        case Interrupt():
            return ["interrupt", event.interrupt_id, event.kind.value, [_action(a) for a in event.tool_calls],
                    event.question, event.agent_name, event.expires_at, event.approved, event.message,
                    event.resolved]  # fmt: skip
        case _:
            assert_never(event)


def _decode_event(data: Sequence[Any]) -> Event:
    kind, *f = data
    if kind == "chunk":
        return Chunk(content=f[0], model=f[1], agent_name=f[2], step=f[3], reasoning_content=f[4])
    if kind == "tool":
        return ToolCall(actions=tuple(_decode_action(a) for a in f[0]))
    if kind == "tool_result":
        return ToolResult(tool_call_id=f[0], tool_name=f[1], content=f[2], is_error=f[3], duration_s=f[4],
                          agent_name=f[5], mcp_server=f[6] if len(f) > 6 else "")  # fmt: skip
    if kind == "agent":
        usage = None if f[5] is None else _decode_usage(f[5])
        return AgentStep(agent_name=f[0], step=f[1], content=f[2], tool_calls=tuple(_decode_action(a) for a in f[3]),
                         finish_reason=f[4], usage=usage, reasoning_content=f[6])  # fmt: skip
    if kind == "task_started":
        return TaskStarted(agent_name=f[0], input=f[1])
    if kind == "task_finished":
        error = None if f[7] is None else TaskError(reason=f[7][0], code=f[7][1], metadata=f[7][2])
        return TaskFinished(status=_STATUSES[f[0]], success=f[1], answer=f[2], msg=f[3], agent_name=f[4],
                            usage=_decode_usage(f[5]), time_cost_s=f[6], error=error)  # fmt: skip
    if kind == "output":
        return Output(content=f[0], agent_name=f[1])
    if kind == "group":
        usage = None if f[8] is None else _decode_usage(f[8])
        return GroupEvent(group_id=f[0], members=tuple(f[1]), content=f[2], kind=_GROUP_KINDS[f[3]], from_agent=f[4],
                          to_agent=f[5], tool_call_id=f[6], depth=f[7], usage=usage, success=f[9])  # fmt: skip
    if kind == "memory":
        return MemoryAppended(role=f[0], content=f[1], agent_name=f[2])
    if kind == "interrupt":
        calls = tuple(_decode_action(a) for a in f[2])
        return Interrupt(interrupt_id=f[0], kind=_INTERRUPT_KINDS[f[1]], tool_calls=calls, question=f[3],
                         agent_name=f[4], expires_at=f[5], approved=f[6], message=f[7], resolved=f[8])  # fmt: skip
    raise KeyError(f"unknown event kind {kind!r}")


def encode_turns(turns: Sequence[Turn]) -> str:
    """A session's history as one JSON text."""
    return _encode_json(
        [[t.role, t.content, [_action(a) for a in t.tool_calls], t.tool_call_id, t.reasoning_content, t.run_id,
          t.agent_name] for t in turns]
    )  # fmt: skip


def decode_turns(data: bytes | str) -> tuple[Turn, ...]:
    """The history encode_turns wrote; raises CodecError on anything else."""
    try:
        return tuple(
            Turn(role=f[0], content=f[1], tool_calls=tuple(_decode_action(a) for a in f[2]), tool_call_id=f[3],
                 reasoning_content=f[4], run_id=f[5], agent_name=f[6])
            for f in json.loads(data)
        )  # fmt: skip
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise CodecError(f"not an encoded session history: {type(exc).__name__}: {exc}") from None


def _action(action: Action) -> list[Any]:
    return [action.tool_name, action.tool_call_id, action.agent_name, dict(action.params), action.action_name]


def _decode_action(data: Sequence[Any]) -> Action:
    params = data[3]
    if not isinstance(params, Mapping):
        raise TypeError("action params must be an object")
    return Action(tool_name=data[0], tool_call_id=data[1], agent_name=data[2], params=params, action_name=data[4])


def _usage(usage: Usage) -> list[int]:
    return [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.reasoning_tokens]


def _decode_usage(data: Sequence[int]) -> Usage:
    return Usage(prompt_tokens=data[0], completion_tokens=data[1], total_tokens=data[2], reasoning_tokens=data[3])
