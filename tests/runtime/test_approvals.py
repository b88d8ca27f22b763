"""The loop asks people before risky calls: with a scripted gate, in a nested agent too; the agents file's keys."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agentstream_server.runtime.agents import AgentConfigError, AgentSpec, load_agents
from agentstream_server.runtime.approvals import Decision
from agentstream_server.runtime.builtin_tools import BUILTIN_TOOLS
from agentstream_server.runtime.events import Interrupt, InterruptKind, Nested, ToolResult
from agentstream_server.runtime.loop import run_agent
from tests.runtime.test_loop import ScriptedModel, tool_call
from tests.runtime.test_team import answer, team_of


class ScriptedGate:
    """Answers every interrupt with the next scripted decision, recording what it was asked and for how long."""

    def __init__(self, *decisions: Decision) -> None:
        self.decisions = list(decisions)
        self.asked: list[tuple[Interrupt, float]] = []
        self.opened: list[str] = []
        self.abandoned: list[str] = []

    async def open(self, interrupt: Interrupt) -> None:
        self.opened.append(interrupt.interrupt_id)

    async def decide(self, interrupt: Interrupt, timeout_s: float) -> Decision:
        assert interrupt.interrupt_id in self.opened, "an interrupt is opened before it is decided"
        self.asked.append((interrupt, timeout_s))
        return self.decisions.pop(0)

    def abandon(self, interrupt_id: str) -> None:
        self.abandoned.append(interrupt_id)


CAREFUL = AgentSpec(
    name="careful",
    instructions="",
    tools=(BUILTIN_TOOLS["calculator"],),
    approval=frozenset({"calculator"}),
    approval_timeout_s=7.0,
)


async def test_only_the_calls_that_need_approval_wait_and_a_rejection_stops_them() -> None:
    spec = AgentSpec(
        name="careful",
        instructions="",
        tools=(BUILTIN_TOOLS["calculator"], BUILTIN_TOOLS["current_time"]),
        approval=frozenset({"calculator"}),
    )
    calls = tool_call(0, "calculator", json.dumps({"expression": "1+1"}), "c1")
    calls += tool_call(1, "current_time", "{}", "t1")
    model = ScriptedModel(calls, answer("done"))
    gate = ScriptedGate(Decision(False, "too risky"))
    events = [e async for e in run_agent(spec, "go", model, gate=gate)]
    ((asked, timeout_s),) = gate.asked
    assert (asked.kind, [a.tool_call_id for a in asked.tool_calls], timeout_s) == (
        InterruptKind.TOOL_APPROVAL, ["c1"], spec.approval_timeout_s,
    )  # fmt: skip
    results = {e.tool_call_id: e for e in events if isinstance(e, ToolResult)}
    assert results["c1"].is_error and "too risky" in results["c1"].content
    assert not results["t1"].is_error  # the other call ran
    interrupts = [e for e in events if isinstance(e, Interrupt)]
    assert [(i.resolved, i.approved, i.message) for i in interrupts] == [(False, False, ""), (True, False, "too risky")]


async def test_an_agent_without_a_gate_rejects_saying_nobody_can_answer() -> None:
    model = ScriptedModel(tool_call(0, "calculator", json.dumps({"expression": "1+1"}), "c1"), answer("ok"))
    events = [e async for e in run_agent(CAREFUL, "go", model)]
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.is_error and "nobody can answer" in result.content


async def test_a_nested_agent_asks_through_the_run_gate_and_its_interrupt_is_attributed() -> None:
    parent = AgentSpec(name="parent", instructions="", agent_tools=("careful",))
    models = {
        "parent": ScriptedModel(tool_call(0, "careful", json.dumps({"input": "2*3"}), "p1"), answer("6")),
        "careful": ScriptedModel(tool_call(0, "calculator", json.dumps({"expression": "2*3"}), "c1"), answer("6")),
    }
    team = team_of(models, parent, CAREFUL)
    gate = ScriptedGate(Decision(True))
    items = [i async for i in run_agent(parent, "go", models["parent"], team=team, gate=gate)]
    nested = [i for i in items if isinstance(i, Nested) and isinstance(i.event, Interrupt)]
    assert [(i.scope.agent, i.scope.depth, i.scope.parent_tool_call_id) for i in nested] == [("careful", 1, "p1")] * 2
    result = next(i.event for i in items if isinstance(i, Nested) and isinstance(i.event, ToolResult))
    assert (result.content, result.is_error) == ("6", False)


async def test_a_rejected_handoff_does_not_hand_over() -> None:
    spec = AgentSpec(name="triage", instructions="", handoffs=("billing",), approval=frozenset({"transfer_to_billing"}))
    billing = AgentSpec(name="billing", instructions="")
    models = {"triage": ScriptedModel(tool_call(0, "transfer_to_billing", "{}", "h1"), answer("stayed"))}
    gate = ScriptedGate(Decision(False, "no"))
    events = [e async for e in run_agent(spec, "go", models["triage"], team=team_of(models, spec, billing), gate=gate)]
    assert events[-1].agent_name == "triage" and events[-1].content == "stayed"  # type: ignore[union-attr]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agents.toml"
    path.write_text(text)
    return path


def test_the_agents_file_reads_approval_ask_user_and_the_timeout(tmp_path: Path) -> None:
    text = '[agents.a]\ntools = ["calculator"]\napproval = ["calculator", "ask_user"]\nask_user = true\n'
    spec = load_agents(write(tmp_path, text + "approval_timeout = 30\n")).agents["a"]
    assert (spec.approval, spec.ask_user, spec.approval_timeout_s) == (frozenset({"calculator", "ask_user"}), True, 30)
    assert load_agents(write(tmp_path, "[agents.a]\n")).agents["a"].approval_timeout_s == 600


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[agents.a]\napproval = ["calculator"]\n', "approval names ['calculator'], which are not among its tools"),
        ('[agents.a]\napproval = ["ask_user"]\n', "approval names ['ask_user']"),  # ask_user is off
        ("[agents.a]\nask_user = 1\n", "ask_user must be true or false"),
        ("[agents.a]\napproval_timeout = 0\n", "approval_timeout must be a positive number of seconds"),
        ('[agents.a]\napproval = "calculator"\n', "approval must be of type list"),
    ],
)
def test_bad_approval_settings_are_refused_with_a_message_that_names_them(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(AgentConfigError) as failure:
        load_agents(write(tmp_path, text))
    assert message in str(failure.value)


async def test_regression_an_interrupt_is_open_before_its_event_is_seen_and_abandoned_if_the_run_stops() -> None:
    """A decision sent the moment the event is read must find the interrupt (in Redis, before the mirror
    publishes the event); a run closed at that moment must not leave it open for anyone to answer."""
    model = ScriptedModel(tool_call(0, "calculator", json.dumps({"expression": "1+1"}), "c1"))
    gate = ScriptedGate()
    events = run_agent(CAREFUL, "go", model, gate=gate)
    async for event in events:
        if isinstance(event, Interrupt):
            assert gate.opened == [event.interrupt_id] and not gate.abandoned
            await events.aclose()  # the run stops while its reader holds the event
            assert gate.abandoned == [event.interrupt_id] and not gate.asked
            break
    else:
        pytest.fail("no interrupt was streamed")


class SlowGate(ScriptedGate):
    """Decides after a pause, as a person would."""

    async def decide(self, interrupt: Interrupt, timeout_s: float) -> Decision:
        await asyncio.sleep(0.3)
        return await super().decide(interrupt, timeout_s)


async def parent_result_asking_careful(parent: AgentSpec, gate: ScriptedGate) -> ToolResult:
    """Run ``parent``, which asks CAREFUL (whose calculator call waits for ``gate``); the result of that ask."""
    models = {
        "parent": ScriptedModel(tool_call(0, "careful", json.dumps({"input": "2*3"}), "p1"), answer("done")),
        "careful": ScriptedModel(tool_call(0, "calculator", json.dumps({"expression": "2*3"}), "c1"), answer("6")),
    }
    team = team_of(models, parent, CAREFUL)
    items = [i async for i in run_agent(parent, "go", models["parent"], team=team, gate=gate)]
    return next(i for i in items if isinstance(i, ToolResult) and i.tool_call_id == "p1")


async def test_regression_a_nested_agent_waiting_for_a_person_outlasts_the_callers_tool_timeout() -> None:
    """An agent tool has no tool timeout of its own (unless tool_timeouts names it): the run's time limit bounds it,
    and that pauses while people decide; a 60 s default would cut every approval inside a nested agent short."""
    parent = AgentSpec(name="parent", instructions="", agent_tools=("careful",), tool_timeout_s=0.1)
    result = await parent_result_asking_careful(parent, SlowGate(Decision(True)))
    assert (result.content, result.is_error) == ("6", False)


async def test_tool_timeouts_naming_an_agent_tool_still_bound_it() -> None:
    parent = AgentSpec(name="parent", instructions="", agent_tools=("careful",), tool_timeouts={"careful": 0.1})
    result = await parent_result_asking_careful(parent, SlowGate(Decision(True)))
    assert result.is_error and "did not finish within 0.1 s" in result.content
