"""A scripted OpenAI-compatible chat-completions server over real HTTP (asyncio, stdlib only).

Tests queue responses with ``script(...)`` (each request pops the next) or set ``responder``; the server
records request bodies and open connections. ``python -m tests.support.fakellm --port N`` runs it alone
with a default responder that calls ``calculator`` for arithmetic and otherwise echoes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Text:
    """Stream these tokens as content deltas, then finish_reason and usage."""

    tokens: Sequence[str]
    delay_s: float = 0.0
    model: str = "fake-model"
    finish_reason: str = "stop"
    usage: tuple[int, int] | None = None
    stamp: bool = False
    """Replace each token with the send time (time.perf_counter_ns(), system-wide monotonic) for latency figures."""


@dataclass(frozen=True)
class ToolCalls:
    """Stream tool calls (name, arguments) as OpenAI does: id and name first, then argument fragments."""

    calls: Sequence[tuple[str, dict[str, Any]]]
    text_tokens: Sequence[str] = ()
    fragment_size: int = 7
    model: str = "fake-model"


@dataclass(frozen=True)
class HTTPError:
    """Answer with an HTTP error status and an OpenAI-style error body."""

    status: int = 500
    message: str = "the fake LLM is failing on purpose"


@dataclass(frozen=True)
class Stall:
    """Send these tokens, then nothing more until the client closes the connection."""

    tokens: Sequence[str] = ("Hel",)


@dataclass(frozen=True)
class Broken:
    """Send these tokens, then a malformed data line, then drop the connection."""

    tokens: Sequence[str] = ("Hel",)


Response = Text | ToolCalls | HTTPError | Stall | Broken


@dataclass
class FakeLLM:
    """The server; ``async with FakeLLM() as llm`` listens on 127.0.0.1:0 (or the given port)."""

    port: int = 0
    responder: Callable[[dict[str, Any]], Response] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    open_connections: int = 0
    _queue: deque[Response] = field(default_factory=deque)
    _server: asyncio.Server | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

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
        self.open_connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await self._notify()
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                path, body = request
                if not path.endswith("/chat/completions"):
                    await _send_json(writer, 404, {"error": {"message": f"no route {path}"}})
                    continue
                self.requests.append(body)
                await self._notify()
                keep_open = await self._respond(reader, writer, body, self._next_response(body))
                if not keep_open:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the server is closing: this handler is the top of its task, so end quietly
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self.open_connections -= 1
            await self._notify()

    async def _respond(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        body: dict[str, Any],
        response: Response,
    ) -> bool:
        if isinstance(response, HTTPError):
            await _send_json(writer, response.status, {"error": {"message": response.message, "type": "fake"}})
            return True
        if not body.get("stream"):
            return await self._respond_whole(writer, body, response)
        usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        stream = _SSE(writer, body.get("model", "fake-model"))
        stream.send({"role": "assistant", "content": ""})
        if isinstance(response, Text):
            for token in response.tokens:
                stream.send({"content": f"{time.perf_counter_ns()} " if response.stamp else token})
                if response.delay_s:
                    await writer.drain()
                    await asyncio.sleep(response.delay_s)
            stream.send({}, finish_reason=response.finish_reason)
            prompt, completion = response.usage or (_count_prompt(body), len(response.tokens))
        elif isinstance(response, ToolCalls):
            for token in response.text_tokens:
                stream.send({"content": token})
            for index, (name, arguments) in enumerate(response.calls):
                stream.send(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": f"call_{len(self.requests)}_{index}",
                                "type": "function",
                                "function": {"name": name, "arguments": ""},
                            }
                        ]
                    }
                )
                text = json.dumps(arguments)
                for start in range(0, len(text), response.fragment_size):
                    fragment = text[start : start + response.fragment_size]
                    stream.send({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
            stream.send({}, finish_reason="tool_calls")
            prompt, completion = _count_prompt(body), 10 * len(response.calls)
        elif isinstance(response, Stall):
            for token in response.tokens:
                stream.send({"content": token})
            await writer.drain()
            while await reader.read(4096):  # until the client hangs up
                pass
            return False
        else:  # Broken
            for token in response.tokens:
                stream.send({"content": token})
            writer.write(_chunk(b"data: {this is not json\n\n"))
            await writer.drain()
            writer.transport.abort()
            return False
        if usage_wanted:
            stream.send_raw(
                {
                    "choices": [],
                    "usage": {
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "total_tokens": prompt + completion,
                    },
                }
            )
        writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _respond_whole(self, writer: asyncio.StreamWriter, body: dict[str, Any], response: Response) -> bool:
        content = "".join(response.tokens) if isinstance(response, Text) else ""
        await _send_json(
            writer,
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake-model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )
        return True


class _SSE:
    """Writes chat.completion.chunk frames as HTTP chunks."""

    def __init__(self, writer: asyncio.StreamWriter, model: str) -> None:
        self._writer = writer
        self._prefix = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

    def send(self, delta: dict[str, Any], finish_reason: str | None = None) -> None:
        self.send_raw({**self._prefix, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})

    def send_raw(self, payload: dict[str, Any]) -> None:
        self._writer.write(_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n"))


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _count_prompt(body: dict[str, Any]) -> int:
    return sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, Any]] | None:
    line = await reader.readline()
    if not line:
        return None
    _method, path, _version = line.decode("latin-1").split(" ", 2)
    length = 0
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    raw = await reader.readexactly(length) if length else b"{}"
    return path, json.loads(raw)


async def _send_json(writer: asyncio.StreamWriter, status: int, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    writer.write(
        b"HTTP/1.1 %d Fake\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (status, len(data), data)
    )
    await writer.drain()


_ARITHMETIC = re.compile(r"\d[\d\s.+\-*/%()]*[\d)]")


BENCH_PROMPT = re.compile(r"^bench: tokens=(\d+)(?: rate=(\d+(?:\.\d+)?))?( stamp)?$")


def default_responder(body: dict[str, Any]) -> Response:
    """The standalone server's behaviour: calculator for arithmetic, then the answer; else an echo.

    A prompt ``bench: tokens=N [rate=R] [stamp]`` streams N tokens (at R per second, stamped with their send
    time) for the benchmarks.
    """
    messages = body.get("messages", [])
    bench = BENCH_PROMPT.match(str(messages[-1].get("content") or "")) if messages else None
    if bench:
        rate = float(bench.group(2) or 0)
        return Text(["x "] * int(bench.group(1)), delay_s=1 / rate if rate else 0.0, stamp=bool(bench.group(3)))
    tool_messages = [m for m in messages if m.get("role") == "tool"]
    user = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    offers_calculator = any(t.get("function", {}).get("name") == "calculator" for t in body.get("tools", []))
    match = _ARITHMETIC.search(user)
    if tool_messages:
        return Text(re.findall(r"\S+\s*", f"The answer is {tool_messages[-1].get('content')}."))
    if match and offers_calculator and any(op in match.group(0) for op in "+-*/%"):
        return ToolCalls([("calculator", {"expression": match.group(0).strip()})])
    return Text(re.findall(r"\S+\s*", f"You said: {user}"))


async def _main() -> None:
    parser = argparse.ArgumentParser(description="Scripted OpenAI-compatible LLM server for tests.")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    async with FakeLLM(port=args.port, responder=default_responder) as llm:
        print(f"fakellm listening on {llm.base_url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main())
