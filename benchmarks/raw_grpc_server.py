"""A bare grpc.aio server streaming N small Messages per call: the transport ceiling baseline."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from agentstream.v1 import message_pb2 as pb
from agentstream_server.cli import run_event_loop


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50_000)
    args = parser.parse_args()

    async def stream(request: bytes, context: grpc.aio.ServicerContext[bytes, pb.Message]) -> AsyncIterator[pb.Message]:
        for i in range(args.messages):
            message = pb.Message(run_id="bench", seq=i + 1, category="chunk", topic="chunk")
            message.chunk.content = "x "
            yield message

    await serve_stream("bench.Raw", "Stream", stream, lambda b: b)


async def serve_stream(
    service: str,
    method: str,
    behavior: Callable[[Any, grpc.aio.ServicerContext[Any, pb.Message]], AsyncIterator[pb.Message]],
    deserialize: Callable[[bytes], Any],
    options: Sequence[tuple[str, Any]] = (),
) -> None:
    """Serve one server-streaming method of Messages on a free 127.0.0.1 port, announced as 'listening on'."""
    server = grpc.aio.server(options=options)
    handler = grpc.unary_stream_rpc_method_handler(
        behavior, request_deserializer=deserialize, response_serializer=pb.Message.SerializeToString
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {method: handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    run_event_loop(main())  # the same event loop the service runs on, so the baseline is like for like
