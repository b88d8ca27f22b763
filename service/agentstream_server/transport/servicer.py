"""The RunnerService servicer: validates, hands each RPC to the run manager, converts what comes back."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.errors import InternalError
from agentstream_server.runs.manager import RunManager
from agentstream_server.runs.modes import MODE_CATEGORIES, passes
from agentstream_server.runtime.events import AgentStep, Chunk, RunEvent
from agentstream_server.transport.convert import (
    TASK_STATUS_TO_PROTO,
    EncodeFailure,
    run_request_from_proto,
    run_to_proto,
    session_to_proto,
    start_request_from_proto,
    to_proto_checked,
)
from agentstream_server.transport.status import Context, reports_errors
from agentstream_server.transport.validation import (
    validate_cancel_reason,
    validate_decision_message,
    validate_interrupt_id,
    validate_run_id,
    validate_run_request,
    validate_session_id,
    validate_subscription,
)

logger = logging.getLogger("agentstream.servicer")


class RunnerServicer(rpb_grpc.RunnerServiceServicer):
    """Adapts the RunManager to the RunnerService contract; the only code that sees a ServicerContext."""

    def __init__(
        self, runs: RunManager, *, max_input_bytes: int, tenant_of: Callable[[Context], str] = lambda _: ""
    ) -> None:
        """``tenant_of(context)``: whose call it is (the authenticated caller's tenant; "" without auth)."""
        self._runs = runs
        self._max_input_bytes = max_input_bytes
        self._tenant_of = tenant_of

    @reports_errors
    async def StreamingRun(self, request: rpb.StreamingRunRequest, context: Context) -> AsyncIterator[pb.Message]:
        """Start a run and stream its events, filtered by the request's mode, ending with the terminal one."""
        valid = validate_run_request(run_request_from_proto(request), max_input_bytes=self._max_input_bytes)
        tenant = self._tenant_of(context)
        records = await self._runs.stream(valid, peer=_peer_host(context.peer()), tenant=tenant)
        async with contextlib.aclosing(records):  # closed at once when the caller goes: that cancels the run
            async for message in self._encoded(
                records, MODE_CATEGORIES[valid.mode], tenant, exclude_reasoning=request.exclude_reasoning
            ):
                yield message

    @reports_errors
    async def StartRun(self, request: rpb.StartRunRequest, context: Context) -> rpb.StartRunResponse:
        """Start a run that goes on without a caller; returns its id."""
        valid = validate_run_request(start_request_from_proto(request), max_input_bytes=self._max_input_bytes)
        run = await self._runs.start(valid, peer=_peer_host(context.peer()), tenant=self._tenant_of(context))
        return rpb.StartRunResponse(run_id=run.run_id)

    @reports_errors
    async def SubscribeRun(self, request: rpb.SubscribeRunRequest, context: Context) -> AsyncIterator[pb.Message]:
        """Replay a run's retained events after after_seq, follow it live, end with the terminal message."""
        mode = validate_subscription(request.run_id, int(request.streaming_mode))
        tenant = self._tenant_of(context)
        records = await self._runs.subscribe(request.run_id, request.after_seq, tenant=tenant)
        async with contextlib.aclosing(records):  # closed at once when the caller goes: frees its slot
            async for message in self._encoded(
                records, MODE_CATEGORIES[mode], tenant, exclude_reasoning=request.exclude_reasoning
            ):
                yield message

    @reports_errors
    async def CancelRun(self, request: rpb.CancelRunRequest, context: Context) -> rpb.CancelRunResponse:
        """Cancel a run and report its final status."""
        run_id = validate_run_id(request.run_id)
        reason = validate_cancel_reason(request.reason)
        already_finished, status = await self._runs.cancel(run_id, reason, tenant=self._tenant_of(context))
        return rpb.CancelRunResponse(already_finished=already_finished, status=TASK_STATUS_TO_PROTO[status])

    @reports_errors
    async def GetRun(self, request: rpb.GetRunRequest, context: Context) -> rpb.Run:
        """Describe a run."""
        run_id = validate_run_id(request.run_id)
        return run_to_proto(await self._runs.describe(run_id, tenant=self._tenant_of(context)))

    @reports_errors
    async def GetSession(self, request: rpb.GetSessionRequest, context: Context) -> rpb.Session:
        """Describe a session: its turns, runs and times."""
        session_id = validate_session_id(request.session_id)
        return session_to_proto(await self._runs.session(session_id, tenant=self._tenant_of(context)))

    @reports_errors
    async def DeleteSession(self, request: rpb.DeleteSessionRequest, context: Context) -> rpb.DeleteSessionResponse:
        """Forget a session's history."""
        session_id = validate_session_id(request.session_id)
        deleted = await self._runs.delete_session(session_id, tenant=self._tenant_of(context))
        return rpb.DeleteSessionResponse(deleted_turns=deleted)

    @reports_errors
    async def ResolveInterrupt(
        self, request: rpb.ResolveInterruptRequest, context: Context
    ) -> rpb.ResolveInterruptResponse:
        """Approve or reject a waiting run's tool calls, or answer its question."""
        run_id = validate_run_id(request.run_id)
        interrupt_id = validate_interrupt_id(request.interrupt_id)
        message = validate_decision_message(request.message)
        status = await self._runs.resolve_interrupt(
            run_id, interrupt_id, request.approve, message, tenant=self._tenant_of(context)
        )
        return rpb.ResolveInterruptResponse(status=TASK_STATUS_TO_PROTO[status])

    async def _encoded(
        self,
        records: AsyncIterator[RunEvent],
        categories: frozenset[str] | None,
        tenant: str,
        *,
        exclude_reasoning: bool = False,
    ) -> AsyncIterator[pb.Message]:
        """The records that pass the mode, as protobuf; an event that cannot be encoded never ends a stream early.

        It is replaced by a placeholder with the same seq, and a run still going on here is failed
        (INTERNAL), so every reader still gets exactly one terminal message. With exclude_reasoning, reasoning
        is left out of this stream (see without_reasoning).
        """
        async for stored in records:
            record = without_reasoning(stored) if exclude_reasoning else stored
            if record is None:
                continue
            if passes(categories, record):
                try:
                    yield to_proto_checked(record)
                except EncodeFailure as failure:
                    logger.error("run %s: %s", record.run_id, failure)
                    self._runs.fail(record.run_id, InternalError(f"internal error: {failure}"), tenant=tenant)
                    yield failure.placeholder


def without_reasoning(record: RunEvent) -> RunEvent | None:
    """The record with its reasoning text left out; None for a chunk that carried only reasoning."""
    event = record.event
    if type(event) is Chunk and event.reasoning_content:
        if not event.content:
            return None
        return dataclasses.replace(record, event=dataclasses.replace(event, reasoning_content=""))
    if type(event) is AgentStep and event.reasoning_content:
        return dataclasses.replace(record, event=dataclasses.replace(event, reasoning_content=""))
    return record


def _peer_host(peer: str) -> str:
    """The caller's address without its port ('ipv4:10.0.0.7:53412' -> 'ipv4:10.0.0.7'): one host, one quota."""
    kind, _, address = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host, _, _ = address.rpartition(":")
        return f"{kind}:{host or address}"
    return peer
