"""A run's ordered event log: seq is assigned on append, every reader is a cursor over the log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping

from service.runtime.events import Event, RunEvent, TaskFinished


class RunLogClosed(RuntimeError):
    """Raised when appending to a log that already holds its terminal event."""


class RunLog:
    """The in-memory, append-only event log of one run.

    ``append`` numbers events 1, 2, 3 ... and wakes waiting readers; ``follow`` is a cursor that replays
    from any point, then follows live until the terminal event. A slow reader never holds back the run
    nor another reader: each keeps its own position.
    """

    __slots__ = ("_events", "_max_unread", "_paced_seq", "_pacing", "_waiter", "_writable", "run_id", "session_id")

    def __init__(self, run_id: str, session_id: str = "", *, max_unread: int = 10_000) -> None:
        self.run_id = run_id
        self.session_id = session_id
        self._events: list[RunEvent] = []
        self._waiter: asyncio.Future[None] | None = None
        self._max_unread = max_unread
        self._pacing = False
        self._paced_seq = 0
        self._writable: asyncio.Future[None] | None = None

    @property
    def must_wait(self) -> bool:
        """True when the pacing reader is more than max_unread events behind: the producer should wait."""
        return self._pacing and len(self._events) - self._paced_seq > self._max_unread

    async def wait_writable(self) -> None:
        """Wait until the pacing reader has caught up to half the bound (or has gone)."""
        while self.must_wait:
            if self._writable is None:
                self._writable = asyncio.get_running_loop().create_future()
            await self._writable

    def _reader_advanced(self, seq: int) -> None:
        self._paced_seq = seq
        writable = self._writable
        if writable is not None and len(self._events) - seq <= self._max_unread // 2:
            self._writable = None
            if not writable.done():
                writable.set_result(None)

    def _stop_pacing(self) -> None:
        self._pacing = False
        self._reader_advanced(len(self._events))

    @property
    def last_seq(self) -> int:
        """The seq of the newest event (0 when empty)."""
        return len(self._events)

    @property
    def closed(self) -> bool:
        """True once the terminal event has been appended."""
        return bool(self._events) and self._events[-1].is_terminal

    @property
    def terminal(self) -> TaskFinished | None:
        """The terminal task response, once there is one."""
        if self.closed:
            event = self._events[-1].event
            assert isinstance(event, TaskFinished)
            return event
        return None

    def append(
        self,
        event: Event,
        *,
        sender: str = "",
        receiver: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> RunEvent:
        """Append an event, assigning the next seq, and wake every waiting reader."""
        if self.closed:
            raise RunLogClosed(f"run {self.run_id} already ended; cannot append {type(event).__name__}")
        record = RunEvent(
            run_id=self.run_id,
            seq=len(self._events) + 1,
            timestamp_ns=time.time_ns(),
            event=event,
            session_id=self.session_id,
            sender=sender,
            receiver=receiver,
            headers=headers or {},
        )
        self._events.append(record)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return record

    async def follow(self, after_seq: int = 0, *, pace: bool = False) -> AsyncIterator[RunEvent]:
        """Yield every event with seq > after_seq in order, waiting for new ones, until the terminal event.

        A pacing reader (at most one: the caller that started the run) holds the producer back once it is
        more than max_unread events behind, so a stalled caller bounds the run's memory instead of the
        log growing without limit; other readers never hold anything back.
        """
        if pace:
            self._pacing = True
            self._paced_seq = after_seq
        position = after_seq
        events = self._events
        try:
            while True:
                while position < len(events):
                    record = events[position]
                    position += 1
                    yield record
                    if record.is_terminal:
                        return
                    if pace:
                        self._reader_advanced(position)
                if self.closed:
                    return
                if self._waiter is None:
                    self._waiter = asyncio.get_running_loop().create_future()
                # Shielded so one cancelled reader does not cancel the future other readers wait on.
                await asyncio.shield(self._waiter)
        finally:
            if pace:
                self._stop_pacing()
