"""One client session to one MCP server (the official `mcp` SDK): open, reopen after failures with backoff,
follow its tool list, call its tools, close.

The session lives in a task of its own (the SDK's transports are anyio task groups, which must be entered and
left by one task); calls come from the runs' tool tasks. Cancelling a call abandons its request, which makes
the SDK send the MCP cancellation (`notifications/cancelled`, or on a 2026 HTTP connection the abort of the
request's POST).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import httpx2
import mcp_types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from agentstream_server.observability import spans
from agentstream_server.runtime.mcp_config import McpServerConfig
from agentstream_server.runtime.tools import ToolFailure

logger = logging.getLogger("agentstream.mcp")

BACKOFF_INITIAL_S = 0.25
BACKOFF_MAX_S = 30.0
MAX_TOOL_PAGES = 100
"""tools/list pages read at most: a server whose cursor never ends cannot hang the refresh."""
_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)
_TRANSPORT_ERRORS = (
    OSError,
    EOFError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    httpx2.TransportError,
)


class McpUnavailable(ToolFailure):
    """The MCP server cannot be reached now (not started yet, or failed and waiting to be reopened)."""


class McpServer:
    """The process's one session to an MCP server. Not started until start() or the first call (lazy mode)."""

    def __init__(self, config: McpServerConfig, *, on_tools_changed: Callable[[], None] | None = None) -> None:
        self.config = config
        self._on_tools_changed = on_tools_changed
        self._tools: tuple[mcp_types.Tool, ...] = ()
        self._client: Client | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._attempt: asyncio.Future[BaseException | None] | None = None
        self._opened = asyncio.Event()
        self._broken = asyncio.Event()
        self._closing = asyncio.Event()
        self._refresh = asyncio.Event()
        self._last_error = "not started yet"
        self._retry_at = 0.0
        self.opens = 0
        """Sessions opened so far (the first, then one per reopening)."""

    @property
    def name(self) -> str:
        """The server's name in the agents file."""
        return self.config.name

    @property
    def tools(self) -> tuple[mcp_types.Tool, ...]:
        """The server's tools as last listed (empty until the first session is open)."""
        return self._tools

    @property
    def is_open(self) -> bool:
        """True while a session is open."""
        return self._client is not None and not self._broken.is_set()

    async def start(self) -> BaseException | None:
        """Start the session (once) and wait for the current attempt to open it; its failure, if it failed."""
        if self._supervisor is None:
            self._attempt = asyncio.get_running_loop().create_future()
            self._supervisor = asyncio.create_task(self._supervise(), name=f"mcp-server-{self.name}")
        assert self._attempt is not None
        return await asyncio.shield(self._attempt)

    async def wait_open(self) -> None:
        """Wait until a session is open (after a start or a failure)."""
        if self._supervisor is None:
            await self.start()
        await self._opened.wait()

    async def call(self, tool: str, arguments: Mapping[str, Any]) -> mcp_types.CallToolResult:
        """Call a tool; a transport failure raises ToolFailure (and the session is reopened), so does a
        JSON-RPC error. An MCP error result (isError) is returned as it is."""
        client = await self._session()
        try:
            # A CLIENT span under the execute_tool span; the mcp SDK posts a request in the caller's context, so
            # the HTTP request hook (_with_trace) sends this span's traceparent to an HTTP server.
            with spans.mcp_call("tools/call", self.name, tool):
                return await client.call_tool(tool, dict(arguments))
        except MCPError as exc:
            if exc.code == mcp_types.CONNECTION_CLOSED:
                self._fail(f"the connection closed during a call of {tool}")
                raise ToolFailure(
                    f"MCP server {self.name!r} closed the connection during the call (it may have stopped); "
                    "it is being reopened"
                ) from None
            raise ToolFailure(f"MCP server {self.name!r} refused the call of {tool}: {exc.message}") from None
        except _TRANSPORT_ERRORS as exc:
            self._fail(f"{type(exc).__name__}: {exc}")
            raise ToolFailure(
                f"MCP server {self.name!r} failed during the call ({type(exc).__name__}: {exc}); it is being reopened"
            ) from None

    async def aclose(self) -> None:
        """Close the session (a stdio server's process is stopped); idempotent."""
        self._closing.set()
        self._broken.set()
        if self._supervisor is not None:
            if self._client is None:
                self._supervisor.cancel()  # opening (up to startup_timeout) or backing off: stop at once
            await asyncio.wait([self._supervisor])
        if self._attempt is not None and not self._attempt.done():
            self._attempt.set_result(RuntimeError(f"MCP server {self.name!r} was closed"))

    async def _session(self) -> Client:
        if self._supervisor is None:  # lazy: the first call opens it
            await self.start()
        elif not self.is_open and self._attempt is not None and not self._attempt.done():
            await asyncio.shield(self._attempt)  # an attempt to (re)open it is under way: its outcome decides
        client = self._client
        if client is None or self._broken.is_set():
            wait = max(0.0, self._retry_at - time.monotonic())
            raise McpUnavailable(
                f"MCP server {self.name!r} is not available ({self._last_error}); "
                f"the next attempt to open it is in {wait:.1f} s"
            )
        return client

    def _fail(self, reason: str) -> None:
        if not self._broken.is_set():
            logger.warning("MCP server %r failed: %s; reopening it", self.name, reason)
            self._last_error = reason
            self._opened.clear()
            self._broken.set()

    async def _supervise(self) -> None:
        delay = BACKOFF_INITIAL_S
        while not self._closing.is_set():
            if self._attempt is None or self._attempt.done():
                self._attempt = asyncio.get_running_loop().create_future()
            attempt = self._attempt
            self._broken.clear()
            failure: BaseException | None = None
            try:
                async with contextlib.AsyncExitStack() as stack:
                    async with asyncio.timeout(self.config.startup_timeout_s):
                        client = await self._open(stack)
                    delay = BACKOFF_INITIAL_S
                    self.opens += 1
                    self._client = client
                    self._opened.set()
                    attempt.set_result(None)
                    logger.info(
                        "MCP server %r: open (%s), %d tools", self.name, client.protocol_version, len(self._tools)
                    )
                    await self._serve(client)
            except Exception as exc:  # a failed open, or a transport that broke under the session
                failure = exc
            finally:
                self._client = None
                self._opened.clear()
            if not attempt.done():  # the open itself failed
                self._last_error = describe_failure(failure, self.config.startup_timeout_s)
                logger.warning(
                    "MCP server %r (%s) did not open: %s", self.name, self.config.description, self._last_error
                )
                attempt.set_result(failure or RuntimeError(self._last_error))
            elif failure is not None and not self._closing.is_set():
                self._fail(describe_failure(failure, self.config.startup_timeout_s))
            if self._closing.is_set():
                break
            self._retry_at = time.monotonic() + delay
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closing.wait()
            delay = min(delay * 2, BACKOFF_MAX_S)
        if self._attempt is not None and not self._attempt.done():
            self._attempt.set_result(RuntimeError("closed"))

    async def _open(self, stack: contextlib.AsyncExitStack) -> Client:
        config = self.config
        server: StdioServerParameters | Any
        if config.url is not None:
            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers=dict(config.headers), timeout=_HTTP_TIMEOUT, event_hooks={"request": [_with_trace]}
                )
            )
            server = streamable_http_client(config.url, http_client=http)
        else:
            assert config.command is not None
            server = StdioServerParameters(
                command=config.command, args=list(config.args), env=dict(config.env) or None, cwd=config.cwd
            )
        client = await stack.enter_async_context(Client(server, message_handler=self._on_message, cache=None))
        self._tools = await self._list_tools(client)
        return client

    async def _serve(self, client: Client) -> None:
        """Follow the tool list until the session breaks or closes."""
        async with asyncio.TaskGroup() as group:
            listener = group.create_task(self._listen(client))
            refresher = group.create_task(self._refresher(client))
            await self._broken.wait()
            listener.cancel()
            refresher.cancel()

    async def _listen(self, client: Client) -> None:
        """On a 2026 connection, list_changed arrives on a subscriptions/listen stream; before, as notifications."""
        capability = client.server_capabilities.tools
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS or capability is None or not capability.list_changed:
            return
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _ in subscription:
                    self._refresh.set()
        except (ListenNotSupportedError, MCPError) as exc:
            logger.info("MCP server %r: no tools/list_changed subscription (%s)", self.name, exc)
            return
        except Exception as exc:  # SubscriptionLost, a transport failure: the session is gone
            self._fail(f"the tools/list_changed subscription was lost ({type(exc).__name__}: {exc})")
            return
        if not self._closing.is_set():
            self._fail("the server closed the tools/list_changed subscription")

    async def _refresher(self, client: Client) -> None:
        while True:
            await self._refresh.wait()
            self._refresh.clear()
            try:
                self._tools = await self._list_tools(client)
            except MCPError as exc:
                logger.warning("MCP server %r: cannot refresh its tool list: %s", self.name, exc.message)
                continue
            except _TRANSPORT_ERRORS as exc:
                self._fail(f"refreshing the tool list failed ({type(exc).__name__}: {exc})")
                return
            logger.info("MCP server %r: tool list changed, %d tools", self.name, len(self._tools))
            if self._on_tools_changed is not None:
                self._on_tools_changed()

    async def _list_tools(self, client: Client) -> tuple[mcp_types.Tool, ...]:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tuple(tools)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._refresh.set()
        elif isinstance(message, Exception):
            logger.debug("MCP server %r: transport reported %r", self.name, message)


def describe_failure(exc: BaseException | None, timeout_s: float) -> str:
    """One readable line for a failure, looking inside the exception groups anyio raises."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if exc is None:
        return "the session ended"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s (startup_timeout)"
    if isinstance(exc, MCPError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _with_trace(request: httpx2.Request) -> None:
    """Send the current span's W3C trace context with a request to an MCP server over HTTP (if tracing is on)."""
    spans.inject_headers(request.headers)
