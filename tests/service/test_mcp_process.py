"""The server as a process with a stdio MCP server: SIGTERM leaves no MCP server process behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import grpc

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from tests.runtime.mcp_fixtures import ROOT
from tests.service.helpers import request, terminal_of
from tests.service.test_run_outcomes import read_rest
from tests.service.test_server_process import spawn_server
from tests.support.fakellm import FakeLLM, ToolCalls


def children(pid: int) -> set[int]:
    """The live child processes of pid (from /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return {child for child in found if alive(child)}


def alive(pid: int) -> bool:
    """True while pid is a process that has not exited (a zombie has)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def test_sigterm_with_an_mcp_call_in_flight_stops_the_mcp_server_process(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    agents = tmp_path / "agents.toml"
    agents.write_text(f"""
[mcp_servers.calc]
command = {json.dumps(sys.executable)}
args = ["-m", "tests.support.mcp_server"]
cwd = {json.dumps(str(ROOT))}
env = {{ MCP_TEST_LINGER = "1" }}  # it would outlive its closed stdin: only a kill stops it

[agents.assistant]
mcp_servers = ["calc"]
""")
    fake_llm.script(ToolCalls([("slow", {"seconds": 600})]))
    server = await spawn_server(fake_llm, "--agents", str(agents), "--grace", "0.5")
    try:
        mcp_processes = children(server.process.pid)
        assert len(mcp_processes) == 1, "the MCP server runs as the server's child, opened at start-up"
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = rpb_grpc.RunnerServiceStub(channel).StreamingRun(request("slow"))
            while (message := await call.read()).topic != "tool_call":  # the MCP call starts as it is announced
                assert message is not grpc.aio.EOF
            server.process.send_signal(signal.SIGTERM)
            task = terminal_of(await read_rest(call))
        assert task.status == pb.TASK_STATUS_CANCELLED
        async with asyncio.timeout(30):
            assert await server.process.wait() == 0
        assert not {pid for pid in mcp_processes if alive(pid)}, "an MCP server process outlived the server"
    finally:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()
        for pid in mcp_processes if "mcp_processes" in locals() else ():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
