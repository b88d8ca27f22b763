"""Redis trouble: refused start-up with a clear message; lost mid-run fails the run in-band and health follows."""

from __future__ import annotations

import asyncio
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentstream import Client, StreamingMode, TaskMessage, TaskStatus
from tests.conftest import StartServer
from tests.support.fakellm import FakeLLM, Stall
from tests.support.redis_server import free_port, redis_server


async def test_an_unreachable_redis_at_start_up_refuses_to_start_naming_it() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentstream_server", "serve", "--port", "0", "--store", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 1
    assert f"cannot reach Redis at {url}" in out.decode()


async def test_losing_redis_mid_run_fails_the_run_in_band_and_turns_health_not_serving(
    fake_llm: FakeLLM, start: StartServer
) -> None:
    with redis_server() as redis:
        server = await start(store=redis.url, lease_s=0.3)
        fake_llm.script(Stall(["Hel"]))
        target = f"127.0.0.1:{server.port}"
        async with Client(target) as client, grpc.aio.insecure_channel(target) as channel:
            stream = client.streaming_run("hi", streaming_mode=StreamingMode.CHUNK)
            await anext(stream)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            redis.stop()
            async with asyncio.timeout(10):
                rest = [m async for m in stream]
                assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
    terminal = rest[-1]
    assert isinstance(terminal, TaskMessage)
    assert terminal.payload.status == TaskStatus.FAILED
    assert terminal.payload.error is not None
    assert terminal.payload.error.reason == "RUN_STORE_UNAVAILABLE"
    assert "lost the run store" in terminal.payload.msg
    assert await fake_llm.wait_closed(1.0)


async def test_health_turns_serving_again_once_redis_is_back(start: StartServer) -> None:
    with redis_server() as redis:
        port = int(redis.url.rsplit(":", 1)[1].split("/")[0])
        server = await start(store=redis.url, lease_s=0.3)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            redis.stop()
            async with asyncio.timeout(10):
                assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            with redis_server(port):
                async with asyncio.timeout(10):
                    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()
