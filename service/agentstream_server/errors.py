"""Error classes of the service and the one table that maps each to a gRPC status code.

Codes are canonical gRPC code names (``grpc.StatusCode[code]``), so this module imports neither grpc
nor openai: the runtime raises these, the servicer turns them into statuses or in-band terminal
messages, and the SDKs invert the table by ``reason``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

ERROR_DOMAIN = "agentstream.dev"
"""The ``google.rpc.ErrorInfo.domain`` of every error this service reports."""


class AgentStreamError(Exception):
    """Base of every error the service reports to callers.

    ``field`` names the request field at fault (sent as ``google.rpc.BadRequest``); ``metadata`` is sent
    as ``google.rpc.ErrorInfo.metadata``.
    """

    code: ClassVar[str] = "INTERNAL"
    reason: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, *, field: str | None = None, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(AgentStreamError):
    """A request field is missing, blank, too large or malformed."""

    code = "INVALID_ARGUMENT"
    reason = "INVALID_ARGUMENT"


class Unauthenticated(AgentStreamError):
    """The call carries no usable credentials: no or malformed ``authorization``, an unknown, expired or badly
    signed token. The message says which, and never holds the token, its hash or any part of it."""

    code = "UNAUTHENTICATED"
    reason = "UNAUTHENTICATED"


class PermissionDenied(AgentStreamError):
    """The caller is authenticated, but none of its roles may call this RPC."""

    code = "PERMISSION_DENIED"
    reason = "PERMISSION_DENIED"


class AgentNotFound(AgentStreamError):
    """The requested agent is not configured; metadata lists the known agents."""

    code = "NOT_FOUND"
    reason = "AGENT_NOT_FOUND"


class RunAlreadyExists(AgentStreamError):
    """A run with the requested run id is already known to the server."""

    code = "ALREADY_EXISTS"
    reason = "RUN_ALREADY_EXISTS"


class TooManyRuns(AgentStreamError):
    """The server is running as many runs as its limit allows."""

    code = "RESOURCE_EXHAUSTED"
    reason = "TOO_MANY_RUNS"


class ServerDraining(AgentStreamError):
    """The server is shutting down and accepts no new runs."""

    code = "UNAVAILABLE"
    reason = "SERVER_DRAINING"


class RunNotFound(AgentStreamError):
    """No run with the requested id is known (never existed, or finished longer ago than the retention TTL)."""

    code = "NOT_FOUND"
    reason = "RUN_NOT_FOUND"


class SeqOutOfRange(AgentStreamError):
    """after_seq is past the run's last seq, or the events after it are no longer retained."""

    code = "OUT_OF_RANGE"
    reason = "SEQ_OUT_OF_RANGE"


def check_subscription_position(run_id: str, after_seq: int, last_seq: int, oldest_seq: int) -> None:
    """Raise SeqOutOfRange when events after after_seq cannot be served from a log holding oldest..last."""
    metadata = {"last_seq": str(last_seq), "oldest_retained_seq": str(oldest_seq)}
    if after_seq > last_seq:
        raise SeqOutOfRange(
            f"after_seq {after_seq} is past run {run_id}'s last seq {last_seq}", field="after_seq", metadata=metadata
        )
    if after_seq + 1 < oldest_seq:
        raise SeqOutOfRange(
            f"run {run_id} no longer retains the events after seq {after_seq}; the oldest retained is {oldest_seq}: "
            f"subscribe with after_seq >= {oldest_seq - 1}",
            field="after_seq",
            metadata=metadata,
        )


class TooManySubscribers(AgentStreamError):
    """The run already has as many subscribers as the server allows."""

    code = "RESOURCE_EXHAUSTED"
    reason = "TOO_MANY_SUBSCRIBERS"


class LLMUpstreamError(AgentStreamError):
    """The LLM endpoint failed (HTTP error, connection error, broken or stalled stream)."""

    code = "UNAVAILABLE"
    reason = "LLM_UPSTREAM_ERROR"


class RunStoreUnavailable(AgentStreamError):
    """The shared run store (Redis) was lost while the run was going on."""

    code = "UNAVAILABLE"
    reason = "RUN_STORE_UNAVAILABLE"


class MaxStepsExceeded(AgentStreamError):
    """The agent used all its steps without a final answer."""

    code = "RESOURCE_EXHAUSTED"
    reason = "MAX_STEPS_EXCEEDED"


class RunTimedOut(AgentStreamError):
    """The run exceeded its time limit."""

    code = "DEADLINE_EXCEEDED"
    reason = "RUN_TIMED_OUT"


class RunCancelled(AgentStreamError):
    """The run was cancelled by its caller or by a server shutdown."""

    code = "CANCELLED"
    reason = "RUN_CANCELLED"


CANCELLED_BY_CANCEL_RUN = "cancelled by CancelRun"
CANCELLED_BY_DISCONNECT = "caller cancelled or disconnected"
CANCELLED_BY_SHUTDOWN = "server shutting down"
"""Why a run was cancelled, as its terminal message says (after 'run cancelled: ')."""


class RunInterrupted(AgentStreamError):
    """The replica executing the run stopped (its lease expired); the run ends with status INTERRUPTED."""

    code = "UNAVAILABLE"
    reason = "RUN_INTERRUPTED"


class SessionBusy(AgentStreamError):
    """A run is already live on the session; metadata `run_id` names it. Wait for it to end or cancel it."""

    code = "FAILED_PRECONDITION"
    reason = "SESSION_BUSY"


class SessionNotFound(AgentStreamError):
    """No session with the requested id is known (never used, deleted, or idle past its TTL)."""

    code = "NOT_FOUND"
    reason = "SESSION_NOT_FOUND"


class InterruptNotFound(AgentStreamError):
    """No such run, or the run has no interrupt with that id."""

    code = "NOT_FOUND"
    reason = "INTERRUPT_NOT_FOUND"


def interrupt_not_found(run_id: str, interrupt_id: str) -> InterruptNotFound:
    """The error for an unknown run or interrupt (the same for both, so another tenant's run ids cannot be probed)."""
    return InterruptNotFound(
        f"run {run_id!r} has no interrupt {interrupt_id!r}",
        field="interrupt_id",
        metadata={"run_id": run_id, "interrupt_id": interrupt_id},
    )


class InterruptAlreadyResolved(AgentStreamError):
    """The interrupt was already resolved (by another caller, or by its approval timeout)."""

    code = "FAILED_PRECONDITION"
    reason = "INTERRUPT_ALREADY_RESOLVED"


class AgentDepthExceeded(AgentStreamError):
    """Agents called as tools nested deeper than the server allows; the run ends FAILED."""

    code = "RESOURCE_EXHAUSTED"
    reason = "AGENT_DEPTH_EXCEEDED"


class InternalError(AgentStreamError):
    """An unexpected failure inside the service."""

    code = "INTERNAL"
    reason = "INTERNAL"


@dataclass(frozen=True)
class ErrorRow:
    """One row of the error table."""

    error: type[AgentStreamError]
    in_band: bool
    """True when the error ends a started run in-band (terminal message) rather than as a call status."""

    @property
    def code(self) -> str:
        return self.error.code

    @property
    def reason(self) -> str:
        return self.error.reason


ERROR_TABLE: tuple[ErrorRow, ...] = (
    ErrorRow(InvalidArgument, in_band=False),
    ErrorRow(Unauthenticated, in_band=False),
    ErrorRow(PermissionDenied, in_band=False),
    ErrorRow(AgentNotFound, in_band=False),
    ErrorRow(RunAlreadyExists, in_band=False),
    ErrorRow(TooManyRuns, in_band=False),
    ErrorRow(ServerDraining, in_band=False),
    ErrorRow(RunNotFound, in_band=False),
    ErrorRow(SeqOutOfRange, in_band=False),
    ErrorRow(TooManySubscribers, in_band=False),
    ErrorRow(LLMUpstreamError, in_band=True),
    ErrorRow(RunStoreUnavailable, in_band=True),
    ErrorRow(MaxStepsExceeded, in_band=True),
    ErrorRow(RunTimedOut, in_band=True),
    ErrorRow(RunCancelled, in_band=True),
    ErrorRow(RunInterrupted, in_band=True),
    ErrorRow(SessionBusy, in_band=False),
    ErrorRow(SessionNotFound, in_band=False),
    ErrorRow(InterruptNotFound, in_band=False),
    ErrorRow(InterruptAlreadyResolved, in_band=False),
    ErrorRow(AgentDepthExceeded, in_band=True),
    ErrorRow(InternalError, in_band=True),
)
"""Every error the service reports: its class, gRPC code and ErrorInfo reason."""
