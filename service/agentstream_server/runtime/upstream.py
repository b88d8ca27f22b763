"""The httpx2 transport the openai client sends LLM calls through: small connection pools on asyncio sockets.

httpcore2's connection pool walks every connection it holds each time a request starts or a response
closes (and probes each idle one's socket), so with one pool sized for thousands of concurrent runs the
cost of starting and ending a stream grew with the number of streams. Here the connections are split
over pools of at most SHARD_CONNECTIONS each: a request goes to a pool with a free slot (the most recently
freed first, so kept-alive connections are reused), so every pool walk is short. Each pool runs on
netstream.AsyncioBackend (no per-read timers). Everything else is httpcore2's: HTTP/1.1, keep-alive, TLS.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator

import httpcore2
import httpx2

from agentstream_server.runtime.netstream import AsyncioBackend

SHARD_CONNECTIONS = 32
"""Connections per pool: the length of the pool's walk on every request start and response close."""

_ERRORS: tuple[tuple[type[Exception], type[httpx2.HTTPError]], ...] = (  # most specific first
    (httpcore2.ConnectTimeout, httpx2.ConnectTimeout),
    (httpcore2.ReadTimeout, httpx2.ReadTimeout),
    (httpcore2.WriteTimeout, httpx2.WriteTimeout),
    (httpcore2.PoolTimeout, httpx2.PoolTimeout),
    (httpcore2.TimeoutException, httpx2.TimeoutException),
    (httpcore2.ConnectError, httpx2.ConnectError),
    (httpcore2.ReadError, httpx2.ReadError),
    (httpcore2.WriteError, httpx2.WriteError),
    (httpcore2.NetworkError, httpx2.NetworkError),
    (httpcore2.ProxyError, httpx2.ProxyError),
    (httpcore2.UnsupportedProtocol, httpx2.UnsupportedProtocol),
    (httpcore2.LocalProtocolError, httpx2.LocalProtocolError),
    (httpcore2.RemoteProtocolError, httpx2.RemoteProtocolError),
    (httpcore2.ProtocolError, httpx2.ProtocolError),
)
"""httpcore2's exceptions as the httpx2 ones the openai SDK and runtime/llm.py expect (as httpx2's transport maps)."""


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """Raise httpcore2's exceptions as httpx2's (the most specific match), as httpx2's own transport does."""
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


class ShardedTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 to the LLM endpoint over several small httpcore2 pools (see the module docstring).

    ``max_connections`` bounds the connections over all pools; a request beyond it waits in a pool for a
    connection, as in one pool (until the client's pool timeout).
    """

    def __init__(
        self, *, max_connections: int, keepalive_expiry: float = 5.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        shards = max(1, -(-max_connections // SHARD_CONNECTIONS))
        self._per_pool = -(-max_connections // shards)
        context = ssl_context or httpx2.create_ssl_context()
        self._context = context
        self._keepalive_expiry = keepalive_expiry
        self._pools: list[httpcore2.AsyncConnectionPool | None] = [None] * shards  # created when first needed
        self._busy = [0] * shards
        self._free = list(range(shards - 1, -1, -1))  # pools with a free slot; the last one is used next
        self._overflow = 0

    def _pool(self, index: int) -> httpcore2.AsyncConnectionPool:
        pool = self._pools[index]
        if pool is None:
            pool = httpcore2.AsyncConnectionPool(
                ssl_context=self._context,
                max_connections=self._per_pool,
                max_keepalive_connections=self._per_pool,
                keepalive_expiry=self._keepalive_expiry,
                network_backend=_BACKEND,
            )
            self._pools[index] = pool
        return pool

    def _acquire(self) -> int:
        if self._free:
            index = self._free[-1]
        else:  # every slot taken: queue in one pool, as a single pool would
            index = self._overflow = (self._overflow + 1) % len(self._busy)
        self._busy[index] += 1
        if self._busy[index] == self._per_pool and self._free and self._free[-1] == index:
            self._free.pop()
        return index

    def _release(self, index: int) -> None:
        self._busy[index] -= 1
        if self._busy[index] == self._per_pool - 1:
            self._free.append(index)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send one request on a pool with a free connection slot; the slot is freed when the body closes."""
        assert isinstance(request.stream, httpx2.AsyncByteStream)
        core_request = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        index = self._acquire()
        try:
            with _httpx_errors():
                response = await self._pool(index).handle_async_request(core_request)
        except BaseException:
            self._release(index)
            raise
        return httpx2.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response, lambda: self._release(index)),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close every pool's connections."""
        for pool in self._pools:
            if pool is not None:
                await pool.aclose()


class _Body(httpx2.AsyncByteStream):
    """A response body from one pool; closing it frees the request's slot (once)."""

    def __init__(self, response: httpcore2.Response, release: Callable[[], None]) -> None:
        assert isinstance(response.stream, AsyncIterable)
        self._stream = response.stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        try:
            close = getattr(self._stream, "aclose", None)
            if close is not None:
                with _httpx_errors():
                    await close()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


_BACKEND = AsyncioBackend()
"""One backend for every pool (it holds no state)."""
