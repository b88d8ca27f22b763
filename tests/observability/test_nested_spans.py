"""An agent called as a tool runs inside the tool call: its spans nest under the parent's execute_tool span."""

from __future__ import annotations

import json

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentstream_server.runtime.agents import AgentSpec
from agentstream_server.runtime.events import Output
from agentstream_server.runtime.loop import run_agent
from agentstream_server.runtime.model import Finish, TextDelta
from agentstream_server.runtime.tools import tool_from_function
from tests.observability.conftest import by_name, parent_id, span_id
from tests.runtime.test_loop import ScriptedModel, tool_call


async def test_a_nested_agents_steps_llm_calls_and_tools_are_children_of_the_tool_call_that_runs_it(
    exported: InMemorySpanExporter,
) -> None:
    inner_model = ScriptedModel([TextDelta("Paris"), Finish("stop")])
    inner = AgentSpec(name="researcher", instructions="Answer briefly.")

    async def research(question: str) -> str:
        """Ask the researcher agent."""
        answer = ""
        async for event in run_agent(inner, question, inner_model):
            if isinstance(event, Output):
                answer = event.content
        return answer

    outer_model = ScriptedModel(
        [*tool_call(0, "research", json.dumps({"question": "capital of France?"}), "call_1"), Finish("tool_calls")],
        [TextDelta("It is Paris."), Finish("stop")],
    )
    outer = AgentSpec(name="planner", instructions="Plan.", tools=(tool_from_function(research),))
    events = [event async for event in run_agent(outer, "Where?", outer_model)]
    assert isinstance(events[-1], Output) and events[-1].content == "It is Paris."

    planner_steps = by_name(exported, "invoke_agent planner")
    (tool,) = by_name(exported, "execute_tool research")
    (nested_step,) = by_name(exported, "invoke_agent researcher")
    chats = by_name(exported, "chat scripted")
    assert len(planner_steps) == 2 and len(chats) == 3
    assert parent_id(tool) == span_id(planner_steps[0])
    assert parent_id(nested_step) == span_id(tool)
    nested_chat = next(c for c in chats if parent_id(c) == span_id(nested_step))
    assert nested_chat.attributes is not None and nested_chat.attributes["gen_ai.agent.name"] == "researcher"
    assert tool.attributes is not None and tool.attributes["gen_ai.tool.call.id"] == "call_1"
