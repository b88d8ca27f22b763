"""One HTTP/1.1 client connection to the LLM endpoint: an asyncio Protocol whose responses llhttp parses.

Bytes are fed to ``httptools.HttpResponseParser`` (llhttp, C) as they arrive; its callbacks record the status,
the headers and each decoded (de-chunked) piece of the body in a bounded buffer. A reader takes what is
buffered without waiting, or waits on one future. The read timeout is one watchdog timer per connection,
armed when a wait starts and re-armed only when it fires early, never one timer per read. Failures are the
httpx2 exceptions the openai SDK and runtime/llm.py expect (ReadTimeout, RemoteProtocolError, ...).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools
import httpx2

if TYPE_CHECKING:
    from agentstream_server.runtime.h1pool import ConnectionPool

BUFFER_HIGH_BYTES = 256 * 1024
"""Body bytes buffered before reading from the socket pauses (it resumes once a reader takes them)."""
MAX_HEAD_BYTES = 64 * 1024
"""The largest response header section accepted (status line and headers)."""

_INCOMPLETE = "peer closed connection without sending complete message body"
_NO_RESPONSE = "Server disconnected without sending a response."
_TOO_LONG = f"response header section longer than {MAX_HEAD_BYTES} bytes"


class _Garbage(Exception):
    """Raised from a parser callback: the peer sent bytes after a complete response (stops the parse)."""


class H1Connection(asyncio.Protocol):
    """One socket: the request/response exchange in progress on it, or idle in its pool between exchanges.

    The exchange's state is public for the transport (runtime/h1.py): ``status``, ``reason``, ``headers``
    once ``head_done``; the body in ``chunks`` (``size`` bytes) until ``complete``; ``error`` the httpx2
    exception to raise once what is buffered has been read.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: ConnectionPool, origin: tuple[bytes, bytes, int]) -> None:
        self._loop = loop
        self._pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.active = True  # an exchange owns it; False while idle in the pool
        self.in_pool = False
        self.closed = False
        self.idle_since = 0.0
        self.reading_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wait_start = 0.0
        self._timeout: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self.begin(head_only=False, close=False)

    def begin(self, *, head_only: bool, close: bool) -> None:
        """Start an exchange: a response to a HEAD request (``head_only``) has no body; ``close``: the request
        asked the server to close the connection after it (never reused)."""
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = not close
        self.error: httpx2.TransportError | None = None
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self._head_bytes = 0  # of the status line and headers parsed
        self._head_received = 0  # bytes received while the head is incomplete
        self._head_only = head_only
        self._until_eof = False
        self._garbage = False

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        if not self.active or self.complete:
            self.keep_alive = False  # bytes nobody asked for: this connection is done
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx2.RemoteProtocolError("the LLM endpoint switched protocols (not supported)"))
        except httptools.HttpParserError as exc:
            if self._garbage:  # bytes after the complete response: the response stands, the connection goes
                self.keep_alive = False
                self.close()
            else:
                self._fail(httpx2.RemoteProtocolError(f"malformed HTTP response: {exc}"))
        if not self.head_done:
            self._head_received += len(data)
            if self._head_received > MAX_HEAD_BYTES:
                self._fail(httpx2.RemoteProtocolError(_TOO_LONG))
        elif self.size > BUFFER_HIGH_BYTES and not self.reading_paused and not self.closed and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        if self.active and not self.complete:
            if self._until_eof:  # a body without a length ends with the connection
                self.complete = True
                self.keep_alive = False
            elif self.error is None:
                self.error = httpx2.RemoteProtocolError(_INCOMPLETE if self.head_done else _NO_RESPONSE)
            self._wake()
        return None  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.active and not self.complete and self.error is None:
            if exc is not None:
                self.error = httpx2.ReadError(str(exc) or type(exc).__name__)
            else:
                self.error = httpx2.RemoteProtocolError(_INCOMPLETE if self.head_done else _NO_RESPONSE)
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.in_pool:
            self._pool.connection_closed(self)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # ------------------------------------------------------------------ httptools callbacks

    def on_status(self, status: bytes) -> None:
        if self.complete:
            self._garbage = True
            raise _Garbage
        self.reason += status
        self._count_head(len(status))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self._count_head(len(name) + len(value) + 4)

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200:
            return  # an informational response (100 Continue): the real one follows
        self.status = status
        self.head_done = True
        self.keep_alive = self.keep_alive and parser.should_keep_alive()
        if self._head_only:
            self.complete = True
            self.keep_alive = False  # llhttp would wait for the body a HEAD response announces but never sends
        elif status not in (204, 304) and not any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers
        ):
            self._until_eof = True
            self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.size += len(body)

    def on_message_complete(self) -> None:
        if not self.head_done:  # the end of an informational response
            self.reason = b""
            self.headers = []
            return
        self.complete = True

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._fail(httpx2.RemoteProtocolError(_TOO_LONG))
            raise _Garbage  # stops the parse

    # ------------------------------------------------------------------ for the transport

    def write(self, data: bytes) -> None:
        """Send ``data`` (the transport buffers it; see ``drain``)."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drain(self, timeout: float | None) -> None:
        """Wait until the socket's write buffer is below its high-water mark; WriteTimeout after ``timeout``."""
        if self._writable is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._writable)
        except TimeoutError:
            raise httpx2.WriteTimeout(f"could not send the request within {timeout:g} s") from None

    def take(self) -> bytes:
        """Everything buffered of the body, as one bytes (reading resumes if it was paused)."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.size = 0
        if self.reading_paused and not self.closed and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    @property
    def reusable(self) -> bool:
        """The response was parsed to its end, and neither side asked to close (or closed)."""
        return self.complete and self.keep_alive and not self.closed

    def close(self) -> None:
        """Close the socket now (never reused)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: httpx2.TransportError) -> None:
        if self.error is None:
            self.error = error
        self.keep_alive = False
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Wait for progress (bytes, end, loss); ReadTimeout after ``timeout`` seconds of none."""
        waiter = self._loop.create_future()
        self._waiter = waiter
        if timeout is not None:
            self._wait_start = self._loop.time()
            self._timeout = timeout
            if self._watchdog is None:
                self._watchdog = self._loop.call_at(self._wait_start + timeout, self._check_stall)
        else:
            self._timeout = None
        try:
            await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None

    def _check_stall(self) -> None:
        """The watchdog: fail a wait that has lasted its whole timeout, else sleep until it would have."""
        self._watchdog = None
        waiter, timeout = self._waiter, self._timeout
        if waiter is None or timeout is None or waiter.done():
            return  # nobody waiting: the next wait arms the watchdog again
        deadline = self._wait_start + timeout
        if self._loop.time() >= deadline:
            self._waiter = None
            waiter.set_exception(httpx2.ReadTimeout(f"nothing received for {timeout:g} s"))
        else:
            self._watchdog = self._loop.call_at(deadline, self._check_stall)
