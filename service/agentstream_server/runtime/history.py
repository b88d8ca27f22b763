"""Conversation history: the turns a run adds to its session, taken from its top-level events, and back as chat
messages for the next run's LLM call."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentstream_server.runtime.events import Action, AgentStep, ToolResult


@dataclass(frozen=True, slots=True)
class Turn:
    """One entry of a session's history, as the model sees it."""

    role: str
    """"user", "assistant" or "tool"."""
    content: str
    tool_calls: tuple[Action, ...] = ()
    """assistant turns: the tool calls the model asked for."""
    tool_call_id: str = ""
    """tool turns: the call this result answers."""
    reasoning_content: str = ""
    """assistant turns: the model's reasoning, sent back for models that need it."""
    run_id: str = ""
    agent_name: str = ""

    @property
    def size(self) -> int:
        """Characters this turn holds (what the per-session character bound counts)."""
        size = len(self.content) + len(self.reasoning_content)
        for action in self.tool_calls:
            size += len(action.tool_name) + len(_arguments(action))
        return size


class TurnRecorder:
    """Collects the complete turns of one run from its events, in the order the model needs them.

    ``observe`` every event the run produces at top level (events of nested agents are not the session's):
    an AgentStep without tool calls is a turn at once; one with tool calls becomes a block of turns (the
    assistant turn, then each result in call order) only once every call has its result, so a run that
    stops half-way through its tools never leaves a tool call without its result, or a result without its call.
    """

    def __init__(self, run_id: str, user_input: str, agent_name: str) -> None:
        self._run_id = run_id
        self.turns: list[Turn] = [Turn("user", user_input, run_id=run_id, agent_name=agent_name)]
        """The complete turns so far, oldest first (the user's input first)."""
        self._pending: AgentStep | None = None
        self._results: dict[str, ToolResult] = {}

    def observe(self, event: object) -> None:
        """Take one event of the run (anything but an AgentStep or a ToolResult is ignored)."""
        kind = type(event)
        if kind is AgentStep:
            assert isinstance(event, AgentStep)
            self._pending, self._results = None, {}  # a new step: an unanswered earlier one is incomplete
            if event.tool_calls:
                self._pending = event
            else:
                self.turns.append(self._assistant(event))
        elif kind is ToolResult and self._pending is not None:
            assert isinstance(event, ToolResult)
            step = self._pending
            if any(a.tool_call_id == event.tool_call_id for a in step.tool_calls):
                self._results[event.tool_call_id] = event
            if len(self._results) == len(step.tool_calls):
                self.turns.append(self._assistant(step))
                for action in step.tool_calls:
                    result = self._results[action.tool_call_id]
                    self.turns.append(
                        Turn("tool", result.content, tool_call_id=action.tool_call_id, run_id=self._run_id,
                             agent_name=step.agent_name)
                    )  # fmt: skip
                self._pending, self._results = None, {}

    def _assistant(self, step: AgentStep) -> Turn:
        return Turn(
            "assistant",
            step.content,
            tool_calls=step.tool_calls,
            reasoning_content=step.reasoning_content,
            run_id=self._run_id,
            agent_name=step.agent_name,
        )


def chat_messages(turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """The turns as OpenAI chat messages (what run_agent takes as history)."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        if turn.role == "tool":
            messages.append({"role": "tool", "tool_call_id": turn.tool_call_id, "content": turn.content})
            continue
        if turn.role != "assistant":
            messages.append({"role": turn.role, "content": turn.content})
            continue
        content = turn.content if turn.content or not turn.tool_calls else None  # null only beside tool calls
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if turn.tool_calls:
            message["tool_calls"] = [
                {
                    "id": a.tool_call_id,
                    "type": "function",
                    "function": {"name": a.tool_name, "arguments": _arguments(a)},
                }
                for a in turn.tool_calls
            ]
        if turn.reasoning_content:
            message["reasoning_content"] = turn.reasoning_content
        messages.append(message)
    return messages


def _arguments(action: Action) -> str:
    return json.dumps(dict(action.params), separators=(",", ":"))
