"""Request validation: turns a raw run request into a checked one, or raises InvalidArgument naming the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from service.errors import InvalidArgument
from service.modes import Mode, mode_from_number

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_METADATA_ENTRIES = 64
MAX_METADATA_BYTES = 16 * 1024
MAX_CHUNK_WINDOW_MS = 1000
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
    timeout_s: float | None = None
    chunk_window_ms: int | None = None
    on_disconnect: int = 0


@dataclass(frozen=True, slots=True)
class ValidRunRequest:
    """A validated run request: mode resolved, limits checked."""

    input: str
    agent: str
    mode: Mode
    session_id: str
    run_id: str
    metadata: Mapping[str, str]
    timeout_s: float | None
    chunk_window_ms: int | None = None
    cancel_on_disconnect: bool = True


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
    if len(request.session_id) > 256:
        raise InvalidArgument("session_id must be at most 256 characters", field="session_id")
    _check_metadata(request.metadata)
    if request.timeout_s is not None and not request.timeout_s > 0:
        raise InvalidArgument("timeout must be a positive duration when set", field="timeout")
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
        timeout_s=request.timeout_s,
        chunk_window_ms=request.chunk_window_ms,
        cancel_on_disconnect=ON_DISCONNECT_CANCELS[request.on_disconnect],
    )


def validate_subscription(run_id: str, streaming_mode: int) -> Mode:
    """Check a SubscribeRun request's run id and mode; returns the mode."""
    validate_run_id(run_id)
    mode = mode_from_number(streaming_mode)
    if mode is None:
        raise InvalidArgument(f"streaming_mode {streaming_mode} is unknown", field="streaming_mode")
    return mode


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
