"""The agent loop against a scripted in-process ChatModel: event order, tools, errors, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import pytest

from service.errors import LLMUpstreamError, MaxStepsExceeded
from service.runtime.agents import AgentSpec
from service.runtime.events import AgentStep, Chunk, MemoryAppended, Output, ToolCall, ToolResult, Usage
from service.runtime.llm import Finish, LLMDelta, TextDelta, ToolCallDelta, UsageReport
from service.runtime.tools import tool_from_function

Turn = list[LLMDelta]


class ScriptedModel:
    """Yields one scripted turn per call; records what it was sent and whether each stream was closed."""

    label = "scripted"

    def __init__(self, *turns: Turn, hang_after: int | None = None) -> None:
        self.turns = list(turns)
        self.sent: list[list[Mapping[str, Any]]] = []
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


async def collect(model: ScriptedModel, spec: AgentSpec = AGENT) -> list[Any]:
    return [event async for event in run(spec, model)]


def run(spec: AgentSpec, model: ScriptedModel) -> AsyncGenerator[Any, None]:
    from service.runtime.loop import run_agent

    return run_agent(spec, "hi", model)


async def test_a_text_only_run_yields_memory_chunks_step_and_output_in_order() -> None:
    model = ScriptedModel([TextDelta("Hel"), TextDelta("lo"), Finish("stop"), UsageReport(Usage(3, 2, 5))])
    events = await collect(model)
    assert [type(e).__name__ for e in events] == [
        "MemoryAppended", "MemoryAppended", "Chunk", "Chunk", "AgentStep", "MemoryAppended", "Output",
    ]  # fmt: skip
    step = events[4]
    assert isinstance(step, AgentStep)
    assert (step.content, step.finish_reason, step.usage, step.step) == ("Hello", "stop", Usage(3, 2, 5), 1)
    assert events[-1] == Output(content="Hello", agent_name="a")
    assert model.sent[0] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


async def test_a_tool_round_trip_sends_the_result_back_to_the_model() -> None:
    model = ScriptedModel(
        [*tool_call(0, "add", '{"a": 2, "b": 3}', "c1"), Finish("tool_calls")],
        [TextDelta("5"), Finish("stop")],
    )
    events = await collect(model)
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert [(a.tool_name, a.tool_call_id, dict(a.params)) for a in call.actions] == [("add", "c1", {"a": 2, "b": 3})]
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert (result.content, result.is_error) == ("5", False)
    second = model.sent[1]
    assert second[2]["tool_calls"][0]["function"] == {"name": "add", "arguments": '{"a": 2, "b": 3}'}
    assert second[3] == {"role": "tool", "tool_call_id": "c1", "content": "5"}
    assert [e.step for e in events if isinstance(e, Chunk)] == [2]


async def test_parallel_tool_calls_run_concurrently() -> None:
    both_started = asyncio.Event()
    started: list[str] = []

    async def rendezvous(name: str) -> str:
        """Waits until both calls have started."""
        started.append(name)
        if len(started) == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), 5)
        return name

    spec = AgentSpec(name="a", instructions="", tools=(tool_from_function(rendezvous),))
    model = ScriptedModel(
        [*tool_call(0, "rendezvous", '{"name": "x"}', "c1"), *tool_call(1, "rendezvous", '{"name": "y"}', "c2")],
        [TextDelta("done")],
    )
    events = await collect(model, spec)
    assert sorted(e.content for e in events if isinstance(e, ToolResult)) == ["x", "y"]


@pytest.mark.parametrize(
    ("deltas", "message"),
    [
        (tool_call(0, "fail", '{"reason": "kaboom"}', "c1"), "RuntimeError: kaboom"),
        (tool_call(0, "add", '{"a": ', "c1"), "not a valid JSON object"),
        (tool_call(0, "nope", "{}", "c1"), "unknown tool 'nope'"),
        (tool_call(0, "add", '{"a": 1}', "c1"), "invalid arguments for add"),
    ],
    ids=["raises", "bad-json", "unknown-tool", "bad-arguments"],
)
async def test_tool_failures_become_error_results_and_the_run_continues(deltas: Turn, message: str) -> None:
    model = ScriptedModel(deltas, [TextDelta("sorry")])
    events = await collect(model)
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.is_error
    assert message in result.content
    assert isinstance(events[-1], Output)


async def test_max_steps_without_an_answer_raises() -> None:
    spec = AgentSpec(name="a", instructions="", tools=AGENT.tools, max_steps=2)
    model = ScriptedModel(tool_call(0, "add", '{"a": 1, "b": 1}', "c1"), tool_call(0, "add", '{"a": 1, "b": 1}', "c2"))
    with pytest.raises(MaxStepsExceeded, match="all 2 steps"):
        await collect(model, spec)


async def test_upstream_errors_propagate() -> None:
    class Failing(ScriptedModel):
        async def stream(self, *args: Any, **kwargs: Any) -> AsyncGenerator[LLMDelta, None]:
            yield TextDelta("par")
            raise LLMUpstreamError("LLM endpoint returned HTTP 500: boom")

    events: list[Any] = []
    with pytest.raises(LLMUpstreamError, match="HTTP 500"):
        async for event in run(AGENT, Failing()):
            events.append(event)
    assert [e.content for e in events if isinstance(e, Chunk)] == ["par"]


async def test_closing_the_run_mid_stream_closes_the_model_stream() -> None:
    model = ScriptedModel([TextDelta("a"), TextDelta("b")], hang_after=1)
    events = run(AGENT, model)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Chunk):
                break
    assert model.closed == 1


async def test_cancelling_the_consumer_cancels_running_tools() -> None:
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def block() -> str:
        """Blocks until cancelled."""
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return ""

    spec = AgentSpec(name="a", instructions="", tools=(tool_from_function(block),))
    model = ScriptedModel(tool_call(0, "block", "{}", "c1"))

    async def consume() -> None:
        async with contextlib.aclosing(run(spec, model)) as events:
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
    roles = [e.role for e in events if isinstance(e, MemoryAppended)]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
