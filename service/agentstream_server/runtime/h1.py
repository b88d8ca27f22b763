"""The httpx2 transport the openai client sends LLM calls through: HTTP/1.1 on asyncio Protocols, parsed by llhttp.

Per token, httpx2's default stack (httpcore2's pool and h11's pure-Python parser) cost more CPU than the rest
of the server. Here the request is written as one buffer, the response is parsed in C
(``httptools.HttpResponseParser``, runtime/h1conn.py) as bytes arrive, and the body is handed to the reader
as the parser decodes it: one item per parser body callback, or everything already buffered at once. The
connection goes back to its pool (runtime/h1pool.py) the moment the parser sees the end of the response.
Closing a body before its end, a failure or a cancellation closes the connection (never reused).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx2

from agentstream_server.runtime.h1conn import H1Connection
from agentstream_server.runtime.h1pool import ConnectionPool

_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_HTTP_11 = b"HTTP/1.1"


class H1Transport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 to the LLM endpoint, pooled per origin under one ``max_connections`` bound.

    Timeouts come from each request (``request.extensions["timeout"]``, set by the httpx2 client): ``pool``
    to wait for a connection, ``connect``, ``write``, and ``read`` (no bytes for that long while waiting).
    Idle connections are kept ``keepalive_expiry`` seconds. https uses ``ssl_context`` (httpx2's default).
    """

    def __init__(
        self, *, max_connections: int, keepalive_expiry: float = 5.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.pool = ConnectionPool(
            max_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
            ssl_context=ssl_context or httpx2.create_ssl_context(),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` and return its response once the head is parsed; the body streams as it arrives."""
        assert isinstance(request.stream, httpx2.AsyncByteStream)
        url = request.url
        scheme = url.raw_scheme
        default_port = _DEFAULT_PORTS.get(scheme)
        if default_port is None:
            raise httpx2.UnsupportedProtocol(f"Request URL has an unsupported protocol '{scheme.decode()}://'.")
        if not url.raw_host:
            raise httpx2.UnsupportedProtocol("Request URL has no host.")
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        head, chunked, close = _head(request)
        sni = request.extensions.get("sni_hostname")
        pool = self.pool
        conn = await pool.acquire((scheme, url.raw_host, url.port or default_port), timeouts, sni)
        try:
            conn.begin(head_only=request.method == "HEAD", close=close)
            await _send(conn, head, request.stream, chunked, timeouts.get("write"))
            read_timeout = timeouts.get("read")
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(read_timeout)
        except BaseException:
            pool.release(conn, reuse=False)
            raise
        return httpx2.Response(
            status_code=conn.status,
            headers=conn.headers,
            stream=_Body(conn, pool, read_timeout),
            extensions={"http_version": _HTTP_11, "reason_phrase": conn.reason.strip()},
        )

    async def aclose(self) -> None:
        """Close every connection."""
        await self.pool.aclose()


def _head(request: httpx2.Request) -> tuple[bytes, bool, bool]:
    """The request line and headers as sent; whether the body goes chunked; whether the request says close."""
    headers = request.headers.raw
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path or b"/")]
    chunked = close = False
    for name, value in headers:
        lines.append(b"%s: %s\r\n" % (name, value))
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            chunked = value.lower() == b"chunked"
        elif lowered == b"connection":
            close = value.lower() == b"close"
    lines.append(b"\r\n")
    head = b"".join(lines)
    if head.count(b"\n") != len(lines) or head.count(b"\r") != len(lines):
        raise httpx2.LocalProtocolError("a request header, method or target holds a line break")
    return head, chunked, close


async def _send(
    conn: H1Connection, head: bytes, body: httpx2.AsyncByteStream, chunked: bool, timeout: float | None
) -> None:
    """Write the head and the body (the first part of the body in the same write as the head)."""
    pending = head
    async for part in body:
        if not part:
            continue
        if chunked:
            part = b"%x\r\n%s\r\n" % (len(part), part)
        conn.write(pending + part if pending else part)
        pending = b""
        await conn.drain(timeout)
    if chunked:
        pending += b"0\r\n\r\n"
    if pending:
        conn.write(pending)
        await conn.drain(timeout)


class _Body(httpx2.AsyncByteStream):
    """A response body as it arrives; the connection is released once: at the end, on a failure, or on close."""

    def __init__(self, conn: H1Connection, pool: ConnectionPool, read_timeout: float | None) -> None:
        self._conn: H1Connection | None = conn
        self._pool = pool
        self._timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            raise httpx2.StreamClosed()
        try:
            while True:
                if conn.chunks:
                    yield conn.take()
                elif conn.complete:
                    self._release()  # back to the pool now: no read after the end
                    return
                elif conn.error is not None:
                    raise conn.error
                else:
                    await conn.wait(self._timeout)
        except BaseException:  # failed, cancelled, or closed before the end (GeneratorExit)
            self._release()
            raise

    async def aclose(self) -> None:
        """Release the connection: kept alive only if the parser saw the whole response, else closed."""
        self._release()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn, reuse=True)  # the pool keeps it only if it is reusable
