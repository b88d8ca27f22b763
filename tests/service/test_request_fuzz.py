"""Request fuzzing against a live server: any request streams to one terminal message or fails with a clear status."""

from __future__ import annotations

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from service.server import RunningServer
from tests.service.helpers import error_details
from tests.support.fakellm import FakeLLM, default_responder

requests = st.builds(
    rpb.StreamingRunRequest,
    input=st.one_of(st.text(max_size=40), st.just(""), st.just("   "), st.just("What is 2 + 2?")),
    agent=st.one_of(st.just(""), st.just("assistant"), st.just("tester"), st.text(max_size=8)),
    streaming_mode=st.integers(min_value=-1, max_value=8),
    session_id=st.text(max_size=20),
    run_id=st.one_of(st.just(""), st.text(max_size=20)),
    metadata=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
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
