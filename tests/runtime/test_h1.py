"""The LLM client's HTTP/1.1 exchange (runtime/h1.py, h1conn.py) against raw peers that answer byte for byte:
framing, keep-alive rules, malformed and truncated responses, timeouts, backpressure; on both event loops."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx2
import pytest

from agentstream_server.runtime.h1 import H1Transport
from agentstream_server.runtime.h1conn import BUFFER_HIGH_BYTES, MAX_HEAD_BYTES

Answer = Callable[[asyncio.StreamWriter, int], Awaitable[bool]]
"""Writes the response to request n (1, 2, ... per peer); False closes the connection afterwards."""


class Peer:
    """A raw HTTP/1.1 server on 127.0.0.1:0 that reads whole requests and lets a test write each answer."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.accepted = 0
        self.requests: list[bytes] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                body = await reader.readexactly(int(length[1])) if length else b""
                if re.search(rb"(?i)\r\ntransfer-encoding: *chunked", head):
                    body = await reader.readuntil(b"0\r\n\r\n")
                self.requests.append(head + body)
                if not await self.answer(writer, len(self.requests)):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Answer], Awaitable[Peer]]]:
    peers: list[Peer] = []

    async def start(answer: Answer) -> Peer:
        peer = Peer(answer)
        peer.server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        assert peer.server is not None
        peer.server.close()
        for task in list(peer.tasks):
            task.cancel()
        await asyncio.gather(*peer.tasks, return_exceptions=True)


def replying(*raw: bytes, keep: bool = True) -> Answer:
    """An answer that writes these bytes to every request."""

    async def answer(writer: asyncio.StreamWriter, n: int) -> bool:
        for part in raw:
            writer.write(part)
        return keep

    return answer


OK5 = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
DONE = b"data: [DONE]\n\n"


@contextlib.asynccontextmanager
async def client_for(
    max_connections: int = 4, **timeout: float
) -> AsyncIterator[tuple[httpx2.AsyncClient, H1Transport]]:
    transport = H1Transport(max_connections=max_connections)
    async with httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(5, **timeout)) as client:
        yield client, transport


async def test_content_length_bodies_come_whole_and_keep_the_connection(
    serve: Callable[[Answer], Awaitable[Peer]],
) -> None:
    peer = await serve(replying(OK5))
    async with client_for() as (client, transport):
        for _ in range(3):
            response = await client.post(peer.url, content=b"{}")
            assert (response.status_code, response.text, response.reason_phrase) == (200, "hello", "OK")
        assert (peer.accepted, transport.pool.idle) == (1, 1)
    assert peer.requests[0].startswith(b"POST /v1 HTTP/1.1\r\n") and peer.requests[0].endswith(b"\r\n\r\n{}")


async def test_the_body_ends_when_its_terminator_arrives_and_the_connection_is_back_in_the_pool_at_once(
    serve: Callable[[Answer], Awaitable[Peer]],
) -> None:
    terminated = asyncio.Event()

    async def answer(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(DONE), DONE))
        await writer.drain()
        await asyncio.sleep(0.05)  # the terminator in a later packet, as the scripted LLMs send it
        terminated.set()
        writer.write(b"0\r\n\r\n")
        return True

    peer = await serve(answer)
    async with client_for() as (client, transport):
        async with client.stream("POST", peer.url, content=b"{}") as response:
            assert [part async for part in response.aiter_raw()] == [DONE]
            assert terminated.is_set()
            assert transport.pool.idle == 1  # released when the parser saw the end, before the body closed
        terminated.clear()
        async with client.stream("POST", peer.url, content=b"{}") as response:
            await anext(response.aiter_raw())
        assert not terminated.is_set()  # closed before the end: the connection goes, never reused
        assert (transport.pool.connections, transport.pool.idle) == (0, 0)
        assert (await client.post(peer.url)).status_code == 200
    assert peer.accepted == 2


@pytest.mark.parametrize(
    ("raw", "request_headers", "server_keeps"),
    [
        (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello", {}, True),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhello", {}, True),
        (OK5, {"connection": "close"}, True),
        (b"HTTP/1.1 200 OK\r\n\r\nhello", {}, False),  # no length: the body ends when the server closes
    ],
    ids=["server-close", "http-1.0", "client-close", "until-eof"],
)
async def test_a_response_either_side_said_close_is_read_whole_and_its_connection_not_reused(
    serve: Callable[[Answer], Awaitable[Peer]], raw: bytes, request_headers: dict[str, str], server_keeps: bool
) -> None:
    peer = await serve(replying(raw, keep=server_keeps))  # kept open: only the client can end it
    async with client_for() as (client, transport):
        for _ in range(2):
            response = await client.get(peer.url, headers=request_headers)
            assert (response.status_code, response.text) == (200, "hello")
            assert (transport.pool.connections, transport.pool.idle) == (0, 0)
    assert peer.accepted == 2


async def test_bytes_after_a_complete_response_keep_the_response_and_drop_the_connection(
    serve: Callable[[Answer], Awaitable[Peer]],
) -> None:
    peer = await serve(replying(OK5 + b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nbad"))
    async with client_for() as (client, _):
        for _ in range(2):
            assert (await client.get(peer.url)).text == "hello"
    assert peer.accepted == 2


async def test_an_informational_response_before_the_answer_is_skipped(
    serve: Callable[[Answer], Awaitable[Peer]],
) -> None:
    peer = await serve(replying(b"HTTP/1.1 100 Continue\r\n\r\n", OK5))
    async with client_for() as (client, transport):
        response = await client.post(peer.url, content=b"{}")
        assert (response.status_code, response.text, transport.pool.idle) == (200, "hello", 1)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten..", "peer closed connection without sending"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel", "peer closed connection without sending"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n", "malformed HTTP response"),
        (b"SMTP ready\r\n\r\n", "malformed HTTP response"),
        (b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", "header section longer"),
        (b"HTTP/1.1 200 OK\r\n" + b"x-many: header\r\n" * (MAX_HEAD_BYTES // 12) + b"\r\n", "header section longer"),
        (b"", "without sending a response"),
        (b"HTTP/1.1 200 OK\r\ncontent-le", "without sending a response"),
    ],
    ids=[
        "truncated-length",
        "truncated-chunk",
        "bad-chunk-size",
        "not-http",
        "long-header",
        "many-headers",
        "no-response",
        "half-a-head",
    ],
)
async def test_a_broken_response_is_remote_protocol_error_and_closes_its_connection(
    serve: Callable[[Answer], Awaitable[Peer]], raw: bytes, message: str
) -> None:
    peer = await serve(replying(raw, keep=False))
    async with client_for() as (client, transport):
        with pytest.raises(httpx2.RemoteProtocolError, match=message):
            await client.get(peer.url)
        assert (transport.pool.connections, transport.pool.idle) == (0, 0)


async def test_a_silent_server_is_read_timeout_before_the_head_and_within_the_body(
    serve: Callable[[Answer], Awaitable[Peer]],
) -> None:
    async def answer(writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 2:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf.")
        return True  # and nothing more

    peer = await serve(answer)
    async with client_for(read=0.2) as (client, transport):
        with pytest.raises(httpx2.ReadTimeout):
            await client.get(peer.url)
        async with client.stream("GET", peer.url) as response:
            assert response.status_code == 200
            with pytest.raises(httpx2.ReadTimeout):
                await response.aread()
        assert (transport.pool.connections, transport.pool.idle) == (0, 0)


async def test_a_reader_that_falls_behind_holds_the_socket_back_and_loses_nothing(
    serve: Callable[[Answer], Awaitable[Peer]],
) -> None:
    size = 256 * BUFFER_HIGH_BYTES  # 64 MiB: more than the kernel buffers of both ends hold
    written = asyncio.Event()

    async def answer(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        block = b"x" * (1024 * 1024)
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()
        written.set()
        return True

    peer = await serve(answer)
    async with client_for() as (client, transport):
        async with client.stream("GET", peer.url) as response:
            await asyncio.sleep(0.3)  # the server writes as fast as it can; we read nothing
            assert not written.is_set()  # it is held back by the socket, not buffered here without bound
            received = 0
            async for part in response.aiter_raw():
                received += len(part)
        assert (received, transport.pool.idle) == (size, 1)


async def test_a_streamed_request_body_goes_chunked(serve: Callable[[Answer], Awaitable[Peer]]) -> None:
    peer = await serve(replying(OK5))

    async def body() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    async with client_for() as (client, _):
        assert (await client.post(peer.url, content=body())).text == "hello"
    assert peer.requests[0].endswith(b"\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")


async def test_a_line_break_in_a_request_header_is_refused_before_anything_is_sent(
    serve: Callable[[Answer], Awaitable[Peer]],
) -> None:
    peer = await serve(replying(OK5))
    async with client_for() as (client, _):
        with pytest.raises((httpx2.LocalProtocolError, ValueError)):
            await client.get(peer.url, headers={"x-a": "1\r\nx-injected: 2"})
    assert peer.requests == []
