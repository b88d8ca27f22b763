"""The agents file's MCP parts: `[mcp_servers.NAME]` tables and an agent's `mcp_servers = [...]` list."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STARTUP_TIMEOUT_S = 30.0
"""Seconds an MCP server may take to start and answer the handshake and the first tools/list."""
_SERVER_KEYS = {"command", "args", "env", "cwd", "url", "headers", "startup_timeout"}
_USE_KEYS = {"server", "tools"}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class McpConfigError(ValueError):
    """An MCP part of the agents file is malformed; the message says where and what to fix."""


@dataclass(frozen=True, slots=True)
class McpServerConfig:
    """How to reach one MCP server: a command over stdio, or a URL over streamable HTTP."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S

    @property
    def description(self) -> str:
        """How the server is reached, for logs and errors (never header values: they may hold secrets)."""
        if self.url is not None:
            return f"url {self.url}"
        return f"command {' '.join([self.command or '', *self.args])!r}"


@dataclass(frozen=True, slots=True)
class McpServerUse:
    """An agent's use of an MCP server: its name and, optionally, the only tools of it the agent gets."""

    server: str
    tools: frozenset[str] | None = None


def parse_mcp_servers(path: str | os.PathLike[str], tables: Any) -> dict[str, McpServerConfig]:
    """The `[mcp_servers.NAME]` tables of an agents file; relative `cwd`s are taken from the file's folder."""
    if tables is None:
        return {}
    if not isinstance(tables, dict):
        raise McpConfigError(f"{path}: mcp_servers must be tables, one [mcp_servers.NAME] per server")
    base = Path(path).resolve().parent
    return {name: _server(path, base, name, table) for name, table in tables.items()}


def _server(path: str | os.PathLike[str], base: Path, name: str, table: Any) -> McpServerConfig:
    where = f"{path}: [mcp_servers.{name}]"
    if not _NAME.match(name):
        raise McpConfigError(f"{where}: a server name must be 1-64 letters, digits, '_', '-' or '.'")
    if not isinstance(table, dict):
        raise McpConfigError(f"{where} must be a table")
    unknown = set(table) - _SERVER_KEYS
    if unknown:
        raise McpConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_SERVER_KEYS)}")
    command, url = table.get("command"), table.get("url")
    if (command is None) == (url is None):
        raise McpConfigError(f"{where}: set either command (a stdio server) or url (a streamable HTTP server)")
    timeout = table.get("startup_timeout", DEFAULT_STARTUP_TIMEOUT_S)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not (timeout > 0 and math.isfinite(timeout))
    ):
        raise McpConfigError(f"{where}: startup_timeout must be a positive number of seconds, got {timeout!r}")
    if url is not None:
        for key in ("args", "env", "cwd"):
            if key in table:
                raise McpConfigError(f"{where}: {key} belongs to a command (stdio) server, not to a url one")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise McpConfigError(f"{where}: url must be an http:// or https:// URL, got {url!r}")
        headers = _strings(where, "headers", table.get("headers", {}))
        return McpServerConfig(name=name, url=url, headers=headers, startup_timeout_s=float(timeout))
    if "headers" in table:
        raise McpConfigError(f"{where}: headers belong to a url (HTTP) server, not to a command one")
    if not isinstance(command, str) or not command.strip():
        raise McpConfigError(f"{where}: command must be a non-empty string")
    args = table.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise McpConfigError(f"{where}: args must be a list of strings")
    cwd = table.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise McpConfigError(f"{where}: cwd must be a string (a folder, relative to the agents file's folder)")
    folder = base / cwd if cwd is not None else base
    if not folder.is_dir():
        raise McpConfigError(f"{where}: cwd {str(folder)!r} is not a folder")
    return McpServerConfig(
        name=name,
        command=command,
        args=tuple(args),
        env=_strings(where, "env", table.get("env", {})),
        cwd=folder,
        startup_timeout_s=float(timeout),
    )


def _strings(where: str, key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise McpConfigError(f'{where}: {key} must be a table of strings, e.g. {key} = {{ NAME = "value" }}')
    return dict(value)


def parse_agent_mcp_servers(
    where: str, entries: Any, servers: Mapping[str, McpServerConfig]
) -> tuple[McpServerUse, ...]:
    """An agent's `mcp_servers` list: server names, or `{ server = "NAME", tools = ["a", "b"] }` to keep some tools."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise McpConfigError(f"{where}: mcp_servers must be a list of server names")
    uses: list[McpServerUse] = []
    for entry in entries:
        if isinstance(entry, str):
            use = McpServerUse(server=entry)
        elif isinstance(entry, dict):
            unknown = set(entry) - _USE_KEYS
            if unknown or not isinstance(entry.get("server"), str):
                raise McpConfigError(
                    f'{where}: an mcp_servers entry is a server name or {{ server = "NAME", tools = [...] }}, '
                    f"got {entry!r}"
                )
            tools = entry.get("tools")
            if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, str) for t in tools)):
                raise McpConfigError(f"{where}: tools of mcp server {entry['server']!r} must be a list of tool names")
            use = McpServerUse(server=entry["server"], tools=None if tools is None else frozenset(tools))
        else:
            raise McpConfigError(f"{where}: mcp_servers entries must be server names (strings) or tables")
        if use.server not in servers:
            known = ", ".join(sorted(servers)) or "none; define one as a [mcp_servers.NAME] table"
            raise McpConfigError(f"{where}: unknown MCP server {use.server!r}; servers: {known}")
        if any(u.server == use.server for u in uses):
            raise McpConfigError(f"{where}: MCP server {use.server!r} is listed twice")
        uses.append(use)
    return tuple(uses)
