"""A run request as the run manager accepts it: validated, mode resolved (the transport builds it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agentstream_server.runs.modes import Mode


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
