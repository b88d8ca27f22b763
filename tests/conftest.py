"""Shared fixtures: a scripted OpenAI-compatible LLM server and real agentstream servers on 127.0.0.1:0."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.config import Settings
from agentstream_server.transport.server import RunningServer, start_server
from tests.support.certs import Pki, write_pki
from tests.support.fakellm import FakeLLM
from tests.support.redis_server import redis_server

StartServer = Callable[..., Awaitable[RunningServer]]

AGENTS_TOML = """
default = "assistant"

[agents.assistant]
instructions = "You are a helpful assistant."
tools = ["calculator", "current_time"]

[agents.team]
instructions = "You ask the assistant, then answer."
agent_tools = ["assistant"]

[agents.careful]
instructions = "You compute, once a person approves."
tools = ["calculator"]
approval = ["calculator"]

[agents.tester]
instructions = "You test things."
tools = ["calculator", "tests.support.tools:explode", "tests.support.tools:wait_forever"]
max_steps = 3
"""


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server for the whole session (each test using it starts from an empty database)."""
    with redis_server() as server:
        yield server.url


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> str:
    """The run store a test runs against: the behaviour suite runs on both backends."""
    if request.param == "memory":
        return "memory"
    url: str = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA with server and client certificates (and a client of another CA), for the TLS tests."""
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    """A scripted OpenAI-compatible HTTP server on 127.0.0.1:0."""
    async with FakeLLM() as llm:
        yield llm


@pytest.fixture
def agents_file(tmp_path: Path) -> Path:
    """An agents TOML file: the default assistant, 'team', 'careful' (calculator behind approval), 'tester'."""
    path = tmp_path / "agents.toml"
    path.write_text(AGENTS_TOML)
    return path


@pytest.fixture
async def start(fake_llm: FakeLLM, agents_file: Path) -> AsyncIterator[StartServer]:
    """Starts agentstream servers wired to the fake LLM; each is shut down after the test."""
    servers: list[RunningServer] = []

    async def _start(**overrides: Any) -> RunningServer:
        settings = Settings(
            port=0,
            openai_base_url=fake_llm.base_url,
            openai_api_key="test-key",
            agents_file=agents_file,
            llm_timeout_s=10.0,
        ).with_overrides(**overrides)
        server = await start_server(settings)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        await server.shutdown(0)


@pytest.fixture
async def server(start: StartServer, store: str) -> RunningServer:
    """One agentstream server wired to the fake LLM, on each run store in turn (memory, redis)."""
    return await start(store=store)


@pytest.fixture
async def stub(server: RunningServer) -> AsyncIterator[rpb_grpc.RunnerServiceStub]:
    """A raw generated stub connected to the server."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield rpb_grpc.RunnerServiceStub(channel)
