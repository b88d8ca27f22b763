"""Helpers for servicer tests: collect a stream, read rich error details."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc


def request(input: str = "hello", timeout_s: float | None = None, **fields: Any) -> rpb.StreamingRunRequest:
    req = rpb.StreamingRunRequest(input=input, **fields)
    if timeout_s is not None:
        req.timeout.CopyFrom(duration_pb2.Duration(nanos=int(timeout_s * 1e9) % 1_000_000_000, seconds=int(timeout_s)))
    return req


async def collect(stub: rpb_grpc.RunnerServiceStub, req: rpb.StreamingRunRequest) -> list[pb.Message]:
    return [message async for message in stub.StreamingRun(req)]


def error_details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[str]]:
    """The ErrorInfo and the BadRequest field names of a failed call."""
    status = rpc_status.from_call(error)
    assert status is not None, f"no rich status details on {error.code()}: {error.details()}"
    info = error_details_pb2.ErrorInfo()
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return info, fields


def terminal_of(messages: list[pb.Message]) -> pb.TaskPayload:
    """The terminal task payload, asserting it is the last message and appears exactly once."""
    terminals = [m for m in messages if m.topic == "__task_response"]
    assert len(terminals) == 1, f"expected exactly one terminal message, got {len(terminals)}"
    assert messages[-1] is terminals[0], "the terminal message must be the last one"
    return messages[-1].task
