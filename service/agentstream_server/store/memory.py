"""The in-memory RunStore (the default): runs of this process, finished ones kept within TTL, count and bytes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from agentstream_server.errors import (
    RunAlreadyExists,
    RunNotFound,
    TooManySubscribers,
    interrupt_not_found,
)
from agentstream_server.runtime.events import Interrupt, RunEvent, TaskStatus
from agentstream_server.store.base import NewRun, RunControl, RunInfo
from agentstream_server.store.log import RunLog, subscription
from agentstream_server.store.sessions import MemorySessions, SessionBounds


@dataclass(frozen=True, slots=True)
class Retention:
    """How long and how many finished runs the store keeps."""

    ttl_s: float = 300.0
    max_runs: int = 10_000
    max_bytes: int = 256 * 1024 * 1024


@dataclass(slots=True)
class _Entry:
    run: NewRun
    log: RunLog | None = None
    control: RunControl | None = None
    finished_at: float | None = None
    size: int = 0
    subscribers: int = 0


class MemoryStore:
    """Runs held by this process; a real RunStore (the behaviour suite runs on it and on Redis alike)."""

    def __init__(self, retention: Retention | None = None, sessions: SessionBounds | None = None) -> None:
        self._retention = retention or Retention()
        self.sessions = MemorySessions(sessions)
        """The sessions of this process."""
        self._entries: dict[tuple[str, str], _Entry] = {}
        """By (tenant, run id): run ids are per tenant."""
        self._finished: collections.deque[_Entry] = collections.deque()
        self._finished_bytes = 0
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def healthy(self) -> bool:
        """Always True: this process is the store."""
        return True

    @property
    def description(self) -> str:
        """For the start-up log line."""
        return "memory (this process)"

    @property
    def finished_runs(self) -> int:
        """How many finished runs are kept."""
        return len(self._finished)

    @property
    def finished_bytes(self) -> int:
        """Roughly how much memory the kept finished runs hold."""
        return self._finished_bytes

    def holds_run(self, run_id: str, *, tenant: str = "") -> bool:
        """True while the store holds the run (live, or finished and not yet forgotten)."""
        return (tenant, run_id) in self._entries

    async def claim(self, run: NewRun) -> None:
        """Reserve the run id; RunAlreadyExists if this process knows it (live or kept)."""
        if (run.tenant, run.run_id) in self._entries:
            raise RunAlreadyExists(
                f"run_id {run.run_id!r} is already in use", field="run_id", metadata={"run_id": run.run_id}
            )
        self._entries[run.tenant, run.run_id] = _Entry(run)

    def publish(self, log: RunLog, control: RunControl) -> asyncio.Future[None]:
        """Hold the log (the store holds the whole run from now on); once it closes, retention applies."""
        entry = self._entries[log.tenant, log.run_id]
        entry.log, entry.control = log, control
        log.on_closed(lambda _: self._keep_finished(entry))
        held: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        held.set_result(None)
        return held

    async def read(self, run_id: str, after_seq: int, *, tenant: str = "") -> AsyncIterator[RunEvent]:
        """A cursor over the run's log after after_seq."""
        return subscription(self._log(tenant, run_id), after_seq)

    async def describe(self, run_id: str, *, tenant: str = "") -> RunInfo:
        """What is known about the run."""
        entry = self._entry(tenant, run_id)
        log = entry.log
        terminal = log.terminal if log is not None else None
        return RunInfo(
            run_id=run_id,
            agent=entry.run.agent,
            session_id=entry.run.session_id,
            status=terminal.status if terminal is not None else TaskStatus.RUNNING,
            created_at=entry.run.created_at,
            finished_at=entry.finished_at,
            last_seq=log.last_seq if log is not None else 0,
            terminal=terminal,
        )

    async def cancel(self, run_id: str, reason: str, *, tenant: str = "") -> tuple[bool, TaskStatus]:
        """Cancel the run (it executes in this process) and wait for its terminal event."""
        entry = self._entry(tenant, run_id)
        log = entry.log
        if log is None or log.closed or entry.control is None:
            info = await self.describe(run_id, tenant=tenant)
            return True, info.status
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def end(_: RunLog) -> None:
            if not ended.done():
                ended.set_result(None)

        log.on_closed(end)
        entry.control.cancel(reason)
        await ended
        terminal = log.terminal
        return False, terminal.status if terminal is not None else TaskStatus.CANCELLED

    @contextlib.asynccontextmanager
    async def subscriber(self, run_id: str, limit: int, *, tenant: str = "") -> AsyncIterator[None]:
        """One of the run's subscriber slots."""
        entry = self._entry(tenant, run_id)
        if entry.subscribers >= limit:
            raise TooManySubscribers(
                f"run {run_id} already has {entry.subscribers} subscribers, the limit",
                metadata={"limit": str(limit)},
            )
        entry.subscribers += 1
        try:
            yield
        finally:
            entry.subscribers -= 1

    async def open_interrupt(
        self, tenant: str, run_id: str, interrupt: Interrupt, pending: tuple[Interrupt, ...]
    ) -> None:
        """Nothing to record: the run executes in this process, which answers for its interrupts."""

    async def close_interrupt(
        self, tenant: str, run_id: str, interrupt_id: str, pending: tuple[Interrupt, ...]
    ) -> bool:
        """Decisions reach the run in this process only through its own gate: nobody else can get there first."""
        return True

    async def resolve_interrupt(
        self, run_id: str, interrupt_id: str, approve: bool, message: str, *, tenant: str = ""
    ) -> TaskStatus:
        """Deliver the decision to the run (it executes in this process); an unknown run is InterruptNotFound."""
        entry = self._entries.get((tenant, run_id))
        if entry is None or entry.control is None:
            raise interrupt_not_found(run_id, interrupt_id)
        return entry.control.resolve(interrupt_id, approve, message)

    async def close(self) -> None:
        """Stop the expiry timer."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _entry(self, tenant: str, run_id: str) -> _Entry:
        entry = self._entries.get((tenant, run_id))
        if entry is None:
            retention = self._retention
            raise RunNotFound(
                f"run {run_id!r} is not known here (it never started, or it ended and was forgotten: finished "
                f"runs are kept for {retention.ttl_s:g} s, at most {retention.max_runs} of them)",
                field="run_id",
                metadata={"run_id": run_id},
            )
        return entry

    def _log(self, tenant: str, run_id: str) -> RunLog:
        log = self._entry(tenant, run_id).log
        if log is None:  # claimed, its first event not yet appended: nothing to read yet, but it exists
            raise RunNotFound(f"run {run_id!r} is starting; retry", field="run_id", metadata={"run_id": run_id})
        return log

    def _keep_finished(self, entry: _Entry) -> None:
        entry.finished_at = time.time()
        entry.size = entry.log.retained_bytes if entry.log is not None else 0
        self._finished.append(entry)
        self._finished_bytes += entry.size
        retention = self._retention
        while self._finished and (
            len(self._finished) > retention.max_runs or self._finished_bytes > retention.max_bytes
        ):
            self._forget_oldest()
        self._schedule_expiry()

    def _forget_oldest(self) -> None:
        entry = self._finished.popleft()
        self._finished_bytes -= entry.size
        key = (entry.run.tenant, entry.run.run_id)
        if self._entries.get(key) is entry:
            del self._entries[key]

    def _schedule_expiry(self) -> None:
        """One timer, set for when the oldest finished run expires: they go even when nothing else happens."""
        if self._expiry is not None or not self._finished:
            return
        expires_at = (self._finished[0].finished_at or 0.0) + self._retention.ttl_s
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_at(loop.time() + max(0.0, expires_at - time.time()), self._expire)

    def _expire(self) -> None:
        self._expiry = None
        cutoff = time.time() - self._retention.ttl_s
        while self._finished and (self._finished[0].finished_at or 0.0) <= cutoff:
            self._forget_oldest()
        self._schedule_expiry()
