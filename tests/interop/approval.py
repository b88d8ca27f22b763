"""The shared `approval` scenario through the Python SDK: stream a run whose tool call waits for a person, resolve
it from a second client connection, check the resolution, the tool result and the terminal; resolving twice
(and an unknown interrupt) fails with the typed error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agentstream import (
    AgentStreamError,
    Client,
    InterruptMessage,
    Message,
    StreamingMode,
)
from tests.interop.checks import check_error, check_stream


async def run_approval_scenario(scenario: dict[str, Any], target: str, connect: Callable[[str], Client]) -> None:
    """Each variant of the scenario on a fresh run: the streaming client and the deciding one are two channels."""
    for variant in scenario["approval"]["variants"]:
        async with connect(target) as streaming, connect(target) as deciding:
            await run_variant(scenario, variant, streaming, deciding)


async def run_variant(scenario: dict[str, Any], variant: dict[str, Any], streaming: Client, deciding: Client) -> None:
    approval, expect = scenario["approval"], variant["expect"]
    mode = StreamingMode[scenario.get("mode", "CORE")]
    stream = streaming.streaming_run(scenario["input"], agent=scenario.get("agent") or None, streaming_mode=mode)
    messages: list[Message] = []
    async with asyncio.timeout(30):
        while not isinstance(waiting := await anext(stream), InterruptMessage):
            messages.append(waiting)
        messages.append(waiting)
        assert waiting.is_pending and waiting.category == "task"
        interrupt = waiting.payload
        assert interrupt.kind.name == approval["interrupt"]["kind"] and interrupt.interrupt_id
        calls = [{"tool_name": a.tool_name, "params": a.params} for a in interrupt.tool_calls]
        assert calls == approval["interrupt"]["tool_calls"]

        info = await deciding.get_run(waiting.run_id)
        assert info.status.name == approval["waiting_status"]
        assert [p.interrupt_id for p in info.pending_interrupts] == [interrupt.interrupt_id]
        status = await deciding.resolve_interrupt(
            waiting.run_id, interrupt.interrupt_id, approve=variant["approve"], message=variant["message"]
        )
        assert status.name == approval["resolved_status"]
        with pytest.raises(AgentStreamError) as twice:
            await deciding.resolve_interrupt(waiting.run_id, interrupt.interrupt_id, approve=True)
        check_error(twice.value, approval["twice"])
        with pytest.raises(AgentStreamError) as unknown:
            await deciding.resolve_interrupt(waiting.run_id, interrupt.interrupt_id + "-nope", approve=True)
        check_error(unknown.value, approval["unknown"])
        messages += [m async for m in stream]

    assert [m.topic for m in messages if m.topic != "chunk"] == expect["topics"]
    resolved = next(m for m in messages if isinstance(m, InterruptMessage) and not m.is_pending).payload
    assert (resolved.interrupt_id, resolved.resolved) == (interrupt.interrupt_id, True)
    assert {"approved": resolved.approved, "message": resolved.message} == expect["resolved"]
    check_stream(messages, expect)  # the tool results, the terminal, seq order
