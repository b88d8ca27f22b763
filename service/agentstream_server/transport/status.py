"""Error-table errors as gRPC statuses with google.rpc details, and the one wrapper every RPC handler uses."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from agentstream_server.errors import ERROR_DOMAIN, AgentStreamError, InvalidArgument
from agentstream_server.observability import metrics, spans

logger = logging.getLogger("agentstream.servicer")

MAX_STATUS_MESSAGE_CHARS = 1024
MAX_STATUS_METADATA_VALUE_CHARS = 256
"""Bounds on what an error status echoes back, so a status always fits in gRPC's metadata limits."""

Context = grpc.aio.ServicerContext[Any, Any]
Servicer = TypeVar("Servicer")


class UndecodableRequest:
    """Stands in for a request whose bytes could not be parsed (see decoding.py); answered INVALID_ARGUMENT."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def status_for(error: AgentStreamError) -> grpc.Status:
    """The gRPC status, with ErrorInfo (and BadRequest when a field is at fault), for an error."""
    message = clipped(error.message, MAX_STATUS_MESSAGE_CHARS)
    status = status_pb2.Status(code=code_pb2.Code.Value(error.code), message=message)
    metadata = {key: clipped(value, MAX_STATUS_METADATA_VALUE_CHARS) for key, value in error.metadata.items()}
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
    status.details.add().Pack(info)
    if retry_after := _retry_after_s(error):
        # google.rpc.RetryInfo: the standard retry hint gRPC clients and proxies read (also in ErrorInfo metadata)
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(int(retry_after * 1e9))
        status.details.add().Pack(retry)
    if error.field:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=error.field, description=message)]
        )
        status.details.add().Pack(bad_request)
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def _retry_after_s(error: AgentStreamError) -> float | None:
    try:
        seconds = float(error.metadata.get("retry_after_s", ""))
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def clipped(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis)."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


async def abort(context: Context, error: AgentStreamError) -> NoReturn:
    """End the call with the error's status."""
    # repr: a caller-supplied value in the message can never forge a log line
    logger.info("rejected call: %s %s: %r", error.code, error.reason, clipped(error.message, MAX_STATUS_MESSAGE_CHARS))
    metrics.call_rejected(error.reason)
    spans.rpc_error(grpc.StatusCode[error.code].value[0], error.code, error.reason)
    await context.abort_with_status(status_for(error))
    raise AssertionError("abort_with_status always raises")


def _undecodable(request: object) -> AgentStreamError | None:
    if type(request) is UndecodableRequest:
        return InvalidArgument(request.problem)
    return None


def reports_errors(
    handler: Callable[[Servicer, Any, Context], Any],
) -> Callable[[Servicer, Any, Context], Any]:
    """Wrap an RPC handler (coroutine or async generator): an AgentStreamError raised anywhere in it, before
    or during a stream, ends the call with its status and details; so does a request that could not be decoded."""
    if inspect.isasyncgenfunction(handler):
        stream = handler

        @functools.wraps(stream)
        async def streaming(self: Servicer, request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                if (error := _undecodable(request)) is not None:
                    raise error
                async for message in stream(self, request, context):
                    yield message
            except AgentStreamError as error:
                await abort(context, error)

        return streaming
    unary: Callable[[Servicer, Any, Context], Awaitable[Any]] = handler

    @functools.wraps(unary)
    async def call(self: Servicer, request: Any, context: Context) -> Any:
        try:
            if (error := _undecodable(request)) is not None:
                raise error
            return await unary(self, request, context)
        except AgentStreamError as error:
            await abort(context, error)

    return call
