"""The blocking client, for callers without an event loop."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc

from agentstream.client import (
    CancelResult,
    RunInfo,
    build_request,
    build_resolve_request,
    build_start_request,
    call_metadata,
    resolve_target,
    run_info_from_proto,
)
from agentstream.errors import from_rpc_error
from agentstream.messages import Message, from_proto
from agentstream.sessions import Session, session_from_proto
from agentstream.telemetry import traced, with_keepalive
from agentstream.tls import PemSource, channel_credentials
from agentstream.types import StreamingMode, TaskStatus
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc


class SyncClient:
    """Blocking agentstream client; use as ``with SyncClient(target) as client:``.

    ``token`` (else ``$AGENTSTREAM_TOKEN``) is sent as ``authorization: Bearer <token>`` on every call.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        token: str | None = None,
        channel_options: Sequence[tuple[str, Any]] | None = None,
        metadata: Mapping[str, str] | None = None,
        tls: bool = False,
        root_ca: PemSource | None = None,
        client_cert: PemSource | None = None,
        client_key: PemSource | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """Open a channel to ``target`` (else ``$AGENTSTREAM_TARGET``, else 127.0.0.1:50051), plaintext by default.

        TLS: ``tls=True`` (system CAs), or ``root_ca=`` the server's CA; add ``client_cert=`` and ``client_key=``
        for mTLS (each a PEM path or bytes), or pass ready ``credentials=`` (see agentstream.tls).
        """
        self.target = resolve_target(target)
        secure = channel_credentials(
            tls=tls, root_ca=root_ca, client_cert=client_cert, client_key=client_key, credentials=credentials
        )
        self._channel = (
            grpc.secure_channel(self.target, secure, options=with_keepalive(channel_options))
            if secure
            else grpc.insecure_channel(self.target, options=with_keepalive(channel_options))
        )
        self._stub = rpb_grpc.RunnerServiceStub(self._channel)
        self._call_metadata = call_metadata(metadata, token)

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
        chunk_window_ms: int | None = None,
        continue_on_disconnect: bool = False,
        exclude_reasoning: bool = False,
    ) -> Generator[Message, None, None]:
        """Start a run and yield its messages; the last is the terminal TaskMessage.

        Arguments as for Client.streaming_run. Raises a typed AgentStreamError when the call fails; leaving
        the loop or closing the generator early cancels the call, and with it the run on the server.
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
            continue_on_disconnect=continue_on_disconnect,
            exclude_reasoning=exclude_reasoning,
        )
        call = self._stub.StreamingRun(request, metadata=traced(self._call_metadata))
        try:
            for message in call:
                yield from_proto(message)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    def start_run(
        self,
        input: str,
        *,
        agent: str | None = None,
        session_id: str | None = None,
        run_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
        chunk_window_ms: int | None = None,
    ) -> str:
        """Start a run without streaming it; returns its run id."""
        request = build_start_request(
            input,
            agent=agent,
            session_id=session_id,
            run_id=run_id,
            metadata=metadata,
            timeout=timeout,
            chunk_window_ms=chunk_window_ms,
        )
        try:
            return self._stub.StartRun(request, metadata=traced(self._call_metadata)).run_id
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def subscribe_run(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        streaming_mode: StreamingMode | int = StreamingMode.CORE,
        exclude_reasoning: bool = False,
    ) -> Generator[Message, None, None]:
        """Yield a run's events with seq > after_seq, then live ones, ending with the terminal message."""
        request = rpb.SubscribeRunRequest(
            run_id=run_id,
            after_seq=after_seq,
            streaming_mode=int(streaming_mode),  # type: ignore[arg-type]
            exclude_reasoning=exclude_reasoning,
        )
        call = self._stub.SubscribeRun(request, metadata=traced(self._call_metadata))
        try:
            for message in call:
                yield from_proto(message)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    def cancel_run(self, run_id: str, reason: str = "") -> CancelResult:
        """Cancel a run; every subscriber gets its terminal message with status CANCELLED and the reason."""
        try:
            response = self._stub.CancelRun(
                rpb.CancelRunRequest(run_id=run_id, reason=reason), metadata=traced(self._call_metadata)
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return CancelResult(response.already_finished, TaskStatus(response.status))

    def get_run(self, run_id: str) -> RunInfo:
        """Describe a run."""
        try:
            return run_info_from_proto(
                self._stub.GetRun(rpb.GetRunRequest(run_id=run_id), metadata=traced(self._call_metadata))
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def resolve_interrupt(self, run_id: str, interrupt_id: str, *, approve: bool, message: str = "") -> TaskStatus:
        """Answer a run waiting for a person; the run's status after the decision (see Client.resolve_interrupt)."""
        request = build_resolve_request(run_id, interrupt_id, approve=approve, message=message)
        try:
            response = self._stub.ResolveInterrupt(request, metadata=traced(self._call_metadata))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return TaskStatus(response.status)

    def get_session(self, session_id: str) -> Session:
        """Describe a conversation (see Client.get_session)."""
        try:
            return session_from_proto(
                self._stub.GetSession(rpb.GetSessionRequest(session_id=session_id), metadata=self._call_metadata)
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def delete_session(self, session_id: str) -> int:
        """Forget a conversation's history; how many turns it held (see Client.delete_session)."""
        try:
            request = rpb.DeleteSessionRequest(session_id=session_id)
            return self._stub.DeleteSession(request, metadata=self._call_metadata).deleted_turns
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
