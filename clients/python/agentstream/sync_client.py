"""The blocking client, for callers without an event loop."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc

from agentstream.client import build_request, resolve_target
from agentstream.errors import from_rpc_error
from agentstream.messages import Message, from_proto
from agentstream.types import StreamingMode
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc


class SyncClient:
    """Blocking agentstream client; use as ``with SyncClient(target) as client:``."""

    def __init__(
        self,
        target: str | None = None,
        *,
        channel_options: Sequence[tuple[str, Any]] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.target = resolve_target(target)
        self._channel = grpc.insecure_channel(self.target, options=channel_options)
        self._stub = rpb_grpc.RunnerServiceStub(self._channel)
        self._call_metadata = tuple((metadata or {}).items())

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def streaming_run(
        self,
        input: str,
        *,
        agent: str | None = None,
        streaming_mode: StreamingMode | int = StreamingMode.CORE,
        session_id: str | None = None,
        run_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Generator[Message, None, None]:
        """Start a run and yield its messages; closing the generator early cancels the run."""
        request = build_request(
            input,
            agent=agent,
            streaming_mode=streaming_mode,
            session_id=session_id,
            run_id=run_id,
            metadata=metadata,
            timeout=timeout,
        )
        call = self._stub.StreamingRun(request, metadata=self._call_metadata)
        try:
            for message in call:
                yield from_proto(message)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()
