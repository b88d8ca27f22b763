"""The process's MCP servers: one session each, opened at start-up (or on first use), bound to the agents
that list them, closed on shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from agentstream_server.runtime.agents import AgentCatalog, AgentSpec, handoff_tool_name
from agentstream_server.runtime.mcp_client import McpServer, describe_failure
from agentstream_server.runtime.mcp_tools import McpToolset

logger = logging.getLogger("agentstream.mcp")


class McpStartError(ValueError):
    """An MCP server did not start, or its tools do not fit the agents that use it; the message names it."""


class McpServers:
    """The MCP servers the agents of a catalog use (servers no agent lists are never started)."""

    def __init__(self, catalog: AgentCatalog) -> None:
        used = {use.server for spec in catalog.agents.values() for use in spec.mcp_servers}
        self.servers = {name: McpServer(config) for name, config in catalog.mcp_servers.items() if name in used}
        self._catalog = catalog

    async def start(self, *, lazy: bool = False) -> AgentCatalog:
        """Open every server (unless lazy) and return the catalog with each agent's MCP tools bound to it.

        Raises McpStartError naming the server that did not open, a tool filter naming a tool the server does
        not have, or two tools of one agent with one name; the servers are closed again first.
        """
        try:
            if not lazy and self.servers:
                failures = await asyncio.gather(*(server.start() for server in self.servers.values()))
                failed = [
                    f"MCP server {server.name!r} ({server.config.description}) did not start: "
                    f"{describe_failure(failure, server.config.startup_timeout_s)}"
                    for server, failure in zip(self.servers.values(), failures, strict=True)
                    if failure is not None
                ]
                if failed:
                    raise McpStartError("; ".join(failed))
            agents = {name: self._bind(spec) for name, spec in self._catalog.agents.items()}
            if not lazy:
                for spec in agents.values():
                    _check(spec)
        except BaseException:
            await self.aclose()
            raise
        for server in self.servers.values():
            state = "opens on first use" if lazy else f"{len(server.tools)} tools"
            logger.info("MCP server %r (%s): %s", server.name, server.config.description, state)
        return dataclasses.replace(self._catalog, agents=agents)

    def _bind(self, spec: AgentSpec) -> AgentSpec:
        if not spec.mcp_servers:
            return spec
        toolsets = tuple(McpToolset(self.servers[use.server], use) for use in spec.mcp_servers)
        return dataclasses.replace(spec, toolsets=(*spec.toolsets, *toolsets))

    async def aclose(self) -> None:
        """Close every session; a stdio server's process is stopped (stdin closed, then SIGTERM, then SIGKILL)."""
        await asyncio.gather(*(server.aclose() for server in self.servers.values()))


def _check(spec: AgentSpec) -> None:
    where = f"agent {spec.name!r}"
    origin = {tool.name: f"its tool {tool.name!r}" for tool in spec.tools}
    origin |= {handoff_tool_name(name): f"its handoff to {name!r}" for name in spec.handoffs}
    origin |= {name: f"its agent tool {name!r}" for name in spec.agent_tools}
    for toolset in spec.toolsets:
        if not isinstance(toolset, McpToolset):
            continue
        missing = toolset.missing()
        if missing:
            listed = ", ".join(sorted(tool.name for tool in toolset.server.tools)) or "none"
            raise McpStartError(
                f"{where}: the tools filter of MCP server {toolset.server.name!r} names {sorted(missing)}, "
                f"which it does not have; its tools: {listed}"
            )
        for tool in toolset.current():
            here = f"tool {tool.name!r} of MCP server {toolset.server.name!r}"
            if tool.name in origin:
                raise McpStartError(
                    f"{where}: two tools are named {tool.name!r}: {origin[tool.name]} and {here}; "
                    "tool names must be unique (narrow a server's tools with { server = ..., tools = [...] })"
                )
            origin[tool.name] = here
    unknown = set(spec.tool_timeouts) - set(origin)
    if unknown:
        raise McpStartError(f"{where}: tool_timeouts names {sorted(unknown)}, which are not among its tools")
    if spec.ask_user:
        origin["ask_user"] = "the built-in ask_user tool"
    unapproved = spec.approval - set(origin)
    if unapproved:
        raise McpStartError(
            f"{where}: approval names {sorted(unapproved)}, which are not among its tools: {sorted(origin)}"
        )
