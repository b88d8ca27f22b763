"""Toolsets: tools whose list can change while the server runs (an MCP server's), merged with an agent's own."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from agentstream_server.runtime.tools import Tool

logger = logging.getLogger("agentstream.tools")


class Toolset(Protocol):
    """A source of tools whose list may change; asked once at the start of each run."""

    @property
    def name(self) -> str:
        """What the tools come from, for messages (e.g. "MCP server 'files'")."""
        ...

    async def list_tools(self) -> tuple[Tool, ...]:
        """The tools it offers now (never raises: a source that cannot answer offers none)."""
        ...


async def current_tools(agent: str, tools: Sequence[Tool], toolsets: Sequence[Toolset]) -> tuple[Tool, ...]:
    """An agent's own tools, then each toolset's current ones; a later tool whose name is taken is left out (logged).

    Clashes are refused at start-up (see mcp_servers.McpServers.start); this only guards a tool list that changed
    since then.
    """
    if not toolsets:
        return tuple(tools)
    merged = {tool.name: tool for tool in tools}
    origin = dict.fromkeys(merged, "its own tools")
    for toolset in toolsets:
        for tool in await toolset.list_tools():
            if tool.name in merged:
                logger.warning(
                    "agent %r: tool %r of %s is left out: the name is taken by %s",
                    agent,
                    tool.name,
                    toolset.name,
                    origin[tool.name],
                )
                continue
            merged[tool.name] = tool
            origin[tool.name] = toolset.name
    return tuple(merged.values())
