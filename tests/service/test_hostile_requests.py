"""Regression tests for the hostile-caller review (issue #9): each bound holds against a live server."""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest
from google.protobuf import duration_pb2

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.config import Settings
from agentstream_server.store.memory import MemoryStore
from agentstream_server.transport.server import RunningServer, start_server
from tests.conftest import StartServer
from tests.service.helpers import collect, error_details, request, terminal_of
from tests.support.fakellm import FakeLLM, Stall, Text


async def expect_status(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if hasattr(call, "__aiter__"):
            _ = [m async for m in call]  # type: ignore[attr-defined]
        else:
            await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    return caught.value


async def test_regression_a_5000_character_agent_name_is_invalid_argument_not_a_metadata_overflow(
    stub: rpb_grpc.RunnerServiceStub,
) -> None:
    error = await expect_status(stub.StreamingRun(request(agent="a" * 5000)), grpc.StatusCode.INVALID_ARGUMENT)
    info, fields = error_details(error)
    assert (info.reason, fields) == ("INVALID_ARGUMENT", ["agent"])
    assert len(error.details()) < 2000


async def test_regression_a_huge_cancel_reason_is_refused_and_the_run_stays_readable(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(Stall(tokens=["Hel"]))
    started = await stub.StartRun(rpb.StartRunRequest(input="hi"))
    error = await expect_status(
        stub.CancelRun(rpb.CancelRunRequest(run_id=started.run_id, reason="x" * 100_000)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error_details(error)[1] == ["reason"]
    await stub.CancelRun(rpb.CancelRunRequest(run_id=started.run_id, reason="a short reason"))
    messages = [m async for m in stub.SubscribeRun(rpb.SubscribeRunRequest(run_id=started.run_id))]
    assert "a short reason" in terminal_of(messages).msg
    assert (await stub.GetRun(rpb.GetRunRequest(run_id=started.run_id))).status == pb.TASK_STATUS_CANCELLED


@pytest.mark.parametrize(
    "timeout",
    [
        duration_pb2.Duration(seconds=1, nanos=-5),
        duration_pb2.Duration(seconds=1, nanos=1_000_000_000),
        duration_pb2.Duration(seconds=10**15),
        duration_pb2.Duration(seconds=-3),
        duration_pb2.Duration(),
    ],
    ids=["negative-nanos", "nanos-overflow", "seconds-past-duration-range", "negative", "zero"],
)
async def test_regression_malformed_durations_are_invalid_argument(
    stub: rpb_grpc.RunnerServiceStub, timeout: duration_pb2.Duration
) -> None:
    req = request()
    req.timeout.CopyFrom(timeout)
    error = await expect_status(stub.StreamingRun(req), grpc.StatusCode.INVALID_ARGUMENT)
    assert error_details(error)[1] == ["timeout"]


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xff\xff\xff", b"\x0a\x02\xc3\x28"],  # garbage; field 1 (input) holding invalid UTF-8
    ids=["garbage", "invalid-utf8-string"],
)
async def test_regression_undecodable_request_bytes_are_invalid_argument_not_unknown(
    server: RunningServer, payload: bytes
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        streaming = channel.unary_stream("/agentstream.v1.RunnerService/StreamingRun")
        error = await expect_status(streaming(payload), grpc.StatusCode.INVALID_ARGUMENT)
        assert "not a valid message" in (error.details() or "")
        assert error_details(error)[0].reason == "INVALID_ARGUMENT"
        unary = channel.unary_unary("/agentstream.v1.RunnerService/GetRun")
        await expect_status(unary(payload), grpc.StatusCode.INVALID_ARGUMENT)


async def test_regression_one_caller_cannot_take_every_run_slot(fake_llm: FakeLLM, start: StartServer) -> None:
    server = await start(max_concurrent_runs=10, max_runs_per_peer=2)
    fake_llm.responder = lambda body: Stall(tokens=["Hel"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        held = [stub.StreamingRun(request()) for _ in range(2)]
        for call in held:
            await call.read()
        error = await expect_status(stub.StreamingRun(request()), grpc.StatusCode.RESOURCE_EXHAUSTED)
        info, _ = error_details(error)
        assert (info.reason, info.metadata["scope"], info.metadata["limit"]) == ("TOO_MANY_RUNS", "peer", "2")
        await expect_status(stub.StartRun(rpb.StartRunRequest(input="hi")), grpc.StatusCode.RESOURCE_EXHAUSTED)
        held[0].cancel()
        for _ in range(100):  # the slot comes back once the cancelled run has ended
            if server.runs.live_runs < 2:
                break
            await asyncio.sleep(0.05)
        started = await stub.StartRun(rpb.StartRunRequest(input="hi"))
        assert started.run_id
        held[1].cancel()
        await stub.CancelRun(rpb.CancelRunRequest(run_id=started.run_id))


async def test_regression_concurrent_starts_never_exceed_the_run_limit(
    fake_llm: FakeLLM, start: StartServer, store: str
) -> None:
    server = await start(max_concurrent_runs=2, max_runs_per_peer=0, store=store)
    fake_llm.responder = lambda body: Stall(tokens=["Hel"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        results = await asyncio.gather(
            *(stub.StartRun(rpb.StartRunRequest(input="hi")) for _ in range(12)), return_exceptions=True
        )
        accepted = [r for r in results if isinstance(r, rpb.StartRunResponse)]
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(accepted) == 2
        assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert server.runs.live_runs == 2
        for started in accepted:
            await stub.CancelRun(rpb.CancelRunRequest(run_id=started.run_id))


def kept(server: RunningServer, run_id: str) -> bool:
    """True while the (memory) store still holds the run."""
    store = server.store
    assert isinstance(store, MemoryStore)
    return store.holds_run(run_id)


async def test_regression_finished_runs_expire_on_a_timer_without_new_starts(
    fake_llm: FakeLLM, start: StartServer
) -> None:
    server = await start(completed_run_ttl_s=0.3)
    fake_llm.script(Text(["hi"]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        messages = await collect(stub, request(run_id="expiring"))
        assert terminal_of(messages).success
        assert kept(server, "expiring")
        for _ in range(100):
            if not kept(server, "expiring"):
                break
            await asyncio.sleep(0.05)
        assert not kept(server, "expiring")
        assert server.store.finished_runs == 0
        await expect_status(stub.GetRun(rpb.GetRunRequest(run_id="expiring")), grpc.StatusCode.NOT_FOUND)


async def test_regression_finished_runs_are_capped_by_count(fake_llm: FakeLLM, start: StartServer) -> None:
    server = await start(max_finished_runs=2)
    fake_llm.responder = lambda body: Text(["ok"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        for i in range(4):
            await collect(stub, request(run_id=f"run-{i}"))
        await asyncio.sleep(0)  # the done callback of the last run
        assert [kept(server, f"run-{i}") for i in range(4)] == [False, False, True, True]
        assert server.store.finished_runs == 2


async def test_regression_finished_runs_with_large_inputs_are_capped_by_bytes(
    fake_llm: FakeLLM, start: StartServer
) -> None:
    server = await start(max_finished_bytes=3 * 1024 * 1024)
    fake_llm.responder = lambda body: Text(["ok"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        for i in range(6):
            await collect(stub, request("x" * 1_000_000, run_id=f"big-{i}"))
        await asyncio.sleep(0)
        held = [i for i in range(6) if kept(server, f"big-{i}")]
        assert held and held == list(range(6 - len(held), 6)) and len(held) < 3  # the newest, at most 3 MB of inputs
        assert 0 < server.store.finished_bytes <= 3 * 1024 * 1024


async def test_regression_a_second_server_on_the_same_port_fails_to_start(server: RunningServer) -> None:
    with pytest.raises(OSError, match="cannot listen"):
        await start_server(Settings(port=server.port, store="memory"))


async def test_reuse_port_lets_a_second_server_share_the_port_when_asked(start: StartServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    first = await start(port=port, reuse_port=True)
    second = await start(port=port, reuse_port=True)
    assert first.port == second.port == port
