"""A person in the loop, through the gRPC server on both stores: approve, reject, answer, timeout, cancel, twice,
through another replica; the run's status and pending interrupts in GetRun."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.transport.server import RunningServer
from tests.conftest import StartServer
from tests.service.helpers import error_details, request, terminal_of
from tests.support.fakellm import FakeLLM, Text, ToolCalls

APPROVALS_TOML = """
[agents.careful]
instructions = "Ask before computing."
tools = ["calculator"]
approval = ["calculator"]

[agents.hasty]
tools = ["calculator"]
approval = ["calculator"]
approval_timeout = 0.3

[agents.asker]
ask_user = true
"""


@pytest.fixture
def approvals_file(tmp_path: Path) -> Path:
    path = tmp_path / "approvals.toml"
    path.write_text(APPROVALS_TOML)
    return path


@pytest.fixture
async def server(start: StartServer, store: str, approvals_file: Path) -> RunningServer:
    return await start(store=store, agents_file=approvals_file)


@pytest.fixture
async def stub(server: RunningServer) -> AsyncIterator[rpb_grpc.RunnerServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield rpb_grpc.RunnerServiceStub(channel)


class Follower:
    """Reads a StreamingRun call in the background, so the test can act while the run waits."""

    def __init__(self, call: grpc.aio.UnaryStreamCall) -> None:  # type: ignore[type-arg]
        self.messages: list[pb.Message] = []
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._read(call))

    async def _read(self, call: grpc.aio.UnaryStreamCall) -> None:  # type: ignore[type-arg]
        async for message in call:
            self.messages.append(message)
            self._changed.set()

    async def until(self, topic: str, timeout: float = 10.0) -> pb.Message:
        async with asyncio.timeout(timeout):
            while True:
                found = [m for m in self.messages if m.topic == topic]
                if found:
                    return found[0]
                self._changed.clear()
                await self._changed.wait()

    async def end(self) -> list[pb.Message]:
        async with asyncio.timeout(10):
            await self.task
        return self.messages


def follow(stub: rpb_grpc.RunnerServiceStub, text: str, agent: str, timeout_s: float | None = None) -> Follower:
    req = request(text, timeout_s=timeout_s, agent=agent, streaming_mode=rpb.STREAMING_MODE_ALL)
    return Follower(stub.StreamingRun(req))


def resolve(run_id: str, interrupt_id: str, approve: bool, message: str = "") -> rpb.ResolveInterruptRequest:
    return rpb.ResolveInterruptRequest(run_id=run_id, interrupt_id=interrupt_id, approve=approve, message=message)


async def test_an_approved_call_runs_after_the_interrupt_and_get_run_shows_the_wait(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(ToolCalls([("calculator", {"expression": "2+2"})]), Text(["It ", "is ", "4."]))
    run = follow(stub, "what is 2+2?", "careful")
    waiting = await run.until("interrupt")
    interrupt = waiting.interrupt
    assert (waiting.category, interrupt.kind, interrupt.resolved) == ("task", pb.INTERRUPT_KIND_TOOL_APPROVAL, False)
    assert [a.tool_name for a in interrupt.tool_calls] == ["calculator"]
    assert "calculator" in interrupt.question and interrupt.expires_at.seconds > 0
    assert not any(m.WhichOneof("payload") == "tool_result" for m in run.messages)  # nothing ran yet

    described = await stub.GetRun(rpb.GetRunRequest(run_id=waiting.run_id))
    assert described.status == pb.TASK_STATUS_INPUT_REQUIRED
    assert [i.interrupt_id for i in described.pending_interrupts] == [interrupt.interrupt_id]

    answer = await stub.ResolveInterrupt(resolve(waiting.run_id, interrupt.interrupt_id, True))
    assert answer.status == pb.TASK_STATUS_RUNNING
    messages = await run.end()
    resolved = next(m for m in messages if m.topic == "interrupt_resolved").interrupt
    assert (resolved.interrupt_id, resolved.approved, resolved.resolved) == (interrupt.interrupt_id, True, True)
    result = next(m for m in messages if m.WhichOneof("payload") == "tool_result").tool_result
    assert (result.content, result.is_error) == ("4", False)
    assert terminal_of(messages).success
    assert (await stub.GetRun(rpb.GetRunRequest(run_id=waiting.run_id))).status == pb.TASK_STATUS_SUCCEEDED


async def test_a_rejected_call_never_runs_and_the_model_reads_why(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(ToolCalls([("calculator", {"expression": "6*7"})]), Text(["OK, ", "I ", "will ", "not."]))
    run = follow(stub, "what is 6*7?", "careful")
    waiting = await run.until("interrupt")
    await stub.ResolveInterrupt(resolve(waiting.run_id, waiting.interrupt.interrupt_id, False, "not today"))
    messages = await run.end()
    result = next(m for m in messages if m.WhichOneof("payload") == "tool_result").tool_result
    assert result.is_error and "rejected by a person: not today" in result.content
    assert not any(m.tool_result.content == "42" for m in messages)
    tool_message = next(m for m in fake_llm.requests[1]["messages"] if m["role"] == "tool")
    assert "not today" in tool_message["content"]
    assert terminal_of(messages).success


async def test_resolving_twice_or_an_unknown_interrupt_or_run_is_a_clear_error(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(ToolCalls([("calculator", {"expression": "1+1"})]), Text(["2."]))
    run = follow(stub, "1+1?", "careful")
    waiting = await run.until("interrupt")
    run_id, interrupt_id = waiting.run_id, waiting.interrupt.interrupt_id
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.ResolveInterrupt(resolve(run_id, "int-nope", True))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(unknown.value)[0].reason == "INTERRUPT_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as no_run:
        await stub.ResolveInterrupt(resolve("no-such-run", interrupt_id, True))
    assert (no_run.value.code(), error_details(no_run.value)[0].reason) == (
        grpc.StatusCode.NOT_FOUND, "INTERRUPT_NOT_FOUND",
    )  # fmt: skip
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.ResolveInterrupt(resolve(run_id, "", True))
    assert (bad.value.code(), error_details(bad.value)[1]) == (grpc.StatusCode.INVALID_ARGUMENT, ["interrupt_id"])
    await stub.ResolveInterrupt(resolve(run_id, interrupt_id, True))
    with pytest.raises(grpc.aio.AioRpcError) as twice:
        await stub.ResolveInterrupt(resolve(run_id, interrupt_id, False))
    assert twice.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(twice.value)[0].reason == "INTERRUPT_ALREADY_RESOLVED"
    assert terminal_of(await run.end()).success


async def test_nobody_answering_resolves_as_rejected_at_the_approval_timeout(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(ToolCalls([("calculator", {"expression": "1+1"})]), Text(["Fine."]))
    run = follow(stub, "1+1?", "hasty")
    waiting = await run.until("interrupt")
    messages = await run.end()
    resolved = next(m for m in messages if m.topic == "interrupt_resolved").interrupt
    assert not resolved.approved and "approval timeout of 0.3 s" in resolved.message
    result = next(m for m in messages if m.WhichOneof("payload") == "tool_result").tool_result
    assert result.is_error and "approval timeout" in result.content
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await stub.ResolveInterrupt(resolve(waiting.run_id, waiting.interrupt.interrupt_id, True))
    assert error_details(late.value)[0].reason == "INTERRUPT_ALREADY_RESOLVED"


async def test_waiting_does_not_count_against_the_run_timeout(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(ToolCalls([("calculator", {"expression": "3*3"})]), Text(["9."]))
    run = follow(stub, "3*3?", "careful", timeout_s=0.5)
    waiting = await run.until("interrupt")
    await asyncio.sleep(1.0)  # twice the run's own limit, spent waiting for a person
    await stub.ResolveInterrupt(resolve(waiting.run_id, waiting.interrupt.interrupt_id, True))
    task = terminal_of(await run.end())
    assert (task.status, task.answer) == (pb.TASK_STATUS_SUCCEEDED, "9.")


async def test_cancel_while_waiting_ends_the_run_and_the_interrupt(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(ToolCalls([("calculator", {"expression": "1+1"})]))
    run = follow(stub, "1+1?", "careful")
    waiting = await run.until("interrupt")
    cancelled = await stub.CancelRun(rpb.CancelRunRequest(run_id=waiting.run_id, reason="changed my mind"))
    assert cancelled.status == pb.TASK_STATUS_CANCELLED
    task = terminal_of(await run.end())
    assert task.status == pb.TASK_STATUS_CANCELLED and "changed my mind" in task.msg
    async with asyncio.timeout(5):  # the run store learns it in the background
        while True:
            try:
                await stub.ResolveInterrupt(resolve(waiting.run_id, waiting.interrupt.interrupt_id, True))
            except grpc.aio.AioRpcError as error:
                assert error_details(error)[0].reason == "INTERRUPT_ALREADY_RESOLVED"
                break
            await asyncio.sleep(0.05)


async def test_ask_user_waits_for_an_answer_that_becomes_the_tool_result(
    fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(ToolCalls([("ask_user", {"question": "Which city?"})]), Text(["Paris ", "it ", "is."]))
    run = follow(stub, "plan my trip", "asker")
    waiting = await run.until("interrupt")
    assert (waiting.interrupt.kind, waiting.interrupt.question) == (pb.INTERRUPT_KIND_INPUT, "Which city?")
    assert any(t["function"]["name"] == "ask_user" for t in fake_llm.requests[0]["tools"])
    await stub.ResolveInterrupt(resolve(waiting.run_id, waiting.interrupt.interrupt_id, True, "Paris"))
    messages = await run.end()
    result = next(m for m in messages if m.WhichOneof("payload") == "tool_result").tool_result
    assert (result.tool_name, result.content, result.is_error) == ("ask_user", "Paris", False)
    assert {"role": "tool", "tool_call_id": result.tool_call_id, "content": "Paris"} in fake_llm.requests[1]["messages"]


async def test_an_interrupt_is_resolved_through_another_replica(
    fake_llm: FakeLLM, start: StartServer, redis_url: str, approvals_file: Path
) -> None:
    a = await start(store=redis_url, agents_file=approvals_file)
    b = await start(store=redis_url, agents_file=approvals_file)
    fake_llm.script(ToolCalls([("calculator", {"expression": "5+5"})]), Text(["10."]))
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as on_a,
        grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as on_b,
    ):
        stub_a, stub_b = rpb_grpc.RunnerServiceStub(on_a), rpb_grpc.RunnerServiceStub(on_b)
        run = follow(stub_a, "5+5?", "careful")
        waiting = await run.until("interrupt")
        described = await stub_b.GetRun(rpb.GetRunRequest(run_id=waiting.run_id))
        assert described.status == pb.TASK_STATUS_INPUT_REQUIRED
        assert [i.interrupt_id for i in described.pending_interrupts] == [waiting.interrupt.interrupt_id]
        answer = await stub_b.ResolveInterrupt(resolve(waiting.run_id, waiting.interrupt.interrupt_id, True))
        assert answer.status == pb.TASK_STATUS_RUNNING
        messages = await run.end()
        assert next(m for m in messages if m.WhichOneof("payload") == "tool_result").tool_result.content == "10"
        assert terminal_of(messages).success
        with pytest.raises(grpc.aio.AioRpcError) as twice:
            await stub_b.ResolveInterrupt(resolve(waiting.run_id, waiting.interrupt.interrupt_id, True))
        assert error_details(twice.value)[0].reason == "INTERRUPT_ALREADY_RESOLVED"
        assert (await stub_b.GetRun(rpb.GetRunRequest(run_id=waiting.run_id))).status == pb.TASK_STATUS_SUCCEEDED


async def test_an_mcp_tool_behind_approval_runs_on_its_server_only_once_approved(
    fake_llm: FakeLLM, start: StartServer, store: str, tmp_path: Path
) -> None:
    from tests.service.test_mcp_runs import STDIO

    agents = tmp_path / "mcp.toml"
    agents.write_text(f'{STDIO}\n[agents.assistant]\nmcp_servers = ["calc"]\napproval = ["add"]\n')
    server = await start(store=store, agents_file=agents)
    fake_llm.script(ToolCalls([("add", {"a": 2, "b": 3})]), Text(["5."]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        run = follow(stub, "2 + 3?", "assistant")
        waiting = await run.until("interrupt")
        assert [a.tool_name for a in waiting.interrupt.tool_calls] == ["add"]
        assert not any(m.WhichOneof("payload") == "tool_result" for m in run.messages)
        await stub.ResolveInterrupt(resolve(waiting.run_id, waiting.interrupt.interrupt_id, True))
        messages = await run.end()
    result = next(m for m in messages if m.WhichOneof("payload") == "tool_result").tool_result
    assert (result.content, result.is_error, result.mcp_server) == ('{"result":5}', False, "calc")


async def test_approval_naming_a_tool_no_mcp_server_has_is_a_start_up_error(start: StartServer, tmp_path: Path) -> None:
    from agentstream_server.runtime.mcp_servers import McpStartError
    from tests.service.test_mcp_runs import STDIO

    agents = tmp_path / "mcp.toml"
    agents.write_text(f'{STDIO}\n[agents.assistant]\nmcp_servers = ["calc"]\napproval = ["nope"]\n')
    with pytest.raises(McpStartError, match=r"approval names \['nope'\], which are not among its tools"):
        await start(agents_file=agents)
