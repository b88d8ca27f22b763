"""Transport security: TLS and mTLS servers, the SDK's TLS options, refusals, and start-up errors."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from agentstream import ChunkMessage, Client, Runners, StreamingMode, SyncClient, TaskMessage, TransportError
from agentstream.tls import channel_credentials
from agentstream_server.config import Settings
from agentstream_server.transport.server import RunningServer
from agentstream_server.transport.tls import TLSConfigError, server_credentials
from tests.conftest import StartServer
from tests.service.test_server_process import ROOT, spawn_server
from tests.support.certs import Pki
from tests.support.fakellm import FakeLLM, default_responder

REFUSAL_TIMEOUT_S = 10.0
"""A refused handshake must fail the call promptly, not hang until some deadline."""


@pytest.fixture
async def tls_server(start: StartServer, pki: Pki, fake_llm: FakeLLM) -> RunningServer:
    fake_llm.responder = default_responder
    return await start(tls_cert=pki.server_cert, tls_key=pki.server_key)


@pytest.fixture
async def mtls_server(start: StartServer, pki: Pki, fake_llm: FakeLLM) -> RunningServer:
    fake_llm.responder = default_responder
    return await start(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca)


def target(server: RunningServer) -> str:
    return f"127.0.0.1:{server.port}"


async def answer(client: Client) -> str:
    """Stream one run and return its terminal answer."""
    last = None
    async for message in client.streaming_run("hello over tls", streaming_mode=StreamingMode.CHUNK):
        last = message
    assert isinstance(last, TaskMessage) and last.payload.success
    return last.payload.answer


async def refusal(client: Client) -> TransportError:
    """The TransportError a streaming run fails with on this client (it must fail, and promptly)."""
    async with client, asyncio.timeout(REFUSAL_TIMEOUT_S):
        with pytest.raises(TransportError) as caught:
            await answer(client)
    return caught.value


async def test_tls_streams_to_a_client_trusting_the_servers_ca(tls_server: RunningServer, pki: Pki) -> None:
    async with Client(target(tls_server), root_ca=pki.ca) as client:
        assert await answer(client) == "You said: hello over tls"


async def test_tls_by_host_name_with_the_ca_given_as_bytes(tls_server: RunningServer, pki: Pki) -> None:
    async with Client(f"localhost:{tls_server.port}", tls=True, root_ca=pki.ca.read_bytes()) as client:
        assert await answer(client) == "You said: hello over tls"


async def test_sync_client_over_tls(tls_server: RunningServer, pki: Pki) -> None:
    def run() -> str:
        with SyncClient(target(tls_server), root_ca=str(pki.ca)) as client:
            messages = list(client.streaming_run("sync hello", streaming_mode=StreamingMode.CHUNK))
        assert isinstance(messages[-1], TaskMessage)
        return messages[-1].payload.answer

    assert await asyncio.to_thread(run) == "You said: sync hello"


async def test_mtls_streams_to_a_client_with_a_certificate_from_the_ca(mtls_server: RunningServer, pki: Pki) -> None:
    async with Client(
        target(mtls_server), root_ca=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key
    ) as client:
        assert await answer(client) == "You said: hello over tls"


async def test_mtls_through_the_seed_runners_api(mtls_server: RunningServer, pki: Pki) -> None:
    chunks = []
    async for message in Runners.streaming_run(
        "runners hello",
        target=target(mtls_server),
        root_ca=pki.ca,
        client_cert=pki.client_cert,
        client_key=pki.client_key,
    ):
        if isinstance(message, ChunkMessage):
            chunks.append(message.payload.content)
    assert "".join(chunks) == "You said: runners hello"


async def test_mtls_with_ready_made_grpc_credentials(mtls_server: RunningServer, pki: Pki) -> None:
    credentials = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(), pki.client_key.read_bytes(), pki.client_cert.read_bytes()
    )
    async with Client(target(mtls_server), credentials=credentials) as client:
        assert await answer(client) == "You said: hello over tls"


async def test_mtls_refuses_a_client_without_a_certificate(mtls_server: RunningServer, pki: Pki) -> None:
    error = await refusal(Client(target(mtls_server), root_ca=pki.ca))
    assert error.code == grpc.StatusCode.UNAVAILABLE


async def test_mtls_refuses_a_client_certificate_from_another_ca(mtls_server: RunningServer, pki: Pki) -> None:
    client = Client(
        target(mtls_server), root_ca=pki.ca, client_cert=pki.other_client_cert, client_key=pki.other_client_key
    )
    error = await refusal(client)
    assert error.code == grpc.StatusCode.UNAVAILABLE


async def test_a_plaintext_client_to_a_tls_server_fails_unavailable(tls_server: RunningServer) -> None:
    error = await refusal(Client(target(tls_server)))
    assert error.code == grpc.StatusCode.UNAVAILABLE


async def test_a_client_that_does_not_trust_the_servers_ca_fails_with_a_handshake_error(
    tls_server: RunningServer, pki: Pki
) -> None:
    error = await refusal(Client(target(tls_server), root_ca=pki.other_ca))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert "handshake" in error.message.lower() or "certificate" in error.message.lower()


async def test_a_tls_client_to_a_plaintext_server_fails_unavailable(start: StartServer, pki: Pki) -> None:
    server = await start()
    error = await refusal(Client(target(server), root_ca=pki.ca))
    assert error.code == grpc.StatusCode.UNAVAILABLE


async def test_the_start_log_says_whether_tls_or_mtls_is_on(
    start: StartServer, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="agentstream.server"):
        await start()
        await start(tls_cert=pki.server_cert, tls_key=pki.server_key)
        await start(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("transport: ")]
    assert [line.split(" (")[0] for line in lines] == [
        "transport: plaintext",
        "transport: TLS on",
        "transport: mTLS on",
    ]
    assert str(pki.ca) in lines[2] and "client certificates required" in lines[2]


# Start-up errors: each names the file at fault and never shows what is in it.


def settings_with(pki: Pki, **overrides: Path | None) -> Settings:
    return replace(Settings(tls_cert=pki.server_cert, tls_key=pki.server_key), **overrides)


def start_error(settings: Settings) -> str:
    with pytest.raises(TLSConfigError) as caught:
        server_credentials(settings)
    return str(caught.value)


def assert_no_key_material(message: str, pki: Pki) -> None:
    for path in (pki.server_key, pki.client_key, pki.server_cert):
        body = [line for line in path.read_text().splitlines() if not line.startswith("-----")]
        assert not any(line[:20] in message for line in body)
    assert "BEGIN" not in message


def test_a_missing_certificate_is_named(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    message = start_error(settings_with(pki, tls_cert=missing))
    assert str(missing) in message and "No such file" in message


def test_an_unreadable_key_is_named(pki: Pki, tmp_path: Path) -> None:
    message = start_error(settings_with(pki, tls_key=tmp_path))  # a directory: not readable as a file
    assert str(tmp_path) in message and "TLS key" in message


def test_a_key_that_does_not_match_the_certificate_names_both_files(pki: Pki) -> None:
    message = start_error(settings_with(pki, tls_key=pki.client_key))
    assert message == f"the TLS key {pki.client_key} does not match the TLS certificate {pki.server_cert}"
    assert_no_key_material(message, pki)


def test_a_key_given_as_the_certificate_is_refused_without_showing_it(pki: Pki) -> None:
    message = start_error(settings_with(pki, tls_cert=pki.server_key))
    assert str(pki.server_key) in message and "not a PEM file holding a certificate" in message
    assert_no_key_material(message, pki)


def test_a_client_ca_that_is_not_a_certificate_is_named(pki: Pki) -> None:
    message = start_error(settings_with(pki, tls_client_ca=pki.client_key))
    assert str(pki.client_key) in message and "client CA" in message
    assert_no_key_material(message, pki)


def test_a_corrupt_certificate_is_named(pki: Pki, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pem"
    corrupt.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    message = start_error(settings_with(pki, tls_cert=corrupt))
    assert str(corrupt) in message


@pytest.mark.parametrize(
    ("cert", "key", "ca", "expected"),
    [
        (True, False, False, "only --tls-cert is set"),
        (False, True, False, "only --tls-key is set"),
        (False, False, True, "--tls-client-ca (AGENTSTREAM_TLS_CLIENT_CA) needs --tls-cert and --tls-key"),
    ],
)
def test_incomplete_tls_settings_are_refused(pki: Pki, cert: bool, key: bool, ca: bool, expected: str) -> None:
    settings = Settings(
        tls_cert=pki.server_cert if cert else None,
        tls_key=pki.server_key if key else None,
        tls_client_ca=pki.ca if ca else None,
    )
    assert expected in start_error(settings)


def test_no_tls_settings_means_plaintext() -> None:
    assert server_credentials(Settings()) is None


def test_tls_settings_come_from_the_environment(pki: Pki) -> None:
    settings = Settings.from_env(
        {
            "AGENTSTREAM_TLS_CERT": str(pki.server_cert),
            "AGENTSTREAM_TLS_KEY": str(pki.server_key),
            "AGENTSTREAM_TLS_CLIENT_CA": str(pki.ca),
        }
    )
    assert (settings.tls_cert, settings.tls_key, settings.tls_client_ca) == (pki.server_cert, pki.server_key, pki.ca)
    assert server_credentials(settings) is not None


async def test_serve_with_a_mismatched_key_exits_one_naming_the_files(pki: Pki) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentstream_server",
        "serve",
        "--port",
        "0",
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.client_key),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode == 1
    text = out.decode()
    assert f"cannot start: the TLS key {pki.client_key} does not match the TLS certificate {pki.server_cert}" in text
    assert_no_key_material(text, pki)


async def test_serve_with_mtls_flags_logs_it_and_serves_a_client_with_a_certificate(
    fake_llm: FakeLLM, pki: Pki
) -> None:
    fake_llm.responder = default_responder
    proc = await spawn_server(
        fake_llm, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), "--tls-client-ca", str(pki.ca)
    )
    try:
        async with Client(
            proc.target, root_ca=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key
        ) as client:
            assert await answer(client) == "You said: hello over tls"
    finally:
        proc.process.kill()
        await proc.process.wait()


# The SDK's options.


def test_plaintext_unless_asked() -> None:
    assert channel_credentials() is None


def test_a_client_certificate_needs_its_key(pki: Pki) -> None:
    with pytest.raises(ValueError, match="client_cert= and client_key= go together"):
        channel_credentials(root_ca=pki.ca, client_cert=pki.client_cert)


def test_ready_made_credentials_exclude_the_other_options(pki: Pki) -> None:
    with pytest.raises(ValueError, match="credentials= already says how to connect"):
        channel_credentials(tls=True, credentials=grpc.ssl_channel_credentials())


def test_an_unreadable_ca_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot read root_ca file .*nope\.pem: No such file"):
        Client("127.0.0.1:1", root_ca=tmp_path / "nope.pem")
