"""Bad requests fail with the error table's status code and google.rpc details; never a broken stream."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.errors import InvalidArgument
from agentstream_server.transport.server import RunningServer
from agentstream_server.transport.validation import RunRequest, validate_run_request
from tests.conftest import StartServer
from tests.service.helpers import collect, error_details, request
from tests.support.fakellm import FakeLLM, Stall


async def expect_error(stub: rpb_grpc.RunnerServiceStub, req: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(stub, req)  # type: ignore[arg-type]
    assert caught.value.code() == code, caught.value.details()
    return caught.value


@pytest.mark.parametrize("text", ["", "   \n\t "], ids=["empty", "whitespace"])
async def test_blank_input_is_invalid_argument_naming_the_field(stub: rpb_grpc.RunnerServiceStub, text: str) -> None:
    error = await expect_error(stub, request(text), grpc.StatusCode.INVALID_ARGUMENT)
    info, fields = error_details(error)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "agentstream.dev")
    assert fields == ["input"]
    assert "input" in (error.details() or "")


async def test_input_over_the_size_limit_is_invalid_argument(start: StartServer) -> None:
    server = await start(max_input_bytes=100)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        error = await expect_error(
            rpb_grpc.RunnerServiceStub(channel), request("x" * 101), grpc.StatusCode.INVALID_ARGUMENT
        )
    info, fields = error_details(error)
    assert fields == ["input"]
    assert info.metadata["limit_bytes"] == "100"


async def test_unknown_streaming_mode_number_is_invalid_argument(stub: rpb_grpc.RunnerServiceStub) -> None:
    error = await expect_error(stub, request(streaming_mode=99), grpc.StatusCode.INVALID_ARGUMENT)  # type: ignore[arg-type]
    assert error_details(error)[1] == ["streaming_mode"]


async def test_unknown_agent_is_not_found_listing_the_known_agents(stub: rpb_grpc.RunnerServiceStub) -> None:
    error = await expect_error(stub, request(agent="nobody"), grpc.StatusCode.NOT_FOUND)
    info, _ = error_details(error)
    assert info.reason == "AGENT_NOT_FOUND"
    assert info.metadata["known_agents"].split(",") == ["assistant", "careful", "team", "tester"]


async def test_malformed_run_id_is_invalid_argument(stub: rpb_grpc.RunnerServiceStub) -> None:
    error = await expect_error(stub, request(run_id="has spaces"), grpc.StatusCode.INVALID_ARGUMENT)
    assert error_details(error)[1] == ["run_id"]


async def test_a_run_id_in_use_is_already_exists(fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub) -> None:
    fake_llm.script(Stall(tokens=["Hel"]))
    first = stub.StreamingRun(request(run_id="dup-1"))
    await first.read()
    error = await expect_error(stub, request(run_id="dup-1"), grpc.StatusCode.ALREADY_EXISTS)
    assert error_details(error)[0].reason == "RUN_ALREADY_EXISTS"
    first.cancel()


async def test_more_runs_than_the_limit_is_resource_exhausted(fake_llm: FakeLLM, start: StartServer) -> None:
    server = await start(max_concurrent_runs=1)
    fake_llm.script(Stall(tokens=["Hel"]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        first = stub.StreamingRun(request())
        await first.read()
        error = await expect_error(stub, request(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert error_details(error)[0].reason == "TOO_MANY_RUNS"
        first.cancel()


async def test_a_draining_server_is_unavailable(server: RunningServer, stub: rpb_grpc.RunnerServiceStub) -> None:
    server.runs.begin_drain()
    error = await expect_error(stub, request(), grpc.StatusCode.UNAVAILABLE)
    assert error_details(error)[0].reason == "SERVER_DRAINING"


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=50),
    mode=st.integers(min_value=-5, max_value=10),
    run_id=st.text(max_size=140),
)
def test_validation_accepts_or_names_the_field_at_fault(text: str, mode: int, run_id: str) -> None:
    raw = RunRequest(input=text, streaming_mode=mode, run_id=run_id)
    try:
        valid = validate_run_request(raw, max_input_bytes=64)
    except InvalidArgument as error:
        assert error.field in {"input", "streaming_mode", "run_id"}
        assert error.code == "INVALID_ARGUMENT"
    else:
        assert valid.input.strip()
        assert 1 <= int(valid.mode) <= 5


async def test_a_chunk_window_over_the_limit_is_invalid_argument(stub: rpb_grpc.RunnerServiceStub) -> None:
    error = await expect_error(stub, request(chunk_window_ms=5000), grpc.StatusCode.INVALID_ARGUMENT)
    assert error_details(error)[1] == ["chunk_window_ms"]
