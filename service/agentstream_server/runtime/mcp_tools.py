"""An MCP server's tools as agent tools: their names and input schemas as the server lists them, their results
as text (structured content as JSON), an MCP error result as a ToolFailure the model is told."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import mcp_types

from agentstream_server.runtime.mcp_client import McpServer
from agentstream_server.runtime.mcp_config import McpServerUse
from agentstream_server.runtime.tools import Tool, ToolFailure

logger = logging.getLogger("agentstream.mcp")

_OPENAI_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def result_text(result: mcp_types.CallToolResult) -> str:
    """A tools/call result as the tool message's content: structured content as JSON when there is some,
    else the content blocks' text (other blocks described in brackets)."""
    if result.structured_content is not None and not result.is_error:
        return json.dumps(result.structured_content, ensure_ascii=False, separators=(",", ":"))
    return "\n".join(_block_text(block) for block in result.content)


def _block_text(block: Any) -> str:
    if isinstance(block, mcp_types.TextContent):
        return block.text
    if isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
        return f"[{block.type}: {block.mime_type}, {len(block.data)} base64 characters]"
    if isinstance(block, mcp_types.ResourceLink):
        return f"[resource link: {block.uri}]"
    if isinstance(block, mcp_types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, mcp_types.TextResourceContents):
            return resource.text
        return f"[resource: {resource.uri}, {resource.mime_type or 'binary'}]"
    return f"[{getattr(block, 'type', type(block).__name__)} content]"


def mcp_tool(server: McpServer, listed: mcp_types.Tool) -> Tool:
    """The agent tool that calls one tool of an MCP server."""
    name = listed.name

    async def call(arguments: Mapping[str, Any]) -> str:
        result = await server.call(name, arguments)
        text = result_text(result)
        if result.is_error:
            raise ToolFailure(text or f"the MCP tool {name} reported an error without a message")
        return text

    description = listed.description or listed.title or name
    return Tool(
        name=name, description=description, parameters=dict(listed.input_schema), call=call, mcp_server=server.name
    )


class McpToolset:
    """The tools one agent gets from one MCP server: all of them, or those its filter names."""

    def __init__(self, server: McpServer, use: McpServerUse) -> None:
        self.server = server
        self.use = use
        self._listed: tuple[mcp_types.Tool, ...] | None = None
        self._tools: tuple[Tool, ...] = ()

    @property
    def name(self) -> str:
        """The source, for messages."""
        return f"MCP server {self.server.name!r}"

    def missing(self) -> set[str]:
        """Tools the filter names that the server does not list."""
        if self.use.tools is None:
            return set()
        return set(self.use.tools) - {tool.name for tool in self.server.tools}

    def current(self) -> tuple[Tool, ...]:
        """The tools as the server last listed them (rebuilt only when the listing changed)."""
        listed = self.server.tools
        if listed is not self._listed:
            kept = []
            for tool in listed:
                if self.use.tools is not None and tool.name not in self.use.tools:
                    continue
                if not _OPENAI_TOOL_NAME.match(tool.name):
                    logger.warning(
                        "MCP server %r: tool %r is left out: a tool name offered to the model must match %s",
                        self.server.name,
                        tool.name,
                        _OPENAI_TOOL_NAME.pattern,
                    )
                    continue
                kept.append(mcp_tool(self.server, tool))
            self._listed, self._tools = listed, tuple(kept)
        return self._tools

    async def list_tools(self) -> tuple[Tool, ...]:
        """The current tools; in lazy mode the first use opens the session (a failure offers none, logged)."""
        if not self.server.is_open and self.server.opens == 0:
            failure = await self.server.start()
            if failure is not None:
                logger.warning("%s offers no tools to this run: it did not open", self.name)
        return self.current()
