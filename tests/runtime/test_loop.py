"""The agent loop against a scripted in-process ChatModel: event order, tools, errors, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import pytest

from agentstream.v1 import message_pb2 as pb
from agentstream_server.errors import LLMUpstreamError, MaxStepsExceeded
from agentstream_server.runtime.agents import AgentSpec
from agentstream_server.runtime.arguments import MAX_DEPTH
from agentstream_server.runtime.events import (
    Action,
    AgentStep,
    Chunk,
    Event,
    MemoryAppended,
    Output,
    RunEvent,
    ToolCall,
    ToolResult,
    Usage,
)
from agentstream_server.runtime.loop import run_agent
from agentstream_server.runtime.model import Finish, LLMDelta, TextDelta, ToolCallDelta, UsageReport
from agentstream_server.runtime.tools import openai_tool_spec, tool_from_function
from agentstream_server.transport.convert import to_proto

Turn = list[LLMDelta]


class ScriptedModel:
    """Yields one scripted turn per call; records what it was sent and whether each stream was closed."""

    label = "scripted"

    def __init__(self, *turns: Turn, hang_after: int | None = None) -> None:
        self.turns = list(turns)
        self.sent: list[list[Mapping[str, Any]]] = []
        self.tools: list[list[Mapping[str, Any]]] = []
        self.temperatures: list[float | None] = []
        self.closed = 0
        self.hang_after = hang_after

    async def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        *,
        temperature: float | None = None,
    ) -> AsyncGenerator[LLMDelta, None]:
        self.sent.append([dict(m) for m in messages])
        self.tools.append(list(tools))
        self.temperatures.append(temperature)
        try:
            for i, delta in enumerate(self.turns.pop(0)):
                if self.hang_after is not None and i == self.hang_after:
                    await asyncio.Event().wait()
                yield delta
        finally:
            self.closed += 1


def tool_call(index: int, name: str, arguments: str, call_id: str) -> list[LLMDelta]:
    half = len(arguments) // 2
    return [
        ToolCallDelta(index, call_id, name, ""),
        ToolCallDelta(index, None, None, arguments[:half]),
        ToolCallDelta(index, None, None, arguments[half:]),
    ]


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def fail(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


AGENT = AgentSpec(name="a", instructions="be brief", tools=(tool_from_function(add), tool_from_function(fail)))


async def collect(model: ScriptedModel, spec: AgentSpec = AGENT) -> list[Event]:
    return [event async for event in run_agent(spec, "hi", model)]


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


async def test_a_text_only_run_yields_memory_chunks_step_and_output_in_order() -> None:
    model = ScriptedModel([TextDelta("Hel"), TextDelta("lo", "hmm"), Finish("stop"), UsageReport(Usage(3, 2, 5))])
    events = await collect(model)
    assert kinds(events) == [
        "MemoryAppended", "MemoryAppended", "Chunk", "Chunk", "AgentStep", "MemoryAppended", "Output",
    ]  # fmt: skip
    assert events[:2] == [
        MemoryAppended(role="system", content="be brief", agent_name="a"),
        MemoryAppended(role="user", content="hi", agent_name="a"),
    ]
    assert events[2:4] == [Chunk("Hel", "scripted", "a", 1), Chunk("lo", "scripted", "a", 1, reasoning_content="hmm")]
    assert events[4] == AgentStep("a", 1, "Hello", (), "stop", Usage(3, 2, 5), reasoning_content="hmm")
    assert events[5] == MemoryAppended(role="assistant", content="Hello", agent_name="a")
    assert events[-1] == Output(content="Hello", agent_name="a")
    assert model.sent[0] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert model.closed == 1


async def test_the_model_gets_the_tool_specs_and_the_agents_temperature() -> None:
    spec = AgentSpec(name="a", instructions="", tools=AGENT.tools, temperature=0.3)
    model = ScriptedModel([TextDelta("ok")])
    events = await collect(model, spec)
    assert model.tools == [[openai_tool_spec(t) for t in AGENT.tools]]
    assert model.temperatures == [0.3]
    assert model.sent[0] == [{"role": "user", "content": "hi"}]  # no instructions: no system message
    assert [e.role for e in events if isinstance(e, MemoryAppended)] == ["user", "assistant"]


async def test_a_tool_round_trip_in_order_sends_the_result_back_to_the_model() -> None:
    model = ScriptedModel(
        [TextDelta("Adding."), *tool_call(0, "add", '{"a": 2, "b": 3}', "c1"), Finish("tool_calls")],
        [TextDelta("5"), Finish("stop")],
    )
    events = await collect(model)
    assert kinds(events) == [
        "MemoryAppended", "MemoryAppended",
        "Chunk", "AgentStep", "MemoryAppended", "ToolCall", "ToolResult", "MemoryAppended",
        "Chunk", "AgentStep", "MemoryAppended", "Output",
    ]  # fmt: skip
    action = Action(tool_name="add", tool_call_id="c1", agent_name="a", params={"a": 2, "b": 3})
    assert events[3] == AgentStep("a", 1, "Adding.", (action,), "tool_calls", None)
    assert events[5] == ToolCall(actions=(action,))
    result = events[6]
    assert isinstance(result, ToolResult)
    assert (result.tool_call_id, result.tool_name, result.content, result.is_error) == ("c1", "add", "5", False)
    assert result.duration_s >= 0
    assert events[7] == MemoryAppended(role="tool", content="5", agent_name="a")
    assert [e.step for e in events if isinstance(e, Chunk | AgentStep)] == [1, 1, 2, 2]
    second = model.sent[1]
    assert second[2] == {
        "role": "assistant",
        "content": "Adding.",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}],
    }
    assert second[3] == {"role": "tool", "tool_call_id": "c1", "content": "5"}
    assert events[-1] == Output(content="5", agent_name="a")


async def test_parallel_tool_calls_run_concurrently() -> None:
    started = {"x": asyncio.Event(), "y": asyncio.Event()}

    async def rendezvous(name: str, other: str) -> str:
        """Returns only once the other call has started too: both must be running at the same time."""
        started[name].set()
        await asyncio.wait_for(started[other].wait(), 5)
        return name

    spec = AgentSpec(name="a", instructions="", tools=(tool_from_function(rendezvous),))
    model = ScriptedModel(
        [
            *tool_call(0, "rendezvous", '{"name": "x", "other": "y"}', "c1"),
            *tool_call(1, "rendezvous", '{"name": "y", "other": "x"}', "c2"),
        ],
        [TextDelta("done")],
    )
    events = await collect(model, spec)
    assert sorted(e.content for e in events if isinstance(e, ToolResult)) == ["x", "y"]
    assert not [e for e in events if isinstance(e, ToolResult) and e.is_error]


async def test_results_stream_as_tools_finish_and_go_back_to_the_model_in_call_order() -> None:
    fast_done = asyncio.Event()

    async def slow() -> str:
        """Finishes after fast."""
        await asyncio.wait_for(fast_done.wait(), 5)
        return "slow"

    async def fast() -> str:
        """Finishes first."""
        fast_done.set()
        return "fast"

    spec = AgentSpec(name="a", instructions="", tools=(tool_from_function(slow), tool_from_function(fast)))
    model = ScriptedModel([*tool_call(0, "slow", "{}", "c1"), *tool_call(1, "fast", "{}", "c2")], [TextDelta("ok")])
    events = await collect(model, spec)
    assert [e.content for e in events if isinstance(e, ToolResult)] == ["fast", "slow"]
    assert [m.get("tool_call_id") for m in model.sent[1][1:]] == [None, "c1", "c2"]
    assert [e.content for e in events if isinstance(e, MemoryAppended) and e.role == "tool"] == ["slow", "fast"]


@pytest.mark.parametrize(
    ("deltas", "message"),
    [
        (tool_call(0, "fail", '{"reason": "kaboom"}', "c1"), "RuntimeError: kaboom"),
        (tool_call(0, "add", '{"a": ', "c1"), "the arguments for add were not usable (not valid JSON)"),
        (tool_call(0, "add", "[1, 2]", "c1"), "the arguments for add were not usable (not a JSON object)"),
        (tool_call(0, "nope", "{}", "c1"), "unknown tool 'nope'; available tools: add, fail"),
        (tool_call(0, "add", '{"a": 1}', "c1"), "ToolArgumentsError: invalid arguments for add: b: Field required"),
    ],
    ids=["raises", "bad-json", "not-an-object", "unknown-tool", "bad-arguments"],
)
async def test_tool_failures_become_error_results_and_the_run_continues(deltas: Turn, message: str) -> None:
    model = ScriptedModel(deltas, [TextDelta("sorry")])
    events = await collect(model)
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.is_error
    assert message in result.content
    assert model.sent[1][-1] == {"role": "tool", "tool_call_id": "c1", "content": result.content}
    assert events[-1] == Output(content="sorry", agent_name="a")


async def test_invalid_json_arguments_become_empty_params() -> None:
    model = ScriptedModel(tool_call(0, "add", '{"a": ', "c1"), [TextDelta("sorry")])
    events = await collect(model)
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert dict(call.actions[0].params) == {}


async def test_a_tool_that_raises_cancelled_error_itself_is_an_error_result_not_a_hang() -> None:
    async def self_cancelling() -> str:
        """Awaits a task that something cancelled: CancelledError without the run being cancelled."""
        inner = asyncio.create_task(asyncio.sleep(10))
        inner.cancel()
        return str(await inner)

    spec = AgentSpec(name="a", instructions="", tools=(tool_from_function(self_cancelling),))
    model = ScriptedModel(tool_call(0, "self_cancelling", "{}", "c1"), [TextDelta("ok")])
    events = await asyncio.wait_for(collect(model, spec), 5)
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.is_error
    assert result.content.startswith("CancelledError")
    assert isinstance(events[-1], Output)


async def test_repeated_and_missing_tool_call_ids_are_made_unique() -> None:
    model = ScriptedModel(
        [
            *tool_call(0, "add", '{"a": 1, "b": 1}', "dup"),
            *tool_call(1, "add", '{"a": 2, "b": 2}', "dup"),
            ToolCallDelta(2, None, "add", '{"a": 3, "b": 3}'),
        ],
        [TextDelta("ok")],
    )
    events = await collect(model)
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert [a.tool_call_id for a in call.actions] == ["dup", "dup_1", "call_1_2"]
    tool_messages = [m for m in model.sent[1] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages] == [
        ("dup", "2"),
        ("dup_1", "4"),
        ("call_1_2", "6"),
    ]


async def test_max_steps_without_an_answer_raises() -> None:
    spec = AgentSpec(name="a", instructions="", tools=AGENT.tools, max_steps=2)
    model = ScriptedModel(tool_call(0, "add", '{"a": 1, "b": 1}', "c1"), tool_call(0, "add", '{"a": 1, "b": 1}', "c2"))
    events: list[Event] = []
    with pytest.raises(MaxStepsExceeded, match="agent 'a' used all 2 steps without a final answer") as caught:
        async for event in run_agent(spec, "hi", model):
            events.append(event)
    assert caught.value.metadata == {"max_steps": "2"}
    assert len([e for e in events if isinstance(e, ToolResult)]) == 2
    assert not [e for e in events if isinstance(e, Output)]


async def test_upstream_errors_propagate() -> None:
    class Failing(ScriptedModel):
        async def stream(self, *args: Any, **kwargs: Any) -> AsyncGenerator[LLMDelta, None]:
            yield TextDelta("par")
            raise LLMUpstreamError("LLM endpoint returned HTTP 500: boom")

    events: list[Event] = []
    with pytest.raises(LLMUpstreamError, match="HTTP 500"):
        async for event in run_agent(AGENT, "hi", Failing()):
            events.append(event)
    assert [e.content for e in events if isinstance(e, Chunk)] == ["par"]
    assert not [e for e in events if isinstance(e, AgentStep)]


async def test_closing_the_run_mid_stream_closes_the_model_stream() -> None:
    model = ScriptedModel([TextDelta("a"), TextDelta("b")], hang_after=1)
    events = run_agent(AGENT, "hi", model)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Chunk):
                break
        assert model.closed == 0
    assert model.closed == 1


async def test_cancelling_the_consumer_mid_stream_closes_the_model_stream() -> None:
    model = ScriptedModel([TextDelta("a"), TextDelta("b")], hang_after=1)
    first_chunk = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(run_agent(AGENT, "hi", model)) as events:
            async for event in events:
                if isinstance(event, Chunk):
                    first_chunk.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_chunk.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert model.closed == 1


def blocking_tool(started: asyncio.Event, cancelled: asyncio.Event) -> AgentSpec:
    async def block() -> str:
        """Blocks until cancelled."""
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return ""

    async def quick() -> str:
        """Returns at once."""
        return "quick"

    return AgentSpec(name="a", instructions="", tools=(tool_from_function(block), tool_from_function(quick)))


async def test_closing_the_run_while_a_tool_runs_cancels_it_without_an_exception_group() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    spec = blocking_tool(started, cancelled)
    model = ScriptedModel([*tool_call(0, "block", "{}", "c1"), *tool_call(1, "quick", "{}", "c2")])
    events = run_agent(spec, "hi", model)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, ToolResult):
                assert event.content == "quick"
                await asyncio.wait_for(started.wait(), 5)
                break
    assert cancelled.is_set()  # cancelled, and awaited, before aclose returned
    assert model.closed == 1


async def test_a_timeout_while_the_consumer_is_busy_between_tool_results_is_a_timeout() -> None:
    """As in a run held back by a slow reader: the consumer, not the loop, is awaiting when time runs out."""
    started, cancelled = asyncio.Event(), asyncio.Event()
    spec = blocking_tool(started, cancelled)
    model = ScriptedModel([*tool_call(0, "block", "{}", "c1"), *tool_call(1, "quick", "{}", "c2")])
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            async with contextlib.aclosing(run_agent(spec, "hi", model)) as events:
                async for event in events:
                    if isinstance(event, ToolResult):
                        await asyncio.Event().wait()  # busy elsewhere while the loop is suspended at a yield
    assert cancelled.is_set()


async def test_cancelling_the_consumer_cancels_running_tools() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    spec = blocking_tool(started, cancelled)
    model = ScriptedModel(tool_call(0, "block", "{}", "c1"))

    async def consume() -> None:
        async with contextlib.aclosing(run_agent(spec, "hi", model)) as events:
            async for _ in events:
                pass

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


async def test_memory_events_record_every_message_sent_to_the_model() -> None:
    model = ScriptedModel([*tool_call(0, "add", '{"a": 1, "b": 1}', "c1")], [TextDelta("2")])
    events = await collect(model)
    memory = [(e.role, e.content) for e in events if isinstance(e, MemoryAppended)]
    assert memory == [("system", "be brief"), ("user", "hi"), ("assistant", ""), ("tool", "2"), ("assistant", "2")]
    assert [(m["role"], m.get("content")) for m in model.sent[1]] == [
        ("system", "be brief"), ("user", "hi"), ("assistant", None), ("tool", "2"),
    ]  # fmt: skip


async def test_closing_a_coalesced_run_mid_stream_closes_it_without_an_exception_group() -> None:
    model = ScriptedModel([TextDelta("a"), TextDelta("b")], hang_after=1)
    events = run_agent(AGENT, "hi", model, chunk_window_s=0.05)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Chunk):
                break
    assert model.closed == 1


async def test_regression_a_tool_that_never_returns_times_out_and_the_run_goes_on() -> None:
    release = threading.Event()

    def stuck(label: str) -> str:
        """Blocks its thread until the test ends."""
        release.wait()
        return label

    async def stuck_async() -> str:
        """Never returns."""
        await asyncio.Event().wait()
        return "never"

    spec = AgentSpec(
        name="a",
        instructions="",
        tools=(tool_from_function(stuck), tool_from_function(stuck_async), tool_from_function(add)),
        tool_timeout_s=0.1,
        tool_timeouts={"stuck_async": 0.2},
    )
    model = ScriptedModel(
        [
            *tool_call(0, "stuck", '{"label": "x"}', "c1"),
            *tool_call(1, "stuck_async", "{}", "c2"),
            *tool_call(2, "add", '{"a": 1, "b": 2}', "c3"),
        ],
        [TextDelta("two tools did not finish")],
    )
    try:
        events = await asyncio.wait_for(collect(model, spec), 10)
    finally:
        release.set()
    results = {e.tool_call_id: e for e in events if isinstance(e, ToolResult)}
    assert (results["c1"].is_error, results["c1"].content) == (True, "tool stuck did not finish within 0.1 s")
    assert (results["c2"].is_error, results["c2"].content) == (True, "tool stuck_async did not finish within 0.2 s")
    assert (results["c3"].is_error, results["c3"].content) == (False, "3")
    assert [m["content"] for m in model.sent[1][-3:]] == [results[c].content for c in ("c1", "c2", "c3")]
    assert events[-1] == Output(content="two tools did not finish", agent_name="a")


async def test_a_timeout_error_raised_by_a_tool_itself_is_reported_as_its_own_error() -> None:
    async def gives_up() -> str:
        """Raises TimeoutError before its deadline."""
        raise TimeoutError("upstream took too long")

    spec = AgentSpec(name="a", instructions="", tools=(tool_from_function(gives_up),), tool_timeout_s=30)
    events = await collect(ScriptedModel(tool_call(0, "gives_up", "{}", "c1"), [TextDelta("ok")]), spec)
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert (result.is_error, result.content) == (True, "TimeoutError: upstream took too long")


# ----------------------------------------------------------- issue #9: arguments protobuf cannot carry


def converts_to_protobuf(events: list[Event]) -> bool:
    """Every event converts to a wire Message that serializes and parses back (as a client would)."""
    for seq, event in enumerate(events, 1):
        data = to_proto(RunEvent("r", seq, 0, event)).SerializeToString()
        pb.Message.FromString(data)
    return True


def nested(depth: int) -> str:
    """An arguments object nested depth levels deep (the object itself is level 1)."""
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ('{"a": 1' + "0" * 400 + "}", "a number is too large"),
        ('{"a": -1e400}', "a number is too large"),
        ('{"a": ' + "9" * 5000 + "}", "a number is too large"),
        ('{"a": NaN}', "NaN is not a JSON number"),
        ('{"a": [Infinity]}', "Infinity is not a JSON number"),
        ('{"a": -Infinity}', "-Infinity is not a JSON number"),
        (nested(MAX_DEPTH + 1), f"nested more than {MAX_DEPTH} levels deep"),
        ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", f"nested more than {MAX_DEPTH} levels deep"),
    ],
    ids=[
        "int-10**400",
        "float-overflow",
        "int-over-digit-limit",
        "nan",
        "infinity",
        "minus-infinity",
        "deep",
        "deeper",
    ],
)
async def test_regression_tool_arguments_protobuf_cannot_carry_are_a_tool_argument_error(
    arguments: str, problem: str
) -> None:
    model = ScriptedModel(tool_call(0, "add", arguments, "c1"), [TextDelta("sorry")])
    events = await collect(model)
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert dict(call.actions[0].params) == {}
    assert result.is_error
    assert result.content == f"the arguments for add were not usable ({problem}); call it again"
    assert model.sent[1][-1]["content"] == result.content, "the model is told"
    assert converts_to_protobuf(events)


async def test_regression_lone_surrogates_in_tool_arguments_are_replaced() -> None:
    turn = tool_call(0, "fail", '{"reason": "x\\ud800y"}', "c1") + tool_call(1, "fail", '{"\\udc00": 1}', "c2")
    model = ScriptedModel(turn, [TextDelta("ok")])
    events = await collect(model)
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert [dict(a.params) for a in call.actions] == [{"reason": "x\ufffdy"}, {"\ufffd": 1}]
    results = {e.tool_call_id: e.content for e in events if isinstance(e, ToolResult)}
    assert results["c1"] == "RuntimeError: x\ufffdy"
    assert converts_to_protobuf(events)


async def test_arguments_at_the_depth_limit_reach_the_tool_and_convert_to_protobuf() -> None:
    model = ScriptedModel(tool_call(0, "fail", nested(MAX_DEPTH), "c1"), [TextDelta("ok")])
    events = await collect(model)
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert str(dict(call.actions[0].params)).count("{") == MAX_DEPTH
    assert "not usable" not in next(e for e in events if isinstance(e, ToolResult)).content
    assert converts_to_protobuf(events)


async def test_regression_a_tool_result_with_a_lone_surrogate_is_made_utf8_safe() -> None:
    def decode(raw: str) -> str:
        """Returns text as a careless bytes decoder would (surrogateescape)."""
        if raw == "fail":
            raise ValueError(b"\xff".decode("utf-8", "surrogateescape"))
        return b"caf\xe9".decode("utf-8", "surrogateescape")

    spec = AgentSpec(name="a", instructions="", tools=(tool_from_function(decode),))
    turn = tool_call(0, "decode", '{"raw": "ok"}', "c1") + tool_call(1, "decode", '{"raw": "fail"}', "c2")
    events = await collect(ScriptedModel(turn, [TextDelta("done")]), spec)
    results = {e.tool_call_id: e.content for e in events if isinstance(e, ToolResult)}
    assert results == {"c1": "caf\ufffd", "c2": "ValueError: \ufffd"}
    assert converts_to_protobuf(events)


async def test_regression_tool_arguments_past_the_bound_are_refused_and_the_model_is_told() -> None:
    from agentstream_server.runtime.loop import MAX_TOOL_ARGUMENTS_CHARS

    huge = '{"a": 1, "b": 2, "pad": "' + "x" * MAX_TOOL_ARGUMENTS_CHARS + '"}'
    pieces = [huge[i : i + 65536] for i in range(0, len(huge), 65536)]
    model = ScriptedModel(
        [
            ToolCallDelta(0, "c1", "add", pieces[0]),
            *(ToolCallDelta(0, None, None, p) for p in pieces[1:]),
            Finish("tool_calls"),
        ],
        [TextDelta("ok")],
    )
    events = await collect(model, AGENT)
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.is_error and f"longer than {MAX_TOOL_ARGUMENTS_CHARS} characters" in result.content
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert call.actions[0].params == {}
    sent = model.sent[1]  # the model's next turn is told what went wrong
    assert any("longer than" in str(m.get("content")) for m in sent if m.get("role") == "tool")


async def test_regression_a_huge_tool_result_is_cut_and_says_so() -> None:
    from agentstream_server.runtime.tool_calls import MAX_TOOL_RESULT_CHARS

    def flood() -> str:
        """Returns far too much."""
        return "y" * (MAX_TOOL_RESULT_CHARS * 4)

    spec = AgentSpec(name="a", instructions="", tools=(tool_from_function(flood),))
    model = ScriptedModel([*tool_call(0, "flood", "{}", "c1")], [TextDelta("done")])
    events = await collect(model, spec)
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert not result.is_error
    assert len(result.content) < MAX_TOOL_RESULT_CHARS + 100
    assert result.content.endswith(f"[truncated: the result was {MAX_TOOL_RESULT_CHARS * 4} characters]")
