"""Several agents in one run: handoffs, agents called as tools, attribution, limits and cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from agentstream_server.errors import AgentDepthExceeded, MaxStepsExceeded
from agentstream_server.runtime.agents import AgentConfigError, AgentSpec, load_agents
from agentstream_server.runtime.events import (
    AgentStep,
    Chunk,
    Event,
    GroupEvent,
    GroupKind,
    Nested,
    Output,
    Scope,
    ToolResult,
    Usage,
)
from agentstream_server.runtime.loop import run_agent
from agentstream_server.runtime.model import ChatModel, Finish, TextDelta, UsageReport
from agentstream_server.runtime.team import Team
from tests.runtime.test_loop import ScriptedModel, tool_call

TRIAGE = AgentSpec(name="triage", instructions="route", handoffs=("billing",), agent_tools=("researcher",))
BILLING = AgentSpec(name="billing", instructions="you handle invoices")
RESEARCHER = AgentSpec(name="researcher", instructions="look things up", description="finds facts")


def answer(*tokens: str, usage: Usage | None = None) -> list:
    return [*(TextDelta(t) for t in tokens), Finish("stop"), *([UsageReport(usage)] if usage else [])]


def team_of(models: dict[str, ScriptedModel], *specs: AgentSpec, **limits: int) -> Team:
    agents = {spec.name: spec for spec in specs}

    def model_for(spec: AgentSpec) -> ChatModel:
        return models[spec.name]

    return Team(agents, model_for, **limits)


async def collect(spec: AgentSpec, team: Team, text: str = "hi") -> list[Event | Nested]:
    model = team.model_for(spec)
    return [item async for item in run_agent(spec, text, model, team=team)]


def plain(items: list[Event | Nested]) -> list[Event]:
    return [item for item in items if not isinstance(item, Nested)]


async def test_a_handoff_passes_the_conversation_to_the_target_whose_events_name_it() -> None:
    triage = ScriptedModel(tool_call(0, "transfer_to_billing", '{"reason": "an invoice question"}', "h1"))
    billing = ScriptedModel(answer("Your ", "invoice."))
    team = team_of({"triage": triage, "billing": billing}, TRIAGE, BILLING, RESEARCHER)

    items = await collect(TRIAGE, team, "where is my invoice?")

    assert not any(isinstance(item, Nested) for item in items)  # a handoff stays at top level
    events = plain(items)
    offered = [spec["function"]["name"] for spec in triage.tools[0]]
    assert offered == ["transfer_to_billing", "researcher"]
    handoffs = [e for e in events if isinstance(e, GroupEvent)]
    assert handoffs == [
        GroupEvent(
            group_id="h1",
            members=("triage", "billing"),
            content="an invoice question",
            kind=GroupKind.HANDOFF,
            from_agent="triage",
            to_agent="billing",
            tool_call_id="h1",
        )
    ]
    result = next(e for e in events if isinstance(e, ToolResult))
    assert (result.tool_name, result.content, result.is_error) == (
        "transfer_to_billing",
        "transferred to billing",
        False,
    )
    after = events[events.index(handoffs[0]) :]
    assert {e.agent_name for e in after if isinstance(e, Chunk | AgentStep | Output)} == {"billing"}
    assert events[-1] == Output(content="Your invoice.", agent_name="billing")
    sent = billing.sent[0]
    assert sent[0] == {"role": "system", "content": "you handle invoices"}  # the target's own instructions
    assert {"role": "user", "content": "where is my invoice?"} in sent
    assert sent[-1] == {"role": "tool", "tool_call_id": "h1", "content": "transferred to billing"}
    assert [c.step for c in events if isinstance(c, AgentStep)] == [1, 2]  # steps go on counting in the run


async def test_only_the_first_transfer_of_a_turn_wins() -> None:
    spec = AgentSpec(name="triage", instructions="", handoffs=("billing", "researcher"))
    triage = ScriptedModel(
        tool_call(0, "transfer_to_billing", "{}", "h1") + tool_call(1, "transfer_to_researcher", "{}", "h2")
    )
    billing = ScriptedModel(answer("ok"))
    team = team_of({"triage": triage, "billing": billing}, spec, BILLING, RESEARCHER)
    events = plain(await collect(spec, team))
    results = {e.tool_call_id: e for e in events if isinstance(e, ToolResult)}
    assert not results["h1"].is_error and results["h2"].is_error
    assert "already transferred to billing" in results["h2"].content
    assert [e.to_agent for e in events if isinstance(e, GroupEvent)] == ["billing"]


async def test_an_agent_tool_streams_its_events_nested_and_its_answer_is_the_tool_result() -> None:
    triage = ScriptedModel(
        tool_call(0, "researcher", json.dumps({"input": "find x"}), "c1"),
        answer("x is ", "42", usage=Usage(5, 2, 7)),
    )
    researcher = ScriptedModel(answer("42", usage=Usage(3, 1, 4)))
    team = team_of({"triage": triage, "researcher": researcher}, TRIAGE, BILLING, RESEARCHER)

    items = await collect(TRIAGE, team)

    nested = [item for item in items if isinstance(item, Nested)]
    assert nested, "the nested agent's events stream in the run"
    assert {item.scope for item in nested} == {Scope("researcher", "triage", "c1", 1)}
    assert [type(item.event).__name__ for item in nested] == [
        "MemoryAppended", "MemoryAppended", "Chunk", "AgentStep", "MemoryAppended", "Output",
    ]  # fmt: skip
    assert researcher.sent[0][-1] == {"role": "user", "content": "find x"}
    events = plain(items)
    start, end = [e for e in events if isinstance(e, GroupEvent)]
    assert (start.kind, start.from_agent, start.to_agent, start.tool_call_id, start.depth, start.content) == (
        GroupKind.AGENT_START, "triage", "researcher", "c1", 1, "find x",
    )  # fmt: skip
    assert (end.kind, end.success, end.content, end.usage) == (GroupKind.AGENT_END, True, "42", Usage(3, 1, 4))
    # in order: start, the nested events, end, then the tool result
    order = [item if not isinstance(item, Nested) else "nested" for item in items]
    assert order.index(start) < order.index("nested") < order.index(end)
    result = next(e for e in events if isinstance(e, ToolResult))
    assert order.index(end) < order.index(result)
    assert (result.tool_name, result.content, result.is_error) == ("researcher", "42", False)
    assert triage.sent[1][-1] == {"role": "tool", "tool_call_id": "c1", "content": "42"}
    assert events[-1] == Output(content="x is 42", agent_name="triage")


async def test_nested_agents_nest_their_scopes_and_a_call_past_the_depth_limit_fails_the_run() -> None:
    loop_agent = AgentSpec(name="deep", instructions="", agent_tools=("deep",))
    calls = [tool_call(0, "deep", json.dumps({"input": f"level {i}"}), f"d{i}") for i in range(5)]
    model = ScriptedModel(*calls)
    team = team_of({"deep": model}, loop_agent, max_depth=2)
    items: list[Event | Nested] = []
    with pytest.raises(AgentDepthExceeded) as failure:
        async for item in run_agent(loop_agent, "go", model, team=team):
            items.append(item)
    assert failure.value.metadata["max_depth"] == "2"
    scopes = {(item.scope.depth, item.scope.parent_tool_call_id, item.scope.caller) for item in items
              if isinstance(item, Nested)}  # fmt: skip
    assert scopes == {(1, "d0", "deep"), (2, "d1", "deep")}
    starts = [e for e in (i.event if isinstance(i, Nested) else i for i in items) if isinstance(e, GroupEvent)]
    assert [(g.tool_call_id, g.depth) for g in starts] == [("d0", 1), ("d1", 2)]


async def test_a_nested_agent_that_fails_is_an_error_result_and_the_parent_goes_on() -> None:
    stuck = AgentSpec(name="researcher", instructions="", max_steps=1, tools=())
    triage = ScriptedModel(tool_call(0, "researcher", json.dumps({"input": "q"}), "c1"), answer("sorry"))
    researcher = ScriptedModel(tool_call(0, "nothing", "{}", "n1"))  # never answers within its one step
    team = team_of({"triage": triage, "researcher": researcher}, TRIAGE, BILLING, stuck)
    events = plain(await collect(TRIAGE, team))
    end = next(e for e in events if isinstance(e, GroupEvent) and e.kind is GroupKind.AGENT_END)
    result = next(e for e in events if isinstance(e, ToolResult))
    assert not end.success and result.is_error
    assert "agent researcher failed" in result.content and "1 steps" in result.content
    assert events[-1] == Output(content="sorry", agent_name="triage")


async def test_a_bad_input_to_an_agent_tool_is_an_error_result_and_no_nested_run() -> None:
    triage = ScriptedModel(tool_call(0, "researcher", json.dumps({"input": 3}), "c1"), answer("ok"))
    team = team_of({"triage": triage, "researcher": ScriptedModel()}, TRIAGE, BILLING, RESEARCHER)
    items = await collect(TRIAGE, team)
    result = next(e for e in plain(items) if isinstance(e, ToolResult))
    assert result.is_error and "non-empty string parameter 'input'" in result.content
    assert not any(isinstance(item, Nested) for item in items)


async def test_handoffs_past_the_limit_fail_the_run() -> None:
    a = AgentSpec(name="a", instructions="", handoffs=("b",))
    b = AgentSpec(name="b", instructions="", handoffs=("a",))
    model_a = ScriptedModel(*[tool_call(0, "transfer_to_b", "{}", f"a{i}") for i in range(3)])
    model_b = ScriptedModel(*[tool_call(0, "transfer_to_a", "{}", f"b{i}") for i in range(3)])
    team = team_of({"a": model_a, "b": model_b}, a, b, max_handoffs=3)
    with pytest.raises(MaxStepsExceeded, match="handed over 4 times"):
        await collect(a, team)


async def test_closing_the_run_inside_a_nested_agent_closes_its_llm_stream() -> None:
    triage = ScriptedModel(tool_call(0, "researcher", json.dumps({"input": "q"}), "c1"))
    researcher = ScriptedModel([TextDelta("thinking"), TextDelta("never")], hang_after=1)
    team = team_of({"triage": triage, "researcher": researcher}, TRIAGE, BILLING, RESEARCHER)
    seen: list[Event | Nested] = []

    async def consume() -> None:
        async for item in run_agent(TRIAGE, "hi", triage, team=team):
            seen.append(item)

    task = asyncio.create_task(consume())
    for _ in range(200):
        if any(isinstance(i, Nested) and isinstance(i.event, Chunk) for i in seen):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert researcher.closed == 1 and triage.closed == 1


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agents.toml"
    path.write_text(text)
    return path


def test_the_agents_file_reads_handoffs_agent_tools_and_descriptions(tmp_path: Path) -> None:
    catalog = load_agents(
        write(
            tmp_path,
            """
[agents.triage]
handoffs = ["billing"]
agent_tools = ["researcher"]
[agents.billing]
description = "invoices"
[agents.researcher]
""",
        )
    )
    triage = catalog.agents["triage"]
    assert (triage.handoffs, triage.agent_tools) == (("billing",), ("researcher",))
    assert catalog.agents["billing"].description == "invoices"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[agents.a]\nhandoffs = ["nobody"]\n', "handoffs names undefined agents ['nobody']"),
        ('[agents.a]\nagent_tools = ["b"]\n', "agent_tools names undefined agents ['b']"),
        ("[agents.a]\nhandoffs = [1]\n", "handoffs must be a list of agent names"),
        ('[agents.a]\nagent_tools = ["b", "b"]\n[agents.b]\n', "agent_tools names one of its agent names twice"),
        (
            '[agents.a]\ntools = ["calculator"]\nagent_tools = ["calculator"]\n[agents.calculator]\n',
            "tool 'calculator' and agent tool 'calculator' are both offered to the model as 'calculator'",
        ),
        ('[agents."two words"]\n[agents.a]\nagent_tools = ["two words"]\n', "is not a valid tool name"),
    ],
)
def test_a_bad_team_is_refused_at_load_with_a_message_that_names_it(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AgentConfigError) as failure:
        load_agents(write(tmp_path, text))
    assert message in str(failure.value)
