"""The async client: one channel, typed streaming runs."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc

from agentstream.errors import from_rpc_error
from agentstream.messages import Message, from_proto
from agentstream.types import StreamingMode
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc

DEFAULT_TARGET = "127.0.0.1:50051"


def resolve_target(target: str | None) -> str:
    """The target to dial: the argument, else AGENTSTREAM_TARGET, else 127.0.0.1:50051."""
    return target or os.environ.get("AGENTSTREAM_TARGET") or DEFAULT_TARGET


def build_request(
    input: str,
    *,
    agent: str | None,
    streaming_mode: StreamingMode | int,
    session_id: str | None,
    run_id: str | None,
    metadata: Mapping[str, str] | None,
    timeout: float | None,
    chunk_window_ms: int | None = None,
) -> rpb.StreamingRunRequest:
    """The StreamingRunRequest for these arguments (timeout is the run's server-side limit, in seconds)."""
    request = rpb.StreamingRunRequest(
        input=input,
        agent=agent or "",
        streaming_mode=int(streaming_mode),  # type: ignore[arg-type]
        session_id=session_id or "",
        run_id=run_id or "",
        metadata=dict(metadata or {}),
    )
    if timeout is not None:
        request.timeout.FromNanoseconds(int(timeout * 1e9))
    if chunk_window_ms is not None:
        request.chunk_window_ms = chunk_window_ms
    return request


class Client:
    """Async agentstream client; use as ``async with Client(target) as client:``."""

    def __init__(
        self,
        target: str | None = None,
        *,
        channel_options: Sequence[tuple[str, Any]] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.target = resolve_target(target)
        self._channel = grpc.aio.insecure_channel(self.target, options=channel_options)
        self._stub = rpb_grpc.RunnerServiceStub(self._channel)
        self._call_metadata = tuple((metadata or {}).items())

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def streaming_run(
        self,
        input: str,
        *,
        agent: str | None = None,
        streaming_mode: StreamingMode | int = StreamingMode.CORE,
        session_id: str | None = None,
        run_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
        chunk_window_ms: int | None = None,
    ) -> AsyncGenerator[Message, None]:
        """Start a run and yield its messages; the last is the terminal TaskMessage.

        ``chunk_window_ms`` merges token deltas arriving within the window into one chunk (None: server default).

        Raises a typed AgentStreamError when the call fails; stopping early cancels the call, which
        cancels the run on the server.
        """
        request = build_request(
            input,
            agent=agent,
            streaming_mode=streaming_mode,
            session_id=session_id,
            run_id=run_id,
            metadata=metadata,
            timeout=timeout,
            chunk_window_ms=chunk_window_ms,
        )
        call = self._stub.StreamingRun(request, metadata=self._call_metadata)
        try:
            async for message in call:
                yield from_proto(message)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()
