"""Agents: their specs, the built-in default agent, and loading them from a TOML file."""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentstream_server.runtime.builtin_tools import BUILTIN_TOOLS
from agentstream_server.runtime.mcp_config import (
    McpConfigError,
    McpServerConfig,
    McpServerUse,
    parse_agent_mcp_servers,
    parse_mcp_servers,
)
from agentstream_server.runtime.tools import TOOL_NAME, Tool, load_tool
from agentstream_server.runtime.toolsets import Toolset

DEFAULT_AGENT_NAME = "assistant"
DEFAULT_INSTRUCTIONS = (
    "You are a helpful assistant. Use the calculator tool for arithmetic and the current_time tool for "
    "the date or time; answer concisely."
)
_AGENT_KEYS = {
    "instructions", "description", "model", "tools", "max_steps", "temperature", "tool_timeout", "tool_timeouts",
    "handoffs", "agent_tools", "approval", "ask_user", "approval_timeout", "mcp_servers",
}  # fmt: skip
DEFAULT_APPROVAL_TIMEOUT_S = 600.0
"""Seconds a call waiting for approval (or a question for the user) waits before it resolves as rejected."""
DEFAULT_TOOL_TIMEOUT_S = 60.0
"""Seconds a tool call may take when the agents file sets no tool_timeout."""
MAX_TEMPERATURE = 2.0
"""The highest sampling temperature the OpenAI API accepts."""


class AgentConfigError(ValueError):
    """The agents file is malformed; the message says where and what to fix."""


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """What an agent is: instructions, model, tools and limits."""

    name: str
    instructions: str
    model: str | None = None
    tools: tuple[Tool, ...] = ()
    max_steps: int = 10
    temperature: float | None = None
    tool_timeout_s: float = DEFAULT_TOOL_TIMEOUT_S
    tool_timeouts: Mapping[str, float] = field(default_factory=dict)
    """Per-tool overrides of tool_timeout_s, by tool name."""
    description: str = ""
    """What the agent does, told to models that may hand off to it or call it as a tool."""
    handoffs: tuple[str, ...] = ()
    """Agents this one may hand the run over to (offered as transfer_to_<name> tools)."""
    agent_tools: tuple[str, ...] = ()
    """Agents this one may call as tools (offered under their own names, one `input` parameter)."""
    approval: frozenset[str] = frozenset()
    """Tools whose calls wait for a person's approval (ResolveInterrupt) before they run."""
    ask_user: bool = False
    """Offer the built-in ask_user tool: the model asks the user a question and waits for the answer."""
    approval_timeout_s: float = DEFAULT_APPROVAL_TIMEOUT_S
    """Seconds an approval or a question waits before it resolves as rejected."""
    mcp_servers: tuple[McpServerUse, ...] = ()
    """The MCP servers whose tools it gets (see mcp_servers.McpServers, which binds them as toolsets)."""
    toolsets: tuple[Toolset, ...] = ()
    """Tools listed while the server runs (an MCP server's), offered after its own tools."""

    def timeout_for(self, tool_name: str) -> float:
        """Seconds a call of this tool may take before the model is told it did not finish."""
        return self.tool_timeouts.get(tool_name, self.tool_timeout_s)


@dataclass(frozen=True, slots=True)
class AgentCatalog:
    """The agents a server runs, and the one used when a request names none."""

    agents: dict[str, AgentSpec]
    default: str
    mcp_servers: Mapping[str, McpServerConfig] = field(default_factory=dict)
    """The [mcp_servers.NAME] tables of the agents file."""


def default_agents() -> AgentCatalog:
    """The built-in catalog: one agent, 'assistant', with the calculator and current_time tools."""
    assistant = AgentSpec(
        name=DEFAULT_AGENT_NAME,
        instructions=DEFAULT_INSTRUCTIONS,
        tools=(BUILTIN_TOOLS["calculator"], BUILTIN_TOOLS["current_time"]),
    )
    return AgentCatalog(agents={assistant.name: assistant}, default=assistant.name)


def load_agents(path: str | os.PathLike[str]) -> AgentCatalog:
    """Load an agents TOML file (see the README's 'Agents file'); raises AgentConfigError on any fault."""
    try:
        data = tomllib.loads(Path(path).read_bytes().decode("utf-8"))
    except OSError as exc:
        raise AgentConfigError(f"cannot read agents file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise AgentConfigError(f"agents file {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AgentConfigError(f"agents file {path} is not valid TOML: {exc}") from None
    unknown = set(data) - {"default", "agents", "mcp_servers"}
    if unknown:
        raise AgentConfigError(
            f"{path}: unknown top-level keys {sorted(unknown)}; expected 'default', 'agents', 'mcp_servers'"
        )
    tables = data.get("agents")
    if not isinstance(tables, dict) or not tables:
        raise AgentConfigError(f"{path}: define at least one agent as a [agents.NAME] table")
    try:
        servers = parse_mcp_servers(path, data.get("mcp_servers"))
        agents = {name: _agent(path, name, table, servers) for name, table in tables.items()}
    except McpConfigError as exc:
        raise AgentConfigError(str(exc)) from None
    check_team(agents, where=str(path))
    default = data.get("default", DEFAULT_AGENT_NAME if DEFAULT_AGENT_NAME in agents else next(iter(agents)))
    if not isinstance(default, str):
        raise AgentConfigError(f"{path}: default must be a string naming an agent; agents: {sorted(agents)}")
    if default not in agents:
        raise AgentConfigError(f"{path}: default agent {default!r} is not defined; agents: {sorted(agents)}")
    return AgentCatalog(agents=agents, default=default, mcp_servers=servers)


def _agent(path: str | os.PathLike[str], name: str, table: Any, servers: Mapping[str, McpServerConfig]) -> AgentSpec:
    where = f"{path}: [agents.{name}]"
    if not name.strip():
        raise AgentConfigError(f"{path}: an agent name must not be blank")
    if not isinstance(table, dict):
        raise AgentConfigError(f"{where} must be a table")
    unknown = set(table) - _AGENT_KEYS
    if unknown:
        raise AgentConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_AGENT_KEYS)}")
    instructions = _typed(where, table, "instructions", str, "")
    model = _typed(where, table, "model", str, None)
    if model is not None and not model.strip():
        raise AgentConfigError(f"{where}: model must not be empty; leave it out to use the server's default model")
    max_steps = _typed(where, table, "max_steps", int, 10)
    if max_steps < 1:
        raise AgentConfigError(f"{where}: max_steps must be at least 1, got {max_steps}")
    temperature = table.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, int | float)):
        raise AgentConfigError(f"{where}: temperature must be a number")
    if temperature is not None and not 0 <= temperature <= MAX_TEMPERATURE:
        raise AgentConfigError(f"{where}: temperature must be between 0 and {MAX_TEMPERATURE:g}, got {temperature}")
    names = _typed(where, table, "tools", list, [])
    tools = tuple(_tool(where, entry) for entry in names)
    seen: set[str] = set()
    for tool in tools:
        if tool.name in seen:
            raise AgentConfigError(f"{where}: two tools are named {tool.name!r}; tool names must be unique")
        seen.add(tool.name)
    tool_timeout = _seconds(where, "tool_timeout", table.get("tool_timeout", DEFAULT_TOOL_TIMEOUT_S))
    overrides = _typed(where, table, "tool_timeouts", dict, {})
    mcp_servers = parse_agent_mcp_servers(where, table.get("mcp_servers"), servers)
    for tool_name in overrides:
        if tool_name not in seen and not mcp_servers:  # an MCP tool's name is checked once its server lists it
            raise AgentConfigError(
                f"{where}: tool_timeouts names {tool_name!r}, which is not one of its tools: {sorted(seen)}"
            )
    tool_timeouts = {n: _seconds(where, f"tool_timeouts.{n}", value) for n, value in overrides.items()}
    return AgentSpec(
        description=_typed(where, table, "description", str, ""),
        handoffs=_agent_names(where, table, "handoffs"),
        agent_tools=_agent_names(where, table, "agent_tools"),
        approval=frozenset(_agent_names(where, table, "approval", what="tool names")),
        ask_user=_flag(where, table, "ask_user"),
        approval_timeout_s=_seconds(
            where, "approval_timeout", table.get("approval_timeout", DEFAULT_APPROVAL_TIMEOUT_S)
        ),
        name=name,
        instructions=instructions,
        model=model,
        tools=tools,
        max_steps=max_steps,
        temperature=None if temperature is None else float(temperature),
        tool_timeout_s=tool_timeout,
        tool_timeouts=tool_timeouts,
        mcp_servers=mcp_servers,
    )


def _agent_names(where: str, table: dict[str, Any], key: str, *, what: str = "agent names") -> tuple[str, ...]:
    names = _typed(where, table, key, list, [])
    if not all(isinstance(name, str) and name for name in names):
        raise AgentConfigError(f"{where}: {key} must be a list of {what}")
    if len(set(names)) != len(names):
        raise AgentConfigError(f"{where}: {key} names one of its {what} twice")
    return tuple(names)


def _flag(where: str, table: dict[str, Any], key: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise AgentConfigError(f"{where}: {key} must be true or false")
    return value


def check_team(agents: Mapping[str, AgentSpec], *, where: str) -> None:
    """AgentConfigError unless every handoff and agent tool names a defined agent and no two tools share a name."""
    for spec in agents.values():
        at = f"{where}: [agents.{spec.name}]"
        for key, names in (("handoffs", spec.handoffs), ("agent_tools", spec.agent_tools)):
            unknown = [name for name in names if name not in agents]
            if unknown:
                raise AgentConfigError(f"{at}: {key} names undefined agents {unknown}; agents: {sorted(agents)}")
        for name in (*spec.handoffs, *spec.agent_tools):
            if not TOOL_NAME.match(handoff_tool_name(name) if name in spec.handoffs else name):
                raise AgentConfigError(
                    f"{at}: agent {name!r} is not a valid tool name for a handoff or an agent tool: agent names "
                    "offered to a model must be 1-64 characters of letters, digits, '_' and '-' (handoffs: 52)"
                )
        offered: dict[str, str] = {tool.name: f"tool {tool.name!r}" for tool in spec.tools}
        extra = [(handoff_tool_name(n), f"handoff to {n!r}") for n in spec.handoffs]
        extra += [(n, f"agent tool {n!r}") for n in spec.agent_tools]
        if spec.ask_user:
            extra.append(("ask_user", "the built-in ask_user tool"))
        for name, what in extra:
            if name in offered:
                raise AgentConfigError(f"{at}: {offered[name]} and {what} are both offered to the model as {name!r}")
            offered[name] = what
        unknown = sorted(spec.approval - set(offered))
        if unknown and not spec.mcp_servers:  # with MCP servers, checked once they list their tools
            raise AgentConfigError(f"{at}: approval names {unknown}, which are not among its tools: {sorted(offered)}")


def handoff_tool_name(agent_name: str) -> str:
    """The tool a model calls to hand the run over to an agent."""
    return f"transfer_to_{agent_name}"


def _seconds(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0 and math.isfinite(value)):
        raise AgentConfigError(f"{where}: {key} must be a positive number of seconds, got {value!r}")
    return float(value)


def _typed(where: str, table: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = table.get(key, default)
    if value is not default and (not isinstance(value, kind) or isinstance(value, bool)):
        raise AgentConfigError(f"{where}: {key} must be of type {kind.__name__}")
    return value


def _tool(where: str, entry: Any) -> Tool:
    if not isinstance(entry, str):
        raise AgentConfigError(f"{where}: tools must be strings (built-in names or 'module:function')")
    if entry in BUILTIN_TOOLS:
        return BUILTIN_TOOLS[entry]
    if ":" not in entry:
        raise AgentConfigError(f"{where}: unknown tool {entry!r}; built-ins are {sorted(BUILTIN_TOOLS)}")
    try:
        return load_tool(entry)
    except ValueError as exc:
        raise AgentConfigError(f"{where}: {exc}") from None
