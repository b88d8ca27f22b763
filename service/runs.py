"""Runs as objects of their own: a Run executes an agent into its log; the RunManager admits and tracks runs."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from service.errors import (
    AgentNotFound,
    AgentStreamError,
    InternalError,
    RunAlreadyExists,
    RunCancelled,
    RunNotFound,
    RunTimedOut,
    ServerDraining,
    TooManyRuns,
    TooManySubscribers,
    check_subscription_position,
)
from service.redis_store import RedisStore
from service.runlog import EventsNotRetained, RunLog
from service.runtime.agents import AgentSpec
from service.runtime.events import (
    AgentStep,
    Event,
    Output,
    RunEvent,
    TaskError,
    TaskFinished,
    TaskStarted,
    TaskStatus,
    ToolResult,
    Usage,
)
from service.runtime.llm import ChatModel
from service.runtime.loop import run_agent
from service.validation import ValidRunRequest

logger = logging.getLogger("agentstream.runs")

ModelFactory = Callable[[AgentSpec], ChatModel]
"""Gives the chat model an agent's LLM calls go to."""


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


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What GetRun reports about a run."""

    run_id: str
    agent: str
    session_id: str
    status: TaskStatus
    created_at: float
    finished_at: float | None
    last_seq: int
    terminal: TaskFinished | None


class Run:
    """One run of an agent: its log, and the task that executes the agent into the log."""

    def __init__(
        self,
        request: ValidRunRequest,
        agent: AgentSpec,
        run_id: str,
        timeout_s: float,
        *,
        max_unread: int = 10_000,
        max_retained: int = 100_000,
        chunk_window_ms: int = 0,
        paced: bool = True,
    ) -> None:
        self.chunk_window_s = chunk_window_ms / 1000
        self.run_id = run_id
        self.request = request
        self.agent = agent
        self.timeout_s = timeout_s
        self.log = RunLog(run_id, request.session_id, max_unread=max_unread, max_retained=max_retained, paced=paced)
        self.subscribers = 0
        self.created_at = time.time()
        self.finished_at: float | None = None
        self._cancel_reason = "cancelled"
        self._abort_error: AgentStreamError | None = None
        self._task: asyncio.Task[None] | None = None

    def info(self) -> RunInfo:
        """A snapshot for GetRun."""
        terminal = self.log.terminal
        return RunInfo(
            run_id=self.run_id,
            agent=self.agent.name,
            session_id=self.request.session_id,
            status=terminal.status if terminal is not None else TaskStatus.RUNNING,
            created_at=self.created_at,
            finished_at=self.finished_at,
            last_seq=self.log.last_seq,
            terminal=terminal,
        )

    @property
    def done(self) -> bool:
        """True once the run has ended (its terminal event is in the log)."""
        return self.log.closed

    def start(self, model: ChatModel, on_done: Callable[[Run], None]) -> None:
        """Start executing the run in its own task; on_done is called once the run has ended."""
        self._task = asyncio.create_task(self._execute(model), name=f"run:{self.run_id}")
        self._task.add_done_callback(lambda _: self._ensure_terminal())
        self._task.add_done_callback(lambda _: on_done(self))

    def _ensure_terminal(self) -> None:
        # A task cancelled before its first step never enters _execute; its readers still need an end.
        if not self.log.closed:
            self.finished_at = time.time()
            if self._abort_error is not None:
                terminal = _failure(TaskStatus.FAILED, self._abort_error, self.agent.name, "")
            else:
                cancelled = RunCancelled(f"run cancelled: {self._cancel_reason}")
                terminal = _failure(TaskStatus.CANCELLED, cancelled, self.agent.name, "")
            self.log.append(terminal, sender=self.agent.name)

    def cancel(self, reason: str) -> None:
        """Stop the run: its LLM call is closed, its tools cancelled, and it ends with status CANCELLED."""
        if self._task is not None and not self._task.done():
            self._cancel_reason = reason
            self._task.cancel()

    def fail(self, error: AgentStreamError) -> None:
        """Stop the run like cancel, but end it FAILED with this error (e.g. its run store was lost)."""
        if self._task is not None and not self._task.done():
            self._abort_error = error
            self._task.cancel()

    async def wait(self) -> None:
        """Wait until the run's task has finished (its terminal event is then in the log)."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def _execute(self, model: ChatModel) -> None:
        started = time.monotonic()
        agent_name = self.agent.name
        self.log.append(
            TaskStarted(agent_name=agent_name, input=self.request.input),
            sender=agent_name,
            headers=self.request.metadata,
        )
        usage = Usage()
        answer = ""
        terminal: TaskFinished | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                async with contextlib.aclosing(
                    run_agent(self.agent, self.request.input, model, chunk_window_s=self.chunk_window_s)
                ) as events:
                    log = self.log
                    async for event in events:
                        if type(event) is AgentStep and event.usage is not None:
                            usage += event.usage
                        elif type(event) is Output:
                            answer = event.content
                        log.append(event, sender=_sender_of(event, agent_name))
                        if log.must_wait:
                            await log.wait_writable()
            terminal = TaskFinished(
                status=TaskStatus.SUCCEEDED,
                success=True,
                answer=answer,
                msg="run succeeded",
                agent_name=agent_name,
            )
        except TimeoutError:
            terminal = _failure(
                TaskStatus.TIMED_OUT,
                RunTimedOut(f"run exceeded its time limit of {self.timeout_s:g} s"),
                agent_name,
                answer,
            )
        except asyncio.CancelledError:
            if self._abort_error is not None:
                terminal = _failure(TaskStatus.FAILED, self._abort_error, agent_name, answer)
            else:
                terminal = _failure(
                    TaskStatus.CANCELLED, RunCancelled(f"run cancelled: {self._cancel_reason}"), agent_name, answer
                )
            raise
        except AgentStreamError as exc:
            terminal = _failure(TaskStatus.FAILED, exc, agent_name, answer)
        except Exception as exc:
            logger.exception("run %s failed with an unexpected error", self.run_id)
            terminal = _failure(
                TaskStatus.FAILED,
                InternalError(f"internal error: {type(exc).__name__}: {exc}"),
                agent_name,
                answer,
            )
        finally:
            if terminal is None:  # a BaseException other than CancelledError: still end the stream
                terminal = _failure(TaskStatus.FAILED, InternalError("run aborted"), agent_name, answer)
            elapsed = time.monotonic() - started
            self.finished_at = time.time()
            self.log.append(_with_totals(terminal, usage, elapsed), sender=agent_name)


def _sender_of(event: Event, agent_name: str) -> str:
    return event.tool_name if type(event) is ToolResult else agent_name


def _failure(status: TaskStatus, error: AgentStreamError, agent_name: str, answer: str) -> TaskFinished:
    return TaskFinished(
        status=status,
        success=False,
        answer=answer,
        msg=error.message,
        agent_name=agent_name,
        error=TaskError(reason=error.reason, code=error.code, metadata=error.metadata),
    )


def _with_totals(terminal: TaskFinished, usage: Usage, elapsed_s: float) -> TaskFinished:
    return TaskFinished(
        status=terminal.status,
        success=terminal.success,
        answer=terminal.answer,
        msg=terminal.msg,
        agent_name=terminal.agent_name,
        usage=usage,
        time_cost_s=elapsed_s,
        error=terminal.error,
    )


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

    def _forget_expired(self) -> None:
        cutoff = time.time() - self._limits.completed_run_ttl_s
        finished = self._finished
        while finished and (finished[0].finished_at or 0.0) < cutoff:
            self._runs.pop(finished.popleft().run_id, None)
