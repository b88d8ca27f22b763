"""Every shared scenario in tests/scenarios, through the Python SDK, against a live server."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from agentstream import (
    AgentStreamError,
    ChunkMessage,
    Client,
    StreamingMode,
    TaskMessage,
    TaskStatus,
    ToolMessage,
    ToolResultMessage,
)
from tests.conftest import StartServer
from tests.support.fakellm import FakeLLM, default_responder

SCENARIOS = {
    p.stem: json.loads(p.read_text())
    for p in sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.json"))
}


def mode_of(scenario: dict[str, Any]) -> int:
    mode = scenario.get("mode", "CORE")
    return int(StreamingMode[mode]) if isinstance(mode, str) else int(mode)


@pytest.fixture
async def target(fake_llm: FakeLLM, start: StartServer) -> str:
    """The server under test: `make interop`'s shared one (AGENTSTREAM_INTEROP_TARGET), else our own."""
    shared = os.environ.get("AGENTSTREAM_INTEROP_TARGET")
    if shared:
        return shared
    fake_llm.responder = default_responder
    server = await start()
    return f"127.0.0.1:{server.port}"


@pytest.mark.parametrize("name", SCENARIOS)
async def test_scenario(name: str, target: str) -> None:
    scenario = SCENARIOS[name]
    expect = scenario["expect"]
    async with Client(target) as client:
        stream = client.streaming_run(
            scenario["input"], agent=scenario.get("agent") or None, streaming_mode=mode_of(scenario)
        )
        if "error" in expect:
            with pytest.raises(AgentStreamError) as caught:
                [m async for m in stream]
            error = caught.value
            assert (error.code.name, error.reason) == (expect["error"]["code"], expect["error"]["reason"])
            if "field" in expect["error"]:
                assert expect["error"]["field"] in [field for field, _ in error.field_violations]
            return
        if "cancel_after_chunks" in scenario:
            chunks, run_id = 0, ""
            async for message in stream:
                run_id = message.run_id
                chunks += isinstance(message, ChunkMessage)
                if chunks == scenario["cancel_after_chunks"]:
                    break
            await stream.aclose()
            async with asyncio.timeout(5):
                while (info := await client.get_run(run_id)).status == TaskStatus.RUNNING:
                    await asyncio.sleep(0.02)
            assert info.status.name == expect["terminal"]["status"]
            return
        messages = [m async for m in stream]
    check_stream(messages, expect)


def check_stream(messages: list[Any], expect: dict[str, Any]) -> None:
    if "categories" in expect:
        assert [m.category for m in messages] == expect["categories"]
    if "chunk_text" in expect:
        assert "".join(m.payload.content for m in messages if isinstance(m, ChunkMessage)) == expect["chunk_text"]
    if "tool_calls" in expect:
        calls = [
            {"tool_name": a.tool_name, "params": a.params}
            for m in messages
            if isinstance(m, ToolMessage)
            for a in m.payload
        ]
        assert calls == expect["tool_calls"]
    if "tool_results" in expect:
        results = [
            {"tool_name": m.payload.tool_name, "content": m.payload.content, "is_error": m.payload.is_error}
            for m in messages
            if isinstance(m, ToolResultMessage)
        ]
        assert results == expect["tool_results"]
    terminal = messages[-1]
    assert isinstance(terminal, TaskMessage)
    assert terminal.is_terminal
    assert terminal.payload.status.name == expect["terminal"]["status"]
    assert terminal.payload.success == expect["terminal"]["success"]
    if "answer" in expect["terminal"]:
        assert terminal.payload.answer == expect["terminal"]["answer"]
    assert [m.seq for m in messages] == sorted({m.seq for m in messages}), "seq must strictly increase"
