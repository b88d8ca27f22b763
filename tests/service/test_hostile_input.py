"""Inputs built to make the server slow: a run on them completes and the server keeps answering meanwhile."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.config import Settings
from agentstream_server.transport.server import start_server
from tests.service.helpers import request, terminal_of
from tests.service.test_run_outcomes import read_rest

HOSTILE_PROMPT = "x " + "1" * (1024 * 1024 - 2)
"""A 1 MiB digit run: the demo model's old backtracking regex took hours on it (7 s at 10,000 digits)."""


async def test_regression_digit_run_prompt_completes_while_health_checks_answer() -> None:
    server = await start_server(Settings(port=0, demo_token_delay_s=0.05))  # offline: the demo model answers
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            call = rpb_grpc.RunnerServiceStub(channel).StreamingRun(
                request(HOSTILE_PROMPT, streaming_mode=rpb.STREAMING_MODE_CHUNK)
            )
            first = await call.read()  # the model has read the prompt before its first token
            assert first.HasField("chunk"), first
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
            rest = await read_rest(call)
    finally:
        await server.shutdown(0)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert [m for m in rest if m.HasField("chunk")], "the health check was answered while the run still streamed"
    task = terminal_of([first, *rest])
    assert task.status == pb.TASK_STATUS_SUCCEEDED, task.msg
    assert "You asked about: x 1111" in task.answer
