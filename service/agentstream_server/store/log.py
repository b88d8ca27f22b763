"""A run's ordered event log: seq is assigned on append, every reader is a cursor over the log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping

from agentstream_server.config import DEFAULT_MAX_RETAINED_EVENTS, DEFAULT_MAX_UNREAD_EVENTS
from agentstream_server.errors import check_subscription_position
from agentstream_server.runtime.events import Action, Chunk, Event, RunEvent, TaskFinished

RECORD_OVERHEAD_BYTES = 200
"""What one logged record costs beyond its text (the objects themselves), roughly: for memory bounds only."""


def approximate_size(event: Event) -> int:
    """Roughly how many bytes an event holds: its text fields plus a fixed overhead. Cheap per token."""
    if type(event) is Chunk:
        return RECORD_OVERHEAD_BYTES + len(event.content) + len(event.reasoning_content)
    size = RECORD_OVERHEAD_BYTES
    for value in (getattr(event, name) for name in type(event).__slots__):
        if type(value) is str:
            size += len(value)
        elif type(value) is tuple:
            size += sum(_action_size(item) if type(item) is Action else len(str(item)) for item in value)
    return size


def _record_size(record: RunEvent) -> int:
    size = approximate_size(record.event)
    if record.headers:
        size += sum(len(key) + len(value) for key, value in record.headers.items())
    return size


def _action_size(action: Action) -> int:
    return RECORD_OVERHEAD_BYTES + len(action.tool_name) + len(action.tool_call_id) + len(repr(action.params))


class RunLogClosed(RuntimeError):
    """Raised when appending to a log that already holds its terminal event."""


class EventsNotRetained(LookupError):
    """A reader asked for events the log no longer retains; ``oldest_seq`` is the oldest one it still has."""

    def __init__(self, run_id: str, wanted_seq: int, oldest_seq: int) -> None:
        super().__init__(
            f"run {run_id} no longer retains event {wanted_seq}; the oldest retained event is {oldest_seq}"
        )
        self.oldest_seq = oldest_seq


class RunLog:
    """The in-memory, append-only event log of one run.

    ``append`` numbers events 1, 2, 3 ... and wakes waiting readers; ``follow`` is a cursor that replays
    from any point, then follows live until the terminal event. A slow reader never holds back the run
    nor another reader: each keeps its own position. The log retains the newest ``max_retained`` events
    (a reader further behind gets EventsNotRetained, never a silent gap); the one pacing reader is never
    more than ``max_unread`` behind, so it never loses an event.
    """

    __slots__ = (
        "_bytes",
        "_close_callbacks",
        "_events",
        "_first_seq",
        "_last_seq",
        "_max_retained",
        "_max_unread",
        "_paced_seq",
        "_pacing",
        "_waiters",
        "_writable",
        "run_id",
        "session_id",
        "tenant",
    )

    def __init__(
        self,
        run_id: str,
        session_id: str = "",
        *,
        max_unread: int = DEFAULT_MAX_UNREAD_EVENTS,
        max_retained: int = DEFAULT_MAX_RETAINED_EVENTS,
        paced: bool = False,
        tenant: str = "",
    ) -> None:
        """``paced`` reserves pacing for a reader that will follow with ``pace=True`` (the run's caller), so
        the producer is held back from the first event, even before that reader starts."""
        if not 0 < max_unread < max_retained:
            raise ValueError(f"max_unread ({max_unread}) must be positive and below max_retained ({max_retained})")
        self.run_id = run_id
        self.session_id = session_id
        self.tenant = tenant
        self._events: list[RunEvent] = []
        self._bytes = 0
        self._first_seq = 1
        self._last_seq = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._max_unread = max_unread
        self._max_retained = max_retained
        self._pacing = paced
        self._paced_seq = 0
        self._writable: asyncio.Future[None] | None = None
        self._close_callbacks: list[Callable[[RunLog], None]] = []

    def on_closed(self, callback: Callable[[RunLog], None]) -> None:
        """Call ``callback(log)`` once the terminal event is appended (at once if it already is)."""
        if self.closed:
            callback(self)
        else:
            self._close_callbacks.append(callback)

    @property
    def last_seq(self) -> int:
        """The seq of the newest event (0 when empty)."""
        return self._last_seq

    @property
    def oldest_retained_seq(self) -> int:
        """The seq of the oldest event still held (1 until the log is trimmed)."""
        return self._first_seq

    @property
    def retained_bytes(self) -> int:
        """Roughly how much memory the retained events hold (see approximate_size)."""
        return self._bytes

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

    @property
    def must_wait(self) -> bool:
        """True when the pacing reader is more than max_unread events behind: the producer should wait."""
        return self._pacing and self._last_seq - self._paced_seq > self._max_unread

    async def wait_writable(self) -> None:
        """Wait until the pacing reader has caught up to half the bound (or has gone)."""
        while self.must_wait:
            if self._writable is None:
                self._writable = asyncio.get_running_loop().create_future()
            await self._writable

    def append(
        self,
        event: Event,
        *,
        sender: str = "",
        receiver: str = "",
        headers: Mapping[str, str] | None = None,
        caller: str = "",
        parent_tool_call_id: str = "",
        depth: int = 0,
    ) -> RunEvent:
        """Append an event, assigning the next seq, and wake every waiting reader."""
        if self.closed:
            raise RunLogClosed(f"run {self.run_id} already ended; cannot append {type(event).__name__}")
        self._last_seq += 1
        record = RunEvent(
            run_id=self.run_id,
            seq=self._last_seq,
            timestamp_ns=time.time_ns(),
            event=event,
            session_id=self.session_id,
            sender=sender,
            receiver=receiver,
            headers=headers or {},
            caller=caller,
            parent_tool_call_id=parent_tool_call_id,
            depth=depth,
        )
        events = self._events
        events.append(record)
        self._bytes += _record_size(record)
        if len(events) > self._max_retained + (self._max_retained >> 3):
            # Trim in batches (an eighth of the bound at a time) so the cost per append stays O(1) amortised.
            surplus = len(events) - self._max_retained
            self._bytes -= sum(_record_size(r) for r in events[:surplus])
            del events[:surplus]
            self._first_seq += surplus
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():  # a cancelled reader leaves its future behind
                    waiter.set_result(None)
        if self._close_callbacks and record.is_terminal:
            callbacks, self._close_callbacks = self._close_callbacks, []
            for callback in callbacks:
                callback(self)
        return record

    async def follow(self, after_seq: int = 0, *, pace: bool = False) -> AsyncIterator[RunEvent]:
        """Yield every event with seq > after_seq in order, waiting for new ones, until the terminal event.

        Raises EventsNotRetained when it reaches events the log no longer holds. A pacing reader (at most
        one: the caller that started the run) holds the producer back once it is more than max_unread
        events behind, so a stalled caller bounds the run's memory; other readers hold nothing back.
        """
        if pace:
            self._pacing = True
            self._paced_seq = after_seq
        position = after_seq
        events = self._events
        try:
            while True:
                while position < self._last_seq:
                    index = position + 1 - self._first_seq
                    if index < 0:
                        raise EventsNotRetained(self.run_id, position + 1, self._first_seq)
                    record = events[index]
                    position += 1
                    yield record
                    if record.is_terminal:
                        return
                    if pace:
                        self._reader_advanced(position)
                if self.closed:
                    return
                # Each reader waits on its own future, so cancelling one reader never disturbs another.
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter
        finally:
            if pace:
                self._stop_pacing()

    def _reader_advanced(self, seq: int) -> None:
        self._paced_seq = seq
        writable = self._writable
        if writable is not None and self._last_seq - seq <= self._max_unread // 2:
            self._writable = None
            if not writable.done():
                writable.set_result(None)

    def _stop_pacing(self) -> None:
        self._pacing = False
        self._reader_advanced(self._last_seq)


def subscription(log: RunLog, after_seq: int) -> AsyncIterator[RunEvent]:
    """A subscriber's cursor over a log after after_seq: SeqOutOfRange at once when it cannot be served, and
    while following if it falls behind the retention (never a silent gap)."""
    check_subscription_position(log.run_id, after_seq, log.last_seq, log.oldest_retained_seq)
    return _subscription(log, after_seq)


async def _subscription(log: RunLog, after_seq: int) -> AsyncIterator[RunEvent]:
    position = after_seq
    try:
        async for record in log.follow(after_seq):
            position = record.seq
            yield record
    except EventsNotRetained as gap:
        check_subscription_position(log.run_id, position, log.last_seq, gap.oldest_seq)
        raise
