"""The offline demo model: a calculator round trip for arithmetic, a streamed answer otherwise."""

from __future__ import annotations

from service.runtime.agents import default_agents
from service.runtime.demo import DEMO_LABEL, DemoChatModel
from service.runtime.events import Chunk, Output, ToolResult
from service.runtime.loop import run_agent


async def test_arithmetic_prompts_stream_a_calculator_call_and_then_the_result() -> None:
    agent = default_agents().agents["assistant"]
    events = [e async for e in run_agent(agent, "What is 12 * (3 + 4)?", DemoChatModel(token_delay_s=0))]
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert (result.tool_name, result.content, result.is_error) == ("calculator", "84", False)
    output = events[-1]
    assert isinstance(output, Output)
    assert "84" in output.content
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert len(chunks) > 5
    assert {c.model for c in chunks} == {DEMO_LABEL}


async def test_other_prompts_stream_an_answer_token_by_token() -> None:
    agent = default_agents().agents["assistant"]
    events = [e async for e in run_agent(agent, "Tell me about gRPC", DemoChatModel(token_delay_s=0))]
    assert not [e for e in events if isinstance(e, ToolResult)]
    chunks = "".join(e.content for e in events if isinstance(e, Chunk))
    assert "Tell me about gRPC" in chunks
    assert isinstance(events[-1], Output)
    assert events[-1].content == chunks
