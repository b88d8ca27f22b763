"""Typed errors: the server's error table inverted (one class per reason), built from gRPC statuses."""

from __future__ import annotations

from typing import Any, ClassVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "agentstream.dev"


class AgentStreamError(Exception):
    """An error reported by (or on the way to) the agentstream server."""

    reason: ClassVar[str] = ""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        metadata: dict[str, str] | None = None,
        field_violations: list[tuple[str, str]] | None = None,
        details: list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.metadata = metadata or {}
        self.field_violations = field_violations or []
        self.details = details or []

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason or 'ERROR'}: {self.message}"


class InvalidArgument(AgentStreamError):
    """A request field is missing, blank, too large or malformed (see field_violations)."""

    reason = "INVALID_ARGUMENT"


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


class InternalError(AgentStreamError):
    """An unexpected failure inside the server."""

    reason = "INTERNAL"


class TransportError(AgentStreamError):
    """A gRPC failure without agentstream details: unreachable server, client deadline, and so on."""


ERRORS_BY_REASON: dict[str, type[AgentStreamError]] = {
    cls.reason: cls
    for cls in (
        InvalidArgument,
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
        InternalError,
    )
}
"""Error class for each ErrorInfo reason of the server's error table."""

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


def from_rpc_error(error: grpc.RpcError) -> AgentStreamError:
    """The typed error for a failed call, from its ErrorInfo / BadRequest details, else from its code."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or code.name
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
    cls: type[AgentStreamError] = TransportError
    if info is not None and info.domain == ERROR_DOMAIN:
        cls = ERRORS_BY_REASON.get(info.reason, TransportError)
    return cls(
        message,
        code=code,
        metadata=dict(info.metadata) if info is not None else {},
        field_violations=violations,
        details=details,
    )


def _status_details(error: grpc.RpcError) -> list[any_pb2.Any]:
    trailing = getattr(error, "trailing_metadata", None)
    metadata = trailing() if callable(trailing) else None
    for key, value in metadata or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            return list(status.details)
    return []


def error_for_task(reason: str, code: str, message: str, metadata: dict[str, str] | None = None) -> AgentStreamError:
    """The typed error for an in-band failure (a terminal TaskMessage's error), for callers who prefer raising."""
    cls = ERRORS_BY_REASON.get(reason, InternalError)
    status = grpc.StatusCode[code] if code in grpc.StatusCode.__members__ else grpc.StatusCode.UNKNOWN
    return cls(message, code=status, metadata=metadata)
