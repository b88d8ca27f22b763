"""The authorization header fuzzed against a live server: anything but a valid token is UNAUTHENTICATED, with
details, never UNKNOWN or INTERNAL, and no part of it comes back in the error or reaches a log line."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jwt.utils import base64url_decode

from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.errors import ERROR_DOMAIN
from agentstream_server.transport.server import RunningServer
from tests.conftest import StartServer
from tests.service.helpers import error_details
from tests.support.auth import AUDIENCE, ISSUER, SigningKey, new_token, write_jwks_file, write_tokens_file

TOKEN = new_token("acme")
KEY = SigningKey("key-1")
JWT = KEY.sign(tenant="acme")
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
B64URL = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def mutated(value: str) -> st.SearchStrategy[str]:
    """A credential with one character changed, dropped or added, or cut short."""
    index = st.integers(min_value=0, max_value=len(value) - 1)
    return st.one_of(
        st.tuples(index, B64URL).map(lambda p: value[: p[0]] + p[1] + value[p[0] + 1 :]).filter(lambda v: v != value),
        index.map(lambda i: value[:i] + value[i + 1 :]),
        st.tuples(index, B64URL).map(lambda p: value[: p[0]] + p[1] + value[p[0] :]),
        index.map(lambda i: value[:i]),
    )


def same_jwt(value: str) -> bool:
    """Whether a mutated JWT still decodes to the original (a changed spare bit in a segment's last character)."""
    try:
        return [base64url_decode(part) for part in value.split(".")] == [base64url_decode(p) for p in JWT.split(".")]
    except Exception:
        return False


segments = st.text(B64URL, min_size=1, max_size=40)
values = st.one_of(
    st.text(PRINTABLE, max_size=60),
    st.text(PRINTABLE, max_size=60).map(lambda v: "Bearer " + v),
    st.tuples(st.sampled_from(["Bearer ", "bearer ", "Basic ", "Bearer  ", "Token ", ""]), mutated(TOKEN.value)).map(
        "".join
    ),
    mutated(JWT).filter(lambda v: not same_jwt(v)).map(lambda v: "Bearer " + v),
    st.tuples(segments, segments, segments).map(lambda p: "Bearer " + ".".join(p)),
    st.just("Bearer " + TOKEN.sha256),
    st.just(TOKEN.value),
    st.just(JWT),
)


@pytest.fixture
async def server(start: StartServer, tmp_path: Path) -> RunningServer:
    return await start(
        auth_tokens_file=write_tokens_file(tmp_path / "tokens.toml", [TOKEN]),
        auth_jwks_file=write_jwks_file(tmp_path / "jwks.json", [KEY]),
        auth_jwt_issuer=ISSUER,
        auth_jwt_audience=AUDIENCE,
    )


@pytest.fixture
async def stub(server: RunningServer) -> AsyncIterator[rpb_grpc.RunnerServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield rpb_grpc.RunnerServiceStub(channel)


def leaked(secret: str, texts: list[str]) -> bool:
    """Whether a telling part (12+ characters) of ``secret`` appears in any of ``texts``."""
    if len(secret) < 12:
        return False
    pieces = {secret, secret[:12], secret[-12:], secret[len(secret) // 2 - 6 : len(secret) // 2 + 6]}
    return any(piece in text for piece in pieces for text in texts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values, streaming=st.booleans())
@example(value="agentstream.", streaming=False)  # part of the ErrorInfo domain every error carries: not an echo
async def test_every_invalid_authorization_is_unauthenticated_with_details_and_no_echo(
    stub: rpb_grpc.RunnerServiceStub, caplog: pytest.LogCaptureFixture, value: str, streaming: bool
) -> None:
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    metadata = (("authorization", value),)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if streaming:
            [m async for m in stub.StreamingRun(rpb.StreamingRunRequest(input="hi"), metadata=metadata, timeout=10)]
        else:
            await stub.StartRun(rpb.StartRunRequest(input="hi"), metadata=metadata, timeout=10)
    error = caught.value
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, f"{error.code()}: {error.details()}"
    info, _ = error_details(error)
    assert (info.reason, info.domain) == ("UNAUTHENTICATED", ERROR_DOMAIN)
    assert error.details()
    texts = [error.details() or "", str(error.trailing_metadata()), *(r.getMessage() for r in caplog.records)]
    # The ErrorInfo domain is in every error: a value that happens to be part of it ('agentstream.') is no echo.
    texts = [text.replace(ERROR_DOMAIN, "\0") for text in texts]
    token_part = value.partition(" ")[2].lstrip(" ") or value
    for secret in (token_part, TOKEN.value, TOKEN.sha256, JWT):
        assert not leaked(secret, texts), "a credential came back in the error or reached a log line"
