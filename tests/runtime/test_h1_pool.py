"""The LLM client's connections (runtime/h1.py on h1pool.py): keep-alive reuse, the bound on connections, the
pool timeout, expiry, connect failures, TLS and cancellation; on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
import socket
import ssl

import httpx2
import pytest

from agentstream_server.errors import LLMUpstreamError
from agentstream_server.runtime.h1 import H1Transport
from agentstream_server.runtime.llm import OpenAIChatModel, make_openai_client
from agentstream_server.runtime.model import TextDelta
from tests.support.certs import Pki
from tests.support.fakellm import FakeLLM, Stall, Text

USER = [{"role": "user", "content": "hi"}]


async def text_of(model: OpenAIChatModel) -> str:
    return "".join([d.content async for d in model.stream(USER, []) if isinstance(d, TextDelta)])


def pool_of(model: OpenAIChatModel) -> H1Transport:
    transport = model._client._client._transport  # the openai client's httpx2 client's transport
    assert isinstance(transport, H1Transport)
    return transport


async def test_sequential_calls_reuse_one_kept_alive_connection(fake_llm: FakeLLM) -> None:
    fake_llm.responder = lambda body: Text(["a", "b"])
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=5, max_retries=0)
    model = OpenAIChatModel(client, "m")
    assert [await text_of(model) for _ in range(5)] == ["ab"] * 5
    assert fake_llm.connections_accepted == 1
    assert (pool_of(model).pool.connections, pool_of(model).pool.idle) == (1, 1)
    await client.close()
    assert await fake_llm.wait_closed(1.0)


async def test_concurrent_streams_all_arrive_whole_and_the_second_round_reuses_the_first_rounds_connections(
    fake_llm: FakeLLM,
) -> None:
    tokens = [f"t{i} " for i in range(20)]
    fake_llm.responder = lambda body: Text(tokens, delay_s=0.005)
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=5, max_retries=0, max_connections=24)
    model = OpenAIChatModel(client, "m")
    for _ in range(2):
        assert await asyncio.gather(*(text_of(model) for _ in range(24))) == ["".join(tokens)] * 24
    assert fake_llm.connections_accepted == 24
    await client.close()


async def test_streams_beyond_max_connections_wait_for_a_connection_then_run(fake_llm: FakeLLM) -> None:
    fake_llm.responder = lambda body: Text(["a", "b"], delay_s=0.01)
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=5, max_retries=0, max_connections=4)
    model = OpenAIChatModel(client, "m")
    assert await asyncio.gather(*(text_of(model) for _ in range(12))) == ["ab"] * 12
    assert fake_llm.connections_accepted <= 4
    assert await asyncio.gather(*(text_of(model) for _ in range(4))) == ["ab"] * 4
    assert fake_llm.connections_accepted <= 4
    await client.close()


async def test_a_request_that_waits_past_the_pool_timeout_fails_with_pool_timeout(fake_llm: FakeLLM) -> None:
    fake_llm.script(Stall(["x"]))
    transport = H1Transport(max_connections=1)
    async with httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(5, pool=0.2)) as client:
        url = f"{fake_llm.base_url}/chat/completions"
        async with client.stream("POST", url, json={"stream": True}) as held:
            assert held.status_code == 200
            with pytest.raises(httpx2.PoolTimeout):
                await client.post(url, json={})
        assert (transport.pool.connections, transport.pool.idle) == (0, 0)  # the stalled one closed early


async def test_cancelling_a_hundred_calls_mid_body_closes_their_connections_and_frees_every_slot(
    fake_llm: FakeLLM,
) -> None:
    fake_llm.responder = lambda body: Stall(["x"])
    client = make_openai_client(fake_llm.base_url, "k", timeout_s=30, max_retries=0, max_connections=40)
    model = OpenAIChatModel(client, "m")
    started = asyncio.Event()
    count = 0

    async def call() -> None:
        nonlocal count
        async for _ in model.stream(USER, []):
            count += 1
            if count == 40:
                started.set()

    tasks = [asyncio.create_task(call()) for _ in range(100)]  # 40 streaming, 60 waiting for a connection
    await asyncio.wait_for(started.wait(), 10)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (pool_of(model).pool.connections, pool_of(model).pool.idle) == (0, 0)
    assert await fake_llm.wait_closed(2.0)
    fake_llm.responder = lambda body: Text(["ok"])
    assert await text_of(model) == "ok"  # the pool works after it
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
    assert pool_of(model).pool.idle == 0  # it left the pool when its socket closed
    assert await text_of(model) == "b"
    await client.close()


async def test_an_idle_connection_past_keepalive_expiry_is_closed_and_a_new_one_opened(fake_llm: FakeLLM) -> None:
    fake_llm.responder = lambda body: Text(["a"])
    transport = H1Transport(max_connections=4, keepalive_expiry=0.05)
    async with httpx2.AsyncClient(transport=transport, timeout=5) as client:
        url = f"{fake_llm.base_url}/chat/completions"
        for _ in range(2):
            assert (await client.post(url, json={})).status_code == 200
        assert fake_llm.connections_accepted == 1
        await asyncio.sleep(0.1)
        assert (await client.post(url, json={})).status_code == 200
        assert fake_llm.connections_accepted == 2
        assert transport.pool.connections == 1


async def test_a_refused_connection_is_connect_error_and_another_scheme_unsupported() -> None:
    async with httpx2.AsyncClient(transport=H1Transport(max_connections=4)) as client:
        with pytest.raises(httpx2.ConnectError):
            await client.get("http://127.0.0.1:1/")
        with pytest.raises(httpx2.UnsupportedProtocol):
            await client.get("ftp://127.0.0.1:1/")


async def test_a_listener_that_never_accepts_is_connect_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue: further handshakes are not answered
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    await asyncio.sleep(0.1)
    transport = H1Transport(max_connections=4)
    async with httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(5, connect=0.3)) as client:
        with pytest.raises(httpx2.ConnectTimeout):
            await client.get(f"http://127.0.0.1:{port}/")
    assert transport.pool.connections == 0
    for sock in [*fillers, listener]:
        sock.close()


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
    transport = H1Transport(max_connections=2, ssl_context=client_context)
    async with httpx2.AsyncClient(transport=transport) as client:
        for _ in range(3):
            response = await client.get(f"https://localhost:{port}/")
            assert (response.status_code, response.text) == (200, "hello")
        with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://127.0.0.1:{port}/", extensions={"sni_hostname": "not-the-server"})
    assert accepted == 1  # the failed handshake never reached the handler
    server.close()
