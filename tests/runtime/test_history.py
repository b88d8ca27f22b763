"""A run's turns from its events (complete ones only, in the model's order), as chat messages, within bounds."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from agentstream_server.runtime.events import Action, AgentStep, Chunk, Output, ToolCall, ToolResult
from agentstream_server.runtime.history import Turn, TurnRecorder, chat_messages
from agentstream_server.store.sessions import SessionBounds, bounded

A = Action("calculator", "c1", "agent", {"expression": "1+1"})
B = Action("current_time", "c2", "agent", {})


def result(action: Action, content: str) -> ToolResult:
    return ToolResult(action.tool_call_id, action.tool_name, content, False, 0.01, "agent")


def recorded(*events: object) -> list[tuple[str, str]]:
    recorder = TurnRecorder("r1", "question", "agent")
    for event in events:
        recorder.observe(event)
    return [(t.role, t.content) for t in recorder.turns]


def test_a_step_with_tools_is_recorded_once_every_result_is_in_with_results_in_call_order() -> None:
    step = AgentStep("agent", 1, "", (A, B), "tool_calls", None, "thinking")
    events = [Chunk("x", "m", "agent", 1), step, ToolCall((A, B)), result(B, "noon"), result(A, "2")]
    events += [AgentStep("agent", 2, "2 at noon"), Output("2 at noon", "agent")]
    assert recorded(*events) == [
        ("user", "question"), ("assistant", ""), ("tool", "2"), ("tool", "noon"), ("assistant", "2 at noon")
    ]  # fmt: skip
    recorder = TurnRecorder("r1", "question", "agent")
    for event in events:
        recorder.observe(event)
    assert recorder.turns[1].reasoning_content == "thinking" and recorder.turns[1].tool_calls == (A, B)
    assert {t.run_id for t in recorder.turns} == {"r1"}


def test_a_run_stopped_among_its_tools_keeps_no_half_pair() -> None:
    step = AgentStep("agent", 1, "", (A, B), "tool_calls")
    assert recorded(step, result(A, "2")) == [("user", "question")]
    assert recorded(AgentStep("agent", 1, "partial answer?")) == [
        ("user", "question"),
        ("assistant", "partial answer?"),
    ]


@dataclass(frozen=True)
class Wrapped:
    """Stands in for the envelope of a nested agent's event: not the session's."""

    event: object


def test_events_of_nested_agents_and_stray_results_are_not_recorded() -> None:
    events = [Wrapped(AgentStep("helper", 1, "nested")), result(A, "stray"), Wrapped(result(A, "x"))]
    assert recorded(*events, AgentStep("agent", 1, "top")) == [("user", "question"), ("assistant", "top")]


def test_chat_messages_are_what_the_model_needs_back() -> None:
    turns = [
        Turn("user", "q"),
        Turn("assistant", "", tool_calls=(A,), reasoning_content="hmm"),
        Turn("tool", "2", tool_call_id="c1"),
        Turn("assistant", ""),
    ]
    assert chat_messages(turns) == [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression":"1+1"}'},
                }
            ],
            "reasoning_content": "hmm",
        },
        {"role": "tool", "tool_call_id": "c1", "content": "2"},
        {"role": "assistant", "content": ""},  # null content only beside tool calls
    ]


def block(i: int, calls: int) -> list[Turn]:
    actions = tuple(Action("t", f"c{i}-{j}", "agent") for j in range(calls))
    turns = [Turn("user", f"u{i}"), Turn("assistant", f"a{i}", tool_calls=actions)]
    return turns + [Turn("tool", f"r{i}", tool_call_id=a.tool_call_id) for a in actions]


@given(
    st.lists(st.integers(min_value=0, max_value=3), max_size=12),
    st.integers(min_value=1, max_value=20),
    st.integers(min_value=1, max_value=60),
)
def test_bounded_history_fits_keeps_the_newest_and_never_splits_a_call(
    calls: list[int], max_turns: int, max_chars: int
) -> None:
    turns = [turn for i, n in enumerate(calls) for turn in block(i, n)]
    kept = bounded(turns, SessionBounds(max_turns=max_turns, max_chars=max_chars))
    assert len(kept) <= max_turns and sum(t.size for t in kept) <= max_chars
    assert list(kept) == turns[len(turns) - len(kept) :]  # a suffix: the oldest went first
    answered = {a.tool_call_id for t in kept for a in t.tool_calls}
    results = [t.tool_call_id for t in kept if t.role == "tool"]
    assert set(results) == answered  # no result without its call, no call without its results
