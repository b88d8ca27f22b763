"""Every shared scenario in tests/scenarios, through the Python SDK, against a live server."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from agentstream import (
    AgentStreamError,
    ChunkMessage,
    Client,
    StreamingMode,
    TaskMessage,
    TaskStatus,
)
from agentstream.errors import ERRORS_BY_REASON, error_for_task
from agentstream.messages import from_proto
from agentstream.v1 import message_pb2 as pb
from tests.conftest import StartServer
from tests.interop.approval import run_approval_scenario
from tests.interop.checks import check_error, check_stream
from tests.support.certs import Pki
from tests.support.fakellm import FakeLLM, default_responder

SCENARIOS = {
    p.stem: json.loads(p.read_text())
    for p in sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.json"))
}


def mode_of(scenario: dict[str, Any]) -> int:
    mode = scenario.get("mode", "CORE")
    return int(StreamingMode[mode]) if isinstance(mode, str) else int(mode)


@pytest.fixture
async def target(fake_llm: FakeLLM, start: StartServer) -> str:
    """The server under test: `make interop`'s shared one (AGENTSTREAM_INTEROP_TARGET), else our own."""
    shared = os.environ.get("AGENTSTREAM_INTEROP_TARGET")
    if shared:
        return shared
    fake_llm.responder = default_responder
    server = await start()
    return f"127.0.0.1:{server.port}"


Connect = Callable[[str], Client]
"""Opens a client to an address: plaintext (Client itself) or with TLS options."""


@pytest.mark.parametrize("name", SCENARIOS)
async def test_scenario(name: str, target: str) -> None:
    await run_scenario(SCENARIOS[name], target, Client)


TLS_SCENARIOS = ("calculator_core", "unknown_agent", "resume", "approval")
"""Run again over TLS and mTLS: streaming with a tool call, an error status, a resumed subscription through
a proxy (a second TLS handshake), an approval from a second connection."""


@pytest.fixture(params=["TLS", "mTLS"])
async def tls_target(
    request: pytest.FixtureRequest, fake_llm: FakeLLM, start: StartServer, pki: Pki
) -> tuple[str, Connect]:
    """A TLS or mTLS server and how to connect to it: `make interop`'s (AGENTSTREAM_INTEROP_TLS_TARGET or
    _MTLS_TARGET, CA in AGENTSTREAM_INTEROP_CA, client certificate in _CERT and _KEY), else our own."""
    mtls = request.param == "mTLS"
    shared = os.environ.get("AGENTSTREAM_INTEROP_MTLS_TARGET" if mtls else "AGENTSTREAM_INTEROP_TLS_TARGET")
    if shared:
        address = shared
        ca, cert, key = (Path(os.environ[f"AGENTSTREAM_INTEROP_{name}"]) for name in ("CA", "CERT", "KEY"))
    else:
        fake_llm.responder = default_responder
        server = await start(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca if mtls else None)
        address = f"127.0.0.1:{server.port}"
        ca, cert, key = pki.ca, pki.client_cert, pki.client_key

    def connect(to: str) -> Client:
        return Client(to, root_ca=ca, client_cert=cert if mtls else None, client_key=key if mtls else None)

    return address, connect


@pytest.mark.parametrize("name", TLS_SCENARIOS)
async def test_scenario_over_tls(name: str, tls_target: tuple[str, Connect]) -> None:
    await run_scenario(SCENARIOS[name], *tls_target)


async def run_scenario(scenario: dict[str, Any], target: str, connect: Connect) -> None:
    """Run one scenario against target and check what it streams (or the error it fails with)."""
    expect = scenario["expect"]
    if "resume" in scenario:
        await run_resume_scenario(scenario, target, connect)
        return
    if "terminals" in scenario:
        check_terminal_mapping(scenario)
        return
    if "approval" in scenario:
        await run_approval_scenario(scenario, target, connect)
        return
    if "session" in scenario:
        async with connect(target) as client:
            await run_session_scenario(scenario, client)
        return
    async with connect(target) as client:
        stream = client.streaming_run(
            scenario["input"], agent=scenario.get("agent") or None, streaming_mode=mode_of(scenario)
        )
        if "error" in expect:
            with pytest.raises(AgentStreamError) as caught:
                [m async for m in stream]
            error = caught.value
            assert (error.code.name, error.reason) == (expect["error"]["code"], expect["error"]["reason"])
            if "field" in expect["error"]:
                assert expect["error"]["field"] in [field for field, _ in error.field_violations]
            return
        if "cancel_after_chunks" in scenario:
            chunks, run_id = 0, ""
            async for message in stream:
                run_id = message.run_id
                chunks += isinstance(message, ChunkMessage)
                if chunks == scenario["cancel_after_chunks"]:
                    break
            await stream.aclose()
            async with asyncio.timeout(5):
                while (info := await client.get_run(run_id)).status == TaskStatus.RUNNING:
                    await asyncio.sleep(0.02)
            assert info.status.name == expect["terminal"]["status"]
            return
        messages = [m async for m in stream]
    check_stream(messages, expect)


class CuttingProxy:
    """A TCP proxy to the server whose cut() drops every connection it carries (it keeps accepting new ones)."""

    def __init__(self, upstream: str) -> None:
        self.host, port = upstream.rsplit(":", 1)
        self.port = int(port)
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        self.cut()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.transport.abort()

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()  # a reset, not a graceful close
        self._writers.clear()


async def run_resume_scenario(scenario: dict[str, Any], target: str, connect: Connect) -> None:
    """Subscribe with resume through a proxy, cut it mid-run: every event exactly once."""
    expect, cut_after = scenario["expect"], scenario["resume"]["cut_after_events"]
    proxy = CuttingProxy(target)
    async with connect(target) as direct, proxy as proxied_target, connect(proxied_target) as proxied:
        run_id = await direct.start_run(scenario["input"])
        messages: list[Any] = []
        async with asyncio.timeout(30):
            async for message in proxied.subscribe_run(run_id, streaming_mode=mode_of(scenario), resume=True):
                messages.append(message)
                if len(messages) == cut_after:
                    proxy.cut()
                    assert (await direct.get_run(run_id)).status == TaskStatus.RUNNING, "the run ended before the cut"
        assert proxy.connections >= 2, "the SDK did not re-subscribe"
        seqs = [m.seq for m in messages]
        assert seqs == list(range(1, len(seqs) + 1)), f"duplicate or gap: {seqs}"
        assert sum(isinstance(m, ChunkMessage) for m in messages) == expect["chunks"]
        assert (await direct.get_run(run_id)).last_seq == seqs[-1]
    check_stream(messages, expect)


def check_terminal_mapping(scenario: dict[str, Any]) -> None:
    """Each terminal message of the scenario decodes and maps to the typed error of its reason."""
    expect = scenario["expect"]
    for raw in scenario["terminals"]:
        message = from_proto(json_format.ParseDict(raw, pb.Message()))
        assert isinstance(message, TaskMessage) and message.is_terminal
        assert message.payload.status.name == expect["terminal"]["status"]
        assert message.payload.success == expect["terminal"]["success"]
        error = error_for_task(message.payload)
        assert type(error) is ERRORS_BY_REASON[expect["error"]["reason"]]
        assert (error.code.name, error.reason) == (expect["error"]["code"], expect["error"]["reason"])


async def run_session_scenario(scenario: dict[str, Any], client: Client) -> None:
    """A conversation across runs, then GetSession, a busy session, DeleteSession and an unknown session."""
    steps, expect = scenario["session"], scenario["expect"]["session"]
    session_id = f"scenario-{uuid.uuid4().hex}"
    for text, answer in zip(steps["runs"], expect["answers"], strict=True):
        messages = [m async for m in client.streaming_run(text, session_id=session_id)]
        assert messages[-1].payload.answer == answer
        assert {m.session_id for m in messages} == {session_id}
    session = await client.get_session(session_id)
    assert [[t.role, t.content] for t in session.turns] == expect["turns"]
    assert (session.session_id, len(session.run_ids), session.live_run_id) == (session_id, len(steps["runs"]), "")
    live = await client.start_run(steps["busy_input"], session_id=session_id)
    for call in (
        lambda: anext(aiter(client.streaming_run("again", session_id=session_id))),
        lambda: client.delete_session(session_id),
    ):
        with pytest.raises(AgentStreamError) as caught:
            await call()
        check_error(caught.value, expect["busy"])
        assert caught.value.metadata["run_id"] == live
    await client.cancel_run(live)
    assert await client.delete_session(session_id) == expect["deleted_turns"]
    for after in (client.get_session, client.delete_session):
        with pytest.raises(AgentStreamError) as caught:
            await after(session_id)
        check_error(caught.value, expect["unknown"])
