"""Several agents through the gRPC server, on both run stores: handoffs, nested agents, attribution, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.config import Settings
from agentstream_server.transport.server import RunningServer, start_server
from tests.conftest import StartServer
from tests.service.helpers import collect, request, terminal_of
from tests.support.fakellm import FakeLLM, Stall, Text, ToolCalls

TEAM_TOML = """
default = "triage"

[agents.triage]
instructions = "Route the user."
handoffs = ["billing"]
agent_tools = ["researcher"]

[agents.billing]
instructions = "You handle invoices."

[agents.researcher]
instructions = "You look things up."
agent_tools = ["researcher"]
"""


@pytest.fixture
async def team_server(start: StartServer, store: str, tmp_path: Path) -> RunningServer:
    path = tmp_path / "team.toml"
    path.write_text(TEAM_TOML)
    return await start(store=store, agents_file=path, max_agent_depth=2)


@pytest.fixture
async def team_stub(team_server: RunningServer) -> AsyncIterator[rpb_grpc.RunnerServiceStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{team_server.port}")
    yield rpb_grpc.RunnerServiceStub(channel)
    await channel.close()


EXAMPLE_TEAM = Path(__file__).resolve().parents[2] / "examples" / "team.toml"


def all_mode(text: str) -> rpb.StreamingRunRequest:
    return request(text, streaming_mode=rpb.STREAMING_MODE_ALL)


async def test_a_handoff_is_one_group_event_and_every_later_event_names_the_new_agent(
    fake_llm: FakeLLM, team_stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(
        ToolCalls([("transfer_to_billing", {"reason": "invoice"})]),
        Text(["Your ", "invoice ", "is paid."], usage=(10, 3)),
    )
    messages = await collect(team_stub, request("where is my invoice?"))  # CORE mode passes group events

    assert [m.seq for m in messages] == sorted({m.seq for m in messages})
    handoffs = [m for m in messages if m.WhichOneof("payload") == "group"]
    assert len(handoffs) == 1
    group = handoffs[0].group
    assert (handoffs[0].topic, handoffs[0].category) == ("handoff", "group")
    assert (group.kind, group.from_agent, group.to_agent, group.content) == (
        pb.GROUP_EVENT_KIND_HANDOFF, "triage", "billing", "invoice",
    )  # fmt: skip
    after = messages[messages.index(handoffs[0]) + 1 :]
    chunks = [m for m in after if m.WhichOneof("payload") == "chunk"]
    assert chunks and {(m.sender, m.chunk.agent_name) for m in chunks} == {("billing", "billing")}
    assert {m.depth for m in messages} == {0} and {m.caller for m in messages} == {""}
    task = terminal_of(messages)
    assert (task.success, task.answer, task.agent_name) == (True, "Your invoice is paid.", "billing")
    billing_request = fake_llm.requests[1]["messages"]
    assert billing_request[0] == {"role": "system", "content": "You handle invoices."}
    assert any(m.get("content") == "where is my invoice?" for m in billing_request)


async def test_a_nested_agent_streams_attributed_events_in_order_and_usage_sums_every_agent(
    fake_llm: FakeLLM, team_stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(
        ToolCalls([("researcher", {"input": "find the answer"})], usage=(5, 1)),
        Text(["forty", "-two"], usage=(7, 2)),
        Text(["It is 42."], usage=(11, 3)),
    )
    messages = await collect(team_stub, all_mode("what is it?"))

    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))  # ALL mode: every event, no gaps
    call = next(m for m in messages if m.WhichOneof("payload") == "tool")
    call_id = call.tool.actions[0].tool_call_id
    nested = [m for m in messages if m.depth == 1]
    assert nested and {(m.caller, m.parent_tool_call_id) for m in nested} == {("triage", call_id)}
    assert [m.chunk.content for m in nested if m.WhichOneof("payload") == "chunk"] == ["forty", "-two"]
    assert {m.sender for m in nested if m.WhichOneof("payload") in ("chunk", "agent")} == {"researcher"}
    groups = [m for m in messages if m.WhichOneof("payload") == "group"]
    assert [(m.topic, m.group.tool_call_id, m.group.depth) for m in groups] == [
        ("agent_start", call_id, 1), ("agent_end", call_id, 1),
    ]  # fmt: skip
    start, end = (messages.index(g) for g in groups)
    assert all(start < messages.index(m) < end for m in nested)
    assert groups[1].group.success and groups[1].group.content == "forty-two"
    assert groups[1].group.usage.total_tokens == 9
    result = next(m for m in messages if m.WhichOneof("payload") == "tool_result")
    assert (result.depth, result.tool_result.content, messages.index(result) > end) == (0, "forty-two", True)
    steps = [m.agent for m in messages if m.WhichOneof("payload") == "agent"]
    assert [(s.agent_name, s.usage.total_tokens) for s in steps] == [("triage", 6), ("researcher", 9), ("triage", 14)]
    task = terminal_of(messages)
    assert (task.success, task.usage.total_tokens, task.usage.prompt_tokens) == (True, 29, 23)


async def test_nesting_past_the_limit_ends_the_run_failed_with_agent_depth_exceeded(
    fake_llm: FakeLLM, team_stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(
        ToolCalls([("researcher", {"input": "1"})]),
        ToolCalls([("researcher", {"input": "2"})]),
        ToolCalls([("researcher", {"input": "3"})]),  # depth 3 > the server's max_agent_depth=2
    )
    messages = await collect(team_stub, all_mode("dig"))
    task = terminal_of(messages)
    assert (task.status, task.error.reason, task.error.code) == (
        pb.TASK_STATUS_FAILED, "AGENT_DEPTH_EXCEEDED", "RESOURCE_EXHAUSTED",
    )  # fmt: skip
    assert task.error.metadata["max_depth"] == "2" and "past the limit of 2" in task.msg
    assert max(m.depth for m in messages) == 2


async def test_cancel_run_inside_a_nested_agent_stops_it_and_closes_its_llm_call(
    fake_llm: FakeLLM, team_server: RunningServer, team_stub: rpb_grpc.RunnerServiceStub
) -> None:
    fake_llm.script(ToolCalls([("researcher", {"input": "slow"})]), Stall(tokens=["hmm"]))
    call = team_stub.StreamingRun(all_mode("go"))
    seen: list[pb.Message] = []
    async with asyncio.timeout(10):
        async for message in call:
            seen.append(message)
            if message.depth == 1 and message.WhichOneof("payload") == "chunk":
                await team_stub.CancelRun(rpb.CancelRunRequest(run_id=message.run_id, reason="enough"))
    task = terminal_of(seen)
    assert task.status == pb.TASK_STATUS_CANCELLED and "enough" in task.msg
    assert await fake_llm.wait_closed(1.0), "the nested agent's LLM connection still open 1 s after cancel"
    async with asyncio.timeout(5):
        while team_server.runs.live_runs:
            await asyncio.sleep(0.01)


async def test_the_example_team_runs_offline_on_the_demo_model(store: str) -> None:
    """examples/team.toml on the embedded demo model: triage hands off to technical, which asks the researcher."""
    server = await start_server(Settings(port=0, agents_file=EXAMPLE_TEAM, demo_token_delay_s=0.0, store=store))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = rpb_grpc.RunnerServiceStub(channel)
            messages = await collect(stub, all_mode("I have a technical question, ask the researcher: why?"))
    finally:
        await server.shutdown(0)
    groups = [(m.topic, m.group.from_agent, m.group.to_agent) for m in messages if m.WhichOneof("payload") == "group"]
    assert groups == [
        ("handoff", "triage", "technical"),
        ("agent_start", "technical", "researcher"),
        ("agent_end", "technical", "researcher"),
    ]
    assert {m.sender for m in messages if m.depth == 1 and m.WhichOneof("payload") == "chunk"} == {"researcher"}
    task = terminal_of(messages)
    assert task.success and task.agent_name == "technical"
