"""Run lifecycle over gRPC: StartRun, SubscribeRun (replay, live, resume points), CancelRun, GetRun, on_disconnect."""

from __future__ import annotations

import asyncio

import pytest

import agentstream
from agentstream import Client, StreamingMode, TaskMessage, TaskStatus
from agentstream_server.runtime.tool_threads import TOOL_THREADS
from agentstream_server.transport.server import RunningServer
from tests.conftest import StartServer
from tests.support.fakellm import FakeLLM, Stall, Text


def target(server: RunningServer) -> str:
    return f"127.0.0.1:{server.port}"


async def collect(stream: object) -> list[agentstream.Message]:
    return [message async for message in stream]  # type: ignore[attr-defined]


async def finished(client: Client, run_id: str) -> agentstream.Message:
    messages = await collect(client.subscribe_run(run_id, streaming_mode=StreamingMode.ALL))
    return messages[-1]


async def test_start_run_then_subscribe_replays_everything_in_seq_order(
    fake_llm: FakeLLM, server: RunningServer
) -> None:
    fake_llm.script(Text(["a", "b", "c"]))
    async with Client(target(server)) as client:
        run_id = await client.start_run("hi", run_id="life-1")
        assert run_id == "life-1"
        messages = await collect(client.subscribe_run(run_id, streaming_mode=StreamingMode.ALL))
        assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
        terminal = messages[-1]
        assert isinstance(terminal, TaskMessage)
        assert terminal.is_terminal
        assert terminal.payload.answer == "abc"
        again = await collect(client.subscribe_run(run_id, after_seq=3, streaming_mode=StreamingMode.ALL))
        assert [m.seq for m in again] == [m.seq for m in messages[3:]]
        assert await collect(client.subscribe_run(run_id, after_seq=terminal.seq)) == []
        with pytest.raises(agentstream.SeqOutOfRange) as caught:
            await collect(client.subscribe_run(run_id, after_seq=terminal.seq + 1))
        assert caught.value.last_seq == terminal.seq
        chunk_only = await collect(client.subscribe_run(run_id, streaming_mode=StreamingMode.CHUNK))
        assert [type(m).__name__ for m in chunk_only] == ["ChunkMessage"] * 3 + ["TaskMessage"]


async def test_several_subscribers_see_the_same_events_live(fake_llm: FakeLLM, start: StartServer, store: str) -> None:
    server = await start(store=store)
    fake_llm.script(Text([f"t{i} " for i in range(50)], delay_s=0.005))
    async with Client(target(server)) as client:
        run_id = await client.start_run("hi")
        first, second = await asyncio.gather(
            collect(client.subscribe_run(run_id, streaming_mode=StreamingMode.ALL)),
            collect(client.subscribe_run(run_id, streaming_mode=StreamingMode.ALL)),
        )
    assert [(m.seq, m.topic) for m in first] == [(m.seq, m.topic) for m in second]
    assert first[-1].topic == "__task_response"


async def test_cancel_run_ends_every_subscriber_with_the_reason_and_closes_the_llm_call(
    fake_llm: FakeLLM, start: StartServer, store: str
) -> None:
    server = await start(store=store)
    fake_llm.script(Stall(["Hel"]))
    async with Client(target(server)) as client:
        run_id = await client.start_run("hi")
        subscriber = asyncio.create_task(collect(client.subscribe_run(run_id, streaming_mode=StreamingMode.CHUNK)))
        assert await fake_llm.wait_requests(1, 5)
        info = await client.get_run(run_id)
        assert info.status == TaskStatus.RUNNING
        assert info.response is None
        result = await client.cancel_run(run_id, reason="operator says stop")
        assert (result.already_finished, result.status) == (False, TaskStatus.CANCELLED)
        messages = await subscriber
        terminal = messages[-1]
        assert isinstance(terminal, TaskMessage)
        assert terminal.payload.status == TaskStatus.CANCELLED
        assert "operator says stop" in terminal.payload.msg
        assert await fake_llm.wait_closed(1.0)
        again = await client.cancel_run(run_id)
        assert (again.already_finished, again.status) == (True, TaskStatus.CANCELLED)
        info = await client.get_run(run_id)
        assert info.status == TaskStatus.CANCELLED
        assert info.response is not None
        assert info.last_seq == terminal.seq


async def test_unknown_and_malformed_run_ids(start: StartServer, store: str) -> None:
    server = await start(store=store)
    async with Client(target(server)) as client:
        with pytest.raises(agentstream.RunNotFound):
            await client.get_run("nope")
        with pytest.raises(agentstream.RunNotFound):
            await client.cancel_run("nope")
        with pytest.raises(agentstream.RunNotFound):
            await collect(client.subscribe_run("nope"))
        with pytest.raises(agentstream.InvalidArgument):
            await client.get_run("bad id")


async def test_continue_on_disconnect_lets_the_run_finish_for_a_later_subscriber(
    fake_llm: FakeLLM, start: StartServer, store: str
) -> None:
    server = await start(store=store)
    fake_llm.script(Text([f"t{i} " for i in range(20)], delay_s=0.01))
    async with Client(target(server)) as client:
        stream = client.streaming_run("hi", streaming_mode=StreamingMode.CHUNK, continue_on_disconnect=True)
        first = await anext(stream)
        await stream.aclose()
        terminal = await finished(client, first.run_id)
    assert isinstance(terminal, TaskMessage)
    assert terminal.payload.status == TaskStatus.SUCCEEDED
    assert terminal.payload.answer == "".join(f"t{i} " for i in range(20))


async def test_too_many_subscribers_is_resource_exhausted(fake_llm: FakeLLM, start: StartServer) -> None:
    server = await start(max_subscribers_per_run=1)
    fake_llm.script(Stall(["Hel"]))
    async with Client(target(server)) as client:
        run_id = await client.start_run("hi")
        first = client.subscribe_run(run_id)
        await anext(first)
        with pytest.raises(agentstream.TooManySubscribers):
            await collect(client.subscribe_run(run_id))
        await first.aclose()
        await client.cancel_run(run_id)


async def test_events_no_longer_retained_are_out_of_range_naming_the_oldest(
    fake_llm: FakeLLM, start: StartServer
) -> None:
    server = await start(max_unread_events=5, max_retained_events=10)
    fake_llm.script(Text([f"t{i} " for i in range(60)]))
    async with Client(target(server)) as client:
        run_id = await client.start_run("hi")
        while (await client.get_run(run_id)).status == TaskStatus.RUNNING:
            await asyncio.sleep(0.01)
        with pytest.raises(agentstream.SeqOutOfRange) as caught:
            await collect(client.subscribe_run(run_id))
        oldest = caught.value.oldest_retained_seq
        assert oldest > 1
        tail = await collect(client.subscribe_run(run_id, after_seq=oldest - 1, streaming_mode=StreamingMode.ALL))
        assert tail[0].seq == oldest
        assert tail[-1].topic == "__task_response"


async def test_the_server_sizes_the_tool_thread_pool_from_its_settings(start: StartServer) -> None:
    before = TOOL_THREADS.max_workers
    try:
        await start(tool_threads=3)
        assert TOOL_THREADS.max_workers == 3
    finally:
        TOOL_THREADS.max_workers = before
