"""A real MCP server for the tests, written with the `mcp` SDK: over stdio (default) or streamable HTTP.

    python -m tests.support.mcp_server                 # stdio
    python -m tests.support.mcp_server --http [PORT]   # streamable HTTP on 127.0.0.1 (0: a free port); prints
                                                       # "listening on PORT" once it accepts connections

Tools: add (structured int), echo (text), point (structured object), fail (an isError result), die (the
process exits mid-call), slow + slow_started + cancellations (a slow call, and what the server saw of its
cancellation), grow (adds a tool and says the tool list changed), traceparent (the HTTP request's
header), pid. With MCP_TEST_LINGER=1 in its environment it keeps running after its stdin closes, until it is
killed (as a badly behaved server would).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import threading
import time

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

server = MCPServer("agentstream-test", log_level="WARNING")
_slow_started = asyncio.Event()
_cancelled = asyncio.Event()
_cancellations: list[str] = []


class Point(BaseModel):
    """A point and its double."""

    x: int
    y: int


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool(structured_output=False)
def echo(text: str) -> str:
    """Say the text back."""
    return f"echo: {text}"


@server.tool()
def point(x: int) -> Point:
    """The point (x, 2x)."""
    return Point(x=x, y=2 * x)


@server.tool()
def fail(message: str) -> str:
    """Answer with an error result carrying the message."""
    raise ToolError(message)


@server.tool()
async def die() -> str:
    """Exit the server's process in the middle of the call."""
    await asyncio.sleep(0.05)
    os._exit(3)


@server.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Sleep; a cancellation the server receives is recorded for `cancellations`."""
    _slow_started.set()
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _cancellations.append(str(ctx.request_id))
        _cancelled.set()
        raise
    return "slept"


@server.tool()
async def slow_started() -> str:
    """Wait until a `slow` call has begun."""
    await _slow_started.wait()
    return "started"


@server.tool()
async def cancellations() -> str:
    """Wait until the server has seen a `slow` call cancelled; the request ids it cancelled."""
    await _cancelled.wait()
    return ",".join(_cancellations)


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Add a tool called `name` and tell the client the tool list changed."""

    def added() -> str:
        return f"{name} here"

    server.add_tool(added, name=name, description=f"A tool added at run time: {name}.")
    await ctx.notify_tools_changed()  # 2026 clients: the subscriptions/listen stream
    with contextlib.suppress(Exception):
        await ctx.session.send_tool_list_changed()  # earlier clients: a notification
    return f"added {name}"


@server.tool()
def traceparent(ctx: Context) -> str:
    """The W3C traceparent header of the HTTP request carrying this call ("" over stdio or without one)."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    return str(headers.get("traceparent", "")) if headers is not None else ""


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


async def serve_http(port: int) -> None:
    """Serve streamable HTTP on 127.0.0.1:port and print `listening on PORT` once it listens."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    http = uvicorn.Server(config)
    task = asyncio.create_task(http.serve(sockets=[sock]))
    while not http.started and not task.done():
        await asyncio.sleep(0.01)
    print(f"listening on {sock.getsockname()[1]}", flush=True)
    await task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", nargs="?", const=0, type=int, default=None)
    args = parser.parse_args()
    if os.environ.get("MCP_TEST_LINGER"):  # a badly behaved server: outlives the end of its stdin until killed
        threading.Thread(target=time.sleep, args=(600,), daemon=False).start()
    if args.http is None:
        server.run()
    else:
        asyncio.run(serve_http(args.http))


if __name__ == "__main__":
    sys.exit(main())
