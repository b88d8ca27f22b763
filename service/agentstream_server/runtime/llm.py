"""LLM access over any OpenAI-compatible endpoint: OpenAIChatModel (the only openai import)."""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import re
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import httpx2
import openai

from agentstream_server.errors import LLMUpstreamError
from agentstream_server.observability.spans import trace_headers
from agentstream_server.redact import RedactingFilter, redact_text, redact_url, url_secrets
from agentstream_server.runtime.chunks import chunk_deltas, parse_chunk
from agentstream_server.runtime.h1 import H1Transport
from agentstream_server.runtime.model import Finish, LLMDelta

MAX_SSE_LINE_BYTES = 8 * 1024 * 1024
"""The longest SSE line accepted: an endpoint that never sends a newline cannot make us buffer without bound."""
_DRAIN_TIMEOUT_S = 0.5
"""How long to wait for the end of a body after [DONE] before closing its connection instead of reusing it."""

_MAX_LOGGED = 2000
"""Longest upstream error text written to the log."""

_NO_API_KEY = "unused"
"""The api key the openai client is given when none is configured (it insists on one)."""

_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
"""An upstream error code callers may see (e.g. context_length_exceeded): an identifier, never free text."""

logger = logging.getLogger("agentstream.llm")

_HTTP_LOG_FILTER = RedactingFilter()
"""Masks the configured key and URL secrets in the HTTP client's own request log lines (they show the URL)."""


def make_openai_client(
    base_url: str | None, api_key: str | None, *, timeout_s: float, max_retries: int, max_connections: int = 100
) -> openai.AsyncOpenAI:
    """An AsyncOpenAI client for any OpenAI-compatible endpoint; its secrets are masked in the HTTP client's log.

    ``max_connections``: connections kept open to the endpoint, sized to the concurrent runs (the SDK's own
    default keeps 100 alive, so past 100 live runs every LLM call would open a new connection). They go
    through runtime/h1.py (HTTP/1.1 on asyncio sockets, parsed in C by llhttp): the cost of a call and of each
    token read stays the same with thousands of streams. With a proxy set in the environment (HTTPS_PROXY...) the
    SDK's default transport is used instead, which honours it.
    """
    _HTTP_LOG_FILTER.add([api_key or "", *url_secrets(base_url or "")])
    logging.getLogger("httpx2").addFilter(_HTTP_LOG_FILTER)
    if urllib.request.getproxies():
        limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        http_client = openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout_s)
    else:
        transport = H1Transport(max_connections=max_connections)
        http_client = openai.DefaultAsyncHttpxClient(transport=transport, timeout=timeout_s)
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key=api_key or _NO_API_KEY,
        timeout=timeout_s,
        max_retries=max_retries,
        http_client=http_client,
    )


class OpenAIChatModel:
    """ChatModel over the openai SDK's streaming chat completions.

    The SDK makes the call (auth, retries with backoff, status errors) through its generic ``post``, the SDK's
    documented way to send a request body as is: ``chat.completions.create`` walks the request's TypedDict
    annotations on every call (about a third of a call's CPU), and our body is already the wire format. The
    body is read as raw SSE lines and parsed with json.loads, a small fraction of the cost of the SDK's typed
    chunks per token.

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
        headers = trace_headers()  # traceparent of the chat span: an instrumented gateway joins the trace
        try:
            async with contextlib.AsyncExitStack() as stack:
                deadline = asyncio.timeout(self._turn_timeout_s)
                try:
                    async with deadline:
                        response = await self._client.post(
                            "/chat/completions",
                            cast_to=httpx2.Response,
                            body=request,
                            options={"headers": headers} if headers else {},
                            stream=True,
                        )
                        stack.push_async_callback(response.aclose)
                except TimeoutError:
                    if not deadline.expired():
                        raise
                    raise LLMUpstreamError(
                        f"no response from the LLM endpoint within {self._turn_timeout_s:g} s (including retries)"
                    ) from None
                finished = False
                partial: list[bytes] = []  # an unfinished line, in pieces: joined once, when its newline comes
                partial_size = 0
                chunks = response.aiter_bytes()
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
                        for delta in chunk_deltas(parse_chunk(payload)):
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
