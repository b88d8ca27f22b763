"""The Python SDK's session calls (async and sync clients) against a live server: typed answers and errors."""

from __future__ import annotations

import asyncio

import pytest

from agentstream import Client, SessionBusy, SessionNotFound, SyncClient, TaskStatus
from agentstream_server.transport.server import RunningServer
from tests.support.fakellm import FakeLLM, Stall, Text, ToolCalls


async def test_get_and_delete_session_with_the_async_client(fake_llm: FakeLLM, server: RunningServer) -> None:
    fake_llm.script(ToolCalls([("calculator", {"expression": "2*21"})]), Text(["42"]), Stall(["x"]))
    async with Client(f"127.0.0.1:{server.port}") as client:
        messages = [m async for m in client.streaming_run("2*21?", session_id="sdk", run_id="sdk-1")]
        assert messages[-1].payload.success
        session = await client.get_session("sdk")
        assert (session.session_id, session.run_ids, session.live_run_id) == ("sdk", ["sdk-1"], "")
        assert [(t.role, t.content) for t in session.turns] == [
            ("user", "2*21?"), ("assistant", ""), ("tool", "42"), ("assistant", "42")
        ]  # fmt: skip
        call = session.turns[1].tool_calls[0]
        assert (call.tool_name, call.params, session.turns[2].tool_call_id) == (
            "calculator", {"expression": "2*21"}, call.tool_call_id
        )  # fmt: skip
        assert session.created_at <= session.updated_at
        live = await client.start_run("wait", session_id="sdk")
        with pytest.raises(SessionBusy) as caught:
            await client.delete_session("sdk")
        assert caught.value.metadata["run_id"] == live
        with pytest.raises(SessionBusy):
            await client.start_run("again", session_id="sdk")
        assert (await client.get_session("sdk")).live_run_id == live
        assert (await client.cancel_run(live)).status == TaskStatus.CANCELLED
        assert await client.delete_session("sdk") == 5  # the cancelled run kept its input
        with pytest.raises(SessionNotFound):
            await client.get_session("sdk")


async def test_get_and_delete_session_with_the_sync_client(fake_llm: FakeLLM, server: RunningServer) -> None:
    fake_llm.script(Text(["hello"]))

    def use() -> None:
        with SyncClient(f"127.0.0.1:{server.port}") as client:
            assert list(client.streaming_run("hi", session_id="sync"))[-1].payload.answer == "hello"
            assert [t.content for t in client.get_session("sync").turns] == ["hi", "hello"]
            assert client.delete_session("sync") == 2
            with pytest.raises(SessionNotFound):
                client.delete_session("sync")

    await asyncio.to_thread(use)
