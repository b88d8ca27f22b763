"""Several agents in one run: handoff tools, agents offered as tools, and the limits that bound them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agentstream_server.runtime.agents import AgentSpec, handoff_tool_name
from agentstream_server.runtime.model import ChatModel
from agentstream_server.runtime.tools import Tool

DEFAULT_MAX_AGENT_DEPTH = 3
"""How deeply agents called as tools may nest when the server sets no limit."""
DEFAULT_MAX_HANDOFFS = 10
"""How many handoffs one run may make when the server sets no limit."""
AGENT_TOOL_INPUT = "input"
"""The one parameter of an agent offered as a tool."""


@dataclass(frozen=True, slots=True)
class Team:
    """Everything a run needs to involve other agents: the catalog, their models, and the limits."""

    agents: Mapping[str, AgentSpec]
    model_for: Callable[[AgentSpec], ChatModel]
    max_depth: int = DEFAULT_MAX_AGENT_DEPTH
    """Agents called as tools nest at most this deep; a call past it fails the run (AGENT_DEPTH_EXCEEDED)."""
    max_handoffs: int = DEFAULT_MAX_HANDOFFS
    """A run (or a nested run) hands over at most this many times; past it the run fails (MAX_STEPS_EXCEEDED)."""


@dataclass(frozen=True, slots=True)
class AgentTools:
    """What one agent is offered beyond its own tools: handoff targets and agents as tools, by tool name."""

    handoffs: Mapping[str, str]
    """transfer_to_<name> -> name."""
    agents: Mapping[str, str]
    """Tool name -> agent name (the same)."""
    specs: tuple[Tool, ...]

    @staticmethod
    def of(spec: AgentSpec, team: Team | None) -> AgentTools:
        """The handoff and agent tools of an agent (none without a team)."""
        if team is None:
            return AgentTools({}, {}, ())
        handoffs = {handoff_tool_name(name): name for name in spec.handoffs if name in team.agents}
        agents = {name: name for name in spec.agent_tools if name in team.agents}
        specs = tuple(_handoff_tool(team.agents[name]) for name in handoffs.values())
        specs += tuple(_agent_tool(team.agents[name]) for name in agents)
        return AgentTools(handoffs, agents, specs)


def _describe(agent: AgentSpec) -> str:
    if agent.description:
        return agent.description
    first_line = agent.instructions.strip().splitlines()[0] if agent.instructions.strip() else ""
    return first_line[:300] or f"the {agent.name} agent"


def _handoff_tool(agent: AgentSpec) -> Tool:
    return Tool(
        name=handoff_tool_name(agent.name),
        description=f"Hand the conversation over to the {agent.name} agent, who answers from then on: "
        f"{_describe(agent)}",
        parameters={
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why the conversation is handed over."}},
        },
        call=_not_callable,
    )


def _agent_tool(agent: AgentSpec) -> Tool:
    return Tool(
        name=agent.name,
        description=f"Ask the {agent.name} agent and get its answer: {_describe(agent)}",
        parameters={
            "type": "object",
            "properties": {AGENT_TOOL_INPUT: {"type": "string", "description": "The request for the agent."}},
            "required": [AGENT_TOOL_INPUT],
        },
        call=_not_callable,
    )


async def _not_callable(params: Mapping[str, Any]) -> str:
    raise RuntimeError("handoff and agent tools are run by the agent loop, never called directly")
