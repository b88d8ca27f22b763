"""LLM access: the ChatModel protocol, its deltas, and the OpenAI-compatible implementation (the only openai import)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
import openai

from agentstream_server.errors import LLMUpstreamError
from agentstream_server.runtime.events import Usage

_DRAIN_TIMEOUT_S = 0.5
"""How long to wait for the end of a body after [DONE] before closing its connection instead of reusing it."""


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
    """An AsyncOpenAI client for any OpenAI-compatible endpoint."""
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=max_retries
    )


class OpenAIChatModel:
    """ChatModel over the openai SDK's streaming chat completions.

    The SDK makes the call (auth, retries with backoff, status errors); the body is read as raw SSE lines and
    parsed with json.loads, a small fraction of the cost of the SDK's typed chunks per token.
    """

    def __init__(self, client: openai.AsyncOpenAI, model: str) -> None:
        self._client = client
        self._model = model

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
        try:
            async with self._client.chat.completions.with_streaming_response.create(**request) as response:
                finished = False
                pending = b""
                chunks = response.iter_bytes()
                async for data in chunks:
                    lines = (pending + data).split(b"\n") if pending else data.split(b"\n")
                    pending = lines.pop()
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
                if pending.startswith(b"data:") and pending[5:].strip() == b"[DONE]":
                    return  # a last line without its newline
                if not finished:
                    raise LLMUpstreamError("LLM stream ended before the model finished its turn (no [DONE])")
        except openai.APIStatusError as exc:
            raise LLMUpstreamError(
                f"LLM endpoint returned HTTP {exc.status_code}: {_error_text(exc)}",
                metadata={"http_status": str(exc.status_code)},
            ) from exc
        except (openai.APITimeoutError, httpx2.TimeoutException) as exc:
            raise LLMUpstreamError(
                f"LLM endpoint timed out: nothing received for {self._client.timeout}s ({type(exc).__name__})"
            ) from exc
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise LLMUpstreamError(f"cannot reach the LLM endpoint {self._client.base_url}: {cause}") from exc
        except (httpx2.HTTPError, httpx2.StreamError, OSError) as exc:
            raise LLMUpstreamError(f"LLM stream broke: {type(exc).__name__}: {exc}") from exc
        except openai.OpenAIError as exc:
            raise LLMUpstreamError(f"LLM call failed: {type(exc).__name__}: {exc}") from exc


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read the rest of a finished body (normally just the chunked terminator) so the connection is reused."""
    with contextlib.suppress(TimeoutError, httpx2.HTTPError, httpx2.StreamError):
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            async for _ in chunks:
                pass


def _error_text(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("error", {})
        if isinstance(message, dict):
            message = message.get("message")
        if message:
            return str(message)
    return exc.message


def _parse(data: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise LLMUpstreamError(f"LLM stream sent malformed JSON: {data[:200]!r}") from exc
    if not isinstance(payload, dict):
        raise LLMUpstreamError(f"LLM stream sent an unexpected payload: {data[:200]!r}")
    error = payload.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else error
        raise LLMUpstreamError(f"LLM stream reported an error: {message}")
    return payload


def _deltas(payload: Mapping[str, Any]) -> list[LLMDelta]:
    deltas: list[LLMDelta] = []
    for choice in payload.get("choices") or ():
        delta = choice.get("delta") or {}
        content = delta.get("content")
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if content or reasoning:
            deltas.append(TextDelta(content or "", reasoning or ""))
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            deltas.append(
                ToolCallDelta(
                    index=int(call.get("index", 0)),
                    id=call.get("id"),
                    name=function.get("name"),
                    arguments=function.get("arguments") or "",
                )
            )
        if choice.get("finish_reason"):
            deltas.append(Finish(choice["finish_reason"]))
    usage = payload.get("usage")
    if usage:
        deltas.append(
            UsageReport(
                Usage(
                    prompt_tokens=int(usage.get("prompt_tokens") or 0),
                    completion_tokens=int(usage.get("completion_tokens") or 0),
                    total_tokens=int(usage.get("total_tokens") or 0),
                )
            )
        )
    return deltas
