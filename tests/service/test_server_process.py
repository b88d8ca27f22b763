"""The server as a process: listening line, health, reflection, SIGTERM with live runs, exit 0."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.transport.server import RunningServer
from tests.service.helpers import request, terminal_of
from tests.service.test_run_outcomes import read_rest
from tests.support.fakellm import FakeLLM, Stall, ToolCalls

ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    """`python -m agentstream_server serve --port 0` as a child process."""

    def __init__(self, process: asyncio.subprocess.Process, target: str) -> None:
        self.process = process
        self.target = target


async def spawn_server(fake_llm: FakeLLM, *args: str) -> ServerProcess:
    env = {**os.environ, "OPENAI_BASE_URL": fake_llm.base_url, "OPENAI_API_KEY": "test-key"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentstream_server",
        "serve",
        "--port",
        "0",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    async with asyncio.timeout(20):
        while True:
            line = (await process.stdout.readline()).decode()
            assert line, "server exited before listening"
            match = re.search(r"listening on (\S+:\d+)", line)
            if match:
                return ServerProcess(process, match.group(1))


@pytest.fixture
async def server_process(fake_llm: FakeLLM) -> AsyncIterator[ServerProcess]:
    proc = await spawn_server(fake_llm, "--grace", "0.5")
    yield proc
    if proc.process.returncode is None:
        proc.process.kill()
        await proc.process.wait()


async def test_sigterm_with_a_live_run_cancels_it_in_band_then_exits_zero(
    fake_llm: FakeLLM, server_process: ServerProcess
) -> None:
    fake_llm.script(Stall(tokens=["Hel"]))
    async with grpc.aio.insecure_channel(server_process.target) as channel:
        call = rpb_grpc.RunnerServiceStub(channel).StreamingRun(request("hi"))
        await call.read()
        server_process.process.send_signal(signal.SIGTERM)
        messages = await read_rest(call)
    task = terminal_of(messages)
    assert task.status == pb.TASK_STATUS_CANCELLED
    async with asyncio.timeout(15):
        assert await server_process.process.wait() == 0
    assert await fake_llm.wait_closed(1.0)


async def test_health_serves_and_reflection_lists_the_runner_service(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "agentstream.v1.RunnerService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name async for r in responses for s in r.list_services_response.service}
    assert "agentstream.v1.RunnerService" in names
    assert "grpc.health.v1.Health" in names


async def test_health_is_not_serving_once_shutdown_starts(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service="agentstream.v1.RunnerService"))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        shutdown = asyncio.create_task(server.shutdown(0))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        await shutdown


STUCK_AGENTS_TOML = """
[agents.stuck]
tools = ["tests.support.tools:block_forever"]
"""


async def start_a_run_stuck_in_a_sync_tool(
    fake_llm: FakeLLM, tmp_path: Path, *args: str
) -> tuple[ServerProcess, grpc.aio.Channel, grpc.aio.UnaryStreamCall]:  # type: ignore[type-arg]
    """A server process whose one run is inside block_forever, a sync tool that never returns."""
    agents = tmp_path / "stuck.toml"
    agents.write_text(STUCK_AGENTS_TOML)
    fake_llm.script(ToolCalls(calls=[("block_forever", {"label": "x"})]))
    server = await spawn_server(fake_llm, "--agents", str(agents), *args)
    channel = grpc.aio.insecure_channel(server.target)
    call = rpb_grpc.RunnerServiceStub(channel).StreamingRun(request("hang", agent="stuck"))
    while (message := await call.read()).topic != "tool_call":  # the tool starts as its call is announced
        assert message is not grpc.aio.EOF
    return server, channel, call


async def test_regression_sigterm_exits_zero_with_a_sync_tool_stuck_in_its_thread(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    server, channel, call = await start_a_run_stuck_in_a_sync_tool(fake_llm, tmp_path, "--grace", "0.5")
    try:
        server.process.send_signal(signal.SIGTERM)
        task = terminal_of(await read_rest(call))
        assert task.status == pb.TASK_STATUS_CANCELLED
        async with asyncio.timeout(20):
            assert await server.process.wait() == 0  # before: the stuck thread was joined at exit, forever
    finally:
        await channel.close()
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()


async def test_regression_a_second_sigterm_during_shutdown_exits_at_once(fake_llm: FakeLLM, tmp_path: Path) -> None:
    server, channel, _ = await start_a_run_stuck_in_a_sync_tool(fake_llm, tmp_path, "--grace", "120")
    assert server.process.stdout is not None
    try:
        server.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            while b"shutting down" not in await server.process.stdout.readline():
                pass
            server.process.send_signal(signal.SIGTERM)  # the run would have 120 s left to finish
            rest = (await server.process.stdout.read()).decode()
            assert await server.process.wait() == 128 + signal.SIGTERM
        assert "SIGTERM during shutdown: exiting now" in rest
    finally:
        await channel.close()
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()
