"""LLM access: the ChatModel protocol, its deltas, and the OpenAI-compatible implementation (the only openai import).

Edge rules for what the endpoint streams (nothing it sends can make a later step, such as protobuf conversion,
fail): every delta field has exactly its declared type, and a chunk field of another JSON type (a number for
content, a string for choices, an object for arguments...) makes the chunk malformed: LLMUpstreamError, which
ends the run in-band. Null or missing fields mean "nothing". Tool-call indexes must be integers below
MAX_TOOL_CALL_INDEX. Token counts must be integers (not booleans or floats); a negative count is clamped to 0
and a larger one to MAX_TOKEN_COUNT, as a bookkeeping quirk should not fail a run whose answer is fine. Every
string is made encodable as UTF-8 (lone surrogates become U+FFFD).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
import openai

from agentstream_server.errors import LLMUpstreamError
from agentstream_server.redact import RedactingFilter, redact_text, redact_url, url_secrets
from agentstream_server.runtime.events import Usage
from agentstream_server.runtime.utf8 import utf8_safe

MAX_SSE_LINE_BYTES = 8 * 1024 * 1024
"""The longest SSE line accepted: an endpoint that never sends a newline cannot make us buffer without bound."""
_DRAIN_TIMEOUT_S = 0.5
"""How long to wait for the end of a body after [DONE] before closing its connection instead of reusing it."""

MAX_TOOL_CALL_INDEX = 128
"""Tool-call indexes must be below this: the loop keeps one pending call per index a model names."""

MAX_TOKEN_COUNT = 2**31 - 1
"""Reported token counts are clamped to 0..MAX_TOKEN_COUNT."""

_MAX_DETAIL = 500
"""Longest upstream text quoted in an error message."""

_MAX_LOGGED = 2000
"""Longest upstream error text written to the log."""

_NO_API_KEY = "unused"
"""The api key the openai client is given when none is configured (it insists on one)."""

_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
"""An upstream error code callers may see (e.g. context_length_exceeded): an identifier, never free text."""

logger = logging.getLogger("agentstream.llm")

_HTTP_LOG_FILTER = RedactingFilter()
"""Masks the configured key and URL secrets in the HTTP client's own request log lines (they show the URL)."""


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


def make_openai_client(
    base_url: str | None, api_key: str | None, *, timeout_s: float, max_retries: int
) -> openai.AsyncOpenAI:
    """An AsyncOpenAI client for any OpenAI-compatible endpoint; its secrets are masked in the HTTP client's log."""
    _HTTP_LOG_FILTER.add([api_key or "", *url_secrets(base_url or "")])
    logging.getLogger("httpx2").addFilter(_HTTP_LOG_FILTER)
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key or _NO_API_KEY, timeout=timeout_s, max_retries=max_retries
    )


class OpenAIChatModel:
    """ChatModel over the openai SDK's streaming chat completions.

    The SDK makes the call (auth, retries with backoff, status errors); the body is read as raw SSE lines and
    parsed with json.loads, a small fraction of the cost of the SDK's typed chunks per token.

    max_tokens (None: not sent) is sent as ``max_tokens``, the parameter OpenAI-compatible servers broadly accept.
    turn_timeout_s (None: no bound) bounds the wait for the response headers across all the SDK's tries and
    backoffs; once the stream has started, the client's own timeout bounds each read.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        *,
        max_tokens: int | None = None,
        turn_timeout_s: float | None = None,
    ) -> None:
        self._client = client
        self._model = model
        self._max_tokens = max_tokens
        self._turn_timeout_s = turn_timeout_s
        base_url = str(client.base_url)
        self._endpoint = redact_url(base_url)
        self._secrets = [*url_secrets(base_url), *([client.api_key] if client.api_key != _NO_API_KEY else [])]

    @property
    def label(self) -> str:
        """The model name."""
        return self._model

    async def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        *,
        temperature: float | None = None,
    ) -> AsyncGenerator[LLMDelta, None]:
        """Stream one turn as deltas; every failure is an LLMUpstreamError, cancellation passes through."""
        request: dict[str, Any] = {
            "model": self._model,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            request["tools"] = list(tools)
        if temperature is not None:
            request["temperature"] = temperature
        if self._max_tokens is not None:
            request["max_tokens"] = self._max_tokens
        try:
            async with contextlib.AsyncExitStack() as stack:
                deadline = asyncio.timeout(self._turn_timeout_s)
                try:
                    async with deadline:
                        response = await stack.enter_async_context(
                            self._client.chat.completions.with_streaming_response.create(**request)
                        )
                except TimeoutError:
                    if not deadline.expired():
                        raise
                    raise LLMUpstreamError(
                        f"no response from the LLM endpoint within {self._turn_timeout_s:g} s (including retries)"
                    ) from None
                finished = False
                partial: list[bytes] = []  # an unfinished line, in pieces: joined once, when its newline comes
                partial_size = 0
                chunks = response.iter_bytes()
                async for data in chunks:
                    newline = data.find(b"\n")
                    if partial_size + (len(data) if newline < 0 else newline) > MAX_SSE_LINE_BYTES:
                        raise LLMUpstreamError(f"LLM stream sent a line longer than {MAX_SSE_LINE_BYTES} bytes")
                    if newline < 0:
                        partial.append(data)
                        partial_size += len(data)
                        continue
                    if partial:
                        data = b"".join((*partial, data))
                    lines = data.split(b"\n")
                    last = lines.pop()
                    partial, partial_size = ([last], len(last)) if last else ([], 0)
                    for line in lines:
                        if not line.startswith(b"data:"):
                            continue  # blank separators, comments, event: and id: fields
                        payload = line[5:].strip()
                        if payload == b"[DONE]":
                            await _drain(chunks)
                            return
                        for delta in _deltas(_parse(payload)):
                            finished = finished or type(delta) is Finish
                            yield delta
                pending = b"".join(partial)
                if pending.startswith(b"data:") and pending[5:].strip() == b"[DONE]":
                    return  # a last line without its newline
                if not finished:
                    raise LLMUpstreamError("LLM stream ended before the model finished its turn (no [DONE])")
        except LLMUpstreamError as exc:  # raised above from what the stream sent, which may echo a secret
            raise LLMUpstreamError(self._redact(exc.message), metadata=exc.metadata) from exc.__cause__
        except openai.APIStatusError as exc:
            # The body may echo the key (some endpoints quote the credentials they rejected): callers get the
            # status and at most an error code; the detail goes to the log, redacted.
            logger.warning(
                "LLM endpoint %s returned HTTP %d: %s",
                self._endpoint,
                exc.status_code,
                self._redact(exc.message)[:_MAX_LOGGED],
            )
            raise LLMUpstreamError(
                self._redact(_status_message(exc)), metadata={"http_status": str(exc.status_code)}
            ) from exc
        except (openai.APITimeoutError, httpx2.TimeoutException) as exc:
            raise LLMUpstreamError(
                f"LLM endpoint timed out: nothing received for {self._client.timeout}s ({type(exc).__name__})"
            ) from exc
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise LLMUpstreamError(self._redact(f"cannot reach the LLM endpoint {self._endpoint}: {cause}")) from exc
        except (httpx2.HTTPError, httpx2.StreamError, OSError) as exc:
            raise LLMUpstreamError(self._redact(f"LLM stream broke: {type(exc).__name__}: {exc}")) from exc
        except openai.OpenAIError as exc:
            raise LLMUpstreamError(self._redact(f"LLM call failed: {type(exc).__name__}: {exc}")) from exc

    def _redact(self, text: str) -> str:
        return redact_text(text, self._secrets)


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read the rest of a finished body (normally just the chunked terminator) so the connection is reused."""
    with contextlib.suppress(TimeoutError, httpx2.HTTPError, httpx2.StreamError):
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            async for _ in chunks:
                pass


def _status_message(exc: openai.APIStatusError) -> str:
    """What callers are told about an HTTP error: the status, its phrase, and the upstream error code if any."""
    try:
        phrase = f" ({http.HTTPStatus(exc.status_code).phrase})"
    except ValueError:
        phrase = ""
    code = exc.code if isinstance(exc.code, str) and _ERROR_CODE.fullmatch(exc.code) else None
    return f"LLM endpoint returned HTTP {exc.status_code}{phrase}" + (f": {code}" if code else "")


def _parse(data: bytes) -> dict[str, Any]:
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


def _deltas(payload: dict[str, Any]) -> list[LLMDelta]:
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


def _token_count(usage: dict[str, Any], name: str) -> int:
    value = usage.get(name)
    if value is None:
        return 0
    if type(value) is not int:
        raise _malformed(f"usage.{name}", value, "an integer")
    return 0 if value < 0 else min(value, MAX_TOKEN_COUNT)


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
