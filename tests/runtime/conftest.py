"""The LLM client's tests run on both event loops: asyncio's own, and uvloop, which the server runs on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

BOTH_LOOPS = {"test_llm.py", "test_h1.py", "test_h1_pool.py"}
"""Test modules whose async tests run once per loop (the HTTP transport's sockets differ between them)."""


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.path.name in BOTH_LOOPS:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}  # the default loop (the hook must answer for every test here)
