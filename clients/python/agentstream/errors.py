"""Typed errors: the server's error table inverted (one class per reason), built from gRPC statuses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, overload

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from agentstream.messages import TaskResponse
from agentstream.types import TaskStatus

ERROR_DOMAIN = "agentstream.dev"
"""The ``google.rpc.ErrorInfo.domain`` of the errors the agentstream server reports."""


class AgentStreamError(Exception):
    """An error reported by (or on the way to) the agentstream server.

    ``code`` is the call's grpc.StatusCode; ``reason`` the ErrorInfo reason (the class's own, or the
    server's when this SDK does not know it yet); ``message`` the status message; ``metadata`` the ErrorInfo
    metadata; ``field_violations`` the BadRequest (field, description) pairs; ``details`` every detail
    message of the status, unpacked when it is an ErrorInfo or BadRequest.
    """

    reason: str = ""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[tuple[str, str]] | None = None,
        details: Sequence[Any] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: list[tuple[str, str]] = list(field_violations or [])
        self.details: list[Any] = list(details or [])
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason or 'ERROR'}: {self.message}"


class InvalidArgument(AgentStreamError):
    """A request field is missing, blank, too large or malformed (see field_violations)."""

    reason = "INVALID_ARGUMENT"


class Unauthenticated(AgentStreamError):
    """The call had no usable token: none, malformed, unknown, expired or badly signed (the message says which)."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(AgentStreamError):
    """The token is valid, but none of its roles may call this RPC (metadata: method, required_role)."""

    reason = "PERMISSION_DENIED"

    @property
    def required_role(self) -> str:
        """The smallest role that may make this call."""
        return self.metadata.get("required_role", "")


class AgentNotFound(AgentStreamError):
    """The requested agent is not configured on the server."""

    reason = "AGENT_NOT_FOUND"

    @property
    def known_agents(self) -> list[str]:
        """The agents the server does know."""
        return [name for name in self.metadata.get("known_agents", "").split(",") if name]


class RunAlreadyExists(AgentStreamError):
    """The requested run_id is already in use."""

    reason = "RUN_ALREADY_EXISTS"


class TooManyRuns(AgentStreamError):
    """The server is at its concurrent-run limit; retry later."""

    reason = "TOO_MANY_RUNS"


class ServerDraining(AgentStreamError):
    """The server is shutting down; retry on another replica."""

    reason = "SERVER_DRAINING"


class RunNotFound(AgentStreamError):
    """No run with that id is known to the server."""

    reason = "RUN_NOT_FOUND"


class SeqOutOfRange(AgentStreamError):
    """after_seq is past the run's last seq, or its events are no longer retained (see metadata)."""

    reason = "SEQ_OUT_OF_RANGE"

    @property
    def last_seq(self) -> int:
        """The run's last seq when the error was raised."""
        return int(self.metadata.get("last_seq", "0"))

    @property
    def oldest_retained_seq(self) -> int:
        """The oldest event the run still retains."""
        return int(self.metadata.get("oldest_retained_seq", "0"))


class TooManySubscribers(AgentStreamError):
    """The run has as many subscribers as the server allows."""

    reason = "TOO_MANY_SUBSCRIBERS"


class LLMUpstreamError(AgentStreamError):
    """The run failed because the LLM endpoint failed (in-band)."""

    reason = "LLM_UPSTREAM_ERROR"


class RunStoreUnavailable(AgentStreamError):
    """The run failed because the server lost its shared run store (Redis) (in-band)."""

    reason = "RUN_STORE_UNAVAILABLE"


class MaxStepsExceeded(AgentStreamError):
    """The agent used all its steps without an answer (in-band)."""

    reason = "MAX_STEPS_EXCEEDED"


class RunTimedOut(AgentStreamError):
    """The run passed its time limit (in-band)."""

    reason = "RUN_TIMED_OUT"


class RunCancelled(AgentStreamError):
    """The run was cancelled (in-band)."""

    reason = "RUN_CANCELLED"


class RunInterrupted(AgentStreamError):
    """The replica executing the run died; the run ended with status INTERRUPTED (in-band)."""

    reason = "RUN_INTERRUPTED"


class SessionBusy(AgentStreamError):
    """A run is already live on the session; metadata `run_id` names it. Wait for it to end or cancel it."""

    reason = "SESSION_BUSY"


class SessionNotFound(AgentStreamError):
    """No session with the requested id is known (never used, deleted, or idle past its TTL)."""

    reason = "SESSION_NOT_FOUND"


class InterruptNotFound(AgentStreamError):
    """No such run, or the run has no interrupt with that id."""

    reason = "INTERRUPT_NOT_FOUND"


class InterruptAlreadyResolved(AgentStreamError):
    """The interrupt was already resolved (by another caller, or by its approval timeout)."""

    reason = "INTERRUPT_ALREADY_RESOLVED"


class AgentDepthExceeded(AgentStreamError):
    """Agents called as tools nested deeper than the server allows; the run ends FAILED."""

    reason = "AGENT_DEPTH_EXCEEDED"


class InternalError(AgentStreamError):
    """An unexpected failure inside the server."""

    reason = "INTERNAL"


class TransportError(AgentStreamError):
    """A gRPC failure without agentstream details: unreachable server, client deadline, and so on."""


ERRORS_BY_REASON: dict[str, type[AgentStreamError]] = {
    cls.reason: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        PermissionDenied,
        AgentNotFound,
        RunAlreadyExists,
        TooManyRuns,
        ServerDraining,
        RunNotFound,
        SeqOutOfRange,
        TooManySubscribers,
        LLMUpstreamError,
        RunStoreUnavailable,
        MaxStepsExceeded,
        RunTimedOut,
        RunCancelled,
        RunInterrupted,
        SessionBusy,
        SessionNotFound,
        InterruptNotFound,
        InterruptAlreadyResolved,
        AgentDepthExceeded,
        InternalError,
    )
}
"""Error class for each ErrorInfo reason of the server's error table."""

_CALL_ERRORS = (grpc.Call, grpc.aio.AioRpcError)  # a sync channel's errors are grpc.Call; the aio one is not


def from_rpc_error(error: grpc.RpcError) -> AgentStreamError:
    """The typed error for a failed call: by the ErrorInfo reason of its status details, else TransportError.

    A status from this service carries ``google.rpc.ErrorInfo`` (domain ``agentstream.dev``) and, when a
    request field is at fault, ``google.rpc.BadRequest``. A status without them (server unreachable, client
    deadline, a proxy's error) is a TransportError with the call's code; a reason this SDK does not know yet
    is a plain AgentStreamError carrying that reason.
    """
    code = _code(error)
    message = _text(error) or code.name
    info: error_details_pb2.ErrorInfo | None = None
    violations: list[tuple[str, str]] = []
    details: list[Any] = []
    for packed in _status_details(error):
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            details.append(info)
        elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            details.append(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
        else:
            details.append(packed)
    if info is None or info.domain != ERROR_DOMAIN:
        return TransportError(message, code=code, field_violations=violations, details=details)
    cls = ERRORS_BY_REASON.get(info.reason)
    return (cls or AgentStreamError)(
        message,
        code=code,
        metadata=info.metadata,
        field_violations=violations,
        details=details,
        reason=None if cls else info.reason,
    )


def _code(error: grpc.RpcError) -> grpc.StatusCode:
    code = error.code() if isinstance(error, _CALL_ERRORS) else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _text(error: grpc.RpcError) -> str:
    text = error.details() if isinstance(error, _CALL_ERRORS) else None
    return text if isinstance(text, str) else ""


def _status_details(error: grpc.RpcError) -> list[any_pb2.Any]:
    """The packed details of the call's google.rpc.Status trailer; none when absent or inconsistent."""
    if not isinstance(error, _CALL_ERRORS):
        return []
    try:
        status: status_pb2.Status | None = rpc_status.from_call(error)
    except (ValueError, DecodeError):  # a trailer contradicting the call's code or message, or garbage
        return []
    return list(status.details) if status is not None else []


@overload
def error_for_task(task: TaskResponse, /) -> AgentStreamError: ...


@overload
def error_for_task(
    reason: str, /, code: str, message: str, metadata: Mapping[str, str] | None = None
) -> AgentStreamError: ...


def error_for_task(
    task: TaskResponse | str, /, code: str = "", message: str = "", metadata: Mapping[str, str] | None = None
) -> AgentStreamError:
    """The typed error for an in-band failure, for callers who prefer raising to checking ``success``.

    Pass the terminal TaskMessage's payload (``raise error_for_task(msg.payload)``), or the reason, gRPC
    code name and message of its error. A failed response without an error takes its class from its status
    (TIMED_OUT: RunTimedOut, CANCELLED: RunCancelled, INTERRUPTED: RunInterrupted, otherwise
    InternalError); a successful one is a ValueError.
    """
    if not isinstance(task, TaskResponse):
        cls = ERRORS_BY_REASON.get(task)
        status = grpc.StatusCode[code] if code in grpc.StatusCode.__members__ else grpc.StatusCode.UNKNOWN
        return (cls or AgentStreamError)(message, code=status, metadata=metadata, reason=None if cls else task)
    if task.success:
        raise ValueError("the task succeeded: there is no error for it")
    if task.error is not None:
        return error_for_task(task.error.reason, task.error.code, task.msg, task.error.metadata)
    fallback, fallback_code = _BY_STATUS.get(task.status, (InternalError, grpc.StatusCode.INTERNAL))
    return fallback(task.msg or task.status.name, code=fallback_code)


_BY_STATUS: dict[TaskStatus, tuple[type[AgentStreamError], grpc.StatusCode]] = {
    TaskStatus.TIMED_OUT: (RunTimedOut, grpc.StatusCode.DEADLINE_EXCEEDED),
    TaskStatus.CANCELLED: (RunCancelled, grpc.StatusCode.CANCELLED),
    TaskStatus.INTERRUPTED: (RunInterrupted, grpc.StatusCode.UNAVAILABLE),
}
