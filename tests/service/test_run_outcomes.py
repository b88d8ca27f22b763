"""Runs that fail, time out or are cancelled: always one in-band terminal message, upstream closed."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.transport.server import RunningServer
from tests.conftest import StartServer
from tests.service.helpers import collect, request, terminal_of
from tests.support import tools
from tests.support.fakellm import Broken, FakeLLM, HTTPError, Stall, Text, ToolCalls


async def read_rest(call: grpc.aio.UnaryStreamCall) -> list[pb.Message]:  # type: ignore[type-arg]
    messages = []
    while (message := await call.read()) is not grpc.aio.EOF:
        messages.append(message)
    return messages


async def wait_no_live_runs(server: RunningServer) -> None:
    async with asyncio.timeout(5):
        while server.runs.live_runs:
            await asyncio.sleep(0.01)


async def test_llm_http_500_ends_the_run_in_band_within_five_seconds_with_default_retries(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.responder = lambda body: HTTPError(status=500)
    async with asyncio.timeout(5):
        messages = await collect(stub, request("hi"))
    task = terminal_of(messages)
    assert task.status == pb.TASK_STATUS_FAILED
    assert not task.success
    assert "500" in task.msg
    assert (task.error.reason, task.error.code) == ("LLM_UPSTREAM_ERROR", "UNAVAILABLE")
    assert len(fake_llm.requests) == 3, "the openai client's own two retries, then the failure"


async def test_a_broken_llm_stream_fails_the_run_in_band(fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub) -> None:
    fake_llm.script(Broken(tokens=["Hel"]))
    messages = await collect(stub, request("hi", streaming_mode=rpb.STREAMING_MODE_CHUNK))
    assert [m.chunk.content for m in messages[:-1]] == ["Hel"]
    task = terminal_of(messages)
    assert task.status == pb.TASK_STATUS_FAILED
    assert task.error.reason == "LLM_UPSTREAM_ERROR"


async def test_a_run_over_its_timeout_ends_timed_out_and_closes_the_upstream_call(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(Stall(tokens=["Thinking"]))
    messages = await collect(stub, request("hi", timeout_s=0.5))
    task = terminal_of(messages)
    assert task.status == pb.TASK_STATUS_TIMED_OUT
    assert (task.error.reason, task.error.code) == ("RUN_TIMED_OUT", "DEADLINE_EXCEEDED")
    assert await fake_llm.wait_closed(1.0)


async def test_max_steps_without_an_answer_fails_the_run(fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub) -> None:
    fake_llm.responder = lambda body: ToolCalls([("calculator", {"expression": "1+1"})])
    messages = await collect(stub, request("loop forever", agent="tester"))
    task = terminal_of(messages)
    assert task.status == pb.TASK_STATUS_FAILED
    assert task.error.reason == "MAX_STEPS_EXCEEDED"
    assert len(fake_llm.requests) == 3


async def test_client_cancel_closes_the_upstream_connection_within_a_second(
    fake_llm: FakeLLM, server: RunningServer, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(Stall(tokens=["Hel"]))
    call = stub.StreamingRun(request("hi", streaming_mode=rpb.STREAMING_MODE_CHUNK))
    first = await call.read()
    assert first.chunk.content == "Hel"
    assert fake_llm.open_connections >= 1
    call.cancel()
    assert await fake_llm.wait_closed(1.0), "upstream LLM connection still open 1 s after cancel"
    await wait_no_live_runs(server)
    info = await server.runs.describe(first.run_id)
    assert info.terminal is not None
    assert info.status.value == "cancelled"


async def test_a_grpc_deadline_cancels_the_run_and_closes_the_upstream_connection(
    fake_llm: FakeLLM, server: RunningServer, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(Stall(tokens=["Hel"]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect_with_deadline(stub, 0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await fake_llm.wait_closed(1.0)
    await wait_no_live_runs(server)


async def collect_with_deadline(stub: rpb_grpc.RunnerServiceStub, seconds: float) -> None:
    async for _ in stub.StreamingRun(request("hi"), timeout=seconds):
        pass


async def test_cancel_while_a_tool_runs_cancels_the_tool(
    fake_llm: FakeLLM, server: RunningServer, stub: rpb_grpc.RunnerServiceStub
) -> None:
    label = f"tool-{id(stub)}"
    fake_llm.script(ToolCalls([("wait_forever", {"label": label})]))
    call = stub.StreamingRun(request("wait", agent="tester"))
    async for message in call:
        if message.WhichOneof("payload") == "tool":
            break
    call.cancel()
    await wait_no_live_runs(server)
    assert label in tools.CANCELLED


async def test_shutdown_lets_live_runs_finish_within_the_grace_period(fake_llm: FakeLLM, start: StartServer) -> None:
    server = await start()
    fake_llm.script(Text(["slow ", "but ", "done"], delay_s=0.1))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = rpb_grpc.RunnerServiceStub(channel).StreamingRun(request("hi"))
        await call.read()
        shutdown = asyncio.create_task(server.shutdown(5.0))
        messages = await read_rest(call)
        await shutdown
    assert terminal_of(messages).status == pb.TASK_STATUS_SUCCEEDED


async def test_shutdown_cancels_runs_still_live_after_the_grace_period(fake_llm: FakeLLM, start: StartServer) -> None:
    server = await start()
    fake_llm.script(Stall(tokens=["Hel"]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = rpb_grpc.RunnerServiceStub(channel).StreamingRun(request("hi"))
        await call.read()
        shutdown = asyncio.create_task(server.shutdown(0.2))
        messages = await read_rest(call)
        await shutdown
    task = terminal_of(messages)
    assert task.status == pb.TASK_STATUS_CANCELLED
    assert "shutting down" in task.msg
    assert await fake_llm.wait_closed(1.0)
