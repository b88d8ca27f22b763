"""SyncClient and Client against a scripted server: same messages, same requests; stopping early cancels the call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from google.protobuf import duration_pb2

from agentstream import (
    AgentMessage,
    ChunkMessage,
    Client,
    GroupMessage,
    MemoryMessage,
    Message,
    OutputMessage,
    Runners,
    StreamingMode,
    SyncClient,
    TaskMessage,
    TaskStatus,
    ToolMessage,
    ToolResultMessage,
)
from agentstream.v1 import runner_service_pb2 as rpb
from tests.sdk import ScriptedRunner, calculator_run, scripted_server

CANCEL_SEEN_WITHIN_S = 5.0

EXPECTED_KINDS = [
    TaskMessage,
    ChunkMessage,
    ChunkMessage,
    ToolMessage,
    ToolResultMessage,
    AgentMessage,
    MemoryMessage,
    ChunkMessage,
    OutputMessage,
    GroupMessage,
    TaskMessage,
]


def sync_messages(target: str) -> list[Message]:
    with SyncClient(target) as client:
        return list(client.streaming_run("What is 2+2?", streaming_mode=StreamingMode.ALL))


async def test_sync_client_yields_the_same_typed_messages_as_the_async_client() -> None:
    async with scripted_server(ScriptedRunner(script=calculator_run())) as target:
        sync = await asyncio.to_thread(sync_messages, target)
        async with Client(target) as client:
            async_ = [m async for m in client.streaming_run("What is 2+2?", streaming_mode=StreamingMode.ALL)]
    assert [type(m) for m in sync] == EXPECTED_KINDS
    assert sync == async_
    last = sync[-1]
    assert isinstance(last, TaskMessage) and last.is_terminal
    assert (last.payload.status, last.payload.answer) == (TaskStatus.SUCCEEDED, "It is 4.")


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_both_clients_send_the_same_request_and_call_metadata(kind: str) -> None:
    runner = ScriptedRunner(script=calculator_run()[-1:])
    arguments = {
        "agent": "assistant",
        "streaming_mode": StreamingMode.CHUNK_OUTPUT,
        "session_id": "s-1",
        "run_id": "r-1",
        "metadata": {"user": "ada"},
        "timeout": 2.5,
    }
    async with scripted_server(runner) as target:
        if kind == "sync":

            def consume() -> None:
                with SyncClient(target, metadata={"x-tenant": "t1"}) as client:
                    list(client.streaming_run("hi", **arguments))  # type: ignore[arg-type]

            await asyncio.to_thread(consume)
        else:
            async with Client(target, metadata={"x-tenant": "t1"}) as client:
                [_ async for _ in client.streaming_run("hi", **arguments)]  # type: ignore[arg-type]
    (request,) = runner.requests
    assert request == rpb.StreamingRunRequest(
        input="hi",
        agent="assistant",
        streaming_mode=rpb.STREAMING_MODE_CHUNK_OUTPUT,
        session_id="s-1",
        run_id="r-1",
        metadata={"user": "ada"},
        timeout=duration_pb2.Duration(seconds=2, nanos=500_000_000),
    )
    assert runner.call_metadata[0]["x-tenant"] == "t1"


def test_the_target_comes_from_the_argument_then_the_environment_then_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AGENTSTREAM_TARGET", raising=False)
    with SyncClient() as client:
        assert client.target == "127.0.0.1:50051"
    monkeypatch.setenv("AGENTSTREAM_TARGET", "example:1234")
    with SyncClient() as client, SyncClient("other:1") as explicit:
        assert (client.target, explicit.target) == ("example:1234", "other:1")


def hanging_run() -> ScriptedRunner:
    """A run that streams two chunks, then waits until its call is cancelled."""
    return ScriptedRunner(script=calculator_run()[1:3], hang=True)


async def assert_cancelled(runner: ScriptedRunner) -> None:
    await asyncio.wait_for(runner.cancelled.wait(), CANCEL_SEEN_WITHIN_S)


async def test_breaking_out_of_a_sync_stream_cancels_the_call() -> None:
    runner = hanging_run()
    async with scripted_server(runner) as target:
        client = SyncClient(target)

        def first_chunk() -> str:
            for message in client.streaming_run("hi"):
                assert isinstance(message, ChunkMessage)
                return message.payload.content
            raise AssertionError("no message")

        try:
            assert await asyncio.to_thread(first_chunk) == "Let me "
            await assert_cancelled(runner)
        finally:
            client.close()


async def test_closing_a_sync_stream_cancels_the_call() -> None:
    runner = hanging_run()
    async with scripted_server(runner) as target:
        client = SyncClient(target)
        stream: Iterator[Message] = client.streaming_run("hi")
        try:
            await asyncio.to_thread(next, stream)
            await asyncio.to_thread(stream.close)  # type: ignore[attr-defined]
            await assert_cancelled(runner)
        finally:
            client.close()


async def test_breaking_out_of_an_async_stream_cancels_the_call() -> None:
    runner = hanging_run()
    async with scripted_server(runner) as target, Client(target) as client:
        async for _ in client.streaming_run("hi"):
            break
        await assert_cancelled(runner)


async def test_closing_an_async_stream_cancels_the_call() -> None:
    runner = hanging_run()
    async with scripted_server(runner) as target, Client(target) as client:
        stream = client.streaming_run("hi")
        await anext(stream)
        await stream.aclose()
        await assert_cancelled(runner)


async def test_cancelling_the_consuming_task_cancels_the_call() -> None:
    runner = hanging_run()
    async with scripted_server(runner) as target, Client(target) as client:

        async def consume() -> None:
            async for _ in client.streaming_run("hi"):
                pass

        task = asyncio.create_task(consume())
        await asyncio.wait_for(runner.started.wait(), CANCEL_SEEN_WITHIN_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await assert_cancelled(runner)


async def test_breaking_out_of_runners_streaming_run_cancels_the_call() -> None:
    runner = hanging_run()
    async with scripted_server(runner) as target:
        async for message in Runners.streaming_run("hi", target=target):
            assert isinstance(message, ChunkMessage)
            break
        await assert_cancelled(runner)
