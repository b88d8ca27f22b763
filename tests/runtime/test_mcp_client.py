"""One session to a real MCP server, over stdio and over streamable HTTP: round trip, structured output, error
results, a server dying mid-call, a slow call cancelled by the caller, tools/list_changed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from agentstream_server.runtime.mcp_client import McpServer, McpUnavailable
from agentstream_server.runtime.mcp_config import McpServerConfig, McpServerUse
from agentstream_server.runtime.mcp_tools import McpToolset, result_text
from agentstream_server.runtime.tools import ToolFailure
from tests.runtime.mcp_fixtures import HttpMcpServer, http_mcp_server, stdio_config


@pytest.fixture(params=["stdio", "http"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, HttpMcpServer | None]]:
    """Which transport a test runs over; for HTTP, the server process."""
    if request.param == "stdio":
        yield "stdio", None
        return
    async with http_mcp_server() as http:
        yield "http", http


@pytest.fixture
async def server(transport: tuple[str, HttpMcpServer | None]) -> AsyncIterator[McpServer]:
    """An open session to the test server over the transport."""
    _, http = transport
    config: McpServerConfig = stdio_config() if http is None else http.config()
    changed = asyncio.Event()
    mcp = McpServer(config, on_tools_changed=changed.set)
    mcp.changed = changed  # type: ignore[attr-defined]
    assert await mcp.start() is None
    try:
        yield mcp
    finally:
        await mcp.aclose()


def toolset(server: McpServer, *names: str) -> McpToolset:
    return McpToolset(server, McpServerUse(server.name, frozenset(names) if names else None))


async def test_tools_are_listed_under_their_own_names_with_their_own_schemas(server: McpServer) -> None:
    tools = {tool.name: tool for tool in await toolset(server).list_tools()}
    assert {"add", "echo", "point", "fail", "slow", "grow"} <= set(tools)
    add = tools["add"]
    assert add.description == "Add two integers."
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert add.parameters["required"] == ["a", "b"]
    assert add.mcp_server == "test"


async def test_round_trip_text(server: McpServer) -> None:
    (echo,) = await toolset(server, "echo").list_tools()
    assert await echo.call({"text": "hi"}) == "echo: hi"


async def test_structured_output_becomes_json(server: McpServer) -> None:
    tools = {tool.name: tool for tool in await toolset(server, "add", "point").list_tools()}
    assert json.loads(await tools["add"].call({"a": 2, "b": 3})) == {"result": 5}
    assert json.loads(await tools["point"].call({"x": 4})) == {"x": 4, "y": 8}


async def test_error_result_is_a_tool_failure_with_its_text(server: McpServer) -> None:
    (fail,) = await toolset(server, "fail").list_tools()
    with pytest.raises(ToolFailure) as caught:
        await fail.call({"message": "the disk is full"})
    assert str(caught.value) == "Error executing tool fail: the disk is full"  # the server's text, as it is


async def test_invalid_arguments_are_an_error_result_not_a_crash(server: McpServer) -> None:
    (add,) = await toolset(server, "add").list_tools()
    with pytest.raises(ToolFailure):
        await add.call({"a": "not a number"})


async def test_server_dying_mid_call_is_an_error_result_then_the_session_is_reopened(
    server: McpServer, transport: tuple[str, HttpMcpServer | None]
) -> None:
    _, http = transport
    first_pid = (await server.call("pid", {})).structured_content
    with pytest.raises(ToolFailure) as caught:
        await server.call("die", {})
    assert "test" in str(caught.value)
    if http is not None:  # an HTTP server is someone else's process: it comes back on its own
        await http.stop()
        await http.start()
    async with asyncio.timeout(30):
        await server.wait_open()
    assert server.opens == 2
    result = await server.call("add", {"a": 1, "b": 1})
    assert result.structured_content == {"result": 2}
    if http is None:
        assert (await server.call("pid", {})).structured_content != first_pid  # a new process


async def test_slow_call_cancelled_by_the_caller_is_cancelled_on_the_server(server: McpServer) -> None:
    call = asyncio.create_task(server.call("slow", {"seconds": 60}))
    await server.call("slow_started", {})
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    async with asyncio.timeout(20):
        seen = await server.call("cancellations", {})  # returns once the server has seen the cancellation
    assert result_text(seen)  # the cancelled request's id, as the server saw it
    assert server.is_open  # cancelling one call leaves the session open
    assert (await server.call("add", {"a": 1, "b": 2})).structured_content == {"result": 3}


async def test_list_changed_refreshes_the_tool_list(server: McpServer) -> None:
    tools = toolset(server)
    assert "late" not in {tool.name for tool in await tools.list_tools()}
    await server.call("grow", {"name": "late"})
    async with asyncio.timeout(20):
        await server.changed.wait()  # type: ignore[attr-defined]
    late = {tool.name: tool for tool in await tools.list_tools()}["late"]
    assert late.description == "A tool added at run time: late."
    assert json.loads(await late.call({})) == {"result": "late here"}


async def test_a_server_that_cannot_start_names_itself() -> None:
    config = McpServerConfig(name="broken", command="/nonexistent/mcp-server", startup_timeout_s=5)
    server = McpServer(config)
    try:
        failure = await server.start()
        assert failure is not None
        with pytest.raises(McpUnavailable, match="'broken' is not available"):
            await server.call("anything", {})
    finally:
        await server.aclose()


async def test_an_http_server_that_is_not_there_fails_to_start() -> None:
    server = McpServer(McpServerConfig(name="gone", url="http://127.0.0.1:9/mcp", startup_timeout_s=5))
    try:
        assert await server.start() is not None
    finally:
        await server.aclose()
