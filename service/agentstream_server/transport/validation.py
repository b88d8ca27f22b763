"""Request validation: turns a raw run request into a checked one, or raises InvalidArgument naming the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from agentstream_server.errors import InvalidArgument
from agentstream_server.runs.modes import Mode, mode_from_number
from agentstream_server.runs.request import ValidRunRequest

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_METADATA_ENTRIES = 64
MAX_METADATA_BYTES = 16 * 1024
MAX_CHUNK_WINDOW_MS = 1000
MAX_AGENT_NAME_CHARS = 128
MAX_SESSION_ID_CHARS = 256
MAX_CANCEL_REASON_CHARS = 1024
MAX_DURATION_SECONDS = 315_576_000_000
"""The largest google.protobuf.Duration (10,000 years)."""
ON_DISCONNECT_CANCELS = {0: True, 1: True, 2: False}
"""OnDisconnect number -> whether the run is cancelled when its StreamingRun caller goes away."""


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A run request as received, before validation (the servicer builds it from protobuf)."""

    input: str
    agent: str = ""
    streaming_mode: int = 0
    session_id: str = ""
    run_id: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    timeout: tuple[int, int] | None = None
    """The request's Duration as (seconds, nanos), unchecked."""
    chunk_window_ms: int | None = None
    on_disconnect: int = 0


def validate_run_request(request: RunRequest, *, max_input_bytes: int) -> ValidRunRequest:
    """Check every field of a run request; raise InvalidArgument with the offending field on the first fault."""
    if not request.input.strip():
        raise InvalidArgument("input must not be empty or whitespace", field="input")
    size = len(request.input.encode())
    if size > max_input_bytes:
        raise InvalidArgument(
            f"input is {size} bytes; the limit is {max_input_bytes} bytes",
            field="input",
            metadata={"limit_bytes": str(max_input_bytes), "size_bytes": str(size)},
        )
    mode = mode_from_number(request.streaming_mode)
    if mode is None:
        known = ", ".join(f"{m.value} ({m.name})" for m in Mode)
        raise InvalidArgument(
            f"streaming_mode {request.streaming_mode} is unknown; use one of {known}",
            field="streaming_mode",
        )
    if request.run_id:
        validate_run_id(request.run_id)
    if len(request.agent) > MAX_AGENT_NAME_CHARS:
        raise InvalidArgument(
            f"agent is {len(request.agent)} characters; agent names are at most {MAX_AGENT_NAME_CHARS}", field="agent"
        )
    if len(request.session_id) > MAX_SESSION_ID_CHARS:
        raise InvalidArgument(f"session_id must be at most {MAX_SESSION_ID_CHARS} characters", field="session_id")
    _check_metadata(request.metadata)
    timeout_s = _timeout_seconds(request.timeout)
    if request.chunk_window_ms is not None and request.chunk_window_ms > MAX_CHUNK_WINDOW_MS:
        raise InvalidArgument(
            f"chunk_window_ms is {request.chunk_window_ms}; the limit is {MAX_CHUNK_WINDOW_MS}", field="chunk_window_ms"
        )
    if request.on_disconnect not in ON_DISCONNECT_CANCELS:
        raise InvalidArgument(
            f"on_disconnect {request.on_disconnect} is unknown; use 1 (CANCEL) or 2 (CONTINUE)", field="on_disconnect"
        )
    return ValidRunRequest(
        input=request.input,
        agent=request.agent,
        mode=mode,
        session_id=request.session_id,
        run_id=request.run_id,
        metadata=dict(request.metadata),
        timeout_s=timeout_s,
        chunk_window_ms=request.chunk_window_ms,
        cancel_on_disconnect=ON_DISCONNECT_CANCELS[request.on_disconnect],
    )


def _timeout_seconds(timeout: tuple[int, int] | None) -> float | None:
    if timeout is None:
        return None
    seconds, nanos = timeout
    if not 0 <= nanos < 1_000_000_000 or abs(seconds) > MAX_DURATION_SECONDS:
        raise InvalidArgument(
            f"timeout is not a valid Duration (seconds={seconds}, nanos={nanos}): nanos must be 0..999,999,999 "
            f"and seconds at most {MAX_DURATION_SECONDS}",
            field="timeout",
        )
    if seconds < 0 or (seconds == 0 and nanos == 0):
        raise InvalidArgument("timeout must be a positive duration when set", field="timeout")
    return seconds + nanos / 1e9


def validate_cancel_reason(reason: str) -> str:
    """Check a CancelRun reason (it is echoed into the run's terminal message, so it is bounded)."""
    if len(reason) > MAX_CANCEL_REASON_CHARS:
        raise InvalidArgument(
            f"reason is {len(reason)} characters; the limit is {MAX_CANCEL_REASON_CHARS}", field="reason"
        )
    return reason


MAX_DECISION_MESSAGE_CHARS = 64 * 1024
"""The longest ResolveInterrupt message (it becomes a tool result the model reads, and an event)."""


def validate_interrupt_id(interrupt_id: str) -> str:
    """Check a ResolveInterrupt's interrupt id (as the run's interrupt event named it)."""
    if not RUN_ID_PATTERN.fullmatch(interrupt_id):
        raise InvalidArgument(
            "interrupt_id must be 1-128 characters of letters, digits, '.', '_', ':' or '-' (copy it from the "
            "run's interrupt event or GetRun's pending_interrupts)",
            field="interrupt_id",
        )
    return interrupt_id


def validate_decision_message(message: str) -> str:
    """Check a ResolveInterrupt message: bounded, since the model reads it as a tool result."""
    if len(message) > MAX_DECISION_MESSAGE_CHARS:
        raise InvalidArgument(
            f"message is {len(message)} characters; the limit is {MAX_DECISION_MESSAGE_CHARS}", field="message"
        )
    return message


def validate_subscription(run_id: str, streaming_mode: int) -> Mode:
    """Check a SubscribeRun request's run id and mode; returns the mode."""
    validate_run_id(run_id)
    mode = mode_from_number(streaming_mode)
    if mode is None:
        raise InvalidArgument(f"streaming_mode {streaming_mode} is unknown", field="streaming_mode")
    return mode


def validate_session_id(session_id: str) -> str:
    """Check the session id GetSession and DeleteSession name."""
    if not session_id:
        raise InvalidArgument("session_id must not be empty", field="session_id")
    if len(session_id) > MAX_SESSION_ID_CHARS:
        raise InvalidArgument(f"session_id must be at most {MAX_SESSION_ID_CHARS} characters", field="session_id")
    return session_id


def validate_run_id(run_id: str) -> str:
    """Check a run id (client-chosen on StreamingRun/StartRun, or named by the other RPCs)."""
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise InvalidArgument(
            "run_id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'", field="run_id"
        )
    return run_id


def _check_metadata(metadata: Mapping[str, str]) -> None:
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise InvalidArgument(
            f"metadata has {len(metadata)} entries; the limit is {MAX_METADATA_ENTRIES}", field="metadata"
        )
    size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if size > MAX_METADATA_BYTES:
        raise InvalidArgument(f"metadata is {size} bytes; the limit is {MAX_METADATA_BYTES} bytes", field="metadata")
