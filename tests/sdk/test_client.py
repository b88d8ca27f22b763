"""The SDK against a live server: the seed's examples, typed errors, cancel, the sync client."""

from __future__ import annotations

import asyncio
import contextlib
import io

import pytest

import agentstream
from agentstream import (
    AgentMessage,
    ChunkMessage,
    Client,
    Runners,
    StreamingMode,
    SyncClient,
    Task,
    TaskMessage,
    ToolMessage,
    TopicType,
)
from agentstream_server import errors as server_errors
from agentstream_server.transport.server import RunningServer
from tests.conftest import StartServer
from tests.support.fakellm import FakeLLM, HTTPError, Stall, Text, ToolCalls


def target(server: RunningServer) -> str:
    return f"127.0.0.1:{server.port}"


async def test_seed_quick_start_example_runs_unchanged_but_for_imports(
    fake_llm: FakeLLM, server: RunningServer
) -> None:
    fake_llm.script(Text(["Code ", "flows ", "like ", "rain."]))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        stream = Runners.streaming_run(
            input="Write a short poem about coding.",
            agent="assistant",
            streaming_mode=StreamingMode.ALL,
            target=target(server),
        )
        async for msg in stream:
            if isinstance(msg, ChunkMessage):
                print(msg.payload.content, end="", flush=True)
            elif isinstance(msg, AgentMessage):
                print(f"\n[Agent Step]: {msg.payload}")
    assert out.getvalue().startswith("Code flows like rain.\n[Agent Step]: AgentStep(agent_name='assistant', step=1")


async def test_seed_handling_different_events_example(
    fake_llm: FakeLLM, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTSTREAM_TARGET", target(server))
    fake_llm.script(ToolCalls([("calculator", {"expression": "6 * 7"})]), Text(["It ", "is ", "42."]))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        async for msg in Runners.streaming_run(input="Search for weather in Beijing", agent="assistant"):
            if isinstance(msg, ChunkMessage):
                content = msg.payload.content
                if content:
                    print(content, end="", flush=True)
            elif isinstance(msg, ToolMessage):
                actions = msg.payload
                for action in actions:
                    print(f"\n[Tool Call]: {action.tool_name} (params: {action.params})")
            elif msg.topic == TopicType.TASK_RESPONSE:
                result = msg.payload
                if result.success:
                    print(f"\n[Finished]: {result.answer}")
                else:
                    print(f"\n[Failed]: {result.msg}")
    assert (
        out.getvalue()
        == "\n[Tool Call]: calculator (params: {'expression': '6 * 7'})\nIt is 42.\n[Finished]: It is 42.\n"
    )


async def test_streaming_run_task_uses_the_task_fields(fake_llm: FakeLLM, server: RunningServer) -> None:
    fake_llm.script(Text(["ok"]))
    task = Task(input="hi", streaming_mode=StreamingMode.CHUNK, run_id="task-run-1", session_id="s1")
    messages = [m async for m in Runners.streaming_run_task(task, target=target(server))]
    assert [type(m).__name__ for m in messages] == ["ChunkMessage", "TaskMessage"]
    assert {m.run_id for m in messages} == {"task-run-1"}
    assert {m.session_id for m in messages} == {"s1"}


SDK_CLASSES = {name: getattr(agentstream, name) for name in agentstream.__all__}


@pytest.mark.parametrize("row", server_errors.ERROR_TABLE, ids=lambda r: r.reason)
def test_every_row_of_the_server_error_table_has_an_sdk_error_class(row: server_errors.ErrorRow) -> None:
    sdk_class = SDK_CLASSES.get(row.error.__name__)
    assert sdk_class is not None, f"the SDK has no error class {row.error.__name__}"
    assert issubclass(sdk_class, agentstream.AgentStreamError)
    assert sdk_class.reason == row.reason


async def expect(exc_type: type[agentstream.AgentStreamError], client: Client, **kwargs: object) -> Exception:
    with pytest.raises(exc_type) as caught:
        async for _ in client.streaming_run(**kwargs):  # type: ignore[arg-type]
            pass
    return caught.value


async def test_call_errors_become_typed_exceptions(fake_llm: FakeLLM, start: StartServer) -> None:
    server = await start(max_concurrent_runs=1)
    async with Client(target(server)) as client:
        bad = await expect(agentstream.InvalidArgument, client, input="  ")
        assert isinstance(bad, agentstream.InvalidArgument)
        assert bad.field_violations[0][0] == "input"
        missing = await expect(agentstream.AgentNotFound, client, input="hi", agent="ghost")
        assert isinstance(missing, agentstream.AgentNotFound)
        assert missing.known_agents == ["assistant", "careful", "team", "tester"]
        fake_llm.script(Stall())
        live = client.streaming_run("hi", run_id="busy-1")
        await anext(live)
        await expect(agentstream.RunAlreadyExists, client, input="hi", run_id="busy-1")
        await expect(agentstream.TooManyRuns, client, input="hi")
        await live.aclose()
        server.runs.begin_drain()
        drained = await expect(agentstream.ServerDraining, client, input="hi")
        assert "shutting down" in str(drained)


async def test_an_unreachable_server_is_a_transport_error() -> None:
    async with Client("127.0.0.1:1") as client:
        await expect(agentstream.TransportError, client, input="hi")


async def test_in_band_failures_map_to_typed_errors_on_request(fake_llm: FakeLLM, server: RunningServer) -> None:
    fake_llm.responder = lambda body: HTTPError(503)
    async with Client(target(server)) as client:
        messages = [m async for m in client.streaming_run("hi")]
    terminal = messages[-1]
    assert isinstance(terminal, TaskMessage)
    assert terminal.payload.error is not None
    error = agentstream.errors.error_for_task(
        terminal.payload.error.reason, terminal.payload.error.code, terminal.payload.msg
    )
    assert isinstance(error, agentstream.LLMUpstreamError)


async def test_leaving_the_loop_early_cancels_the_run_on_the_server(fake_llm: FakeLLM, server: RunningServer) -> None:
    fake_llm.script(Stall(tokens=["Hel"]))
    async with Client(target(server)) as client:
        async for message in client.streaming_run("hi", streaming_mode=StreamingMode.CHUNK):
            assert message.payload.content == "Hel"
            break
    assert await fake_llm.wait_closed(1.0)


async def test_sync_client_streams_a_run(fake_llm: FakeLLM, server: RunningServer) -> None:
    fake_llm.script(Text(["sync ", "ok"]))

    def consume() -> list[agentstream.Message]:
        with SyncClient(target(server)) as client:
            return list(client.streaming_run("hi", streaming_mode=StreamingMode.CHUNK_OUTPUT))

    messages = await asyncio.to_thread(consume)
    assert [type(m).__name__ for m in messages] == ["ChunkMessage", "ChunkMessage", "OutputMessage", "TaskMessage"]
    assert messages[-1].payload.answer == "sync ok"


async def test_sync_client_errors_are_typed(server: RunningServer) -> None:
    def consume() -> None:
        with SyncClient(target(server)) as client:
            list(client.streaming_run("hi", agent="ghost"))

    with pytest.raises(agentstream.AgentNotFound):
        await asyncio.to_thread(consume)


async def test_sync_client_run_lifecycle(fake_llm: FakeLLM, server: RunningServer) -> None:
    fake_llm.script(Text(["one ", "two"]), Stall())

    def lifecycle() -> tuple[list[str], str, str]:
        with SyncClient(target(server)) as client:
            finished = client.start_run("first")
            kinds = [type(m).__name__ for m in client.subscribe_run(finished, streaming_mode=StreamingMode.CHUNK)]
            live = client.start_run("second")
            cancelled = client.cancel_run(live, "enough")
            return kinds, client.get_run(finished).status.name, cancelled.status.name

    kinds, finished_status, cancelled_status = await asyncio.to_thread(lifecycle)
    assert kinds == ["ChunkMessage", "ChunkMessage", "TaskMessage"]
    assert (finished_status, cancelled_status) == ("SUCCEEDED", "CANCELLED")


async def test_exclude_reasoning_leaves_reasoning_out_of_streaming_run_and_subscribe_run(
    fake_llm: FakeLLM, server: RunningServer
) -> None:
    from tests.service.test_reasoning import reasoning_stream

    fake_llm.script(reasoning_stream())
    async with Client(target(server)) as client:
        full = [m async for m in client.streaming_run("2+2?", run_id="reasoning-1")]
        dropped = [m async for m in client.subscribe_run("reasoning-1", exclude_reasoning=True)]
    assert [m.payload.reasoning_content for m in full if isinstance(m, ChunkMessage)][:2] == ["The user ", "wants 4."]
    chunks = [m.payload for m in dropped if isinstance(m, ChunkMessage)]
    assert [c.content for c in chunks] == ["2+2 ", "is 4."] and not any(c.reasoning_content for c in chunks)
    step = next(m.payload for m in dropped if isinstance(m, AgentMessage))
    assert step.reasoning_content == "" and step.usage is not None and step.usage.reasoning_tokens == 6
