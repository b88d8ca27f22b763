"""The RunManager: admits runs (agent lookup, run-id uniqueness, limits, draining), tracks them, serves cursors."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from agentstream_server.errors import (
    AgentNotFound,
    AgentStreamError,
    RunAlreadyExists,
    RunNotFound,
    ServerDraining,
    TooManyRuns,
    TooManySubscribers,
    check_subscription_position,
)
from agentstream_server.runs.execution import ModelFactory, Run
from agentstream_server.runtime.agents import AgentSpec
from agentstream_server.runtime.events import RunEvent, TaskStatus
from agentstream_server.store.log import EventsNotRetained
from agentstream_server.store.redis import RedisStore
from agentstream_server.transport.validation import ValidRunRequest

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
    max_finished_runs: int = 10_000
    """Finished runs kept for GetRun/SubscribeRun; the oldest are forgotten first beyond it."""
    max_finished_bytes: int = 256 * 1024 * 1024
    """Roughly how much memory finished runs may hold in total; the oldest are forgotten first beyond it."""
    max_runs_per_peer: int = 0
    """Live runs one caller (peer host) may hold; 0 = no per-peer limit."""


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
        self._finished: collections.deque[tuple[Run, int]] = collections.deque()
        self._finished_bytes = 0
        self._expiry: asyncio.TimerHandle | None = None
        self._admitting = 0
        self._runs_by_peer: collections.Counter[str] = collections.Counter()
        self._draining = False

    @property
    def live_runs(self) -> int:
        """How many runs are executing now."""
        return len(self._live)

    def get(self, run_id: str) -> Run | None:
        """The run with this id, live or recently finished."""
        return self._runs.get(run_id)

    @property
    def finished_runs(self) -> int:
        """How many finished runs are kept for GetRun and SubscribeRun."""
        return len(self._finished)

    @property
    def finished_bytes(self) -> int:
        """Roughly how much memory the kept finished runs hold."""
        return self._finished_bytes

    async def start(self, request: ValidRunRequest, *, paced: bool = True, peer: str = "") -> Run:
        """Admit and start a run; raises the error-table error that says why a run cannot start.

        ``paced``: the caller will follow the run with ``log.follow(pace=True)`` (StreamingRun does).
        ``peer``: who asked (the caller's host), for the per-peer limit.
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
        run_id = request.run_id or uuid.uuid4().hex
        if run_id in self._runs:
            raise RunAlreadyExists(f"run_id {run_id!r} is already in use", field="run_id", metadata={"run_id": run_id})
        limit = self._limits.max_concurrent_runs
        if len(self._live) + self._admitting >= limit:
            raise TooManyRuns(
                f"server is at its limit of {limit} concurrent runs; retry later", metadata={"limit": str(limit)}
            )
        per_peer = self._limits.max_runs_per_peer
        if per_peer and self._runs_by_peer[peer] >= per_peer:
            raise TooManyRuns(
                f"this caller already has {per_peer} live runs, the per-caller limit; wait for one to end",
                metadata={"limit": str(per_peer), "scope": "peer"},
            )
        # The slot is taken before the first await, so concurrent starts cannot overshoot the limits.
        self._admitting += 1
        self._runs_by_peer[peer] += 1
        try:
            if self.store is not None:
                await self.store.claim(run_id, agent.name, request.session_id, time.time())
            if run_id in self._runs:  # claimed concurrently on this replica (memory store)
                raise RunAlreadyExists(
                    f"run_id {run_id!r} is already in use", field="run_id", metadata={"run_id": run_id}
                )
        except BaseException:
            self._release_peer(peer)
            raise
        finally:
            self._admitting -= 1
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
        run.start(self._model_for(agent), on_done=lambda done: self._on_run_done(done, peer))
        if self.store is not None:
            self.store.mirror(run.log, run.cancel, run.fail)
        logger.info("run %s started agent=%s mode=%s", run_id, agent.name, request.mode.name)
        return run

    def _on_run_done(self, run: Run, peer: str) -> None:
        self._live.discard(run)
        self._release_peer(peer)
        self._keep_finished(run)
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

    def _release_peer(self, peer: str) -> None:
        self._runs_by_peer[peer] -= 1
        if self._runs_by_peer[peer] <= 0:
            del self._runs_by_peer[peer]

    def _keep_finished(self, run: Run) -> None:
        """Keep a finished run for GetRun/SubscribeRun within the TTL, count and byte bounds (oldest go first)."""
        size = run.log.retained_bytes
        self._finished.append((run, size))
        self._finished_bytes += size
        limits = self._limits
        while self._finished and (
            len(self._finished) > limits.max_finished_runs or self._finished_bytes > limits.max_finished_bytes
        ):
            self._forget_oldest()
        self._schedule_expiry()

    def _forget_oldest(self) -> None:
        run, size = self._finished.popleft()
        self._finished_bytes -= size
        if self._runs.get(run.run_id) is run:
            del self._runs[run.run_id]

    def _schedule_expiry(self) -> None:
        """One timer, set for when the oldest finished run expires: finished runs go even when no run starts."""
        if self._expiry is not None or not self._finished:
            return
        oldest = self._finished[0][0]
        expires_at = (oldest.finished_at or time.time()) + self._limits.completed_run_ttl_s
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_at(loop.time() + max(0.0, expires_at - time.time()), self._expire)

    def _expire(self) -> None:
        self._expiry = None
        cutoff = time.time() - self._limits.completed_run_ttl_s
        while self._finished and (self._finished[0][0].finished_at or 0.0) <= cutoff:
            self._forget_oldest()
        self._schedule_expiry()

    def fail(self, run_id: str, error: AgentStreamError) -> None:
        """End a live run of this replica FAILED with this error (no-op for a finished or unknown run)."""
        run = self._runs.get(run_id)
        if run is not None:
            run.fail(error)

    def find(self, run_id: str) -> Run:
        """The run with this id; raises RunNotFound."""
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFound(
                f"run {run_id!r} is not known here (it never started, or it ended and was forgotten: finished "
                f"runs are kept for {self._limits.completed_run_ttl_s:g} s, at most "
                f"{self._limits.max_finished_runs} of them)",
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
        if run.subscribers >= self._limits.max_subscribers_per_run:
            raise TooManySubscribers(
                f"run {run_id} already has {run.subscribers} subscribers, the limit",
                metadata={"limit": str(self._limits.max_subscribers_per_run)},
            )
        return self._subscription(run, after_seq)

    async def _subscription(self, run: Run, after_seq: int) -> AsyncIterator[RunEvent]:
        run.subscribers += 1
        try:
            async for record in run.log.follow(after_seq):
                yield record
        except EventsNotRetained as gap:  # fell behind the retention while following
            check_subscription_position(run.run_id, after_seq, run.log.last_seq, gap.oldest_seq)
            raise
        finally:
            run.subscribers -= 1

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

    def close(self) -> None:
        """Stop the expiry timer (at shutdown)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
