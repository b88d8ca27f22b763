"""The scripted LLM peer of the tests: an OpenAI-compatible chat-completions server over real HTTP (stdlib only).

Tests queue responses with ``FakeLLM.script(...)`` (each request pops the next) or set ``responder``; the server
records request bodies and counts open connections. ``python -m tests.support.fakellm --port N`` serves
``default_responder`` on its own (arithmetic -> a ``calculator`` call -> "The answer is N."; else an echo).

It is built for speed (benchmarks push tens of thousands of tokens through it): SSE frames are pre-encoded
byte for byte as ``json.dumps`` writes them, and an unpaced stream goes out as a few large HTTP chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# ------------------------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class Text:
    """Stream these tokens as content deltas, then finish_reason, then usage (when the request asks for it)."""

    tokens: Sequence[str]
    usage: tuple[int, int] | None = None
    """(prompt, completion) tokens; None: words in the request's messages, and len(tokens)."""
    delay_s: float = 0.0
    """Pace: token i is sent delay_s * i after the first, the finish delay_s after the last."""
    model: str = "fake-model"
    finish_reason: str = "stop"
    stamp: bool = False
    """Replace each token with its send time (time.perf_counter_ns(), system-wide monotonic) for latency figures."""


@dataclass(frozen=True)
class ToolCalls:
    """Stream tool calls (name, arguments) as OpenAI does: index, id and name first, then argument fragments."""

    calls: Sequence[tuple[str, Mapping[str, Any]]]
    text_tokens: Sequence[str] = ()
    fragment_size: int = 7
    usage: tuple[int, int] | None = None
    model: str = "fake-model"


@dataclass(frozen=True)
class HTTPError:
    """Answer with an HTTP error status and a JSON body (by default OpenAI's ``{"error": {...}}`` shape)."""

    status: int = 500
    message: str = "the fake LLM is failing on purpose"
    body: Mapping[str, Any] | None = None
    """The whole JSON body; None: ``{"error": {"message": message, "type": "fake"}}``."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra response headers, e.g. (("x-should-retry", "false"),)."""


@dataclass(frozen=True)
class Stall:
    """Send these tokens, then nothing more until the client closes the connection."""

    tokens: Sequence[str] = ("Hel",)


@dataclass(frozen=True)
class Broken:
    """Send these tokens, then (if malformed) a data line that is not JSON, then drop the connection mid-body."""

    tokens: Sequence[str] = ("Hel",)
    malformed: bool = True


@dataclass(frozen=True)
class RawSSE:
    """Send these SSE events verbatim (each followed by a blank line), then end the body cleanly."""

    events: Sequence[str]


@dataclass(frozen=True)
class Chunks:
    """Send each payload as one ``data:`` line of ``json.dumps(payload)`` (any JSON value, well-formed or not as a
    chunk), then ``data: [DONE]`` unless done is False, then end the body cleanly.

    json.dumps escapes lone surrogates (``"\\ud800"``) and writes NaN/Infinity literals, as a sloppy upstream might.
    """

    payloads: Sequence[Any]
    done: bool = True


@dataclass(frozen=True)
class NoAnswer:
    """Read the request, then send nothing at all (not even headers) until the client hangs up."""


Response = Text | ToolCalls | HTTPError | Stall | Broken | RawSSE | Chunks | NoAnswer
"""What the server does with one chat-completions request."""


# ---------------------------------------------------------------------------------------------- server


class FakeLLM:
    """The server; ``async with FakeLLM() as llm`` listens on 127.0.0.1:0 (or the given port)."""

    def __init__(self, port: int = 0, responder: Callable[[dict[str, Any]], Response] | None = None) -> None:
        self.port = port
        self.responder = responder
        """Answers requests when the script is empty; None: HTTP 500 "script exhausted"."""
        self.requests: list[dict[str, Any]] = []
        """JSON bodies of the chat-completions requests received, in order."""
        self.request_headers: list[dict[str, str]] = []
        """Their HTTP headers (names lowercased), in the same order."""
        self.open_connections = 0
        self.connections_accepted = 0
        self._queue: deque[Response] = deque()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._call_ids = 0

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of this server."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *responses: Response) -> None:
        """Queue responses; each chat-completions request takes the next one."""
        self._queue.extend(responses)

    async def __aenter__(self) -> FakeLLM:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def wait_closed(self, timeout: float) -> bool:
        """True once no connection is open, waiting up to timeout seconds."""
        return await self._wait_for(lambda: self.open_connections == 0, timeout)

    async def wait_requests(self, n: int, timeout: float) -> bool:
        """True once n requests have arrived, waiting up to timeout seconds."""
        return await self._wait_for(lambda: len(self.requests) >= n, timeout)

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            return False
        return True

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _next_response(self, body: dict[str, Any]) -> Response:
        if self._queue:
            return self._queue.popleft()
        if self.responder is not None:
            return self.responder(body)
        return HTTPError(500, "fake LLM script exhausted")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.open_connections += 1
        self.connections_accepted += 1
        await self._notify()
        try:
            while (request := await _read_request(reader)) is not None:
                method, path, headers, raw = request
                if method != "POST" or not path.endswith("/chat/completions"):
                    await _send_json(writer, 404, {"error": {"message": f"no route {method} {path}"}})
                    continue
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    await _send_json(writer, 400, {"error": {"message": "request body is not JSON"}})
                    continue
                self.request_headers.append(headers)
                self.requests.append(body)
                await self._notify()
                try:
                    response = self._next_response(body)
                except Exception as exc:  # a test's responder failed: say so to the client
                    response = HTTPError(500, f"fake LLM responder failed: {exc!r}")
                if not await self._respond(reader, writer, body, response):
                    break
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, _NotHTTP):
            pass  # the client went away, or sent something that is not HTTP: drop the connection
        except asyncio.CancelledError:
            pass  # the server is closing: this handler is the top of its task, so end quietly
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self.open_connections -= 1
            await self._notify()

    async def _respond(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: dict[str, Any], response: Response
    ) -> bool:
        """Answer one request; False when the connection must be closed afterwards."""
        if isinstance(response, HTTPError):
            payload = response.body if response.body is not None else {"error": {"message": response.message}}
            await _send_json(writer, response.status, payload, response.headers)
            return True
        if isinstance(response, NoAnswer):
            while await reader.read(65536):  # until the client hangs up
                pass
            return False
        if isinstance(response, Chunks):
            events = [f"data: {json.dumps(payload)}" for payload in response.payloads]
            response = RawSSE([*events, "data: [DONE]"] if response.done else events)
        if isinstance(response, Stall | Broken | RawSSE) or body.get("stream"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        if isinstance(response, Stall):
            frames = _Frames(str(body.get("model", "fake-model")))
            writer.write(_chunk(b"".join([frames.role(), *map(frames.content, response.tokens)])))
            await writer.drain()
            while await reader.read(65536):  # until the client hangs up
                pass
            return False
        if isinstance(response, Broken):
            frames = _Frames(str(body.get("model", "fake-model")))
            data = b"".join([frames.role(), *map(frames.content, response.tokens)])
            writer.write(_chunk(data + (b"data: {this is not json\n\n" if response.malformed else b"")))
            writer.write(b"%x\r\ndata: {" % 100)  # announce a chunk, then cut it short
            writer.transport.set_write_buffer_limits(high=0)
            await writer.drain()  # with high=0, drain returns once everything is handed to the kernel
            writer.transport.abort()
            return False
        if isinstance(response, RawSSE):
            data = b"".join(event.encode() + b"\n\n" for event in response.events)
            writer.write(_chunk(data) + b"0\r\n\r\n")
            await writer.drain()
            return True
        if not body.get("stream"):
            await _send_json(writer, 200, self._completion(body, response))
            return True
        usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))
        if isinstance(response, Text) and response.delay_s > 0:
            await _send_paced(writer, body, response, usage_wanted)
        else:
            await _send_chunked(writer, self._frames(body, response, usage_wanted))
        await writer.drain()
        return True

    def _frames(self, body: dict[str, Any], response: Text | ToolCalls, usage_wanted: bool) -> Iterable[bytes]:
        """Every SSE frame of an unpaced streamed response, [DONE] included."""
        frames = _Frames(response.model)
        yield frames.role()
        if isinstance(response, Text):
            if response.stamp:
                yield from (frames.content(str(time.perf_counter_ns())) for _ in response.tokens)
            else:
                yield from map(frames.content, response.tokens)
            yield frames.delta({}, response.finish_reason)
        else:
            yield from map(frames.content, response.text_tokens)
            for index, (name, arguments, call_id) in enumerate(self._calls(response)):
                function = {"name": name, "arguments": ""}
                first = {"index": index, "id": call_id, "type": "function", "function": function}
                yield frames.delta({"tool_calls": [first]})
                text, size = json.dumps(arguments), max(1, response.fragment_size)
                for start in range(0, len(text), size):
                    fragment = {"index": index, "function": {"arguments": text[start : start + size]}}
                    yield frames.delta({"tool_calls": [fragment]})
            yield frames.delta({}, "tool_calls")
        if usage_wanted:
            yield frames.usage(*_usage(body, response))
        yield b"data: [DONE]\n\n"

    def _calls(self, response: ToolCalls) -> list[tuple[str, Mapping[str, Any], str]]:
        calls = []
        for name, arguments in response.calls:
            self._call_ids += 1
            calls.append((name, arguments, f"call_{self._call_ids}"))
        return calls

    def _completion(self, body: dict[str, Any], response: Text | ToolCalls) -> dict[str, Any]:
        """A whole chat.completion for a request with stream false."""
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if isinstance(response, Text):
            message["content"], finish_reason = "".join(response.tokens), response.finish_reason
        else:
            message["content"] = "".join(response.text_tokens) or None
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
                for name, arguments, call_id in self._calls(response)
            ]
            finish_reason = "tool_calls"
        prompt, completion = _usage(body, response)
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": response.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }


class _Frames:
    """Encodes the chat.completion.chunk SSE frames of one response, byte for byte as json.dumps would."""

    def __init__(self, model: str) -> None:
        envelope = json.dumps(
            {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        )
        self._envelope = b"data: " + envelope[:-1].encode()
        self._delta = self._envelope + b', "choices": [{"index": 0, "delta": '
        self._content = self._delta + b'{"content": '
        self._cache: dict[str, bytes] = {}

    def content(self, token: str) -> bytes:
        """A content delta frame."""
        frame = self._cache.get(token)
        if frame is None:
            frame = self._content + json.dumps(token).encode() + b'}, "finish_reason": null}]}\n\n'
            if len(self._cache) < 4096:
                self._cache[token] = frame
        return frame

    def role(self) -> bytes:
        """The first frame: role assistant, empty content."""
        return self.delta({"role": "assistant", "content": ""})

    def delta(self, delta: Mapping[str, Any], finish_reason: str | None = None) -> bytes:
        """Any delta frame."""
        return b'%s%s, "finish_reason": %s}]}\n\n' % (
            self._delta,
            json.dumps(delta).encode(),
            json.dumps(finish_reason).encode(),
        )

    def usage(self, prompt: int, completion: int) -> bytes:
        """The usage frame OpenAI sends last with include_usage: no choices."""
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        return b'%s, "choices": [], "usage": %s}\n\n' % (self._envelope, json.dumps(usage).encode())


_BLOCK = 1 << 16
_END = b"0\r\n\r\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _send_chunked(writer: asyncio.StreamWriter, frames: Iterable[bytes]) -> None:
    """Write frames as HTTP chunks of about 64 KiB (one write each, draining between), then the last chunk."""
    block: list[bytes] = []
    size = 0
    for frame in frames:
        block.append(frame)
        size += len(frame)
        if size >= _BLOCK:
            writer.write(_chunk(b"".join(block)))
            block.clear()
            size = 0
            await writer.drain()
    writer.write(_chunk(b"".join(block)) + _END if block else _END)


async def _send_paced(writer: asyncio.StreamWriter, body: dict[str, Any], response: Text, usage_wanted: bool) -> None:
    """Write one frame per token on a fixed schedule (no drift), then the finish, usage and [DONE]."""
    frames = _Frames(response.model)
    writer.write(_chunk(frames.role()))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, token in enumerate(response.tokens):
        writer.write(_chunk(frames.content(str(time.perf_counter_ns()) if response.stamp else token)))
        await writer.drain()
        await asyncio.sleep(start + (i + 1) * response.delay_s - loop.time())
    tail = [frames.delta({}, response.finish_reason)]
    if usage_wanted:
        tail.append(frames.usage(*_usage(body, response)))
    writer.write(_chunk(b"".join([*tail, b"data: [DONE]\n\n"])) + _END)


def _usage(body: dict[str, Any], response: Text | ToolCalls) -> tuple[int, int]:
    if response.usage is not None:
        return response.usage
    prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
    completion = len(response.tokens) if isinstance(response, Text) else 10 * len(response.calls)
    return prompt, completion


class _NotHTTP(Exception):
    """The client sent something that is not an HTTP/1.1 request."""


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    """One request (method, path, lowercased headers, body), or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise
        return None
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    try:
        method, path, _version = request_line.split(" ", 2)
        length = int(headers.get("content-length", "0"))
    except ValueError as exc:
        raise _NotHTTP(request_line) from exc
    return method, path, headers, await reader.readexactly(length) if length else b""


async def _send_json(
    writer: asyncio.StreamWriter, status: int, payload: Mapping[str, Any], headers: Iterable[tuple[str, str]] = ()
) -> None:
    data = json.dumps(payload).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("latin-1")
    writer.write(
        b"HTTP/1.1 %d Fake\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
        % (status, len(data), extra, data)
    )
    await writer.drain()


# ------------------------------------------------------------------------------------ standalone mode

_ARITHMETIC = re.compile(r"[\d(][\d\s.+\-*/%()]*[\d)]")
BENCH_PROMPT = re.compile(r"^bench: tokens=(\d+)(?: rate=(\d+(?:\.\d+)?))?( stamp)?$")


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


RECALL_PROMPT = "what did i just ask?"


def default_responder(body: dict[str, Any]) -> Response:
    """The standalone server's behaviour: an agent offered as a tool is asked first; calculator for arithmetic,
    then the answer; "What did I just ask?" -> "You asked: <the previous user message>" (from the
    conversation's history); else an echo.

    A prompt ``bench: tokens=N [rate=R] [stamp]`` streams N tokens (at R per second, stamped with their send
    time) for the benchmarks.
    """
    messages = body.get("messages", [])
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    tool_messages = [m for m in messages[users[-1] if users else 0 :] if m.get("role") == "tool"]  # this turn's
    user = str(messages[users[-1]].get("content") or "") if users else ""
    if not tool_messages:
        for tool in body.get("tools") or ():  # an agent offered as a tool: ask it with the user's input
            function = tool.get("function", {})
            if set(function.get("parameters", {}).get("properties", {})) == {"input"}:
                return ToolCalls([(function["name"], {"input": user})])
    bench = BENCH_PROMPT.match(str(messages[-1].get("content") or "")) if messages else None
    if bench:
        rate = float(bench.group(2) or 0)
        return Text(["x "] * int(bench.group(1)), delay_s=1 / rate if rate else 0.0, stamp=bool(bench.group(3)))
    if tool_messages and BENCH_PROMPT.match(user):
        return Text(["done"])  # a bench run through an agent tool: only the nested agent's tokens count
    if tool_messages:
        return Text(_words(f"The answer is {tool_messages[-1].get('content')}."))
    if user.strip().lower() == RECALL_PROMPT:  # what a conversation's earlier turns are for
        earlier = str(messages[users[-2]].get("content") or "") if len(users) > 1 else ""
        return Text(_words(f"You asked: {earlier}" if earlier else "You asked nothing before."))
    offers_calculator = any(t.get("function", {}).get("name") == "calculator" for t in body.get("tools") or ())
    match = _ARITHMETIC.search(user)
    if match and offers_calculator and any(op in match.group(0) for op in "+-*/%"):
        return ToolCalls([("calculator", {"expression": match.group(0).strip()})])
    return Text(_words(f"You said: {user}"))


def paced(
    responder: Callable[[dict[str, Any]], Response], tokens_per_second: float
) -> Callable[[dict[str, Any]], Response]:
    """The responder, with unpaced Text responses sent at tokens_per_second."""

    def respond(body: dict[str, Any]) -> Response:
        response = responder(body)
        if isinstance(response, Text) and not response.delay_s:
            return dataclasses.replace(response, delay_s=1 / tokens_per_second)
        return response

    return respond


async def _main() -> None:
    parser = argparse.ArgumentParser(description="Scripted OpenAI-compatible LLM server for tests.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens-per-second", type=float, default=0.0, help="pace text responses (0: unpaced)")
    args = parser.parse_args()
    responder = paced(default_responder, args.tokens_per_second) if args.tokens_per_second > 0 else default_responder
    async with FakeLLM(port=args.port, responder=responder) as llm:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"fakellm listening on {llm.base_url}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main())
