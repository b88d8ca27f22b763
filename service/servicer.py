"""The RunnerService servicer: the only module that touches grpc's ServicerContext."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from service.convert import (
    TASK_STATUS_TO_PROTO,
    run_request_from_proto,
    run_to_proto,
    start_request_from_proto,
    to_proto,
)
from service.errors import ERROR_DOMAIN, AgentStreamError
from service.modes import MODE_CATEGORIES, passes
from service.runs import RunManager
from service.runtime.events import TASK_RESPONSE_TOPIC
from service.validation import validate_run_id, validate_run_request, validate_subscription

logger = logging.getLogger("agentstream.servicer")


def status_for(error: AgentStreamError) -> grpc.Status:
    """The gRPC status, with ErrorInfo (and BadRequest when a field is at fault), for an error."""
    status = status_pb2.Status(code=code_pb2.Code.Value(error.code), message=error.message)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    status.details.add().Pack(info)
    if error.field:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)]
        )
        status.details.add().Pack(bad_request)
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


class RunnerServicer(rpb_grpc.RunnerServiceServicer):
    """Adapts RunManager runs to the RunnerService contract."""

    def __init__(self, runs: RunManager, *, max_input_bytes: int) -> None:
        self._runs = runs
        self._max_input_bytes = max_input_bytes

    async def StreamingRun(
        self,
        request: rpb.StreamingRunRequest,
        context: grpc.aio.ServicerContext[rpb.StreamingRunRequest, pb.Message],
    ) -> AsyncIterator[pb.Message]:
        """Start a run and stream its events, filtered by the request's mode, ending with the terminal one."""
        try:
            valid = validate_run_request(run_request_from_proto(request), max_input_bytes=self._max_input_bytes)
            run = await self._runs.start(valid)
        except AgentStreamError as error:
            await _abort(context, error)
            return
        categories = MODE_CATEGORIES[valid.mode]
        try:
            async for record in run.log.follow(pace=True):
                if passes(categories, record):
                    yield to_proto(record)
        finally:
            # A caller that cancels, disconnects or passes its deadline lands here (CancelledError).
            if valid.cancel_on_disconnect and not run.done:
                run.cancel("caller cancelled or disconnected")

    async def StartRun(
        self, request: rpb.StartRunRequest, context: grpc.aio.ServicerContext[rpb.StartRunRequest, rpb.StartRunResponse]
    ) -> rpb.StartRunResponse:
        """Start a run that goes on without a caller; returns its id."""
        try:
            valid = validate_run_request(start_request_from_proto(request), max_input_bytes=self._max_input_bytes)
            run = await self._runs.start(valid, paced=False)
        except AgentStreamError as error:
            await _abort(context, error)
        return rpb.StartRunResponse(run_id=run.run_id)

    async def SubscribeRun(
        self, request: rpb.SubscribeRunRequest, context: grpc.aio.ServicerContext[rpb.SubscribeRunRequest, pb.Message]
    ) -> AsyncIterator[pb.Message]:
        """Replay a run's retained events after after_seq, follow it live, end with the terminal message."""
        store = self._runs.store
        try:
            mode = validate_subscription(request.run_id, int(request.streaming_mode))
            if store is not None and self._runs.get(request.run_id) is None:
                remote = await store.follow(request.run_id, request.after_seq)
            else:
                remote = None
                records = self._runs.subscribe(request.run_id, request.after_seq)
        except AgentStreamError as error:
            await _abort(context, error)
            return
        categories = MODE_CATEGORIES[mode]
        if remote is not None:  # a run executing on another replica: its events come from the store
            try:
                async for message in remote:
                    if categories is None or message.category in categories or message.topic == TASK_RESPONSE_TOPIC:
                        yield message
            except AgentStreamError as error:  # the store failed while following: a status, never UNKNOWN
                await _abort(context, error)
            return
        try:
            async for record in records:
                if passes(categories, record):
                    yield to_proto(record)
        except AgentStreamError as error:  # fell behind the log's retention mid-stream: never a silent gap
            await _abort(context, error)

    async def CancelRun(
        self,
        request: rpb.CancelRunRequest,
        context: grpc.aio.ServicerContext[rpb.CancelRunRequest, rpb.CancelRunResponse],
    ) -> rpb.CancelRunResponse:
        """Cancel a run and report its final status."""
        try:
            already_finished, status = await self._runs.cancel(validate_run_id(request.run_id), request.reason)
        except AgentStreamError as error:
            await _abort(context, error)
        return rpb.CancelRunResponse(already_finished=already_finished, status=TASK_STATUS_TO_PROTO[status])

    async def GetRun(
        self, request: rpb.GetRunRequest, context: grpc.aio.ServicerContext[rpb.GetRunRequest, rpb.Run]
    ) -> rpb.Run:
        """Describe a run."""
        store = self._runs.store
        try:
            run_id = validate_run_id(request.run_id)
            if store is not None and self._runs.get(run_id) is None:
                return await store.describe_run(run_id)
            run = self._runs.find(run_id)
        except AgentStreamError as error:
            await _abort(context, error)
        return run_to_proto(run.info())


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: AgentStreamError) -> NoReturn:
    logger.info("rejected call: %s %s: %s", error.code, error.reason, error.message)
    await context.abort_with_status(status_for(error))
    raise AssertionError("abort_with_status always raises")
