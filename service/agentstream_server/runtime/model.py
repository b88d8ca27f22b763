"""What a chat model streams (deltas) and the ChatModel protocol every model implements."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agentstream_server.runtime.events import Usage


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the model's text (and/or reasoning text)."""

    content: str
    reasoning: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of one tool call; fragments with the same index make one call."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The model finished its turn."""

    reason: str


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Token usage of the call, reported at the end of the stream."""

    usage: Usage


LLMDelta = TextDelta | ToolCallDelta | Finish | UsageReport


class ChatModel(Protocol):
    """A streaming chat model behind an OpenAI-style messages/tools interface."""

    @property
    def label(self) -> str:
        """The model name reported on chunk events."""
        ...

    def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        *,
        temperature: float | None = None,
    ) -> AsyncGenerator[LLMDelta, None]:
        """Stream one model turn; raises LLMUpstreamError on failure; closing it closes the HTTP response."""
        ...
