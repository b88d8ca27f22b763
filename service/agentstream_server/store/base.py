"""The RunStore protocol: where runs live beyond the replica executing them (domain types only, no protobuf)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from agentstream_server.errors import AgentStreamError
from agentstream_server.runtime.events import Interrupt, RunEvent, TaskFinished, TaskStatus
from agentstream_server.store.log import RunLog
from agentstream_server.store.sessions import SessionStore


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What is known about a run: GetRun's answer."""

    run_id: str
    agent: str
    session_id: str
    status: TaskStatus
    created_at: float
    finished_at: float | None
    last_seq: int
    terminal: TaskFinished | None
    pending_interrupts: tuple[Interrupt, ...] = ()
    """While the status is INPUT_REQUIRED: the interrupts waiting for a decision."""


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run about to start on this replica, as the store registers it."""

    run_id: str
    agent: str
    session_id: str
    created_at: float
    tenant: str = ""
    """Whose run it is ("" without authentication); run ids are per tenant."""


class RunControl(Protocol):
    """How a store reaches a run executing on this replica."""

    def cancel(self, reason: str) -> None:
        """Stop the run; it ends CANCELLED with this reason."""
        ...

    def fail(self, error: AgentStreamError) -> None:
        """Stop the run; it ends FAILED with this error (e.g. the store lost the ability to share it)."""
        ...

    def resolve(self, interrupt_id: str, approve: bool, message: str) -> TaskStatus:
        """Deliver a decision on one of the run's interrupts; InterruptNotFound / InterruptAlreadyResolved."""
        ...


class InterruptLedger(Protocol):
    """Where a run's interrupts are recorded so any replica can resolve them (every RunStore is one)."""

    async def open_interrupt(
        self, tenant: str, run_id: str, interrupt: Interrupt, pending: tuple[Interrupt, ...]
    ) -> None:
        """Record a run's waiting interrupt (status INPUT_REQUIRED, GetRun lists ``pending``) for every replica."""
        ...

    async def close_interrupt(
        self, tenant: str, run_id: str, interrupt_id: str, pending: tuple[Interrupt, ...]
    ) -> bool:
        """Mark a run's interrupt resolved unless it already is; False if a decision got there first."""
        ...


class RunStore(InterruptLedger, Protocol):
    """Registry and event logs of runs, shared by every replica that uses the same store.

    Every method raises the error table's errors: RunNotFound, RunAlreadyExists, SeqOutOfRange,
    TooManySubscribers, and RunStoreUnavailable when the store itself fails. Runs belong to a tenant: a run
    id names a run within its tenant only, and another tenant's run is RunNotFound, as if it did not exist.
    """

    @property
    def healthy(self) -> bool:
        """False while the store cannot be reached (health reports NOT_SERVING)."""
        ...

    @property
    def description(self) -> str:
        """For the start-up log line (never holds a credential)."""
        ...

    @property
    def sessions(self) -> SessionStore:
        """The sessions (conversation histories) kept with these runs."""
        ...

    async def claim(self, run: NewRun) -> None:
        """Reserve the run id for a run executing here; RunAlreadyExists if any replica knows it."""
        ...

    def publish(self, log: RunLog, control: RunControl) -> asyncio.Future[None]:
        """Share a claimed run's log as it grows; ``control`` serves cancels routed here and store failures.

        The future is done once the store holds the whole run (its terminal event included), or has failed
        to: until then the run manager serves the run from its own log.
        """
        ...

    async def read(self, run_id: str, after_seq: int, *, tenant: str = "") -> AsyncIterator[RunEvent]:
        """The run's events with seq > after_seq, live, ending with the terminal one.

        Raises at once (RunNotFound, SeqOutOfRange) when it cannot serve them; raises SeqOutOfRange while
        iterating if it falls behind the retention, never skipping an event.
        """
        ...

    async def describe(self, run_id: str, *, tenant: str = "") -> RunInfo:
        """What is known about any run in the store."""
        ...

    async def cancel(self, run_id: str, reason: str, *, tenant: str = "") -> tuple[bool, TaskStatus]:
        """Cancel a run wherever it executes and wait for its end: (it had already finished, its final status)."""
        ...

    def subscriber(self, run_id: str, limit: int, *, tenant: str = "") -> AbstractAsyncContextManager[None]:
        """Hold one of a run's subscriber slots (counted across replicas); TooManySubscribers past ``limit``."""
        ...

    async def resolve_interrupt(
        self, run_id: str, interrupt_id: str, approve: bool, message: str, *, tenant: str = ""
    ) -> TaskStatus:
        """Deliver a decision to the replica executing the run; InterruptNotFound for an unknown run or
        interrupt, InterruptAlreadyResolved for one already decided. Returns the run's status after it."""
        ...

    async def close(self) -> None:
        """Release what the store holds (connections, timers); published runs have ended by now."""
        ...
