"""Overload: a server whose event loop runs too far behind refuses new runs at once, with RESOURCE_EXHAUSTED
and a retry hint (never leaving calls to wait until gRPC core cancels them), and takes runs again once it
has caught up."""

from __future__ import annotations

import asyncio
import time

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.runs.load import LoopLag
from tests.conftest import StartServer
from tests.service.helpers import collect, error_details, request, terminal_of
from tests.support.fakellm import FakeLLM, Text


async def hold_the_loop(turns: int, seconds: float) -> None:
    """Block the event loop (as a flood of work would) for `turns` turns of `seconds` each."""
    for _ in range(turns):
        time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point
        await asyncio.sleep(0.01)  # the lag sampler runs, late


async def test_an_overloaded_server_refuses_new_runs_with_a_retry_hint_then_recovers(
    start: StartServer, fake_llm: FakeLLM
) -> None:
    server = await start(max_loop_lag_ms=100)
    fake_llm.responder = lambda body: Text(["ok"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        assert terminal_of(await collect(stub, request())).success  # sampling starts with the first run
        await hold_the_loop(4, 0.3)
        try:
            await stub.StartRun(rpb.StartRunRequest(input="hi"))
            raise AssertionError("an overloaded server started a run")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "overloaded" in (error.details() or "")
            info, _ = error_details(error)
            assert (info.reason, info.metadata["scope"]) == ("TOO_MANY_RUNS", "server_load")
            assert float(info.metadata["retry_after_s"]) >= 1
            status = rpc_status.from_call(error)
            assert status is not None
            retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
            assert len(retry) == 1
            hint = error_details_pb2.RetryInfo()
            retry[0].Unpack(hint)
            assert hint.retry_delay.ToNanoseconds() == int(float(info.metadata["retry_after_s"]) * 1e9)
        for _ in range(100):  # caught up: the moving average decays within a few samples
            await asyncio.sleep(0.05)
            if not server.runs.loop_lag.overloaded:
                break
        assert terminal_of(await collect(stub, request())).success


async def test_the_lag_limit_can_be_switched_off() -> None:
    lag = LoopLag(0)
    lag.start()
    await hold_the_loop(2, 0.2)
    lag.check()  # never refuses
    assert not lag.overloaded
    lag.stop()


def get_runs_meanwhile(port: int, calls: int, pause_s: float) -> list[grpc.StatusCode]:
    """From another thread: `calls` GetRun calls at once (for runs that do not exist), `calls` more after
    `pause_s` (core looks for calls held too long when new ones come in); the codes they all end with."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        pending = [stub.GetRun.future(rpb.GetRunRequest(run_id=f"first{i}"), timeout=30) for i in range(calls)]
        time.sleep(pause_s)
        pending += [stub.GetRun.future(rpb.GetRunRequest(run_id=f"later{i}"), timeout=30) for i in range(calls)]
        codes = []
        for call in pending:
            try:
                call.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.append(error.code())
        return codes


async def calls_made_while_the_loop_is_blocked(port: int) -> list[grpc.StatusCode]:
    """Calls sent while the server's event loop cannot take them up (gRPC core holds them meanwhile)."""
    calls = asyncio.ensure_future(asyncio.to_thread(get_runs_meanwhile, port, 4, 1.5))
    await asyncio.sleep(0.3)  # the thread's channel connects and sends
    time.sleep(2.5)  # noqa: ASYNC251 - blocking the loop is the point
    return await calls


async def test_calls_held_in_grpc_core_past_its_30_s_default_are_answered_not_cancelled(start: StartServer) -> None:
    # The queue timeout is what core honours: set short, calls held past it end CANCELLED, unseen by the server
    short = await start(call_queue_timeout_s=1)
    assert grpc.StatusCode.CANCELLED in await calls_made_while_the_loop_is_blocked(short.port)
    # ... while with the default every held call is taken up once the loop is free, and answered.
    default = await start()
    assert await calls_made_while_the_loop_is_blocked(default.port) == [grpc.StatusCode.NOT_FOUND] * 8
