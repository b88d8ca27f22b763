"""Custom tools used by test agents (loaded by import path, as users' own tools are)."""

from __future__ import annotations

import asyncio
import threading

CANCELLED: list[str] = []
"""Names of wait_forever calls that observed their cancellation."""


def explode(reason: str) -> str:
    """Always fails, with the given reason."""
    raise RuntimeError(f"exploded: {reason}")


async def wait_forever(label: str) -> str:
    """Never returns on its own; records when it is cancelled."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        CANCELLED.append(label)
        raise
    return label


def block_forever(label: str) -> str:
    """A sync tool that never returns, as a call stuck on a dead network peer would: its thread stays blocked."""
    threading.Event().wait()
    return label


def add(a: int, b: int) -> int:
    """Add two integers (its name is also a tool of the MCP test server: a clash on purpose)."""
    return a + b
