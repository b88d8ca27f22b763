"""Runs through the gRPC server whose agent uses a real MCP server: the scripted LLM calls its tools."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.runtime.mcp_servers import McpStartError
from tests.conftest import StartServer
from tests.runtime.mcp_fixtures import ROOT, http_mcp_server
from tests.service.helpers import collect, request, terminal_of
from tests.support.fakellm import FakeLLM, Text, ToolCalls

STDIO = f"""
[mcp_servers.calc]
command = {json.dumps(sys.executable)}
args = ["-m", "tests.support.mcp_server"]
cwd = {json.dumps(str(ROOT))}
"""


def agents_toml(servers: str, uses: str = '["calc"]', tools: str = '["calculator"]') -> str:
    return f"""
{servers}
[agents.assistant]
instructions = "Use the tools."
tools = {tools}
mcp_servers = {uses}
"""


@pytest.fixture
def agents_file(tmp_path: Path) -> Path:
    path = tmp_path / "agents.toml"
    write(path, agents_toml(STDIO))
    return path


def write(path: Path, text: str) -> None:
    path.write_text(text)


MISSING = '[mcp_servers.calc]\ncommand = "/nonexistent/mcp-server"\nstartup_timeout = 5\n'


@pytest.fixture
async def stub(start: StartServer, store: str) -> AsyncIterator[rpb_grpc.RunnerServiceStub]:
    server = await start(store=store)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield rpb_grpc.RunnerServiceStub(channel)


def results(messages: list[pb.Message]) -> dict[str, pb.ToolResultPayload]:
    return {m.tool_result.tool_name: m.tool_result for m in messages if m.WhichOneof("payload") == "tool_result"}


async def test_the_model_calls_mcp_tools_and_results_name_the_server(
    stub: rpb_grpc.RunnerServiceStub, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        ToolCalls([("add", {"a": 2, "b": 3}), ("fail", {"message": "no disk"}), ("calculator", {"expression": "1+1"})]),
        Text(["It is 5."]),
    )
    messages = await collect(stub, request("2 + 3?"))
    assert terminal_of(messages).success
    by_name = results(messages)
    assert (by_name["add"].content, by_name["add"].is_error, by_name["add"].mcp_server) == (
        '{"result":5}',
        False,
        "calc",
    )
    assert by_name["fail"].is_error and by_name["fail"].mcp_server == "calc"
    assert by_name["fail"].content == "Error executing tool fail: no disk"
    assert by_name["calculator"].mcp_server == ""  # a built-in tool names no server
    offered = {tool["function"]["name"]: tool["function"] for tool in fake_llm.requests[0]["tools"]}
    assert {"calculator", "add", "echo", "slow"} <= set(offered)
    assert offered["add"]["parameters"]["properties"]["b"]["type"] == "integer"
    told = [m["content"] for m in fake_llm.requests[1]["messages"] if m["role"] == "tool"]
    assert told == ['{"result":5}', "Error executing tool fail: no disk", "2"]


async def test_an_mcp_server_dying_mid_call_is_a_tool_error_and_the_run_goes_on(
    stub: rpb_grpc.RunnerServiceStub, fake_llm: FakeLLM
) -> None:
    fake_llm.script(ToolCalls([("die", {})]), Text(["The server died."]))
    messages = await collect(stub, request("die"))
    assert terminal_of(messages).success
    died = results(messages)["die"]
    assert died.is_error and died.mcp_server == "calc" and "'calc'" in died.content


async def test_cancelling_a_run_cancels_its_mcp_call_on_the_server(start: StartServer, fake_llm: FakeLLM) -> None:
    server = await start()
    fake_llm.script(ToolCalls([("slow", {"seconds": 60})]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = rpb_grpc.RunnerServiceStub(channel).StreamingRun(request("slow"))
        async for message in call:
            if message.WhichOneof("payload") == "tool":
                break
        calc = server.mcp.servers["calc"]
        await calc.call("slow_started", {})
        call.cancel()
    async with asyncio.timeout(20):
        seen = await calc.call("cancellations", {})  # returns once the server has seen the call cancelled
    assert seen.content and not seen.is_error


async def test_streamable_http_server_round_trip(start: StartServer, fake_llm: FakeLLM, agents_file: Path) -> None:
    async with http_mcp_server() as http:
        write(agents_file, agents_toml(f'[mcp_servers.web]\nurl = "{http.url}"\n', uses='["web"]'))
        server = await start()
        fake_llm.script(ToolCalls([("echo", {"text": "over http"})]), Text(["ok"]))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            messages = await collect(rpb_grpc.RunnerServiceStub(channel), request("echo"))
        await server.shutdown(0)
    echoed = results(messages)["echo"]
    assert (echoed.content, echoed.is_error, echoed.mcp_server) == ("echo: over http", False, "web")


async def test_a_tool_filter_offers_only_the_tools_it_names(
    start: StartServer, fake_llm: FakeLLM, agents_file: Path
) -> None:
    write(agents_file, agents_toml(STDIO, uses='[{ server = "calc", tools = ["echo"] }]'))
    server = await start()
    fake_llm.script(Text(["hi"]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await collect(rpb_grpc.RunnerServiceStub(channel), request("hi"))
    assert [tool["function"]["name"] for tool in fake_llm.requests[0]["tools"]] == ["calculator", "echo"]


async def test_a_tool_filter_naming_a_tool_the_server_lacks_is_a_start_up_error(
    start: StartServer, agents_file: Path
) -> None:
    write(agents_file, agents_toml(STDIO, uses='[{ server = "calc", tools = ["echo", "nope"] }]'))
    with pytest.raises(McpStartError, match=r"the tools filter of MCP server 'calc' names \['nope'\]"):
        await start()


async def test_two_tools_with_one_name_is_a_start_up_error_naming_both(start: StartServer, agents_file: Path) -> None:
    write(agents_file, agents_toml(STDIO, tools='["tests.support.tools:add"]'))
    with pytest.raises(McpStartError, match=r"two tools are named 'add': its tool 'add' and tool 'add' of MCP server"):
        await start()


async def test_a_server_that_cannot_start_is_a_start_up_error_naming_it(start: StartServer, agents_file: Path) -> None:
    write(agents_file, agents_toml(MISSING))
    with pytest.raises(McpStartError, match=r"MCP server 'calc' \(command '/nonexistent/mcp-server'\) did not start"):
        await start()


async def test_lazy_mode_starts_without_the_server_and_the_run_goes_on(
    start: StartServer, fake_llm: FakeLLM, agents_file: Path
) -> None:
    write(agents_file, agents_toml(MISSING))
    server = await start(mcp_lazy=True)
    fake_llm.script(Text(["no tools from it"]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        messages = await collect(rpb_grpc.RunnerServiceStub(channel), request("hi"))
    assert terminal_of(messages).success
    assert [tool["function"]["name"] for tool in fake_llm.requests[0]["tools"]] == ["calculator"]


async def test_lazy_mode_opens_the_server_on_first_use(start: StartServer, fake_llm: FakeLLM) -> None:
    server = await start(mcp_lazy=True)
    assert not server.mcp.servers["calc"].is_open
    fake_llm.script(ToolCalls([("add", {"a": 1, "b": 2})]), Text(["3"]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        messages = await collect(rpb_grpc.RunnerServiceStub(channel), request("1 + 2"))
    assert results(messages)["add"].content == '{"result":3}'
    assert server.mcp.servers["calc"].is_open
