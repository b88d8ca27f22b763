"""An asyncio-native httpcore2 network backend: the sockets under the LLM endpoint's HTTP connections.

httpcore2's default backend goes through anyio: every read of a response body enters a cancel scope with
its own deadline timer, looks up the running async library and resumes then pauses the socket's reading.
With one token per read (how endpoints stream) that was most of the per-token cost of many slow streams.
Here a connection is an asyncio Protocol that keeps reading into a bounded buffer: a read returns what is
buffered without waiting, or waits on one future. The read timeout is one watchdog timer per connection,
armed when a read starts waiting and re-armed only when it fires early, never one timer per read; a read
that waits longer than its timeout raises ReadTimeout, as httpcore2's own backends do.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import httpcore2

BUFFER_HIGH_BYTES = 256 * 1024
"""Bytes buffered from the socket before reading from it pauses (resumes once a read takes them)."""


class _Connection(asyncio.Protocol):
    """One socket's received bytes, end of stream, and the one read waiting for them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._wait_start = 0.0
        self._timeout: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > BUFFER_HIGH_BYTES and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # keep our side open; httpcore2 closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait_readable(self, timeout: float | None) -> None:
        """Wait for bytes, end of stream or loss; httpcore2.ReadTimeout after ``timeout`` seconds of none."""
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
        """The watchdog: fail a read that has waited its whole timeout, else sleep until it would have."""
        self._watchdog = None
        waiter, timeout = self._waiter, self._timeout
        if waiter is None or timeout is None or waiter.done():
            return  # nobody waiting: the next read that waits arms the watchdog again
        deadline = self._wait_start + timeout
        if self._loop.time() >= deadline:
            self._waiter = None
            waiter.set_exception(httpcore2.ReadTimeout(f"nothing received for {timeout:g} s"))
        else:
            self._watchdog = self._loop.call_at(deadline, self._check_stall)

    async def wait_writable(self, timeout: float | None) -> None:
        """Wait until the transport's write buffer drains below its high-water mark."""
        if self._writable is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._writable)
        except TimeoutError:
            raise httpcore2.WriteTimeout(f"could not send within {timeout:g} s") from None


class AsyncioStream(httpcore2.AsyncNetworkStream):
    """One connection to the endpoint, as httpcore2 reads and writes it."""

    def __init__(self, transport: asyncio.Transport, connection: _Connection) -> None:
        self._transport = transport
        self._connection = connection
        connection.transport = transport  # after start_tls: pause and resume the TLS transport's reading

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Bytes received (at most ``max_bytes``), b"" at the end of the stream."""
        conn = self._connection
        if not conn.chunks:
            if conn.eof or conn.lost:
                return self._at_end()
            await conn.wait_readable(timeout)
            if not conn.chunks:
                return self._at_end()
        data = conn.chunks.popleft()
        if len(data) > max_bytes:
            conn.chunks.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        conn.size -= len(data)
        if conn.reading_paused and conn.size <= BUFFER_HIGH_BYTES // 2 and not conn.lost:
            conn.reading_paused = False
            self._transport.resume_reading()  # the transport data_received paused
        return data

    def _at_end(self) -> bytes:
        if self._connection.error is not None:
            raise httpcore2.ReadError(str(self._connection.error)) from self._connection.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Send ``buffer``; waits only while the transport's write buffer is full."""
        if not buffer:
            return
        conn = self._connection
        if conn.lost or self._transport.is_closing():
            raise httpcore2.WriteError(str(conn.error or "the connection is closed"))
        self._transport.write(buffer)
        await conn.wait_writable(timeout)
        if conn.lost and conn.error is not None:
            raise httpcore2.WriteError(str(conn.error)) from conn.error

    async def aclose(self) -> None:
        """Close the connection now (buffered writes are flushed by the transport)."""
        self._transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.AsyncNetworkStream:
        """TLS over this connection (https endpoints, and https through an HTTP proxy)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._connection, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError as exc:
            self._transport.abort()
            raise httpcore2.ConnectTimeout(f"TLS handshake took longer than {timeout:g} s") from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.abort()
            raise httpcore2.ConnectError(str(exc)) from exc
        assert transport is not None
        return AsyncioStream(transport, self._connection)

    def get_extra_info(self, info: str) -> Any:
        """What httpcore2 asks of a connection; ``is_readable`` without a system call."""
        if info == "is_readable":
            conn = self._connection
            return bool(conn.chunks) or conn.eof or conn.lost
        names = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername", "socket": "socket"}
        return self._transport.get_extra_info(names[info]) if info in names else None


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    """Connections as asyncio Protocols on the running loop (uvloop in the server)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        """Open a TCP connection (TCP_NODELAY, as asyncio sets it)."""
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        return await self._connect(
            lambda: loop.create_connection(lambda: _Connection(loop), host, port, local_addr=local),
            timeout,
            socket_options,
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        """Open a Unix socket connection."""
        loop = asyncio.get_running_loop()
        return await self._connect(
            lambda: loop.create_unix_connection(lambda: _Connection(loop), path), timeout, socket_options
        )

    async def _connect(
        self, open_: Any, timeout: float | None, socket_options: Iterable[httpcore2.SOCKET_OPTION] | None
    ) -> AsyncioStream:
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await open_()
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(f"no connection within {timeout:g} s") from exc
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        sock: socket.socket | None = transport.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                with contextlib.suppress(OSError):
                    sock.setsockopt(*option)
        return AsyncioStream(transport, connection)

    async def sleep(self, seconds: float) -> None:
        """Sleep on the running loop."""
        await asyncio.sleep(seconds)
