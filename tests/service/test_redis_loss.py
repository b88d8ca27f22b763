"""Redis trouble: refused start-up with a clear message; lost mid-run fails the run in-band and health follows."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentstream import Client, StreamingMode, TaskMessage, TaskStatus
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from tests.conftest import StartServer
from tests.service.helpers import collect, error_details, request
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


PASSWORD = "s3cret-pw"


def assert_store_unavailable(error: grpc.aio.AioRpcError) -> None:
    """UNAVAILABLE with reason RUN_STORE_UNAVAILABLE, naming Redis without its password."""
    assert error.code() == grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())
    info, _ = error_details(error)
    assert info.reason == "RUN_STORE_UNAVAILABLE"
    assert "the run store (Redis at redis://***@127.0.0.1:" in error.details()
    assert PASSWORD not in error.details()


async def test_regression_redis_down_every_rpc_is_unavailable_not_unknown(
    fake_llm: FakeLLM, start: StartServer
) -> None:
    with redis_server(password=PASSWORD) as redis:
        a, b = await start(store=redis.url), await start(store=redis.url)
        fake_llm.script(Stall(["Hel"]))
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as on_a,
            grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as on_b,
        ):
            stub_a, stub_b = rpb_grpc.RunnerServiceStub(on_a), rpb_grpc.RunnerServiceStub(on_b)
            run_id = (await stub_a.StartRun(rpb.StartRunRequest(input="hi"))).run_id
            follower = stub_b.SubscribeRun(
                rpb.SubscribeRunRequest(run_id=run_id, streaming_mode=rpb.STREAMING_MODE_ALL)
            )
            await follower.read()
            redis.stop()
            calls: list[Awaitable[object]] = [
                stub_a.StartRun(rpb.StartRunRequest(input="hi")),
                collect(stub_a, request()),
                stub_b.GetRun(rpb.GetRunRequest(run_id=run_id)),
                stub_b.CancelRun(rpb.CancelRunRequest(run_id=run_id)),
                stub_b.SubscribeRun(rpb.SubscribeRunRequest(run_id=run_id)).read(),
                stub_a.GetRun(rpb.GetRunRequest(run_id="not-here")),
            ]
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
                assert_store_unavailable(caught.value)


async def test_regression_redis_down_follower_on_another_replica_is_unavailable_not_unknown(
    fake_llm: FakeLLM, start: StartServer
) -> None:
    with redis_server(password=PASSWORD) as redis:
        a, b = await start(store=redis.url), await start(store=redis.url)
        fake_llm.script(Stall(["Hel"]))
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as on_a,
            grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as on_b,
        ):
            run_id = (await rpb_grpc.RunnerServiceStub(on_a).StartRun(rpb.StartRunRequest(input="hi"))).run_id
            follower = rpb_grpc.RunnerServiceStub(on_b).SubscribeRun(
                rpb.SubscribeRunRequest(run_id=run_id, streaming_mode=rpb.STREAMING_MODE_ALL)
            )
            await follower.read()
            redis.stop()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async with asyncio.timeout(10):
                    while await follower.read() is not grpc.aio.EOF:
                        pass
            assert_store_unavailable(caught.value)


async def test_regression_redis_password_is_not_printed_at_start_up() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentstream_server", "serve", "--port", "0", "--store",
        f"redis://:{PASSWORD}@127.0.0.1:{port}/0?password={PASSWORD}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 1
    assert f"cannot reach Redis at redis://***@127.0.0.1:{port}/0?password=***" in out.decode()
    assert PASSWORD not in out.decode()
