"""Request fuzzing against a live server: any request streams to one terminal message or fails with a clear status."""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.transport.server import RunningServer
from tests.service.helpers import error_details
from tests.support.fakellm import FakeLLM, default_responder


def long_text(limit: int) -> st.SearchStrategy[str]:
    """Text around a limit: just under, at and over it."""
    return st.integers(min_value=limit - 2, max_value=limit + 2).map(lambda n: "x" * n)


durations = st.builds(
    duration_pb2.Duration,
    seconds=st.one_of(st.integers(min_value=-5, max_value=30), st.just(10**12), st.just(-(10**12))),
    nanos=st.one_of(st.integers(min_value=-(10**9), max_value=10**9), st.just(0), st.just(5_000_000)),
)
requests = st.builds(
    rpb.StreamingRunRequest,
    input=st.one_of(st.text(max_size=40), st.just(""), st.just("   "), st.just("What is 2 + 2?"), long_text(5000)),
    agent=st.one_of(st.just(""), st.just("assistant"), st.just("tester"), st.text(max_size=8), long_text(128)),
    streaming_mode=st.integers(min_value=-1, max_value=8),
    session_id=st.one_of(st.text(max_size=20), long_text(256)),
    run_id=st.one_of(st.just(""), st.text(max_size=20), long_text(128)),
    metadata=st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=5), long_text(16 * 1024)), max_size=3),
    timeout=st.one_of(st.none(), durations),
    chunk_window_ms=st.one_of(st.none(), st.integers(min_value=0, max_value=2000)),
    on_disconnect=st.integers(min_value=-1, max_value=4),
)
CLEAR_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests)
async def test_any_request_streams_to_one_terminal_or_fails_with_a_clear_status(
    fake_llm: FakeLLM, server: RunningServer, request: rpb.StreamingRunRequest
) -> None:
    fake_llm.responder = default_responder
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        try:
            messages = [m async for m in rpb_grpc.RunnerServiceStub(channel).StreamingRun(request, timeout=20)]
        except grpc.aio.AioRpcError as error:
            assert error.code() in CLEAR_CODES, f"{error.code()}: {error.details()}"
            info, _ = error_details(error)
            assert info.reason, "every rejection names its reason"
            assert error.details(), "every rejection says what to fix"
            return
    terminals = [m for m in messages if m.topic == "__task_response"]
    assert len(terminals) == 1
    assert messages[-1] is terminals[0]
    assert [m.seq for m in messages] == sorted({m.seq for m in messages})
