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
