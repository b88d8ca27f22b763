"""Domain events of a run: frozen dataclasses with a category, free of grpc and protobuf."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

TASK_RESPONSE_TOPIC = "__task_response"
"""The topic of the terminal task response, the last message of every stream."""


class TaskStatus(enum.Enum):
    """Status of a run; mirrors the contract's TaskStatus."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"
    INPUT_REQUIRED = "input_required"


@dataclass(frozen=True, slots=True)
class Usage:
    """LLM token counts."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    reasoning_tokens: int = 0
    """Of completion_tokens, those spent reasoning (when the endpoint reports it)."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True)
class Action:
    """One tool call the model asked for (the seed's ActionModel)."""

    tool_name: str
    tool_call_id: str
    agent_name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    action_name: str = ""


@dataclass(frozen=True, slots=True)
class Chunk:
    """A token delta from the LLM."""

    category: ClassVar[str] = "chunk"
    topic: ClassVar[str] = "chunk"
    content: str
    model: str
    agent_name: str
    step: int
    reasoning_content: str = ""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The tool calls of one model turn."""

    category: ClassVar[str] = "tool"
    topic: ClassVar[str] = "tool_call"
    actions: tuple[Action, ...]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one tool call."""

    category: ClassVar[str] = "tool"
    topic: ClassVar[str] = "tool_result"
    tool_call_id: str
    tool_name: str
    content: str
    is_error: bool
    duration_s: float
    agent_name: str
    mcp_server: str = ""
    """The MCP server the tool belongs to; empty for other tools."""


@dataclass(frozen=True, slots=True)
class AgentStep:
    """A completed agent step: one LLM turn and the tool calls it asked for."""

    category: ClassVar[str] = "agent"
    topic: ClassVar[str] = "agent_step"
    agent_name: str
    step: int
    content: str
    tool_calls: tuple[Action, ...] = ()
    finish_reason: str = ""
    usage: Usage | None = None
    reasoning_content: str = ""
    """The reasoning text the model streamed in this step."""


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """The run has started."""

    category: ClassVar[str] = "task"
    topic: ClassVar[str] = "task_start"
    agent_name: str
    input: str


@dataclass(frozen=True, slots=True)
class TaskError:
    """Why a run did not succeed, in the error table's terms."""

    reason: str
    code: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TaskFinished:
    """The terminal task response: the last event of every run, exactly once."""

    category: ClassVar[str] = "task"
    topic: ClassVar[str] = TASK_RESPONSE_TOPIC
    status: TaskStatus
    success: bool
    answer: str
    msg: str
    agent_name: str
    usage: Usage = Usage()
    time_cost_s: float = 0.0
    error: TaskError | None = None


@dataclass(frozen=True, slots=True)
class Output:
    """The final output of a run."""

    category: ClassVar[str] = "output"
    topic: ClassVar[str] = "output"
    content: str
    agent_name: str


class GroupKind(enum.Enum):
    """What a group event reports; the value is the event's topic."""

    HANDOFF = "handoff"
    AGENT_START = "agent_start"
    AGENT_END = "agent_end"


@dataclass(frozen=True, slots=True)
class GroupEvent:
    """A multi-agent event: a handoff, or a nested agent run (an agent called as a tool) starting or ending."""

    category: ClassVar[str] = "group"
    group_id: str
    members: tuple[str, ...] = ()
    content: str = ""
    """The handoff's reason, or a nested run's answer (or error text) on AGENT_END."""
    kind: GroupKind = GroupKind.HANDOFF
    from_agent: str = ""
    to_agent: str = ""
    tool_call_id: str = ""
    depth: int = 0
    """Nesting depth of to_agent's run."""
    usage: Usage | None = None
    success: bool = False

    @property
    def topic(self) -> str:
        """'handoff', 'agent_start' or 'agent_end'."""
        return self.kind.value


@dataclass(frozen=True, slots=True)
class MemoryAppended:
    """An entry appended to an agent's conversation memory (ALL mode only)."""

    category: ClassVar[str] = "memory"
    topic: ClassVar[str] = "memory_append"
    role: str
    content: str
    agent_name: str


class InterruptKind(enum.Enum):
    """What a person is asked for."""

    TOOL_APPROVAL = "tool_approval"
    INPUT = "input"


@dataclass(frozen=True, slots=True)
class Interrupt:
    """The run waits for a person (``resolved`` False), or the wait is over (True, with the decision)."""

    category: ClassVar[str] = "task"
    interrupt_id: str
    kind: InterruptKind
    tool_calls: tuple[Action, ...] = ()
    question: str = ""
    agent_name: str = ""
    expires_at: float = 0.0
    """Wall-clock time (epoch seconds) at which it resolves as rejected if nobody answers."""
    approved: bool = False
    message: str = ""
    resolved: bool = False

    @property
    def topic(self) -> str:
        """'interrupt' while waiting, 'interrupt_resolved' once decided."""
        return "interrupt_resolved" if self.resolved else "interrupt"


Event = (
    Chunk | ToolCall | ToolResult | AgentStep | TaskStarted | TaskFinished | Output | GroupEvent | MemoryAppended
    | Interrupt
)  # fmt: skip
"""Every kind of event a run can produce."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a nested agent's event comes from: the agent, its caller, the tool call that started it, its depth."""

    agent: str
    caller: str
    parent_tool_call_id: str
    depth: int


@dataclass(frozen=True, slots=True)
class Nested:
    """An event of a nested agent run (an agent called as a tool), with its scope.

    The runtime yields top-level events bare (the common case costs nothing) and wraps only nested ones.
    """

    event: Event
    scope: Scope


@dataclass(frozen=True, slots=True)
class RunEvent:
    """An event as stored in a run's log: the envelope (run id, seq, time) around a domain event."""

    run_id: str
    seq: int
    timestamp_ns: int  # wall-clock time of the append, nanoseconds since the epoch
    event: Event
    session_id: str = ""
    sender: str = ""
    receiver: str = ""
    caller: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    parent_tool_call_id: str = ""
    """For a nested agent's event: the tool call that started the nested run ("" at top level)."""
    depth: int = 0
    """Nesting depth of the agent that produced the event (0 at top level)."""

    @property
    def is_terminal(self) -> bool:
        """True for the run's terminal task response."""
        return isinstance(self.event, TaskFinished)
