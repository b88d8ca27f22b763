"""Runs belong to their tenant, on one replica and across replicas (both stores): ids, visibility, limits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.transport.server import RunningServer
from tests.conftest import StartServer
from tests.service.helpers import error_details, request, terminal_of
from tests.support.auth import new_token, write_tokens_file
from tests.support.fakellm import FakeLLM, Stall, Text, default_responder

ACME = new_token("acme")
GLOBEX = new_token("globex")


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return write_tokens_file(tmp_path / "tokens.toml", [ACME, GLOBEX])


@pytest.fixture
async def server(start: StartServer, store: str, tokens_file: Path, fake_llm: FakeLLM) -> RunningServer:
    fake_llm.responder = default_responder
    return await start(store=store, auth_tokens_file=tokens_file)


async def not_found(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if hasattr(call, "__aiter__"):
            _ = [m async for m in call]
        else:
            await call
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND, caught.value.details()
    assert error_details(caught.value)[0].reason == "RUN_NOT_FOUND"
    return caught.value


def every_read(stub: rpb_grpc.RunnerServiceStub, run_id: str, token: str) -> list[Any]:
    return [
        stub.GetRun(rpb.GetRunRequest(run_id=run_id), metadata=bearer(token)),
        stub.SubscribeRun(rpb.SubscribeRunRequest(run_id=run_id), metadata=bearer(token)),
        stub.CancelRun(rpb.CancelRunRequest(run_id=run_id), metadata=bearer(token)),
    ]


async def test_two_tenants_use_one_run_id_without_colliding_or_seeing_each_other(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    fake_llm.responder = lambda body: Text(["answer ", "for ", str(len(body["messages"]))])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        for token, text in ((ACME, "acme's question"), (GLOBEX, "globex's question")):
            messages = [
                m async for m in stub.StreamingRun(request(text, run_id="shared-id"), metadata=bearer(token.value))
            ]
            assert terminal_of(messages).success
        for token, text in ((ACME, "acme's question"), (GLOBEX, "globex's question")):
            replay = [
                m
                async for m in stub.SubscribeRun(
                    rpb.SubscribeRunRequest(run_id="shared-id", streaming_mode=rpb.STREAMING_MODE_ALL),
                    metadata=bearer(token.value),
                )
            ]
            assert replay[0].task.input == text  # each tenant reads its own run under the shared id


async def test_another_tenants_run_is_indistinguishable_from_a_missing_one(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Stall(["Hel"]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        await stub.StartRun(rpb.StartRunRequest(input="hi", run_id="acme-run"), metadata=bearer(ACME.value))
        for theirs, missing in zip(
            every_read(stub, "acme-run", GLOBEX.value), every_read(stub, "none-such", GLOBEX.value), strict=True
        ):
            seen, absent = await not_found(theirs), await not_found(missing)
            assert re.sub("acme-run", "X", seen.details() or "") == re.sub("none-such", "X", absent.details() or "")
            assert dict(error_details(seen)[0].metadata).keys() == dict(error_details(absent)[0].metadata).keys()
        run = await stub.GetRun(rpb.GetRunRequest(run_id="acme-run"), metadata=bearer(ACME.value))
        assert run.run_id == "acme-run"  # globex's cancel did not reach it: still running
        assert run.status == 1  # TASK_STATUS_RUNNING
        await stub.CancelRun(rpb.CancelRunRequest(run_id="acme-run"), metadata=bearer(ACME.value))


async def test_tenants_stay_apart_across_replicas(
    start: StartServer, redis_url: str, tokens_file: Path, fake_llm: FakeLLM
) -> None:
    a = await start(store=redis_url, auth_tokens_file=tokens_file)
    b = await start(store=redis_url, auth_tokens_file=tokens_file)
    fake_llm.script(Stall(["Hel"]))
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as on_a,
        grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as on_b,
    ):
        stub_a, stub_b = rpb_grpc.RunnerServiceStub(on_a), rpb_grpc.RunnerServiceStub(on_b)
        run_id = (await stub_a.StartRun(rpb.StartRunRequest(input="hi"), metadata=bearer(ACME.value))).run_id
        for call in every_read(stub_b, run_id, GLOBEX.value):
            await not_found(call)
        assert (await stub_b.GetRun(rpb.GetRunRequest(run_id=run_id), metadata=bearer(ACME.value))).run_id == run_id
        cancelled = await stub_b.CancelRun(rpb.CancelRunRequest(run_id=run_id), metadata=bearer(ACME.value))
        assert not cancelled.already_finished


async def test_live_runs_are_limited_per_tenant(
    start: StartServer, store: str, tokens_file: Path, fake_llm: FakeLLM
) -> None:
    server = await start(store=store, auth_tokens_file=tokens_file, max_runs_per_tenant=1)
    fake_llm.responder = lambda body: Stall(["Hel"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        first = await stub.StartRun(rpb.StartRunRequest(input="hi"), metadata=bearer(ACME.value))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.StartRun(rpb.StartRunRequest(input="hi"), metadata=bearer(ACME.value))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        info, _ = error_details(caught.value)
        assert (info.reason, info.metadata["scope"], info.metadata["limit"]) == ("TOO_MANY_RUNS", "tenant", "1")
        other = await stub.StartRun(rpb.StartRunRequest(input="hi"), metadata=bearer(GLOBEX.value))
        for token, started in ((ACME, first), (GLOBEX, other)):
            await stub.CancelRun(rpb.CancelRunRequest(run_id=started.run_id), metadata=bearer(token.value))


run_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,40}", fullmatch=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run_id=run_ids)
async def test_no_run_id_reaches_another_tenants_run(server: RunningServer, run_id: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        try:
            await stub.StartRun(rpb.StartRunRequest(input="hi", run_id=run_id), metadata=bearer(ACME.value))
        except grpc.aio.AioRpcError as error:  # an id hypothesis already used in this server
            assert error.code() == grpc.StatusCode.ALREADY_EXISTS
        await not_found(stub.GetRun(rpb.GetRunRequest(run_id=run_id), metadata=bearer(GLOBEX.value)))
        assert (await stub.GetRun(rpb.GetRunRequest(run_id=run_id), metadata=bearer(ACME.value))).run_id == run_id


async def test_run_starts_are_rate_limited_per_tenant(start: StartServer, tokens_file: Path, fake_llm: FakeLLM) -> None:
    server = await start(auth_tokens_file=tokens_file, max_run_starts_per_minute=2)
    fake_llm.responder = lambda body: Text(["ok"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        for _ in range(2):
            await stub.StartRun(rpb.StartRunRequest(input="hi"), metadata=bearer(ACME.value))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.StartRun(rpb.StartRunRequest(input="hi"), metadata=bearer(ACME.value))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        info, _ = error_details(caught.value)
        assert (info.reason, info.metadata["scope"], info.metadata["limit"]) == ("TOO_MANY_RUNS", "tenant_rate", "2")
        assert 0 < float(info.metadata["retry_after_s"]) <= 60
        assert (await stub.StartRun(rpb.StartRunRequest(input="hi"), metadata=bearer(GLOBEX.value))).run_id


async def test_sessions_belong_to_their_tenant(server: RunningServer, fake_llm: FakeLLM) -> None:
    fake_llm.responder = lambda body: Text([f"{len(body['messages'])} messages"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)

        async def talk(token: str, text: str) -> None:
            stream = stub.StreamingRun(request(text, session_id="chat"), metadata=bearer(token))
            assert terminal_of([m async for m in stream]).success

        await talk(ACME.value, "acme's secret")
        await talk(GLOBEX.value, "globex asks")  # the same session id, another tenant: a conversation of its own
        assert len(fake_llm.requests[-1]["messages"]) == 2
        globex = await stub.GetSession(rpb.GetSessionRequest(session_id="chat"), metadata=bearer(GLOBEX.value))
        assert [t.content for t in globex.turns] == ["globex asks", "2 messages"]
        deleted = await stub.DeleteSession(rpb.DeleteSessionRequest(session_id="chat"), metadata=bearer(GLOBEX.value))
        assert deleted.deleted_turns == 2
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetSession(rpb.GetSessionRequest(session_id="chat"), metadata=bearer(GLOBEX.value))
        assert error_details(caught.value)[0].reason == "SESSION_NOT_FOUND"
        await talk(ACME.value, "and?")  # acme's history is untouched by globex's deletion
        assert [m["content"] for m in fake_llm.requests[-1]["messages"][1:]] == ["acme's secret", "2 messages", "and?"]
