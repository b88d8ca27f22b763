"""Starting the test MCP server (tests/support/mcp_server.py) over stdio or streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from agentstream_server.runtime.mcp_config import McpServerConfig

ROOT = Path(__file__).resolve().parents[2]


def stdio_config(name: str = "test") -> McpServerConfig:
    """The test server as a child process over stdio."""
    return McpServerConfig(
        name=name, command=sys.executable, args=("-m", "tests.support.mcp_server"), cwd=ROOT, startup_timeout_s=20
    )


class HttpMcpServer:
    """The test server as a process serving streamable HTTP; restartable on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """Its MCP endpoint."""
        return f"http://127.0.0.1:{self.port}/mcp"

    def config(self, name: str = "test") -> McpServerConfig:
        """A config reaching it."""
        return McpServerConfig(name=name, url=self.url, headers={"X-Test": "yes"}, startup_timeout_s=20)

    async def start(self) -> None:
        """Start it (on its earlier port after a stop) and wait until it listens."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.mcp_server",
            "--http",
            str(self.port),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        async with asyncio.timeout(20):
            line = (await self.process.stdout.readline()).decode()
        match = re.search(r"listening on (\d+)", line)
        assert match, f"the MCP test server did not start: {line!r}"
        self.port = int(match.group(1))

    async def stop(self) -> None:
        """Stop it, if it still runs, and reap it."""
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await self.process.wait()


@contextlib.asynccontextmanager
async def http_mcp_server() -> AsyncIterator[HttpMcpServer]:
    """A running HTTP test server, stopped on the way out."""
    server = HttpMcpServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
