"""The RunManager: admits runs (agent lookup, run-id uniqueness, limits, draining), tracks them, serves cursors."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from service.errors import (
    AgentNotFound,
    RunAlreadyExists,
    RunNotFound,
    ServerDraining,
    TooManyRuns,
    TooManySubscribers,
    check_subscription_position,
)
from service.redis_store import RedisStore
from service.run import ModelFactory, Run
from service.runlog import EventsNotRetained
from service.runtime.agents import AgentSpec
from service.runtime.events import RunEvent, TaskStatus
from service.validation import ValidRunRequest

logger = logging.getLogger("agentstream.runs")


@dataclass(frozen=True, slots=True)
class RunLimits:
    """Limits the manager enforces."""

    max_concurrent_runs: int
    run_timeout_s: float
    completed_run_ttl_s: float
    max_unread_events: int = 10_000
    max_retained_events: int = 100_000
    chunk_window_ms: int = 0
    max_subscribers_per_run: int = 64


class RunManager:
    """Admits runs (agent lookup, run-id uniqueness, concurrency limit, draining) and keeps track of them."""

    def __init__(
        self,
        agents: dict[str, AgentSpec],
        default_agent: str,
        model_for: ModelFactory,
        limits: RunLimits,
        store: RedisStore | None = None,
    ) -> None:
        self.store = store
        """The shared run store when runs are shared across replicas (redis), else None."""
        self._agents = agents
        self._default_agent = default_agent
        self._model_for = model_for
        self._limits = limits
        self._runs: dict[str, Run] = {}
        self._live: set[Run] = set()
        self._finished: collections.deque[Run] = collections.deque()
        self._draining = False

    @property
    def live_runs(self) -> int:
        """How many runs are executing now."""
        return len(self._live)

    def get(self, run_id: str) -> Run | None:
        """The run with this id, live or recently finished."""
        return self._runs.get(run_id)

    async def start(self, request: ValidRunRequest, *, paced: bool = True) -> Run:
        """Admit and start a run; raises the error-table error that says why a run cannot start.

        ``paced``: the caller will follow the run with ``log.follow(pace=True)`` (StreamingRun does).
        """
        if self._draining:
            raise ServerDraining("server is shutting down and accepts no new runs; retry on another replica")
        agent_name = request.agent or self._default_agent
        agent = self._agents.get(agent_name)
        if agent is None:
            known = ",".join(sorted(self._agents))
            raise AgentNotFound(
                f"agent {agent_name!r} is not configured; known agents: {known}",
                field="agent",
                metadata={"agent": agent_name, "known_agents": known},
            )
        self._forget_expired()
        run_id = request.run_id or uuid.uuid4().hex
        if run_id in self._runs:
            raise RunAlreadyExists(f"run_id {run_id!r} is already in use", field="run_id", metadata={"run_id": run_id})
        if len(self._live) >= self._limits.max_concurrent_runs:
            raise TooManyRuns(
                f"server is at its limit of {self._limits.max_concurrent_runs} concurrent runs; retry later",
                metadata={"limit": str(self._limits.max_concurrent_runs)},
            )
        if self.store is not None:
            await self.store.claim(run_id, agent.name, request.session_id, time.time())
        timeout_s = self._limits.run_timeout_s
        if request.timeout_s is not None:
            timeout_s = min(timeout_s, request.timeout_s)
        window = self._limits.chunk_window_ms if request.chunk_window_ms is None else request.chunk_window_ms
        run = Run(
            request,
            agent,
            run_id,
            timeout_s,
            max_unread=self._limits.max_unread_events,
            max_retained=self._limits.max_retained_events,
            chunk_window_ms=window,
            paced=paced,
        )
        self._runs[run_id] = run
        self._live.add(run)
        run.start(self._model_for(agent), on_done=self._on_run_done)
        if self.store is not None:
            self.store.mirror(run.log, run.cancel, run.fail)
        logger.info("run %s started agent=%s mode=%s", run_id, agent.name, request.mode.name)
        return run

    def _on_run_done(self, run: Run) -> None:
        self._live.discard(run)
        self._finished.append(run)
        terminal = run.log.terminal
        logger.info(
            "run %s ended agent=%s mode=%s events=%d duration=%.3fs outcome=%s",
            run.run_id,
            run.agent.name,
            run.request.mode.name,
            run.log.last_seq,
            (run.finished_at or time.time()) - run.created_at,
            terminal.status.value if terminal is not None else "unknown",
        )

    def find(self, run_id: str) -> Run:
        """The run with this id; raises RunNotFound."""
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFound(
                f"run {run_id!r} is not known here (it never started, or ended more than "
                f"{self._limits.completed_run_ttl_s:g} s ago)",
                field="run_id",
                metadata={"run_id": run_id},
            )
        return run

    async def cancel(self, run_id: str, reason: str) -> tuple[bool, TaskStatus]:
        """Cancel a run (on whichever replica runs it) and wait for its end; returns (already finished, status)."""
        if self.store is not None and run_id not in self._runs:
            return await self.store.cancel(run_id, reason or "cancelled by CancelRun")
        run = self.find(run_id)
        already_finished = run.done
        run.cancel(reason or "cancelled by CancelRun")
        await run.wait()
        terminal = run.log.terminal
        return already_finished, terminal.status if terminal is not None else TaskStatus.CANCELLED

    def subscribe(self, run_id: str, after_seq: int) -> AsyncIterator[RunEvent]:
        """A cursor over a run's events after after_seq; raises at once when the request cannot be served."""
        run = self.find(run_id)
        log = run.log
        check_subscription_position(run_id, after_seq, log.last_seq, log.oldest_retained_seq)
        if self.store is None and run.subscribers >= self._limits.max_subscribers_per_run:
            raise TooManySubscribers(
                f"run {run_id} already has {run.subscribers} subscribers, the limit",
                metadata={"limit": str(self._limits.max_subscribers_per_run)},
            )
        return self._subscription(run, after_seq)

    async def _subscription(self, run: Run, after_seq: int) -> AsyncIterator[RunEvent]:
        # With a store, the store counts every replica's subscribers: it raises TooManySubscribers here.
        slot = (
            await self.store.subscriber_slot(run.run_id, self._limits.max_subscribers_per_run) if self.store else None
        )
        run.subscribers += 1
        try:
            async for record in run.log.follow(after_seq):
                yield record
        except EventsNotRetained as gap:  # fell behind the retention while following
            check_subscription_position(run.run_id, after_seq, run.log.last_seq, gap.oldest_seq)
            raise
        finally:
            run.subscribers -= 1
            if slot is not None:
                slot.release()

    def begin_drain(self) -> None:
        """Refuse new runs from now on."""
        self._draining = True

    async def drain(self, grace_s: float) -> None:
        """Let live runs finish for up to grace_s seconds, then cancel the rest and wait for their ends."""
        self._draining = True
        live = list(self._live)
        if live:
            await asyncio.wait([asyncio.ensure_future(r.wait()) for r in live], timeout=grace_s)
        remaining = list(self._live)
        for run in remaining:
            run.cancel("server shutting down")
        for run in remaining:
            await run.wait()

    def _forget_expired(self) -> None:
        cutoff = time.time() - self._limits.completed_run_ttl_s
        finished = self._finished
        while finished and (finished[0].finished_at or 0.0) < cutoff:
            self._runs.pop(finished.popleft().run_id, None)
