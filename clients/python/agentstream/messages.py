"""SDK message classes, built from the wire Message (one class per payload kind)."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf import json_format

from agentstream.types import GroupEventKind, InterruptKind, TaskStatus, TopicType
from agentstream.v1 import message_pb2 as pb


@dataclass(frozen=True, slots=True)
class Usage:
    """LLM token counts."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ActionModel:
    """One tool call the model asked for."""

    tool_name: str
    action_name: str
    tool_call_id: str
    agent_name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A token delta."""

    content: str
    model: str
    agent_name: str
    step: int
    reasoning_content: str = ""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one tool call."""

    tool_call_id: str
    tool_name: str
    content: str
    is_error: bool
    duration: float
    agent_name: str
    mcp_server: str = ""
    """The MCP server the tool belongs to; empty for other tools."""


@dataclass(frozen=True, slots=True)
class AgentStep:
    """A completed agent step."""

    agent_name: str
    step: int
    content: str
    tool_calls: list[ActionModel]
    finish_reason: str
    usage: Usage | None
    reasoning_content: str = ""


@dataclass(frozen=True, slots=True)
class TaskError:
    """Why a run did not succeed: the error table's reason and gRPC code name."""

    reason: str
    code: str
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class TaskResponse:
    """A task status update; on the terminal message, the run's outcome."""

    status: TaskStatus
    success: bool
    answer: str
    msg: str
    usage: Usage | None
    time_cost: float
    error: TaskError | None
    agent_name: str
    input: str


@dataclass(frozen=True, slots=True)
class Output:
    """The final output of a run."""

    content: str
    agent_name: str


@dataclass(frozen=True, slots=True)
class Group:
    """A multi-agent event: a handoff, or a nested agent run starting or ending (see ``kind``)."""

    group_id: str
    members: list[str]
    content: str
    kind: GroupEventKind = GroupEventKind.UNSPECIFIED
    from_agent: str = ""
    to_agent: str = ""
    tool_call_id: str = ""
    depth: int = 0
    usage: Usage | None = None
    success: bool = False


@dataclass(frozen=True, slots=True)
class Interrupt:
    """A run waiting for a person (``resolved`` False), or the decision that ended the wait (True)."""

    interrupt_id: str
    kind: InterruptKind
    tool_calls: list[ActionModel]
    question: str
    agent_name: str
    expires_at: datetime.datetime | None
    approved: bool = False
    message: str = ""
    resolved: bool = False


@dataclass(frozen=True, slots=True)
class Memory:
    """An entry appended to an agent's memory."""

    role: str
    content: str
    agent_name: str


@dataclass(frozen=True, slots=True)
class Message:
    """One event of a run: the envelope, and a payload whose type depends on the subclass."""

    id: str
    run_id: str
    session_id: str
    seq: int
    category: str
    topic: str
    sender: str
    receiver: str
    caller: str
    timestamp: datetime.datetime
    headers: dict[str, str]
    payload: Any
    parent_tool_call_id: str = ""
    """For events of a nested agent run: the tool call that started it (empty at top level)."""
    depth: int = 0
    """How deeply the producing agent is nested (0 at top level)."""


@dataclass(frozen=True, slots=True)
class ChunkMessage(Message):
    """A partial piece of LLM output; ``payload.content`` holds the text."""

    payload: Chunk


@dataclass(frozen=True, slots=True)
class ToolMessage(Message):
    """The model asked for tool calls; ``payload`` is a list of ActionModel."""

    payload: list[ActionModel]


@dataclass(frozen=True, slots=True)
class ToolResultMessage(Message):
    """A tool call finished; ``payload`` is a ToolResult."""

    payload: ToolResult


@dataclass(frozen=True, slots=True)
class AgentMessage(Message):
    """A completed agent step; ``payload`` is an AgentStep."""

    payload: AgentStep


@dataclass(frozen=True, slots=True)
class TaskMessage(Message):
    """A task status update; the terminal one has topic TopicType.TASK_RESPONSE."""

    payload: TaskResponse

    @property
    def is_terminal(self) -> bool:
        """True for the terminal task response, the last message of a stream."""
        return self.topic == TopicType.TASK_RESPONSE


@dataclass(frozen=True, slots=True)
class OutputMessage(Message):
    """The final output of the run; ``payload.content`` holds it."""

    payload: Output


@dataclass(frozen=True, slots=True)
class GroupMessage(Message):
    """A multi-agent group event."""

    payload: Group


@dataclass(frozen=True, slots=True)
class MemoryMessage(Message):
    """An entry appended to an agent's memory (ALL mode)."""

    payload: Memory


@dataclass(frozen=True, slots=True)
class InterruptMessage(Message):
    """The run waits for a person (topic ``interrupt``) or the wait ended (``interrupt_resolved``).

    Answer it with ``Client.resolve_interrupt(run_id, payload.interrupt_id, approve=..., message=...)``.
    """

    payload: Interrupt

    @property
    def is_pending(self) -> bool:
        """True while the interrupt waits for a decision (topic ``interrupt``)."""
        return not self.payload.resolved


def _usage(usage: pb.Usage) -> Usage:
    return Usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.reasoning_tokens)


def action_from_proto(action: pb.ActionModel) -> ActionModel:
    """The SDK form of a wire ActionModel."""
    return ActionModel(
        tool_name=action.tool_name,
        action_name=action.action_name,
        tool_call_id=action.tool_call_id,
        agent_name=action.agent_name,
        params=json_format.MessageToDict(action.params),
    )


def task_response(task: pb.TaskPayload) -> TaskResponse:
    """The SDK form of a wire TaskPayload."""
    return _task(task)


def _task(task: pb.TaskPayload) -> TaskResponse:
    return TaskResponse(
        status=TaskStatus(task.status) if task.status in TaskStatus._value2member_map_ else TaskStatus.UNSPECIFIED,
        success=task.success,
        answer=task.answer,
        msg=task.msg,
        usage=_usage(task.usage) if task.HasField("usage") else None,
        time_cost=task.time_cost.ToNanoseconds() / 1e9,
        error=TaskError(task.error.reason, task.error.code, dict(task.error.metadata))
        if task.HasField("error")
        else None,
        agent_name=task.agent_name,
        input=task.input,
    )


def _datetime(seconds: int, nanos: int) -> datetime.datetime:
    # The C constructor is several times cheaper than Timestamp.ToDatetime, and this runs per token.
    return _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_E = TypeVar("_E", bound=enum.Enum)


def from_proto(message: pb.Message) -> Message:
    """The SDK message for a wire Message; an unknown or unset payload gives a base Message with payload None."""
    envelope = (
        message.id,
        message.run_id,
        message.session_id,
        message.seq,
        message.category,
        message.topic,
        message.sender,
        message.receiver,
        message.caller,
        _datetime(message.timestamp.seconds, message.timestamp.nanos),
        dict(message.headers),
    )
    nesting = (message.parent_tool_call_id, message.depth)
    kind = message.WhichOneof("payload")
    if kind == "chunk":
        c = message.chunk
        return ChunkMessage(*envelope, Chunk(c.content, c.model, c.agent_name, c.step, c.reasoning_content), *nesting)
    if kind == "tool":
        return ToolMessage(*envelope, [action_from_proto(a) for a in message.tool.actions], *nesting)
    if kind == "tool_result":
        r = message.tool_result
        result = ToolResult(
            r.tool_call_id,
            r.tool_name,
            r.content,
            r.is_error,
            r.duration.ToNanoseconds() / 1e9,
            r.agent_name,
            r.mcp_server,
        )
        return ToolResultMessage(*envelope, result, *nesting)
    if kind == "agent":
        a = message.agent
        step = AgentStep(
            a.agent_name,
            a.step,
            a.content,
            [action_from_proto(x) for x in a.tool_calls],
            a.finish_reason,
            _usage(a.usage) if a.HasField("usage") else None,
            a.reasoning_content,
        )
        return AgentMessage(*envelope, step, *nesting)
    if kind == "task":
        return TaskMessage(*envelope, _task(message.task), *nesting)
    if kind == "output":
        return OutputMessage(*envelope, Output(message.output.content, message.output.agent_name), *nesting)
    if kind == "group":
        g = message.group
        group = Group(
            g.group_id,
            list(g.members),
            g.content,
            _enum(GroupEventKind, g.kind),
            g.from_agent,
            g.to_agent,
            g.tool_call_id,
            g.depth,
            _usage(g.usage) if g.HasField("usage") else None,
            g.success,
        )
        return GroupMessage(*envelope, group, *nesting)
    if kind == "memory":
        m = message.memory
        return MemoryMessage(*envelope, Memory(m.role, m.content, m.agent_name), *nesting)
    if kind == "interrupt":
        return InterruptMessage(*envelope, interrupt(message.interrupt), *nesting)
    return Message(*envelope, None, *nesting)


def interrupt(payload: pb.InterruptPayload) -> Interrupt:
    """The SDK form of a wire InterruptPayload (also listed by GetRun while a run waits)."""
    expires = payload.expires_at
    return Interrupt(
        interrupt_id=payload.interrupt_id,
        kind=_enum(InterruptKind, payload.kind),
        tool_calls=[action_from_proto(a) for a in payload.tool_calls],
        question=payload.question,
        agent_name=payload.agent_name,
        expires_at=_datetime(expires.seconds, expires.nanos) if payload.HasField("expires_at") else None,
        approved=payload.approved,
        message=payload.message,
        resolved=payload.resolved,
    )


def _enum(kind: type[_E], value: int) -> _E:
    """The member for a wire enum value; UNSPECIFIED for a value from a newer contract."""
    return kind(value) if value in kind._value2member_map_ else kind(0)
