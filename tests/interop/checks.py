"""Checks shared by the Python interop suite's scenario kinds: a streamed run against its expectations, the
nesting of agents called as tools, and a typed error against its code and reason."""

from __future__ import annotations

from typing import Any

from agentstream import (
    AgentStreamError,
    ChunkMessage,
    GroupMessage,
    TaskMessage,
    ToolMessage,
    ToolResultMessage,
)


def check_stream(messages: list[Any], expect: dict[str, Any]) -> None:
    if "categories" in expect:
        assert [m.category for m in messages] == expect["categories"]
    if "chunk_text" in expect:
        assert "".join(m.payload.content for m in messages if isinstance(m, ChunkMessage)) == expect["chunk_text"]
    if "tool_calls" in expect:
        calls = [
            {"tool_name": a.tool_name, "params": a.params}
            for m in messages
            if isinstance(m, ToolMessage)
            for a in m.payload
        ]
        assert calls == expect["tool_calls"]
    if "nesting" in expect:
        check_nesting(messages, expect["nesting"])
    if "tool_results" in expect:
        results = [
            {"tool_name": m.payload.tool_name, "content": m.payload.content, "is_error": m.payload.is_error}
            for m in messages
            if isinstance(m, ToolResultMessage)
        ]
        assert results == expect["tool_results"]
    terminal = messages[-1]
    assert isinstance(terminal, TaskMessage)
    assert terminal.is_terminal
    assert terminal.payload.status.name == expect["terminal"]["status"]
    assert terminal.payload.success == expect["terminal"]["success"]
    if "answer" in expect["terminal"]:
        assert terminal.payload.answer == expect["terminal"]["answer"]
    assert [m.seq for m in messages] == sorted({m.seq for m in messages}), "seq must strictly increase"


def check_nesting(messages: list[Any], nesting: dict[str, Any]) -> None:
    """Depth of every message; nested ones name their caller and the tool call that started them."""
    assert [m.depth for m in messages] == nesting["depths"]
    call_id = next(m for m in messages if isinstance(m, ToolMessage)).payload[0].tool_call_id
    nested = [m for m in messages if m.depth > 0]
    assert {(m.caller, m.parent_tool_call_id) for m in nested} == {(nesting["caller"], call_id)}
    assert {m.sender for m in nested if m.category in ("chunk", "agent")} == {nesting["sender"]}
    groups = [m for m in messages if isinstance(m, GroupMessage)]
    assert [m.topic for m in groups] == nesting["groups"]
    assert {m.payload.tool_call_id for m in groups} == {call_id}


def check_error(error: AgentStreamError, expected: dict[str, str]) -> None:
    assert (error.code.name, error.reason) == (expected["code"], expected["reason"])
