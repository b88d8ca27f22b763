"""RunnerService requests whose bytes are not a valid message reach the handler as UndecodableRequest.

grpc alone would fail such a call with UNKNOWN before any handler runs; the handler's error wrapper
(status.reports_errors) answers INVALID_ARGUMENT instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from agentstream_server.transport.status import UndecodableRequest


class TolerantDecoding(grpc.aio.ServerInterceptor):
    """Gives the methods of one service a request deserializer that never raises."""

    def __init__(self, service_name: str) -> None:
        self._prefix = f"/{service_name}/"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if (
            handler is None
            or handler.request_streaming
            or handler.request_deserializer is None
            or not method.startswith(self._prefix)
        ):
            return handler
        deserialize = handler.request_deserializer
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                handler.unary_stream,  # type: ignore[arg-type]
                request_deserializer=_tolerant(deserialize, method),
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            handler.unary_unary,  # type: ignore[arg-type]
            request_deserializer=_tolerant(deserialize, method),
            response_serializer=handler.response_serializer,
        )


def _tolerant(deserialize: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    def tolerant(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # DecodeError, or a proto3 string field that is not valid UTF-8
            return UndecodableRequest(f"the request is not a valid message for {method}: {type(exc).__name__}")

    return tolerant
