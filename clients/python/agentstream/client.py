"""The async client: one channel, typed streaming runs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc

from agentstream.errors import TransportError, from_rpc_error
from agentstream.messages import Interrupt, Message, TaskResponse, from_proto, interrupt, task_response
from agentstream.sessions import Session, session_from_proto
from agentstream.telemetry import traced, with_keepalive
from agentstream.tls import PemSource, channel_credentials
from agentstream.types import StreamingMode, TaskStatus
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc

DEFAULT_TARGET = "127.0.0.1:50051"


def resolve_target(target: str | None) -> str:
    """The target to dial: the argument, else AGENTSTREAM_TARGET, else 127.0.0.1:50051."""
    return target or os.environ.get("AGENTSTREAM_TARGET") or DEFAULT_TARGET


def resolve_token(token: str | None) -> str | None:
    """The bearer token to send: the argument, else AGENTSTREAM_TOKEN, else none."""
    return token or os.environ.get("AGENTSTREAM_TOKEN") or None


def call_metadata(metadata: Mapping[str, str] | None, token: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata sent on every call: the caller's, plus ``authorization: Bearer <token>`` with a token."""
    resolved = resolve_token(token)
    if not resolved:
        return tuple((metadata or {}).items())
    others = [(key, value) for key, value in (metadata or {}).items() if key.lower() != "authorization"]
    return (*others, ("authorization", f"Bearer {resolved}"))


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
    continue_on_disconnect: bool = False,
    exclude_reasoning: bool = False,
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
    if continue_on_disconnect:
        request.on_disconnect = rpb.ON_DISCONNECT_CONTINUE
    if exclude_reasoning:
        request.exclude_reasoning = True
    return request


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What the server says about a run (GetRun)."""

    run_id: str
    agent: str
    session_id: str
    status: TaskStatus
    last_seq: int
    response: TaskResponse | None
    pending_interrupts: list[Interrupt] = field(default_factory=list)
    """While the status is INPUT_REQUIRED: the interrupts waiting for resolve_interrupt."""


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What CancelRun did."""

    already_finished: bool
    status: TaskStatus


RESUME_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)


def build_start_request(
    input: str,
    *,
    agent: str | None,
    session_id: str | None,
    run_id: str | None,
    metadata: Mapping[str, str] | None,
    timeout: float | None,
    chunk_window_ms: int | None,
) -> rpb.StartRunRequest:
    """The StartRunRequest for these arguments."""
    request = rpb.StartRunRequest(
        input=input, agent=agent or "", session_id=session_id or "", run_id=run_id or "", metadata=dict(metadata or {})
    )
    if timeout is not None:
        request.timeout.FromNanoseconds(int(timeout * 1e9))
    if chunk_window_ms is not None:
        request.chunk_window_ms = chunk_window_ms
    return request


def run_info_from_proto(run: rpb.Run) -> RunInfo:
    """The SDK form of a GetRun answer."""
    return RunInfo(
        run_id=run.run_id,
        agent=run.agent,
        session_id=run.session_id,
        status=TaskStatus(run.status),
        last_seq=run.last_seq,
        response=task_response(run.response) if run.HasField("response") else None,
        pending_interrupts=[interrupt(p) for p in run.pending_interrupts],
    )


def build_resolve_request(
    run_id: str, interrupt_id: str, *, approve: bool, message: str
) -> rpb.ResolveInterruptRequest:
    """The ResolveInterruptRequest for these arguments."""
    return rpb.ResolveInterruptRequest(run_id=run_id, interrupt_id=interrupt_id, approve=approve, message=message)


class Client:
    """Async agentstream client; use as ``async with Client(target) as client:``.

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
            grpc.aio.secure_channel(self.target, secure, options=with_keepalive(channel_options))
            if secure
            else grpc.aio.insecure_channel(self.target, options=with_keepalive(channel_options))
        )
        self._stub = rpb_grpc.RunnerServiceStub(self._channel)
        self._call_metadata = call_metadata(metadata, token)

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
        continue_on_disconnect: bool = False,
        exclude_reasoning: bool = False,
    ) -> AsyncGenerator[Message, None]:
        """Start a run and yield its messages; the last is the terminal TaskMessage.

        Raises a typed AgentStreamError when the call fails; stopping early cancels the call, which cancels
        the run on the server unless ``continue_on_disconnect`` (then pick it up with subscribe_run).
        ``chunk_window_ms`` merges token deltas arriving within the window into one chunk (None: server default).
        ``exclude_reasoning`` leaves a reasoning model's reasoning text out of this stream.
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
            async for message in call:
                yield from_proto(message)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    async def start_run(
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
        """Start a run without streaming it; returns its run id (follow it with subscribe_run)."""
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
            response = await self._stub.StartRun(request, metadata=traced(self._call_metadata))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return response.run_id

    async def subscribe_run(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        streaming_mode: StreamingMode | int = StreamingMode.CORE,
        resume: bool = False,
        max_attempts: int = len(RESUME_BACKOFF_S),
        exclude_reasoning: bool = False,
    ) -> AsyncGenerator[Message, None]:
        """Yield a run's events with seq > after_seq, then live ones, ending with the terminal message.

        With ``resume=True`` a transport failure (server restart, network drop) re-subscribes from the last
        seq yielded, with backoff, so the loop sees no duplicate and no gap; it gives up after
        ``max_attempts`` consecutive failures. Errors the server reports (unknown run, seq out of range)
        are raised at once. ``exclude_reasoning`` leaves reasoning text out of this stream.
        """
        position = after_seq
        failures = 0
        while True:
            request = rpb.SubscribeRunRequest(
                run_id=run_id,
                after_seq=position,
                streaming_mode=int(streaming_mode),  # type: ignore[arg-type]
                exclude_reasoning=exclude_reasoning,
            )
            call = self._stub.SubscribeRun(request, metadata=traced(self._call_metadata))
            try:
                async for message in call:
                    failures = 0
                    position = message.seq
                    yield from_proto(message)
                return
            except grpc.RpcError as error:
                typed = from_rpc_error(error)
                if not resume or not isinstance(typed, TransportError) or failures >= max_attempts:
                    raise typed from None
                await asyncio.sleep(RESUME_BACKOFF_S[min(failures, len(RESUME_BACKOFF_S) - 1)])
                failures += 1
            finally:
                call.cancel()

    async def cancel_run(self, run_id: str, reason: str = "") -> CancelResult:
        """Cancel a run; every subscriber gets its terminal message with status CANCELLED and the reason."""
        try:
            response = await self._stub.CancelRun(
                rpb.CancelRunRequest(run_id=run_id, reason=reason), metadata=traced(self._call_metadata)
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return CancelResult(response.already_finished, TaskStatus(response.status))

    async def get_run(self, run_id: str) -> RunInfo:
        """Describe a run: agent, status, last seq and, once it ended, its terminal response."""
        try:
            run = await self._stub.GetRun(rpb.GetRunRequest(run_id=run_id), metadata=traced(self._call_metadata))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return run_info_from_proto(run)

    async def resolve_interrupt(
        self, run_id: str, interrupt_id: str, *, approve: bool, message: str = ""
    ) -> TaskStatus:
        """Answer a run waiting for a person (an InterruptMessage, or RunInfo.pending_interrupts).

        TOOL_APPROVAL: ``approve=True`` runs the calls; ``approve=False`` makes each a failed tool result with
        ``message`` as the reason, and the model goes on. INPUT: ``message`` is the answer. Any caller of the
        run's tenant may answer, through any replica. Returns the run's status after the decision (RUNNING,
        or INPUT_REQUIRED while other interrupts wait). Raises InterruptNotFound (unknown run or interrupt)
        or InterruptAlreadyResolved (answered before, or its approval timeout passed).
        """
        request = build_resolve_request(run_id, interrupt_id, approve=approve, message=message)
        try:
            response = await self._stub.ResolveInterrupt(request, metadata=traced(self._call_metadata))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return TaskStatus(response.status)

    async def get_session(self, session_id: str) -> Session:
        """Describe a conversation: its turns (oldest first), its runs, its times and its live run, if any.

        Raises SessionNotFound for a session never used, deleted, or idle past the server's TTL.
        """
        try:
            session = await self._stub.GetSession(
                rpb.GetSessionRequest(session_id=session_id), metadata=self._call_metadata
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return session_from_proto(session)

    async def delete_session(self, session_id: str) -> int:
        """Forget a conversation's history; returns how many turns it held.

        Raises SessionBusy while a run is live on it, SessionNotFound when it is not known.
        """
        try:
            response = await self._stub.DeleteSession(
                rpb.DeleteSessionRequest(session_id=session_id), metadata=self._call_metadata
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return response.deleted_turns
