"""The connections to the LLM endpoint: per-origin keep-alive stacks under one bound on all connections.

A request takes the most recently freed idle connection of its origin (scheme, host, port), else opens a new
one while fewer than ``max_connections`` exist, else waits (until the pool timeout) for one to be handed over
as it is freed. Every step is O(1): nothing walks the connections. Idle connections expire after
``keepalive_expiry`` seconds (checked when the pool is used) and leave the pool as soon as their socket
closes. Failures are the httpx2 exceptions the openai SDK expects (PoolTimeout, ConnectTimeout, ConnectError).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

import httpx2

from agentstream_server.runtime.h1conn import H1Connection

Origin = tuple[bytes, bytes, int]
"""(scheme, host, port)."""


class ConnectionPool:
    """Open, reuse, hand over and close HTTP/1.1 connections (see the module docstring)."""

    def __init__(self, *, max_connections: int, keepalive_expiry: float, ssl_context: ssl.SSLContext) -> None:
        self._max = max(1, max_connections)
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._idle: dict[Origin, deque[H1Connection]] = {}
        self._idle_count = 0
        self._total = 0  # connections open, opening, or reserved for a waiter
        self._open: set[H1Connection] = set()
        self._waiters: deque[tuple[Origin, asyncio.Future[H1Connection | None]]] = deque()

    @property
    def connections(self) -> int:
        """Connection slots taken: open (idle or in use), opening, or handed to a waiting request."""
        return self._total

    @property
    def idle(self) -> int:
        """Open connections waiting in the pool for a request."""
        return self._idle_count

    async def acquire(self, origin: Origin, timeouts: dict[str, float | None], sni: str | None) -> H1Connection:
        """A connection to ``origin`` for one exchange: kept alive, new, or handed over when one is freed."""
        conn = self._take_idle(origin)
        if conn is not None:
            return conn
        if self._total < self._max or self._evict_idle():
            self._total += 1
            return await self._connect(origin, timeouts.get("connect"), sni)
        handed = await self._wait(origin, timeouts.get("pool"))
        if handed is not None:
            return handed
        return await self._connect(origin, timeouts.get("connect"), sni)  # a slot was handed over

    def release(self, conn: H1Connection, *, reuse: bool) -> None:
        """The exchange on ``conn`` ended: keep it alive (``reuse`` and reusable) or close it; wake a waiter."""
        conn.active = False
        if not (reuse and conn.reusable):
            self._discard(conn)
            return
        while self._waiters:
            origin, waiter = self._waiters.popleft()
            if waiter.done():
                continue  # timed out or cancelled
            if origin == conn.origin:
                conn.active = True
                waiter.set_result(conn)
            else:  # the slot goes to a request for another origin
                self._close(conn)
                waiter.set_result(None)
            return
        now = asyncio.get_running_loop().time()
        conn.idle_since = now
        conn.in_pool = True
        stack = self._idle.setdefault(conn.origin, deque())
        stack.append(conn)
        self._idle_count += 1
        while self._expired(stack[0], now):  # the least recently freed: the first to expire
            self._evict(stack.popleft())

    def connection_closed(self, conn: H1Connection) -> None:
        """An idle connection's socket closed (the server hung up): it leaves the pool."""
        stack = self._idle.get(conn.origin)
        if stack is not None and conn.in_pool:
            stack.remove(conn)
            self._evict(conn)

    async def aclose(self) -> None:
        """Close every connection; requests still waiting fail with ConnectError."""
        for stack in self._idle.values():
            while stack:
                self._evict(stack.popleft())
        for conn in list(self._open):
            conn.close()  # its exchange fails and releases it
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(httpx2.ConnectError("the LLM client was closed"))

    # ------------------------------------------------------------------ internals

    def _take_idle(self, origin: Origin) -> H1Connection | None:
        stack = self._idle.get(origin)
        if not stack:
            return None
        now = asyncio.get_running_loop().time()
        while stack:
            conn = stack.pop()
            if conn.closed or self._expired(conn, now):
                self._evict(conn)
                continue
            conn.in_pool = False
            self._idle_count -= 1
            conn.active = True
            return conn
        return None

    def _expired(self, conn: H1Connection, now: float) -> bool:
        return now - conn.idle_since > self._expiry

    def _evict_idle(self) -> bool:
        """At the bound with idle connections to other origins: close the oldest of one, freeing its slot."""
        if not self._idle_count:
            return False
        for stack in self._idle.values():
            if stack:
                conn = stack.popleft()
                conn.in_pool = False
                self._idle_count -= 1
                self._close(conn)
                self._total -= 1
                return True
        return False

    def _evict(self, conn: H1Connection) -> None:
        """Close an idle connection already taken off its stack and free its slot."""
        conn.in_pool = False
        self._idle_count -= 1
        self._discard(conn)

    def _discard(self, conn: H1Connection) -> None:
        self._close(conn)
        self._free_slot()

    def _close(self, conn: H1Connection) -> None:
        self._open.discard(conn)
        if not conn.closed:
            conn.close()

    def _free_slot(self) -> None:
        """A slot is free: hand it to the first request still waiting, or give it back."""
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._total -= 1

    async def _wait(self, origin: Origin, timeout: float | None) -> H1Connection | None:
        """Wait for a connection (or a slot, None) to be handed over; PoolTimeout after ``timeout``."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[H1Connection | None] = loop.create_future()
        self._waiters.append((origin, waiter))
        timer = None if timeout is None else loop.call_later(timeout, _time_out, waiter, timeout)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()  # handed over as this request was cancelled: pass it on
                if handed is None:
                    self._free_slot()
                else:
                    self.release(handed, reuse=True)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    async def _connect(self, origin: Origin, timeout: float | None, sni: str | None) -> H1Connection:
        """Open a connection in a slot already counted (freed again if this fails or is cancelled)."""
        scheme, raw_host, port = origin
        host = raw_host.decode("ascii")
        loop = asyncio.get_running_loop()
        context = self._ssl if scheme == b"https" else None
        try:
            try:
                async with asyncio.timeout(timeout):
                    _, conn = await loop.create_connection(
                        lambda: H1Connection(loop, self, origin),
                        host,
                        port,
                        ssl=context,
                        server_hostname=(sni or host) if context is not None else None,
                    )
            except TimeoutError as exc:
                raise httpx2.ConnectTimeout(f"no connection to {host}:{port} within {timeout:g} s") from exc
            except OSError as exc:  # refused, unreachable, name not found, TLS handshake failed
                raise httpx2.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            self._free_slot()
            raise
        self._open.add(conn)
        return conn


def _time_out(waiter: asyncio.Future[H1Connection | None], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(httpx2.PoolTimeout(f"no free connection to the LLM endpoint within {timeout:g} s"))
