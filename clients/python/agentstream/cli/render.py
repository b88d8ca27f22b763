"""Renders SDK messages for the terminal (plain or rich) and as JSON lines: pure functions, no I/O policy."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import re
from collections.abc import Sequence
from typing import Any

from agentstream import (
    ActionModel,
    AgentMessage,
    ChunkMessage,
    GroupEventKind,
    GroupMessage,
    InterruptKind,
    InterruptMessage,
    Message,
    TaskMessage,
    ToolMessage,
    ToolResultMessage,
)
from agentstream.messages import OutputMessage

# ESC sequences whole (CSI, OSC/DCS/APC/PM/SOS strings up to BEL or ST, two- and three-byte escapes), then
# any other C0 control but \n and \t, DEL and C1. Each alternative is a run of disjoint classes: linear.
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]?|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """Text with terminal escape sequences and control characters removed; newlines and tabs are kept.

    Everything the CLI prints from a stream is model-, tool- or server-supplied: printed raw, an escape
    sequence could recolour, move the cursor, retitle the window or rewrite what was printed before.
    """
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))


def to_json(message: Message) -> str:
    """One JSON object for a message: the envelope, its class as ``type``, and the payload.

    Control characters are all escaped (json escapes C0 itself; DEL and C1 are escaped here), so a JSON
    line shown on a terminal cannot drive it, and parses to the same data.
    """
    data = {"type": type(message).__name__, **_plain(message)}
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(data, ensure_ascii=False))


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
    All text is passed through terminal_safe.
    """
    lines = _render(message, show_steps=show_steps, answer_shown=answer_shown)
    return [Line(terminal_safe(line.text), line.style, line.inline) for line in lines]


def _render(message: Message, *, show_steps: bool, answer_shown: bool) -> list[Line]:
    lines = _lines(message, show_steps=show_steps, answer_shown=answer_shown)
    if message.depth and not isinstance(message, ChunkMessage):
        return [Line(f"{'  ' * message.depth}{line.text}", line.style, line.inline) for line in lines]
    return lines


def calls_text(calls: Sequence[ActionModel]) -> str:
    """Tool calls as the CLI shows them: ``calculator({"expression": "2+2"})``, comma-separated."""
    return ", ".join(f"{a.tool_name}({json.dumps(a.params, ensure_ascii=False)})" for a in calls)


def _interrupt_line(message: InterruptMessage) -> Line:
    interrupt = message.payload
    question = interrupt.kind is InterruptKind.INPUT
    if not interrupt.resolved:
        calls = calls_text(interrupt.tool_calls)
        what = f"{interrupt.agent_name} asks: {interrupt.question}" if question else f"approval needed: {calls}"
        until = f", until {interrupt.expires_at:%H:%M:%S} UTC" if interrupt.expires_at else ""
        return Line(f"⏸ {what} (interrupt {interrupt.interrupt_id}{until})", "bold yellow")
    if interrupt.approved:
        return Line(f"▶ answered: {interrupt.message}" if question else "▶ approved", "yellow")
    return Line(f"▶ {'not answered' if question else 'rejected'}: {interrupt.message or 'no reason given'}", "yellow")


def _lines(message: Message, *, show_steps: bool, answer_shown: bool) -> list[Line]:
    if isinstance(message, ChunkMessage):
        chunk = message.payload
        lines = [Line(chunk.reasoning_content, "dim italic", inline=True)] if chunk.reasoning_content else []
        if chunk.content:  # a nested agent's text is set apart from the answer
            lines.append(Line(chunk.content, "dim" if message.depth else "", inline=True))
        return lines
    if isinstance(message, GroupMessage):
        group = message.payload
        if group.kind is GroupEventKind.HANDOFF:
            why = f" ({group.content})" if group.content else ""
            return [Line(f"⇢ {group.from_agent} hands over to {group.to_agent}{why}", "magenta")]
        if group.kind is GroupEventKind.AGENT_START:
            return [Line(f"┌ {group.to_agent} (asked by {group.from_agent})", "magenta")]
        if group.kind is GroupEventKind.AGENT_END:
            return [Line(f"└ {group.to_agent} {'done' if group.success else 'failed'}", "magenta")]
        return []
    if isinstance(message, ToolMessage):
        return [Line(f"→ {a.tool_name}({json.dumps(a.params, ensure_ascii=False)})", "cyan") for a in message.payload]
    if isinstance(message, InterruptMessage):
        return [_interrupt_line(message)]
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
