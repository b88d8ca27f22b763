"""A person in the loop: tool calls that wait for approval, and the ask_user tool that waits for an answer."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentstream_server.runtime.agents import AgentSpec
from agentstream_server.runtime.events import Action, Interrupt, InterruptKind, ToolResult
from agentstream_server.runtime.tools import Tool

ASK_USER = "ask_user"
"""The built-in tool an agent with ``ask_user = true`` may call to ask the user a question."""
MAX_QUESTION_CHARS = 4096
"""The longest question an interrupt carries (a longer one is cut)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A person's answer to an interrupt: approved (or answered) or not, with their message."""

    approved: bool
    message: str = ""


class Gate(Protocol):
    """Where a run waits for people: the run's executor implements it (and routes decisions to it).

    An interrupt is opened before its event is streamed (a decision may come the moment it is read), then
    decided; abandon() ends one whose run stopped in between.
    """

    async def open(self, interrupt: Interrupt) -> None:
        """Register an interrupt about to be streamed."""
        ...

    async def decide(self, interrupt: Interrupt, timeout_s: float) -> Decision:
        """Wait for the decision on an opened interrupt; after timeout_s, a rejection saying so."""
        ...

    def abandon(self, interrupt_id: str) -> None:
        """Resolve for good an opened interrupt nobody will wait for."""
        ...


@dataclass
class Consultation:
    """What people decided about one turn's calls."""

    rejected: set[str] = field(default_factory=set)
    """Ids of calls that must not run (rejected, or answered by a person in place of a tool)."""
    decisions: dict[str, Decision] = field(default_factory=dict)
    """By interrupt id."""


def ask_user_tool() -> Tool:
    """The ask_user tool as offered to the model (the loop runs it; it is never called directly)."""

    async def never(params: Mapping[str, Any]) -> str:
        raise RuntimeError("ask_user is answered by a person through ResolveInterrupt, never called directly")

    return Tool(
        name=ASK_USER,
        description="Ask the user a question and wait for the answer. Use it when you need information or a "
        "choice only the user can give.",
        parameters={
            "type": "object",
            "properties": {"question": {"type": "string", "description": "The question for the user."}},
            "required": ["question"],
        },
        call=never,
    )


async def consult(
    gate: Gate | None, spec: AgentSpec, calls: tuple[Action, ...], bad_arguments: Mapping[str, str], into: Consultation
) -> AsyncGenerator[Interrupt | ToolResult, None]:
    """Ask people about a turn's calls before any runs: one TOOL_APPROVAL interrupt for the calls that need
    approval, one INPUT interrupt per ask_user call. Yields each interrupt, its resolution, and the tool results
    of rejected calls and answered questions; ``into.rejected`` collects the calls that must not run.
    """
    approvals = tuple(c for c in calls if c.tool_name in spec.approval and c.tool_call_id not in bad_arguments)
    questions = tuple(c for c in calls if c.tool_name == ASK_USER and spec.ask_user)
    if approvals:
        names = ", ".join(f"{c.tool_name}({_arguments(c)})" for c in approvals)
        interrupt = _interrupt(InterruptKind.TOOL_APPROVAL, spec, approvals, f"approve {names}?")
        async with contextlib.aclosing(_ask(gate, interrupt, spec, into)) as asking:
            async for event in asking:
                yield event
        decision = into.decisions[interrupt.interrupt_id]
        if not decision.approved:
            why = decision.message or "no reason given"
            for call in approvals:
                into.rejected.add(call.tool_call_id)
                yield _result(call, f"the call was rejected by a person: {why}", is_error=True)
    for call in questions:
        into.rejected.add(call.tool_call_id)
        question = call.params.get("question")
        if not isinstance(question, str) or not question.strip():
            yield _result(call, "call ask_user with a non-empty string parameter 'question'", is_error=True)
            continue
        interrupt = _interrupt(InterruptKind.INPUT, spec, (call,), question[:MAX_QUESTION_CHARS])
        async with contextlib.aclosing(_ask(gate, interrupt, spec, into)) as asking:
            async for event in asking:
                yield event
        decision = into.decisions[interrupt.interrupt_id]
        if decision.approved:
            yield _result(call, decision.message, is_error=False)
        else:
            yield _result(call, f"the user did not answer: {decision.message or 'no reason given'}", is_error=True)


async def _ask(
    gate: Gate | None, interrupt: Interrupt, spec: AgentSpec, into: Consultation
) -> AsyncGenerator[Interrupt, None]:
    """Open the interrupt, stream it, wait for the decision (kept in ``into``), stream the resolution."""
    if gate is None:
        decision = Decision(False, "nobody can answer: this run has no way to reach a person")
        yield interrupt
    else:
        await gate.open(interrupt)
        try:
            yield interrupt
        except BaseException:  # the run stopped while its reader took the event
            gate.abandon(interrupt.interrupt_id)
            raise
        decision = await gate.decide(interrupt, spec.approval_timeout_s)
    into.decisions[interrupt.interrupt_id] = decision
    yield _resolved(interrupt, decision)


def _interrupt(kind: InterruptKind, spec: AgentSpec, calls: tuple[Action, ...], question: str) -> Interrupt:
    return Interrupt(
        interrupt_id=f"int-{secrets.token_hex(6)}",
        kind=kind,
        tool_calls=calls,
        question=question,
        agent_name=spec.name,
        expires_at=time.time() + spec.approval_timeout_s,
    )


def _resolved(interrupt: Interrupt, decision: Decision) -> Interrupt:
    return dataclasses.replace(interrupt, approved=decision.approved, message=decision.message, resolved=True)


def _result(call: Action, content: str, *, is_error: bool) -> ToolResult:
    return ToolResult(call.tool_call_id, call.tool_name, content, is_error, 0.0, call.agent_name)


def _arguments(call: Action) -> str:
    text = ", ".join(f"{key}={value!r}" for key, value in call.params.items())
    return text if len(text) <= 200 else f"{text[:200]}..."
