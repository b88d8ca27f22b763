"""One run's interrupts: where its agents wait for people, and where ResolveInterrupt's decisions land."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from agentstream_server.errors import InterruptAlreadyResolved, interrupt_not_found
from agentstream_server.runtime.approvals import Decision
from agentstream_server.runtime.events import Interrupt, TaskStatus
from agentstream_server.store.base import InterruptLedger

logger = logging.getLogger("agentstream.runs")

DECISION_IN_FLIGHT_S = 5.0
"""How long a run whose interrupt timed out waits for a decision another replica claimed at the same moment."""


class RunGate:
    """A run's waiting interrupts: decide() waits for a person, resolve() delivers their decision, once."""

    def __init__(
        self,
        run_id: str,
        tenant: str,
        ledger: InterruptLedger,
        pause_deadline: Callable[[], None],
        resume_deadline: Callable[[], None],
    ) -> None:
        self._run_id = run_id
        self._tenant = tenant
        self._ledger = ledger
        self._pause = pause_deadline
        self._resume = resume_deadline
        self._pending: dict[str, tuple[Interrupt, asyncio.Future[Decision]]] = {}
        self._resolved: set[str] = set()
        self._background: set[asyncio.Future[bool]] = set()

    @property
    def pending(self) -> tuple[Interrupt, ...]:
        """The interrupts waiting for a decision, oldest first."""
        return tuple(interrupt for interrupt, _ in self._pending.values())

    async def open(self, interrupt: Interrupt) -> None:
        """Register an interrupt before anyone can see it, so a decision sent the moment its event is read
        finds it (here, and in the run store for other replicas). The run's own deadline pauses from now on."""
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending[interrupt.interrupt_id] = (interrupt, future)
        self._pause()
        try:
            await self._ledger.open_interrupt(self._tenant, self._run_id, interrupt, self.pending)
        except BaseException:
            self._pending.pop(interrupt.interrupt_id, None)
            self._resume()
            raise

    async def decide(self, interrupt: Interrupt, timeout_s: float) -> Decision:
        """Wait for the decision on an opened interrupt; after timeout_s, a rejection that says so. Cancelling the
        run cancels the wait."""
        future = self._pending[interrupt.interrupt_id][1]
        closed = False
        try:
            try:
                async with asyncio.timeout(timeout_s):
                    return await future
            except TimeoutError:
                closed = True
                if await self._close(interrupt.interrupt_id):
                    return Decision(False, f"nobody decided within the approval timeout of {timeout_s:g} s")
            async with asyncio.timeout(DECISION_IN_FLIGHT_S):  # another replica resolved it at the last moment
                return await future
        except TimeoutError:
            return Decision(False, f"nobody decided within the approval timeout of {timeout_s:g} s")
        finally:
            self._forget(interrupt.interrupt_id)
            if not closed:
                task = asyncio.current_task()
                if task is not None and task.cancelling():  # the run is cancelled: never wait here
                    self._close_soon(interrupt.interrupt_id)
                else:
                    with contextlib.suppress(Exception):  # the decision stands even if the ledger is unreachable
                        await self._close(interrupt.interrupt_id)

    def abandon(self, interrupt_id: str) -> None:
        """The run stopped between opening an interrupt and waiting for it: resolve it for good, so nobody
        answers a run that no longer listens."""
        if interrupt_id in self._pending:
            self._forget(interrupt_id)
            self._close_soon(interrupt_id)

    def _forget(self, interrupt_id: str) -> None:
        entry = self._pending.pop(interrupt_id, None)
        self._resolved.add(interrupt_id)
        self._resume()
        if entry is not None and not entry[1].done():
            entry[1].cancel()

    def _close_soon(self, interrupt_id: str) -> None:
        background = asyncio.ensure_future(self._close(interrupt_id))
        self._background.add(background)
        background.add_done_callback(self._background.discard)
        background.add_done_callback(_log_failure)

    async def _close(self, interrupt_id: str) -> bool:
        return await self._ledger.close_interrupt(self._tenant, self._run_id, interrupt_id, self.pending)

    def resolve(self, interrupt_id: str, approve: bool, message: str) -> TaskStatus:
        """Deliver a decision; InterruptNotFound for an id this run never raised, InterruptAlreadyResolved for
        one already decided (or timed out). Returns the run's status after it."""
        entry = self._pending.get(interrupt_id)
        if entry is None or entry[1].done():
            if interrupt_id in self._resolved or entry is not None:
                raise InterruptAlreadyResolved(
                    f"interrupt {interrupt_id!r} of run {self._run_id!r} was already resolved",
                    field="interrupt_id",
                    metadata={"run_id": self._run_id, "interrupt_id": interrupt_id},
                )
            raise interrupt_not_found(self._run_id, interrupt_id)
        entry[1].set_result(Decision(approve, message))
        waiting = any(not future.done() for _, future in self._pending.values())
        return TaskStatus.INPUT_REQUIRED if waiting else TaskStatus.RUNNING


def _log_failure(task: asyncio.Future[bool]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("could not record an interrupt as resolved: %s", task.exception())
