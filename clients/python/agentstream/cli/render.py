"""Renders SDK messages for the terminal (plain or rich) and as JSON lines: pure functions, no I/O policy."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
from typing import Any

from agentstream import (
    AgentMessage,
    ChunkMessage,
    Message,
    TaskMessage,
    ToolMessage,
    ToolResultMessage,
)
from agentstream.messages import OutputMessage


def to_json(message: Message) -> str:
    """One JSON object for a message: the envelope, its class as ``type``, and the payload."""
    data = {"type": type(message).__name__, **_plain(message)}
    return json.dumps(data, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.name
    return value


@dataclasses.dataclass
class Line:
    """A piece of terminal output: text, a style name for rich, and whether it continues the current line."""

    text: str
    style: str = ""
    inline: bool = False


def render(message: Message, *, show_steps: bool = False, answer_shown: bool = False) -> list[Line]:
    """What the CLI shows for one message: tokens inline, tool calls and results as lines, the outcome.

    ``answer_shown`` says the answer already streamed by as chunks, so the outcome line need not repeat it.
    """
    if isinstance(message, ChunkMessage):
        return [Line(message.payload.content, inline=True)]
    if isinstance(message, ToolMessage):
        return [Line(f"→ {a.tool_name}({json.dumps(a.params, ensure_ascii=False)})", "cyan") for a in message.payload]
    if isinstance(message, ToolResultMessage):
        result = message.payload
        return [Line(f"← {result.tool_name}: {result.content}", "red" if result.is_error else "green")]
    if isinstance(message, AgentMessage):
        if not show_steps:
            return []
        step = message.payload
        return [Line(f"[step {step.step} of {step.agent_name}: {step.finish_reason or 'done'}]", "dim")]
    if isinstance(message, OutputMessage):
        return [Line(f"[output] {message.payload.content}", "bold")] if show_steps else []
    if isinstance(message, TaskMessage) and message.is_terminal:
        task = message.payload
        if task.success:
            tokens = task.usage.total_tokens if task.usage else 0
            summary = f"succeeded in {task.time_cost:.2f} s, {tokens} tokens"
            return [Line(f"✔ {summary}" if answer_shown else f"✔ {task.answer}\n  ({summary})", "bold green")]
        reason = f" [{task.error.reason}]" if task.error else ""
        return [Line(f"✘ {task.status.name}{reason}: {task.msg}", "bold red")]
    return []
