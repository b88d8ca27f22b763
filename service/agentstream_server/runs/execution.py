"""One run: executes an agent into the run's log, ends it with exactly one terminal event, and can be cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from agentstream_server.errors import AgentStreamError, InternalError, RunCancelled, RunTimedOut
from agentstream_server.observability.spans import RunObservation
from agentstream_server.runs.approvals import RunGate
from agentstream_server.runs.conversation import Conversation
from agentstream_server.runs.request import ValidRunRequest
from agentstream_server.runtime.agents import AgentSpec
from agentstream_server.runtime.events import (
    AgentStep,
    Event,
    GroupEvent,
    GroupKind,
    Nested,
    Output,
    TaskError,
    TaskFinished,
    TaskStarted,
    TaskStatus,
    ToolResult,
    Usage,
)
from agentstream_server.runtime.loop import run_agent
from agentstream_server.runtime.model import ChatModel
from agentstream_server.runtime.team import Team
from agentstream_server.store.base import InterruptLedger, RunInfo
from agentstream_server.store.log import RunLog

logger = logging.getLogger("agentstream.runs")

ModelFactory = Callable[[AgentSpec], ChatModel]
"""Gives the chat model an agent's LLM calls go to."""


class Run:
    """One run of an agent: its log, and the task that executes the agent into the log."""

    def __init__(
        self,
        request: ValidRunRequest,
        agent: AgentSpec,
        run_id: str,
        timeout_s: float,
        *,
        ledger: InterruptLedger,
        max_unread: int,
        max_retained: int,
        chunk_window_ms: int = 0,
        paced: bool = True,
        created_at: float | None = None,
        tenant: str = "",
        conversation: Conversation | None = None,
    ) -> None:
        """``ledger``: where the run's interrupts are recorded so any replica can resolve them (the store).
        ``conversation``: the session the run holds (its history goes to the LLM, its turns back at the end)."""
        self.conversation = conversation
        self.chunk_window_s = chunk_window_ms / 1000
        self.run_id = run_id
        self.request = request
        self.agent = agent
        self.timeout_s = timeout_s
        self.tenant = tenant
        self.log = RunLog(
            run_id, request.session_id, max_unread=max_unread, max_retained=max_retained, paced=paced, tenant=tenant
        )
        self.created_at = time.time() if created_at is None else created_at
        self.finished_at: float | None = None
        self._cancel_reason = "cancelled"
        self._abort_error: AgentStreamError | None = None
        self._task: asyncio.Task[None] | None = None
        self._deadline: asyncio.Timeout | None = None
        self._waiting = 0
        self._remaining_s: float | None = None
        self.gate = RunGate(run_id, tenant, ledger, self._pause_deadline, self._resume_deadline)
        """Where the run's agents wait for people (approvals, questions)."""

    def info(self) -> RunInfo:
        """A snapshot for GetRun."""
        terminal = self.log.terminal
        pending = self.gate.pending if terminal is None else ()
        if terminal is not None:
            status = terminal.status
        else:
            status = TaskStatus.INPUT_REQUIRED if pending else TaskStatus.RUNNING
        return RunInfo(
            run_id=self.run_id,
            agent=self.agent.name,
            session_id=self.request.session_id,
            status=status,
            pending_interrupts=pending,
            created_at=self.created_at,
            finished_at=self.finished_at,
            last_seq=self.log.last_seq,
            terminal=terminal,
        )

    @property
    def done(self) -> bool:
        """True once the run has ended (its terminal event is in the log)."""
        return self.log.closed

    def start(self, model: ChatModel, on_done: Callable[[Run], None], *, team: Team | None = None) -> None:
        """Start executing the run in its own task; on_done is called once the run has ended.

        ``team``: the other agents the run's agents may hand over to or call as tools.
        """
        observed = RunObservation(self.run_id, self.agent.name, self.request.session_id, self.tenant)
        with observed.active():  # the run's task runs in its span
            self._task = asyncio.create_task(self._execute(model, team), name=f"run:{self.run_id}")
        self._task.add_done_callback(lambda _: self._ensure_terminal())
        self._task.add_done_callback(lambda _: self._observe_end(observed))
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
        if self.conversation is not None:
            self.conversation.end_soon()

    def _observe_end(self, observed: RunObservation) -> None:
        terminal = self.log.terminal
        status = terminal.status if terminal is not None else TaskStatus.FAILED
        reason = terminal.error.reason if terminal is not None and terminal.error is not None else ""
        observed.finished(status.value, self.log.last_seq, reason)

    def cancel(self, reason: str) -> None:
        """Stop the run: its LLM call is closed, its tools cancelled, and it ends with status CANCELLED."""
        if self._task is not None and not self._task.done():
            self._cancel_reason = reason
            self._task.cancel()

    def resolve(self, interrupt_id: str, approve: bool, message: str) -> TaskStatus:
        """Deliver a person's decision on one of the run's interrupts (see RunGate.resolve)."""
        return self.gate.resolve(interrupt_id, approve, message)

    def _pause_deadline(self) -> None:
        """Waiting for people does not count against the run's time limit."""
        self._waiting += 1
        deadline = self._deadline
        if self._waiting == 1 and deadline is not None and (when := deadline.when()) is not None:
            self._remaining_s = when - asyncio.get_running_loop().time()
            deadline.reschedule(None)

    def _resume_deadline(self) -> None:
        self._waiting -= 1
        deadline = self._deadline
        if self._waiting == 0 and deadline is not None and self._remaining_s is not None:
            deadline.reschedule(asyncio.get_running_loop().time() + self._remaining_s)
            self._remaining_s = None

    def fail(self, error: AgentStreamError) -> None:
        """Stop the run like cancel, but end it FAILED with this error (e.g. its run store was lost)."""
        if self._task is not None and not self._task.done():
            self._abort_error = error
            self._task.cancel()

    async def wait(self) -> None:
        """Wait until the run's task has finished (its terminal event is then in the log)."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def _execute(self, model: ChatModel, team: Team | None) -> None:
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
        conversation = self.conversation
        observe = conversation.observe if conversation is not None else None
        history = conversation.history if conversation is not None else ()
        try:
            self._deadline = asyncio.timeout(self.timeout_s)
            async with (
                self._deadline,
                contextlib.aclosing(
                    run_agent(
                        self.agent,
                        self.request.input,
                        model,
                        chunk_window_s=self.chunk_window_s,
                        team=team,
                        gate=self.gate,
                        history=history,
                    )
                ) as events,
            ):
                log = self.log
                async for item in events:
                    if isinstance(item, Nested):  # an agent called as a tool: counted, attributed, never the answer
                        event, scope = item.event, item.scope
                        if type(event) is AgentStep and event.usage is not None:
                            usage += event.usage
                        log.append(
                            event,
                            sender=_sender_of(event, scope.agent),
                            caller=scope.caller,
                            parent_tool_call_id=scope.parent_tool_call_id,
                            depth=scope.depth,
                        )
                    else:
                        if observe is not None:  # the session's history: top-level events only
                            observe(item)
                        if type(item) is AgentStep and item.usage is not None:
                            usage += item.usage
                        elif type(item) is Output:
                            answer = item.content
                        elif type(item) is GroupEvent and item.kind is GroupKind.HANDOFF:
                            agent_name = item.to_agent  # from now on the run's answer is this agent's
                        log.append(item, sender=_sender_of(item, agent_name))
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
            try:  # the session records the run's turns before anyone sees its end, so a next run finds them
                if conversation is not None:
                    await asyncio.shield(conversation.end())
            finally:
                self.log.append(_with_totals(terminal, usage, elapsed), sender=agent_name)


def _sender_of(event: Event, agent_name: str) -> str:
    """Who produced an event: the tool for a tool result, else the agent that speaks."""
    if type(event) is ToolResult:
        return event.tool_name
    if type(event) is GroupEvent:
        return event.from_agent or agent_name
    return getattr(event, "agent_name", "") or agent_name


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
