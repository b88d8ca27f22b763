"""Conversations: runs sharing a session_id continue one history, on both stores (through the gRPC API)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from tests.conftest import StartServer
from tests.service.helpers import collect, error_details, request, terminal_of
from tests.service.test_several_agents import TEAM_TOML
from tests.support.fakellm import FakeLLM, Stall, Text, ToolCalls


async def talk(stub: rpb_grpc.RunnerServiceStub, text: str, session_id: str = "s1", **fields: Any) -> pb.TaskPayload:
    return terminal_of(await collect(stub, request(text, session_id=session_id, **fields)))


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if hasattr(call, "__aiter__"):
            _ = [m async for m in call]
        else:
            await call
    return caught.value


def roles(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in messages]


async def test_the_second_run_of_a_session_carries_the_first_turn(
    stub: rpb_grpc.RunnerServiceStub, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Text(["Hello ", "Ada."]), Text(["You ", "asked ", "your ", "name."]))
    assert (await talk(stub, "My name is Ada.")).success
    assert (await talk(stub, "What did I just ask?")).answer == "You asked your name."
    first, second = fake_llm.requests
    assert roles(first["messages"])[1:] == [("user", "My name is Ada.")]
    assert roles(second["messages"]) == [
        ("system", "You are a helpful assistant."),
        ("user", "My name is Ada."),
        ("assistant", "Hello Ada."),
        ("user", "What did I just ask?"),
    ]


async def test_tool_calls_and_results_are_carried_as_the_model_needs_them(
    stub: rpb_grpc.RunnerServiceStub, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        ToolCalls([("calculator", {"expression": "2+3"}), ("calculator", {"expression": "4*5"})]),
        Text(["5 ", "and ", "20"]),
        Text(["ok"]),
    )
    assert (await talk(stub, "compute 2+3 and 4*5")).answer == "5 and 20"
    await talk(stub, "thanks")
    history = fake_llm.requests[2]["messages"][1:]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "tool", "assistant", "user"]
    calls = history[1]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["calculator", "calculator"]
    assert [m["tool_call_id"] for m in history[2:4]] == [c["id"] for c in calls]  # each result after its call
    assert [m["content"] for m in history[2:4]] == ["5", "20"]
    assert '"expression":"2+3"' in calls[0]["function"]["arguments"]


async def test_runs_without_a_session_or_in_another_session_share_nothing(
    stub: rpb_grpc.RunnerServiceStub, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Text(["a"]), Text(["b"]), Text(["c"]))
    await talk(stub, "first", session_id="one")
    await talk(stub, "second", session_id="")
    await talk(stub, "third", session_id="two")
    assert [len(r["messages"]) for r in fake_llm.requests] == [2, 2, 2]


async def test_a_session_with_a_live_run_is_busy_for_runs_and_deletion(
    stub: rpb_grpc.RunnerServiceStub, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Stall(["Hel"]), Text(["after"]))
    live = await stub.StartRun(rpb.StartRunRequest(input="hi", session_id="busy"))
    assert await fake_llm.wait_requests(1, 5)
    error = await rpc_error(stub.StreamingRun(request("again", session_id="busy")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    info, _ = error_details(error)
    assert (info.reason, info.metadata["run_id"]) == ("SESSION_BUSY", live.run_id)
    error = await rpc_error(stub.StartRun(rpb.StartRunRequest(input="again", session_id="busy")))
    assert error_details(error)[0].reason == "SESSION_BUSY"
    error = await rpc_error(stub.DeleteSession(rpb.DeleteSessionRequest(session_id="busy")))
    assert (error.code(), error_details(error)[0].reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SESSION_BUSY")
    session = await stub.GetSession(rpb.GetSessionRequest(session_id="busy"))
    assert (session.live_run_id, list(session.run_ids), list(session.turns)) == (live.run_id, [live.run_id], [])
    await stub.CancelRun(rpb.CancelRunRequest(run_id=live.run_id))
    # The cancelled run kept its complete turns only (the input; no half answer) and freed the session.
    assert (await talk(stub, "again", session_id="busy")).answer == "after"
    session = await stub.GetSession(rpb.GetSessionRequest(session_id="busy"))
    assert [(t.role, t.content) for t in session.turns] == [
        ("user", "hi"), ("user", "again"), ("assistant", "after")
    ]  # fmt: skip
    assert session.live_run_id == "" and len(session.run_ids) == 2


async def test_get_session_describes_turns_runs_and_times_and_delete_forgets_it(
    stub: rpb_grpc.RunnerServiceStub, fake_llm: FakeLLM
) -> None:
    fake_llm.script(ToolCalls([("calculator", {"expression": "6*7"})]), Text(["42"]))
    messages = await collect(stub, request("6*7?", session_id="desc", run_id="run-desc"))
    assert terminal_of(messages).success
    session = await stub.GetSession(rpb.GetSessionRequest(session_id="desc"))
    assert session.session_id == "desc" and list(session.run_ids) == ["run-desc"]
    assert [(t.role, t.content, t.run_id, t.agent_name) for t in session.turns] == [
        ("user", "6*7?", "run-desc", "assistant"),
        ("assistant", "", "run-desc", "assistant"),
        ("tool", "42", "run-desc", "assistant"),
        ("assistant", "42", "run-desc", "assistant"),
    ]
    call = session.turns[1].tool_calls[0]
    assert (call.tool_name, dict(call.params), session.turns[2].tool_call_id) == (
        "calculator", {"expression": "6*7"}, call.tool_call_id
    )  # fmt: skip
    assert 0 < session.created_at.ToNanoseconds() <= session.updated_at.ToNanoseconds()
    deleted = await stub.DeleteSession(rpb.DeleteSessionRequest(session_id="desc"))
    assert deleted.deleted_turns == 4
    for call in (
        stub.GetSession(rpb.GetSessionRequest(session_id="desc")),
        stub.DeleteSession(rpb.DeleteSessionRequest(session_id="desc")),
        stub.GetSession(rpb.GetSessionRequest(session_id="never-used")),
    ):
        error = await rpc_error(call)
        assert (error.code(), error_details(error)[0].reason) == (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
    fake_llm.script(Text(["fresh"]))
    await talk(stub, "again", session_id="desc")  # a deleted session starts over
    assert len(fake_llm.requests[-1]["messages"]) == 2


async def test_a_blank_or_oversized_session_id_is_invalid(stub: rpb_grpc.RunnerServiceStub) -> None:
    for session_id in ("", "x" * 257):
        for call in (
            stub.GetSession(rpb.GetSessionRequest(session_id=session_id)),
            stub.DeleteSession(rpb.DeleteSessionRequest(session_id=session_id)),
        ):
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_details(error)[1] == ["session_id"]


async def test_history_is_bounded_by_turns_dropping_whole_call_result_pairs(
    start: StartServer, store: str, fake_llm: FakeLLM
) -> None:
    server = await start(store=store, session_max_turns=5)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        fake_llm.script(ToolCalls([("calculator", {"expression": "1+1"})]), Text(["two"]), Text(["three"]))
        await talk(stub, "1+1")  # user, assistant(call), tool, assistant: 4 turns
        await talk(stub, "and three?")  # 6 turns: the oldest (the user turn) goes
        session = await stub.GetSession(rpb.GetSessionRequest(session_id="s1"))
        assert [t.role for t in session.turns] == ["assistant", "tool", "assistant", "user", "assistant"]
        fake_llm.script(Text(["four"]))
        await talk(stub, "four?")  # 7 turns: the call goes with its result, never one without the other
        session = await stub.GetSession(rpb.GetSessionRequest(session_id="s1"))
        assert [t.content for t in session.turns] == ["two", "and three?", "three", "four?", "four"]
        fake_llm.script(Text(["five"]))
        await talk(stub, "five?")
        assert roles(fake_llm.requests[-1]["messages"])[1:] == [
            ("assistant", "two"), ("user", "and three?"), ("assistant", "three"), ("user", "four?"),
            ("assistant", "four"), ("user", "five?"),
        ]  # fmt: skip


async def test_history_is_bounded_by_characters(start: StartServer, store: str, fake_llm: FakeLLM) -> None:
    server = await start(store=store, session_max_chars=30)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        fake_llm.script(Text(["0123456789"]), Text(["abcdefghij"]))
        await talk(stub, "ten chars!")
        await talk(stub, "ten more!!")  # 40 characters: the oldest turn goes
        session = await stub.GetSession(rpb.GetSessionRequest(session_id="s1"))
        assert [t.content for t in session.turns] == ["0123456789", "ten more!!", "abcdefghij"]


async def test_an_idle_session_expires(start: StartServer, store: str, fake_llm: FakeLLM) -> None:
    server = await start(store=store, session_idle_ttl_s=1.0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        fake_llm.script(Text(["hi"]), Text(["hello again"]))
        await talk(stub, "hello")
        assert len((await stub.GetSession(rpb.GetSessionRequest(session_id="s1"))).turns) == 2
        await asyncio.sleep(2.2)  # past the TTL (Redis expires keys with one-second granularity)
        error = await rpc_error(stub.GetSession(rpb.GetSessionRequest(session_id="s1")))
        assert error_details(error)[0].reason == "SESSION_NOT_FOUND"
        await talk(stub, "hello?")
        assert len(fake_llm.requests[-1]["messages"]) == 2  # nothing of the expired history


async def test_a_session_started_on_one_replica_continues_on_another(
    start: StartServer, redis_url: str, fake_llm: FakeLLM
) -> None:
    a, b = await start(store=redis_url), await start(store=redis_url)
    fake_llm.script(Text(["Hello ", "Ada."]), Stall(["x"]), Text(["Ada"]))
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as to_a,
        grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as to_b,
    ):
        on_a, on_b = rpb_grpc.RunnerServiceStub(to_a), rpb_grpc.RunnerServiceStub(to_b)
        await talk(on_a, "My name is Ada.", session_id="x-replica")
        live = await on_b.StartRun(rpb.StartRunRequest(input="wait", session_id="x-replica"))
        assert await fake_llm.wait_requests(2, 5)
        error = await rpc_error(on_a.StreamingRun(request("now", session_id="x-replica")))
        assert (error_details(error)[0].reason, error_details(error)[0].metadata["run_id"]) == (
            "SESSION_BUSY", live.run_id
        )  # fmt: skip
        assert roles(fake_llm.requests[1]["messages"])[1:3] == [
            ("user", "My name is Ada."),
            ("assistant", "Hello Ada."),
        ]
        await on_a.CancelRun(rpb.CancelRunRequest(run_id=live.run_id))  # routed to B; the session is free again
        assert (await talk(on_a, "And my name?", session_id="x-replica")).answer == "Ada"
        assert [m["content"] for m in fake_llm.requests[2]["messages"][1:]] == [
            "My name is Ada.", "Hello Ada.", "wait", "And my name?"
        ]  # fmt: skip


async def test_a_session_keeps_the_top_level_conversation_not_nested_agents(
    start: StartServer, store: str, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    path = tmp_path / "team.toml"
    path.write_text(TEAM_TOML)
    server = await start(store=store, agents_file=path)
    fake_llm.script(
        ToolCalls([("researcher", {"input": "look it up"})]),
        Text(["nested ", "finding"]),  # the researcher's answer: its result, not a turn of the session
        ToolCalls([("transfer_to_billing", {"reason": "invoice"})]),
        Text(["Paid."]),
        Text(["ok"]),
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        assert (await talk(stub, "my invoice?", session_id="team")).answer == "Paid."
        session = await stub.GetSession(rpb.GetSessionRequest(session_id="team"))
        assert [(t.role, t.content, t.agent_name) for t in session.turns] == [
            ("user", "my invoice?", "triage"),
            ("assistant", "", "triage"),  # calls the researcher
            ("tool", "nested finding", "triage"),
            ("assistant", "", "triage"),  # hands off
            ("tool", "transferred to billing", "triage"),
            ("assistant", "Paid.", "billing"),
        ]
        await talk(stub, "thanks", session_id="team")
        sent = fake_llm.requests[-1]["messages"]
        assert "You look things up." not in [m.get("content") for m in sent]
        assert [m["role"] for m in sent] == [
            "system",
            "user",
            "assistant",
            "tool",
            "assistant",
            "tool",
            "assistant",
            "user",
        ]
