"""Requests whose bytes are not a valid message get INVALID_ARGUMENT (grpc alone would answer UNKNOWN/INTERNAL)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc

from agentstream_server.errors import InvalidArgument
from agentstream_server.transport.servicer import status_for


class UndecodableRequest:
    """Stands in for a request whose bytes could not be parsed; the handler answers INVALID_ARGUMENT."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


class RejectUndecodableRequests(grpc.aio.ServerInterceptor):
    """Wraps every unary-request handler: undecodable bytes become an INVALID_ARGUMENT status, not UNKNOWN."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        deserialize = _tolerant(handler.request_deserializer, handler_call_details.method)
        if handler.response_streaming and inspect.isasyncgenfunction(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                _checked_stream(handler.unary_stream),
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        if handler.response_streaming:  # a coroutine that writes with context.write (e.g. health's Watch)
            return grpc.unary_stream_rpc_method_handler(
                _checked_unary(handler.unary_stream),  # type: ignore[arg-type]  # aio handlers are async
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            _checked_unary(handler.unary_unary),  # type: ignore[arg-type]  # aio handlers are async
            request_deserializer=deserialize,
            response_serializer=handler.response_serializer,
        )


def _tolerant(deserialize: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    def tolerant(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # DecodeError, or a proto3 string field that is not valid UTF-8
            return UndecodableRequest(f"the request is not a valid message for {method}: {type(exc).__name__}")

    return tolerant


async def _reject(request: UndecodableRequest, context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
    await context.abort_with_status(status_for(InvalidArgument(request.problem)))
    raise AssertionError("abort_with_status always raises")


def _checked_unary(behavior: Callable[[Any, Any], Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
    async def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if type(request) is UndecodableRequest:
            await _reject(request, context)
        return await behavior(request, context)

    return checked


def _checked_stream(behavior: Callable[[Any, Any], AsyncIterator[Any]]) -> Callable[[Any, Any], AsyncIterator[Any]]:
    async def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        if type(request) is UndecodableRequest:
            await _reject(request, context)
        async for message in behavior(request, context):
            yield message

    return checked
