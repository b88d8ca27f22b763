"""resolve_interrupt and RunInfo.pending_interrupts, async and sync, against a live server on both stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

import agentstream
from agentstream import (
    Client,
    InterruptKind,
    InterruptMessage,
    Message,
    SyncClient,
    TaskMessage,
    TaskStatus,
    ToolResultMessage,
)
from agentstream_server.transport.server import RunningServer
from tests.support.fakellm import FakeLLM, Text, ToolCalls


def target(server: RunningServer) -> str:
    return f"127.0.0.1:{server.port}"


async def until_interrupt(stream: AsyncGenerator[Message, None]) -> InterruptMessage:
    """Read the stream up to its pending interrupt (the stream stays open: the run waits)."""
    async with asyncio.timeout(10):
        while True:
            message = await anext(stream)
            if isinstance(message, InterruptMessage) and message.is_pending:
                return message


async def test_a_second_client_approves_and_get_run_lists_the_pending_interrupt(
    fake_llm: FakeLLM, server: RunningServer
) -> None:
    fake_llm.script(ToolCalls([("calculator", {"expression": "2+2"})]), Text(["It ", "is ", "4."]))
    async with Client(target(server)) as streaming, Client(target(server)) as approver:
        stream = streaming.streaming_run("what is 2+2?", agent="careful")
        waiting = await until_interrupt(stream)
        interrupt = waiting.payload
        assert interrupt.kind is InterruptKind.TOOL_APPROVAL and interrupt.expires_at is not None
        assert [(a.tool_name, a.params) for a in interrupt.tool_calls] == [("calculator", {"expression": "2+2"})]

        info = await approver.get_run(waiting.run_id)
        assert info.status is TaskStatus.INPUT_REQUIRED
        assert [(p.interrupt_id, p.kind, p.resolved) for p in info.pending_interrupts] == [
            (interrupt.interrupt_id, InterruptKind.TOOL_APPROVAL, False)
        ]
        assert info.pending_interrupts[0].tool_calls == interrupt.tool_calls

        status = await approver.resolve_interrupt(waiting.run_id, interrupt.interrupt_id, approve=True)
        assert status is TaskStatus.RUNNING
        rest = [m async for m in stream]
        resolved = next(m for m in rest if isinstance(m, InterruptMessage))
        assert not resolved.is_pending and resolved.payload.approved
        assert resolved.payload.interrupt_id == interrupt.interrupt_id
        result = next(m.payload for m in rest if isinstance(m, ToolResultMessage))
        assert (result.content, result.is_error) == ("4", False)
        assert isinstance(rest[-1], TaskMessage) and rest[-1].payload.answer == "It is 4."

        with pytest.raises(agentstream.InterruptAlreadyResolved):
            await approver.resolve_interrupt(waiting.run_id, interrupt.interrupt_id, approve=False)
        with pytest.raises(agentstream.InterruptNotFound):
            await approver.resolve_interrupt(waiting.run_id, "int-nope", approve=True)
        finished = await approver.get_run(waiting.run_id)
        assert (finished.status, finished.pending_interrupts) == (TaskStatus.SUCCEEDED, [])


async def test_the_sync_client_rejects_with_a_message_the_model_reads(fake_llm: FakeLLM, server: RunningServer) -> None:
    fake_llm.script(ToolCalls([("calculator", {"expression": "6*7"})]), Text(["OK, ", "not ", "then."]))

    def reject() -> tuple[list[Message], TaskStatus, list[str]]:
        with SyncClient(target(server)) as streaming, SyncClient(target(server)) as approver:
            stream = streaming.streaming_run("what is 6*7?", agent="careful")
            seen: list[Message] = []
            for message in stream:
                seen.append(message)
                if isinstance(message, InterruptMessage) and message.is_pending:
                    pending = [p.interrupt_id for p in approver.get_run(message.run_id).pending_interrupts]
                    status = approver.resolve_interrupt(
                        message.run_id, message.payload.interrupt_id, approve=False, message="not today"
                    )
            return seen, status, pending

    messages, status, pending = await asyncio.to_thread(reject)
    waiting = next(m for m in messages if isinstance(m, InterruptMessage))
    assert (status, pending) == (TaskStatus.RUNNING, [waiting.payload.interrupt_id])
    resolved = [m.payload for m in messages if isinstance(m, InterruptMessage) and not m.is_pending]
    assert [(r.approved, r.message) for r in resolved] == [(False, "not today")]
    result = next(m.payload for m in messages if isinstance(m, ToolResultMessage))
    assert result.is_error and "rejected by a person: not today" in result.content
    assert "not today" in next(m for m in fake_llm.requests[1]["messages"] if m["role"] == "tool")["content"]
    assert isinstance(messages[-1], TaskMessage) and messages[-1].payload.success


async def test_the_sync_client_errors_are_typed(server: RunningServer) -> None:
    def resolve() -> None:
        with SyncClient(target(server)) as client:
            client.resolve_interrupt("no-such-run", "int-1", approve=True)

    with pytest.raises(agentstream.InterruptNotFound):
        await asyncio.to_thread(resolve)
