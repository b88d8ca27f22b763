"""The LLM client's HTTP transport (runtime/upstream.py on runtime/netstream.py): many streams over small
pools, connection reuse, backpressure, stalls and dead connections; on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
import ssl

import httpcore2
import httpx2
import pytest

from agentstream_server.errors import LLMUpstreamError
from agentstream_server.runtime import upstream
from agentstream_server.runtime.llm import OpenAIChatModel, make_openai_client
from agentstream_server.runtime.model import TextDelta
from agentstream_server.runtime.netstream import BUFFER_HIGH_BYTES, AsyncioBackend
from tests.support.certs import Pki
from tests.support.fakellm import FakeLLM, Stall, Text

USER = [{"role": "user", "content": "hi"}]


async def text_of(model: OpenAIChatModel) -> str:
    return "".join([d.content async for d in model.stream(USER, []) if isinstance(d, TextDelta)])


async def test_more_concurrent_streams_than_one_pool_holds_all_arrive_whole_and_reuse_connections(
    fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream, "SHARD_CONNECTIONS", 4)  # 24 streams over 6 pools
    tokens = [f"t{i} " for i in range(20)]
    fake_llm.responder = lambda body: Text(tokens, delay_s=0.005)
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=5, max_retries=0, max_connections=24)
    model = OpenAIChatModel(client, "m")
    for _ in range(2):
        assert await asyncio.gather(*(text_of(model) for _ in range(24))) == ["".join(tokens)] * 24
    assert fake_llm.connections_accepted == 24  # the second round ran on the first round's connections
    await client.close()


async def test_streams_beyond_max_connections_wait_for_a_connection_then_run(
    fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream, "SHARD_CONNECTIONS", 2)
    fake_llm.responder = lambda body: Text(["a", "b"], delay_s=0.01)
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=5, max_retries=0, max_connections=4)
    model = OpenAIChatModel(client, "m")
    assert await asyncio.gather(*(text_of(model) for _ in range(12))) == ["ab"] * 12
    assert fake_llm.connections_accepted <= 4
    assert await asyncio.gather(*(text_of(model) for _ in range(4))) == ["ab"] * 4
    assert fake_llm.connections_accepted <= 4
    await client.close()


async def test_a_stall_after_tokens_is_detected_by_the_read_watchdog(fake_llm: FakeLLM) -> None:
    fake_llm.script(Stall(["x", "y"]))
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=0.3, max_retries=0)
    deltas = []
    with pytest.raises(LLMUpstreamError, match="timed out"):
        async for delta in OpenAIChatModel(client, "m").stream(USER, []):
            deltas.append(delta)
    assert [d for d in deltas if isinstance(d, TextDelta)] == [TextDelta("x"), TextDelta("y")]
    await client.close()
    assert await fake_llm.wait_closed(1.0)


async def test_an_idle_connection_the_server_closed_is_not_reused(fake_llm: FakeLLM) -> None:
    fake_llm.script(Text(["a"]), Text(["b"]))
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=5, max_retries=0)
    model = OpenAIChatModel(client, "m")
    assert await text_of(model) == "a"
    await fake_llm.__aexit__(None, None, None)  # closes the kept-alive connection from the server's side
    await fake_llm.__aenter__()
    await asyncio.sleep(0.05)
    assert await text_of(model) == "b"
    await client.close()


async def _serve_bytes(size: int) -> tuple[asyncio.Server, asyncio.Event]:
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"x" * size)
        await writer.drain()
        writer.close()
        done.set()

    return await asyncio.start_server(handle, "127.0.0.1", 0), done


async def test_a_reader_that_falls_behind_holds_the_socket_back_and_loses_nothing() -> None:
    size = 256 * BUFFER_HIGH_BYTES  # 64 MiB: more than the kernel buffers of both ends hold
    server, done = await _serve_bytes(size)
    port = server.sockets[0].getsockname()[1]
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
    await asyncio.sleep(0.3)  # the server writes as fast as it can; we read nothing
    assert not done.is_set()  # it is held back by the socket, not buffered here without bound
    received = 0
    while chunk := await stream.read(65536, timeout=5):
        received += len(chunk)
    assert received == size
    await stream.aclose()
    server.close()


async def test_reading_a_silent_connection_times_out_and_a_closed_one_reads_empty() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
    with pytest.raises(httpcore2.ReadTimeout):
        await stream.read(100, timeout=0.2)
    await stream.write(b"ping", timeout=1)
    await stream.aclose()
    server.close()
    with pytest.raises(httpcore2.ConnectError):
        await AsyncioBackend().connect_tcp("127.0.0.1", 1, timeout=5)


async def test_transport_errors_reach_httpx_callers_as_httpx_errors() -> None:
    transport = upstream.ShardedTransport(max_connections=4)
    async with httpx2.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx2.ConnectError):
            await client.get("http://127.0.0.1:1/")
        with pytest.raises(httpx2.UnsupportedProtocol):
            await client.get("ftp://127.0.0.1:1/")


async def test_https_endpoints_work_over_tls_and_keep_their_connection(pki: Pki) -> None:
    accepted = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"5\r\nhello\r\n0\r\n\r\n")
            await writer.drain()

    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(pki.server_cert, pki.server_key)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    client_context = ssl.create_default_context(cafile=str(pki.ca))
    transport = upstream.ShardedTransport(max_connections=2, ssl_context=client_context)
    async with httpx2.AsyncClient(transport=transport) as client:
        for _ in range(3):
            response = await client.get(f"https://localhost:{port}/")
            assert (response.status_code, response.text) == (200, "hello")
    assert accepted == 1
    server.close()
