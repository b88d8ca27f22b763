"""The RunManager: admits runs, executes them here, and is the one place that decides local vs store for every RPC."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from agentstream_server.config import Settings
from agentstream_server.errors import (
    CANCELLED_BY_CANCEL_RUN,
    CANCELLED_BY_DISCONNECT,
    CANCELLED_BY_SHUTDOWN,
    AgentNotFound,
    AgentStreamError,
    RunAlreadyExists,
    ServerDraining,
    TooManyRuns,
)
from agentstream_server.runs.conversation import Conversation, open_conversation
from agentstream_server.runs.execution import ModelFactory, Run
from agentstream_server.runs.load import LoopLag
from agentstream_server.runs.request import ValidRunRequest
from agentstream_server.runtime.agents import AgentSpec
from agentstream_server.runtime.events import RunEvent, TaskStatus
from agentstream_server.runtime.team import DEFAULT_MAX_AGENT_DEPTH, DEFAULT_MAX_HANDOFFS, Team
from agentstream_server.store.base import NewRun, RunInfo, RunStore
from agentstream_server.store.log import subscription
from agentstream_server.store.sessions import SessionInfo

logger = logging.getLogger("agentstream.runs")


@dataclass(frozen=True, slots=True)
class RunLimits:
    """Limits the manager enforces (built from Settings by ``from_settings``)."""

    max_concurrent_runs: int
    run_timeout_s: float
    max_unread_events: int
    max_retained_events: int
    chunk_window_ms: int
    max_subscribers_per_run: int
    max_runs_per_peer: int
    """Live runs one caller (peer host) may hold; 0 = no per-peer limit."""
    max_runs_per_tenant: int
    """Live runs one tenant may hold, on this replica; 0 = no per-tenant limit."""
    max_run_starts_per_minute: int
    """Runs one tenant may start per minute, on this replica; 0 = no rate limit."""
    max_agent_depth: int = DEFAULT_MAX_AGENT_DEPTH
    """How deeply agents called as tools may nest."""
    max_handoffs: int = DEFAULT_MAX_HANDOFFS
    """How many handoffs one run may make."""
    max_loop_lag_s: float = 0.0
    """New runs are refused while the event loop runs further behind than this (runs/load.py); 0 = never."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RunLimits:
        """The limits a server with these settings enforces."""
        return cls(
            max_concurrent_runs=settings.max_concurrent_runs,
            run_timeout_s=settings.run_timeout_s,
            max_unread_events=settings.max_unread_events,
            max_retained_events=settings.max_retained_events,
            chunk_window_ms=settings.chunk_window_ms,
            max_subscribers_per_run=settings.max_subscribers_per_run,
            max_runs_per_peer=settings.max_runs_per_peer,
            max_runs_per_tenant=settings.max_runs_per_tenant,
            max_run_starts_per_minute=settings.max_run_starts_per_minute,
            max_agent_depth=settings.max_agent_depth,
            max_handoffs=settings.max_handoffs,
            max_loop_lag_s=settings.max_loop_lag_ms / 1000,
        )


class RunManager:
    """Admits runs (agent, run id, limits, draining), executes them, and serves every run-level RPC.

    A run executing on this replica is served from its own log until the store holds all of it; any
    other run is served by the store (another replica's, or a finished one).
    """

    def __init__(
        self,
        agents: dict[str, AgentSpec],
        default_agent: str,
        model_for: ModelFactory,
        limits: RunLimits,
        store: RunStore,
    ) -> None:
        self.store = store
        self._agents = agents
        self._default_agent = default_agent
        self._model_for = model_for
        self._limits = limits
        self._team = Team(agents, model_for, max_depth=limits.max_agent_depth, max_handoffs=limits.max_handoffs)
        self._local: dict[tuple[str, str], Run] = {}
        """Runs executing (or just executed) here, by (tenant, run id)."""
        self._live: set[Run] = set()
        self._admitting = 0
        self._runs_by_peer: collections.Counter[str] = collections.Counter()
        self._runs_by_tenant: collections.Counter[str] = collections.Counter()
        self._starts_by_tenant: dict[str, collections.deque[float]] = {}
        """Start times within the last minute, by tenant (for the per-tenant start rate)."""
        self._draining = False
        self.loop_lag = LoopLag(limits.max_loop_lag_s)
        """The event loop's lateness; new runs are refused while it is over the limit."""

    @property
    def live_runs(self) -> int:
        """How many runs are executing here now."""
        return len(self._live)

    def local(self, run_id: str, *, tenant: str = "") -> Run | None:
        """The tenant's run with this id if it executes (or just executed) here."""
        return self._local.get((tenant, run_id))

    async def start(self, request: ValidRunRequest, *, paced: bool = False, peer: str = "", tenant: str = "") -> Run:
        """Admit and start a run for a tenant; raises the error-table error that says why a run cannot start.

        ``paced``: the caller will follow the run with pacing (``stream`` does). ``peer``: the caller's host.
        """
        if self._draining:
            raise ServerDraining("server is shutting down and accepts no new runs; retry on another replica")
        agent = self._agent(request.agent or self._default_agent)
        run_id = request.run_id or uuid.uuid4().hex
        key = (tenant, run_id)
        if key in self._local:
            raise RunAlreadyExists(f"run_id {run_id!r} is already in use", field="run_id", metadata={"run_id": run_id})
        self._reserve(peer, tenant)
        created_at = time.time()
        conversation: Conversation | None = None
        try:
            if request.session_id:  # one live run per session: SessionBusy before the run id is taken
                conversation = await open_conversation(
                    self.store.sessions, request.session_id, run_id, request.input, agent.name, tenant=tenant
                )
            await self.store.claim(NewRun(run_id, agent.name, request.session_id, created_at, tenant))
        except BaseException:
            self._release(peer, tenant)
            if conversation is not None:
                await conversation.abandon()
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
            created_at=created_at,
            tenant=tenant,
            ledger=self.store,
            conversation=conversation,
        )
        self._local[key] = run
        self._live.add(run)
        held = self.store.publish(run.log, run)

        def forget_when_held(_: object = None) -> None:
            """From its end on, the run is served by the store once the store holds all of it."""
            if run.done and held.done() and self._local.get(key) is run:
                del self._local[key]

        def on_done(_: Run) -> None:
            self._on_run_done(run, peer, tenant)
            forget_when_held()

        held.add_done_callback(forget_when_held)
        run.start(self._model_for(agent), on_done=on_done, team=self._team)
        logger.debug("run %s started agent=%s mode=%s", run_id, agent.name, request.mode.name)  # INFO: the end line
        return run

    async def stream(
        self, request: ValidRunRequest, *, peer: str = "", tenant: str = ""
    ) -> AsyncGenerator[RunEvent, None]:
        """Start a run and follow it as its caller: the caller paces it, and its going away cancels it
        unless the request says to continue. Raises at once when the run cannot start."""
        run = await self.start(request, paced=True, peer=peer, tenant=tenant)
        return self._follow_as_caller(run, request.cancel_on_disconnect)

    async def _follow_as_caller(self, run: Run, cancel_on_disconnect: bool) -> AsyncGenerator[RunEvent, None]:
        try:
            async for record in run.log.follow(pace=True):
                yield record
        finally:
            # A caller that cancels, disconnects or passes its deadline lands here (CancelledError or close).
            if cancel_on_disconnect and not run.done:
                run.cancel(CANCELLED_BY_DISCONNECT)

    async def subscribe(self, run_id: str, after_seq: int, *, tenant: str = "") -> AsyncGenerator[RunEvent, None]:
        """A run's events after after_seq, live, to its terminal event; raises at once when it cannot serve them."""
        slot = self.store.subscriber(run_id, self._limits.max_subscribers_per_run, tenant=tenant)
        await slot.__aenter__()
        try:
            run = self._local.get((tenant, run_id))
            if run is not None:
                records = subscription(run.log, after_seq)
            else:
                records = await self.store.read(run_id, after_seq, tenant=tenant)
        except BaseException as exc:
            await slot.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return _holding(slot, records)

    async def describe(self, run_id: str, *, tenant: str = "") -> RunInfo:
        """What GetRun reports about a run."""
        run = self._local.get((tenant, run_id))
        return run.info() if run is not None else await self.store.describe(run_id, tenant=tenant)

    async def cancel(self, run_id: str, reason: str, *, tenant: str = "") -> tuple[bool, TaskStatus]:
        """Cancel a run wherever it executes and wait for its end: (it had already finished, final status)."""
        reason = reason or CANCELLED_BY_CANCEL_RUN
        run = self._local.get((tenant, run_id))
        if run is None:
            return await self.store.cancel(run_id, reason, tenant=tenant)
        already_finished = run.done
        run.cancel(reason)
        await run.wait()
        terminal = run.log.terminal
        return already_finished, terminal.status if terminal is not None else TaskStatus.CANCELLED

    async def resolve_interrupt(
        self, run_id: str, interrupt_id: str, approve: bool, message: str, *, tenant: str = ""
    ) -> TaskStatus:
        """Deliver a person's decision to a run waiting for it, wherever it executes (through the store, which
        resolves each interrupt exactly once across replicas); returns the run's status after it."""
        return await self.store.resolve_interrupt(run_id, interrupt_id, approve, message, tenant=tenant)

    async def session(self, session_id: str, *, tenant: str = "") -> SessionInfo:
        """What GetSession reports about a session."""
        return await self.store.sessions.describe(session_id, tenant=tenant)

    async def delete_session(self, session_id: str, *, tenant: str = "") -> int:
        """Forget a session (SessionBusy while a run holds it); how many turns it held."""
        return await self.store.sessions.delete(session_id, tenant=tenant)

    def fail(self, run_id: str, error: AgentStreamError, *, tenant: str = "") -> None:
        """End a run executing here FAILED with this error (no-op for a finished or remote run)."""
        run = self._local.get((tenant, run_id))
        if run is not None:
            run.fail(error)

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
            run.cancel(CANCELLED_BY_SHUTDOWN)
        for run in remaining:
            await run.wait()
        self.loop_lag.stop()

    def _agent(self, name: str) -> AgentSpec:
        agent = self._agents.get(name)
        if agent is None:
            known = ",".join(sorted(self._agents))
            raise AgentNotFound(
                f"agent {name!r} is not configured; known agents: {known}",
                field="agent",
                metadata={"agent": name, "known_agents": known},
            )
        return agent

    def _reserve(self, peer: str, tenant: str) -> None:
        """Take a run slot (and the peer's) before the first await, so concurrent starts cannot overshoot."""
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
        per_tenant = self._limits.max_runs_per_tenant
        if tenant and per_tenant and self._runs_by_tenant[tenant] >= per_tenant:
            raise TooManyRuns(
                f"tenant {tenant!r} already has {per_tenant} live runs, the per-tenant limit; wait for one to end",
                metadata={"limit": str(per_tenant), "scope": "tenant"},
            )
        self.loop_lag.check()
        self._check_start_rate(tenant)
        self._admitting += 1
        self._runs_by_peer[peer] += 1
        self._runs_by_tenant[tenant] += 1

    def _check_start_rate(self, tenant: str) -> None:
        """A sliding one-minute window of starts per tenant; a start over the rate is refused, with when to retry."""
        rate = self._limits.max_run_starts_per_minute
        if not tenant or not rate:
            return
        now = time.monotonic()
        starts = self._starts_by_tenant.setdefault(tenant, collections.deque())
        while starts and starts[0] <= now - 60.0:
            starts.popleft()
        if len(starts) >= rate:
            retry_after = max(0.0, starts[0] + 60.0 - now)
            raise TooManyRuns(
                f"tenant {tenant!r} started {rate} runs in the last minute, its limit; retry in {retry_after:.0f} s",
                metadata={"limit": str(rate), "scope": "tenant_rate", "retry_after_s": f"{retry_after:.1f}"},
            )
        starts.append(now)

    def _release(self, peer: str, tenant: str) -> None:
        for counter, key in ((self._runs_by_peer, peer), (self._runs_by_tenant, tenant)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def _on_run_done(self, run: Run, peer: str, tenant: str) -> None:
        self._live.discard(run)
        self._release(peer, tenant)
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


async def _holding(
    slot: AbstractAsyncContextManager[None], records: AsyncIterator[RunEvent]
) -> AsyncGenerator[RunEvent, None]:
    """Yield the records while holding a subscriber slot; both are closed however the iteration ends."""
    try:
        async for record in records:
            yield record
    finally:
        try:
            if isinstance(records, AsyncGenerator):
                await records.aclose()  # the store's cursor lets go of what it holds (e.g. its shared tail)
        finally:
            await slot.__aexit__(None, None, None)
