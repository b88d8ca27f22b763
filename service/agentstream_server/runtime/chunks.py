"""One chat-completion chunk (JSON) from an OpenAI-compatible stream, checked and turned into deltas.

Edge rules for what the endpoint streams (nothing it sends can make a later step, such as protobuf conversion,
fail): every delta field has exactly its declared type, and a chunk field of another JSON type (a number for
content, a string for choices, an object for arguments...) makes the chunk malformed: LLMUpstreamError, which
ends the run in-band. Null or missing fields mean "nothing". Tool-call indexes must be integers below
MAX_TOOL_CALL_INDEX. Token counts must be integers (not booleans or floats); a negative count is clamped to 0
and a larger one to MAX_TOKEN_COUNT, as a bookkeeping quirk should not fail a run whose answer is fine. Every
string is made encodable as UTF-8 (lone surrogates become U+FFFD).
"""

from __future__ import annotations

import json
from typing import Any

from agentstream_server.errors import LLMUpstreamError
from agentstream_server.runtime.events import Usage
from agentstream_server.runtime.model import Finish, LLMDelta, TextDelta, ToolCallDelta, UsageReport
from agentstream_server.runtime.utf8 import utf8_safe

MAX_TOOL_CALL_INDEX = 128
"""Tool-call indexes must be below this: the loop keeps one pending call per index a model names."""

MAX_TOKEN_COUNT = 2**31 - 1
"""Reported token counts are clamped to 0..MAX_TOKEN_COUNT."""

_MAX_DETAIL = 500
"""Longest upstream text quoted in an error message."""


def parse_chunk(data: bytes) -> dict[str, Any]:
    """The JSON object of one SSE data line; LLMUpstreamError if it is not one, or reports an error."""
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, an int over 4300 digits, nested too deeply
        raise LLMUpstreamError(f"LLM stream sent malformed JSON: {data[:200]!r}") from exc
    if type(payload) is not dict:
        raise LLMUpstreamError(f"LLM stream sent an unexpected payload: {data[:200]!r}")
    error = payload.get("error")
    if error:
        message = error.get("message") if type(error) is dict else error
        detail = utf8_safe(message[:_MAX_DETAIL]) if type(message) is str else "(no message)"
        raise LLMUpstreamError(f"LLM stream reported an error: {detail}")
    return payload


def chunk_deltas(payload: dict[str, Any]) -> list[LLMDelta]:
    """The deltas of one chunk, each field of exactly its declared type; see the module's edge rules.

    Per-token hot path: exact type checks (``type(x) is str``), and strings are only scanned when not ASCII.
    """
    deltas: list[LLMDelta] = []
    choices = payload.get("choices")
    if choices is not None:
        if type(choices) is not list:
            raise _malformed("choices", choices, "an array")
        for choice in choices:
            if type(choice) is not dict:
                raise _malformed("choices[]", choice, "an object")
            delta = choice.get("delta")
            if delta is not None:
                if type(delta) is not dict:
                    raise _malformed("choices[].delta", delta, "an object")
                content = delta.get("content")
                if content is not None and type(content) is not str:
                    raise _malformed("choices[].delta.content", content, "a string")
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning is not None and type(reasoning) is not str:
                    raise _malformed("choices[].delta.reasoning_content", reasoning, "a string")
                if content:
                    if not content.isascii():
                        content = utf8_safe(content)
                    deltas.append(TextDelta(content, utf8_safe(reasoning) if reasoning else ""))
                elif reasoning:
                    deltas.append(TextDelta("", utf8_safe(reasoning)))
                tool_calls = delta.get("tool_calls")
                if tool_calls is not None:
                    deltas.extend(_tool_call_deltas(tool_calls))
            finish_reason = choice.get("finish_reason")
            if finish_reason is not None:
                if type(finish_reason) is not str:
                    raise _malformed("choices[].finish_reason", finish_reason, "a string")
                if finish_reason:
                    deltas.append(Finish(utf8_safe(finish_reason)))
    usage = payload.get("usage")
    if usage is not None:
        if type(usage) is not dict:
            raise _malformed("usage", usage, "an object")
        if usage:
            deltas.append(
                UsageReport(
                    Usage(
                        prompt_tokens=_token_count(usage, "prompt_tokens"),
                        completion_tokens=_token_count(usage, "completion_tokens"),
                        total_tokens=_token_count(usage, "total_tokens"),
                        reasoning_tokens=_reasoning_tokens(usage),
                    )
                )
            )
    return deltas


def _tool_call_deltas(tool_calls: object) -> list[LLMDelta]:
    if type(tool_calls) is not list:
        raise _malformed("choices[].delta.tool_calls", tool_calls, "an array")
    deltas: list[LLMDelta] = []
    for call in tool_calls:
        if type(call) is not dict:
            raise _malformed("choices[].delta.tool_calls[]", call, "an object")
        index = call.get("index")
        if index is None:
            index = 0
        elif type(index) is not int:
            raise _malformed("choices[].delta.tool_calls[].index", index, "an integer")
        elif not 0 <= index < MAX_TOOL_CALL_INDEX:
            raise LLMUpstreamError(
                "LLM stream sent a malformed chunk: choices[].delta.tool_calls[].index is out of range "
                f"(0 to {MAX_TOOL_CALL_INDEX - 1})"
            )
        function = call.get("function")
        if function is None:
            function = {}
        elif type(function) is not dict:
            raise _malformed("choices[].delta.tool_calls[].function", function, "an object")
        deltas.append(
            ToolCallDelta(
                index=index,
                id=_optional_str(call.get("id"), "choices[].delta.tool_calls[].id"),
                name=_optional_str(function.get("name"), "choices[].delta.tool_calls[].function.name"),
                arguments=_optional_str(function.get("arguments"), "choices[].delta.tool_calls[].function.arguments")
                or "",
            )
        )
    return deltas


def _optional_str(value: object, where: str) -> str | None:
    if value is None:
        return None
    if type(value) is not str:
        raise _malformed(where, value, "a string")
    return utf8_safe(value)


def _token_count(usage: dict[str, Any], name: str, where: str = "usage") -> int:
    value = usage.get(name)
    if value is None:
        return 0
    if type(value) is not int:
        raise _malformed(f"{where}.{name}", value, "an integer")
    return 0 if value < 0 else min(value, MAX_TOKEN_COUNT)


def _reasoning_tokens(usage: dict[str, Any]) -> int:
    """usage.completion_tokens_details.reasoning_tokens, as OpenAI-compatible endpoints report it (0 if absent)."""
    details = usage.get("completion_tokens_details")
    if details is None:
        return 0
    if type(details) is not dict:
        raise _malformed("usage.completion_tokens_details", details, "an object")
    return _token_count(details, "reasoning_tokens", "usage.completion_tokens_details")


_JSON_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


def _malformed(where: str, value: object, expected: str) -> LLMUpstreamError:
    """The error for a chunk field of the wrong type; it names the field and the types, never the value."""
    kind = _JSON_KINDS.get(type(value), "null" if value is None else type(value).__name__)
    return LLMUpstreamError(f"LLM stream sent a malformed chunk: {where} is {kind}, expected {expected}")
