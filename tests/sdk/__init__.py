"""Tests of the Python SDK; a scripted RunnerService stands in for the server where the SDK alone is under test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import grpc
from google.protobuf import struct_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc

Context = grpc.aio.ServicerContext[Any, Any]

RUN_ID = "run-1"
T0 = 1_700_000_000


def wire(seq: int, category: str, topic: str, **payload: Any) -> pb.Message:
    """A wire Message of run RUN_ID with one payload field set (``chunk=pb.ChunkPayload(...)`` ...)."""
    message = pb.Message(
        id=f"{RUN_ID}:{seq}",
        run_id=RUN_ID,
        session_id="s-1",
        seq=seq,
        category=category,
        topic=topic,
        sender="assistant",
        caller="runtime",
        headers={"h": "v"} if seq == 1 else {},
        **payload,
    )
    message.timestamp.FromNanoseconds(T0 * 10**9 + seq * 1_000_000)
    return message


def action(tool: str, call_id: str, params: Mapping[str, Any]) -> pb.ActionModel:
    """A wire tool call."""
    struct = struct_pb2.Struct()
    struct.update(dict(params))
    return pb.ActionModel(tool_name=tool, action_name=tool, tool_call_id=call_id, agent_name="assistant", params=struct)


def terminal(seq: int, *, success: bool = True, answer: str = "", msg: str = "", **task: Any) -> pb.Message:
    """The terminal task response."""
    payload = pb.TaskPayload(
        status=task.pop("status", pb.TASK_STATUS_SUCCEEDED if success else pb.TASK_STATUS_FAILED),
        success=success,
        answer=answer,
        msg=msg,
        agent_name="assistant",
        **task,
    )
    payload.time_cost.FromMilliseconds(1500)
    return wire(seq, "task", "__task_response", task=payload)


def calculator_run() -> list[pb.Message]:
    """The ALL-mode stream of a run that calls the calculator once and answers "It is 4."."""
    result = pb.ToolResultPayload(tool_call_id="c1", tool_name="calculator", content="4", agent_name="assistant")
    result.duration.FromMilliseconds(250)
    calc = action("calculator", "c1", {"expression": "2+2"})
    usage = pb.Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
    return [
        wire(1, "task", "task_start", task=pb.TaskPayload(status=pb.TASK_STATUS_RUNNING, input="What is 2+2?")),
        wire(2, "chunk", "chunk", chunk=pb.ChunkPayload(content="Let me ", model="m", agent_name="assistant", step=1)),
        wire(3, "chunk", "chunk", chunk=pb.ChunkPayload(content="check.", model="m", agent_name="assistant", step=1)),
        wire(4, "tool", "tool_call", tool=pb.ToolCallPayload(actions=[calc])),
        wire(5, "tool", "tool_result", tool_result=result),
        wire(
            6,
            "agent",
            "agent_step",
            agent=pb.AgentStepPayload(
                agent_name="assistant", step=1, content="Let me check.", tool_calls=[calc], finish_reason="tool_calls"
            ),
        ),
        wire(7, "memory", "memory_append", memory=pb.MemoryPayload(role="tool", content="4", agent_name="assistant")),
        wire(8, "chunk", "chunk", chunk=pb.ChunkPayload(content="It is 4.", model="m", agent_name="assistant", step=2)),
        wire(9, "output", "output", output=pb.OutputPayload(content="It is 4.", agent_name="assistant")),
        wire(10, "group", "group", group=pb.GroupPayload(group_id="g", members=["assistant"], content="done")),
        terminal(11, answer="It is 4.", usage=usage),
    ]


def rich_status(
    code: str,
    message: str,
    *,
    reason: str,
    metadata: Mapping[str, str] | None = None,
    field: str | None = None,
    domain: str = "agentstream.dev",
) -> grpc.Status:
    """A status as the server sends it: ErrorInfo, plus BadRequest when a field is at fault."""
    status = status_pb2.Status(code=code_pb2.Code.Value(code), message=message)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata or {}))
    if field:
        violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


class Status(NamedTuple):
    """A grpc.Status to abort with, as given (``rpc_status.to_status`` builds the consistent ones)."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()


@dataclass
class ScriptedRunner(rpb_grpc.RunnerServiceServicer):
    """StreamingRun plays ``script``, then aborts with ``abort`` if set, or waits to be cancelled if ``hang``.

    It records each request and its call metadata, and sets ``cancelled`` when a call is cancelled under the
    handler (``ServicerContext.cancelled()`` still says False at that point in grpcio 1.85).
    """

    script: Sequence[pb.Message] = ()
    abort: grpc.Status | Status | None = None
    hang: bool = False
    requests: list[rpb.StreamingRunRequest] = field(default_factory=list)
    call_metadata: list[dict[str, str | bytes]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def StreamingRun(self, request: rpb.StreamingRunRequest, context: Context) -> AsyncIterator[pb.Message]:
        self.requests.append(request)
        self.call_metadata.append(dict(context.invocation_metadata() or ()))
        self.started.set()
        try:
            for message in self.script:
                yield message
            if self.abort is not None:
                await context.abort_with_status(self.abort)  # type: ignore[arg-type]
            if self.hang:
                await asyncio.Event().wait()
        except (asyncio.CancelledError, GeneratorExit):
            # The call ended under the handler: grpc.aio cancels the handler's task when the client cancels
            # (CancelledError here, or GeneratorExit when that happened while the server was sending).
            self.cancelled.set()
            raise

    async def StartRun(self, request: rpb.StartRunRequest, context: Context) -> rpb.StartRunResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not scripted")

    async def SubscribeRun(self, request: rpb.SubscribeRunRequest, context: Context) -> AsyncIterator[pb.Message]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not scripted")
        yield pb.Message()  # unreachable: makes this an async generator like the contract's stream

    async def CancelRun(self, request: rpb.CancelRunRequest, context: Context) -> rpb.CancelRunResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not scripted")

    async def GetRun(self, request: rpb.GetRunRequest, context: Context) -> rpb.Run:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not scripted")


@asynccontextmanager
async def scripted_server(runner: ScriptedRunner) -> AsyncIterator[str]:
    """A real grpc.aio server on 127.0.0.1:0 serving ``runner``; yields its target."""
    server = grpc.aio.server()
    rpb_grpc.add_RunnerServiceServicer_to_server(runner, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
