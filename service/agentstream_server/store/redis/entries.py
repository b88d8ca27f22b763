"""Reading a run's registry entry: its status, and the answers for a run no replica knows."""

from __future__ import annotations

from collections.abc import AsyncIterator

from agentstream_server.errors import RunNotFound
from agentstream_server.runtime.events import RunEvent, TaskStatus

STATUS_BY_NAME = {status.value: status for status in TaskStatus}
LIVE = frozenset({TaskStatus.RUNNING, TaskStatus.INPUT_REQUIRED})
"""Statuses of a run that has not ended."""


def not_found(run_id: str) -> RunNotFound:
    """The error for a run no replica knows."""
    return RunNotFound(f"run {run_id!r} is not known to any replica", field="run_id", metadata={"run_id": run_id})


async def nothing() -> AsyncIterator[RunEvent]:
    """An empty stream of events."""
    return
    yield


def status_of(entry: dict[bytes, bytes]) -> TaskStatus:
    """A registry entry's status (RUNNING when it has none)."""
    return STATUS_BY_NAME.get(entry.get(b"status", b"running").decode(), TaskStatus.RUNNING)
