"""Enumerations of the SDK: streaming modes, topics and task statuses."""

from __future__ import annotations

import enum


class StreamingMode(enum.IntEnum):
    """Which events a stream carries; values are the contract's StreamingMode numbers."""

    CORE = 1
    CHUNK = 2
    OUTPUT = 3
    CHUNK_OUTPUT = 4
    ALL = 5


class TopicType:
    """Message topics; TASK_RESPONSE marks the terminal message of every stream."""

    TASK_RESPONSE = "__task_response"
    TASK_START = "task_start"
    CHUNK = "chunk"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    AGENT_STEP = "agent_step"
    OUTPUT = "output"
    GROUP = "group"
    HANDOFF = "handoff"
    AGENT_START = "agent_start"
    AGENT_END = "agent_end"
    MEMORY = "memory_append"
    INTERRUPT = "interrupt"
    INTERRUPT_RESOLVED = "interrupt_resolved"


class TaskStatus(enum.Enum):
    """Status of a run, as on the contract's TaskStatus."""

    UNSPECIFIED = 0
    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3
    CANCELLED = 4
    TIMED_OUT = 5
    INTERRUPTED = 6
    INPUT_REQUIRED = 7


class GroupEventKind(enum.Enum):
    """What a multi-agent group event reports, as on the contract's GroupEventKind."""

    UNSPECIFIED = 0
    HANDOFF = 1
    AGENT_START = 2
    AGENT_END = 3


class InterruptKind(enum.Enum):
    """What a person is asked for, as on the contract's InterruptKind."""

    UNSPECIFIED = 0
    TOOL_APPROVAL = 1
    INPUT = 2
