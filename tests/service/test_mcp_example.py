"""The shipped example (examples/mcp): its agents file starts its MCP server, and the offline demo model's
calculator call reaches it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
import pytest

from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.config import Settings
from agentstream_server.transport.server import start_server
from tests.runtime.mcp_fixtures import ROOT
from tests.service.helpers import collect, request, terminal_of


async def test_the_example_answers_through_its_mcp_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    settings = Settings(port=0, agents_file=ROOT / "examples" / "mcp" / "agents.toml", demo_token_delay_s=0)
    server = await start_server(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            messages = await collect(rpb_grpc.RunnerServiceStub(channel), request("What is 12 * (3 + 4)?"))
    finally:
        await server.shutdown(0)
    (result,) = [m.tool_result for m in messages if m.WhichOneof("payload") == "tool_result"]
    assert (result.tool_name, result.content, result.mcp_server, result.is_error) == (
        "calculator",
        "84",
        "maths",
        False,
    )
    assert "84" in terminal_of(messages).answer
