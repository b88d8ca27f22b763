"""Authentication against a real server on 127.0.0.1:0: tokens file, JWTs, roles, open services, no leaks."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agentstream import Client, PermissionDenied, Runners, RunNotFound, SyncClient, Task, Unauthenticated
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.config import Settings
from agentstream_server.errors import ERROR_DOMAIN
from agentstream_server.transport.auth import open_auth
from agentstream_server.transport.server import RunningServer
from tests.conftest import StartServer
from tests.service.helpers import error_details, request, terminal_of
from tests.support.auth import AUDIENCE, ISSUER, SigningKey, Token, new_token, write_jwks_file, write_tokens_file
from tests.support.fakellm import FakeLLM, default_responder

ALL = new_token("acme")
READER = new_token("acme", "reader")
RUNNER = new_token("acme", "runner")
ADMIN = new_token("acme", "admin")
OTHER = new_token("globex")
NOBODY = new_token("acme", "auditor-typo-never-loaded")  # not in the file
KEY = SigningKey("key-1")
RSA_KEY = SigningKey("key-2", "RSA")  # its JWK has no "alg": RS256..RS512 and PS256..PS512 all verify
STRANGER = SigningKey("key-1")  # same kid, another key: its signatures are bad


@pytest.fixture
def auth_files(tmp_path: Path) -> tuple[Path, Path]:
    tokens = write_tokens_file(tmp_path / "tokens.toml", [ALL, READER, RUNNER, ADMIN, OTHER])
    return tokens, write_jwks_file(tmp_path / "jwks.json", [KEY, RSA_KEY])


@pytest.fixture
async def server(start: StartServer, auth_files: tuple[Path, Path], fake_llm: FakeLLM, store: str) -> RunningServer:
    """An authenticating server on each run store in turn (memory, redis)."""
    fake_llm.responder = default_responder
    tokens, jwks = auth_files
    return await start(
        store=store, auth_tokens_file=tokens, auth_jwks_file=jwks, auth_jwt_issuer=ISSUER, auth_jwt_audience=AUDIENCE
    )


@pytest.fixture
async def stub(server: RunningServer) -> AsyncIterator[rpb_grpc.RunnerServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield rpb_grpc.RunnerServiceStub(channel)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def call(stub: rpb_grpc.RunnerServiceStub, method: str, metadata: Any = ()) -> Any:
    """Make one call of ``method`` (the streaming ones read to the end); returns the reply or raises."""
    if method == "StreamingRun":
        return [m async for m in stub.StreamingRun(request("hi"), metadata=metadata)]
    if method == "SubscribeRun":
        return [m async for m in stub.SubscribeRun(rpb.SubscribeRunRequest(run_id="r-1"), metadata=metadata)]
    if method == "StartRun":
        return await stub.StartRun(rpb.StartRunRequest(input="hi"), metadata=metadata)
    if method == "CancelRun":
        return await stub.CancelRun(rpb.CancelRunRequest(run_id="r-1"), metadata=metadata)
    return await stub.GetRun(rpb.GetRunRequest(run_id="r-1"), metadata=metadata)


METHODS = ("StreamingRun", "StartRun", "SubscribeRun", "CancelRun", "GetRun")


async def refused(stub: rpb_grpc.RunnerServiceStub, method: str, metadata: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(stub, method, metadata)
    return caught.value


def assert_unauthenticated(error: grpc.aio.AioRpcError, message: str | None = None) -> None:
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, f"{error.code()}: {error.details()}"
    info, _ = error_details(error)
    assert (info.reason, info.domain) == ("UNAUTHENTICATED", ERROR_DOMAIN)
    if message is not None:
        assert message in (error.details() or ""), error.details()


# ------------------------------------------------------------------------------------------------ tokens file


@pytest.mark.parametrize("method", METHODS)
async def test_every_rpc_without_a_token_is_unauthenticated(stub: rpb_grpc.RunnerServiceStub, method: str) -> None:
    assert_unauthenticated(await refused(stub, method, ()), "missing authorization metadata")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Basic dXNlcjpwYXNz", "must be 'Bearer <token>'"),
        ("Bearer", "malformed bearer token"),
        ("Bearer ", "malformed bearer token"),
        ("Bearer two words", "malformed bearer token"),
        ("Bearer tok%en", "malformed bearer token"),
        (f"Token {ALL.value}", "must be 'Bearer <token>'"),
        ("Bearer " + "a" * 5000, "malformed bearer token"),
        ("Bearer some-unknown-token", "unknown token"),
        (f"Bearer {ALL.sha256}", "unknown token"),  # the hash is not the token
    ],
)
async def test_a_malformed_or_unknown_token_is_unauthenticated(
    stub: rpb_grpc.RunnerServiceStub, value: str, message: str
) -> None:
    assert_unauthenticated(await refused(stub, "GetRun", (("authorization", value),)), message)


async def test_two_authorization_entries_are_refused(stub: rpb_grpc.RunnerServiceStub) -> None:
    error = await refused(stub, "GetRun", (*bearer(ALL.value), *bearer(ADMIN.value)))
    assert_unauthenticated(error, "more than one")


async def test_a_known_token_runs_and_the_scheme_is_case_insensitive(stub: rpb_grpc.RunnerServiceStub) -> None:
    messages = await call(stub, "StreamingRun", bearer(ALL.value))
    assert terminal_of(messages).success
    for scheme in ("bearer", "BEARER"):
        reply = await stub.StartRun(
            rpb.StartRunRequest(input="hi"), metadata=(("authorization", f"{scheme} {ALL.value}"),)
        )
        assert reply.run_id


ROLE_CASES = [
    (READER, {"SubscribeRun", "GetRun"}),
    (RUNNER, set(METHODS)),
    (ADMIN, set(METHODS)),
    (ALL, set(METHODS)),  # no roles listed: every RPC
]


@pytest.mark.parametrize(("token", "allowed"), ROLE_CASES, ids=["reader", "runner", "admin", "no-roles"])
async def test_roles_decide_which_rpcs_a_caller_may_make(
    stub: rpb_grpc.RunnerServiceStub, token: Token, allowed: set[str]
) -> None:
    for method in METHODS:
        try:
            await call(stub, method, bearer(token.value))
        except grpc.aio.AioRpcError as error:
            if method in allowed:  # reached the handler: the run does not exist
                assert error.code() == grpc.StatusCode.NOT_FOUND, f"{method}: {error.code()} {error.details()}"
                continue
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, f"{method}: {error.code()}"
            info, _ = error_details(error)
            assert info.reason == "PERMISSION_DENIED"
            assert dict(info.metadata) == {"method": method, "required_role": "runner"}
            continue
        assert method in allowed, f"{token.roles} called {method}"


async def test_a_run_belongs_to_its_callers_tenant(stub: rpb_grpc.RunnerServiceStub) -> None:
    run_id = (await stub.StartRun(rpb.StartRunRequest(input="hi"), metadata=bearer(RUNNER.value))).run_id
    same_tenant = await stub.GetRun(rpb.GetRunRequest(run_id=run_id), metadata=bearer(READER.value))
    assert same_tenant.run_id == run_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetRun(rpb.GetRunRequest(run_id=run_id), metadata=bearer(OTHER.value))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_and_reflection_stay_open(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name async for r in responses for s in r.list_services_response.service}
    assert "agentstream.v1.RunnerService" in names


async def test_an_unknown_method_is_refused_before_anything_else(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/agentstream.v1.RunnerService/Nope")(b"")
    assert_unauthenticated(caught.value)


# ------------------------------------------------------------------------------------------------ JWTs


async def test_a_valid_jwt_names_the_tenant_and_its_roles(stub: rpb_grpc.RunnerServiceStub) -> None:
    token = KEY.sign(tenant="acme", roles=["runner"])
    run_id = (await stub.StartRun(rpb.StartRunRequest(input="hi"), metadata=bearer(token))).run_id
    assert (await stub.GetRun(rpb.GetRunRequest(run_id=run_id), metadata=bearer(ALL.value))).run_id == run_id
    reader = KEY.sign(tenant="acme", roles=["reader"])
    error = await refused(stub, "StartRun", bearer(reader))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("algorithm", ["RS256", "RS512", "PS256"])
async def test_an_rsa_key_without_alg_verifies_each_rsa_algorithm(
    stub: rpb_grpc.RunnerServiceStub, algorithm: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(stub, "GetRun", bearer(RSA_KEY.sign(tenant="acme", algorithm=algorithm)))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # authenticated: the run does not exist
    forged = SigningKey("key-2", "RSA")  # a fresh key with the kid of the file's RSA key
    assert_unauthenticated(await refused(stub, "GetRun", bearer(forged.sign(tenant="acme"))), "signature")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: KEY.sign(tenant="acme", expires_in=-120), "token expired"),
        (lambda: STRANGER.sign(tenant="acme"), "token signature is invalid"),
        (lambda: KEY.sign(tenant="acme", iss="https://evil.test"), "issuer"),
        (lambda: KEY.sign(tenant="acme", aud="someone-else"), "audience"),
        (lambda: KEY.sign(tenant="acme", exp=None), "exp"),
        (lambda: KEY.sign(tenant="acme", nbf=2**40), "not valid yet"),
        (lambda: KEY.sign(tenant=None), "'tenant' claim"),
        (lambda: KEY.sign(tenant=""), "'tenant' claim"),
        (lambda: KEY.sign(tenant=["acme"]), "'tenant' claim"),
        (lambda: KEY.sign(tenant="acme", roles="admin"), "'roles' claim"),
        (lambda: KEY.sign(tenant="acme", kid="key-9"), "unknown key"),
        (lambda: KEY.sign(tenant="acme", kid=None), "names no key"),
        (lambda: RSA_KEY.sign(tenant="acme", kid="key-1"), "does not match"),
        (lambda: jwt.encode({"tenant": "acme", "exp": 2**40}, "s" * 64, algorithm="HS256"), "not accepted"),
        (lambda: jwt.encode({"tenant": "acme", "exp": 2**40}, None, algorithm="none") + "sig", "not accepted"),
        (lambda: KEY.sign(tenant="acme")[:-4] + "AAAA", "signature"),
        (lambda: f"{b64(json.dumps({'alg': 'ES256', 'kid': 'key-1'}).encode())}.e30.e30", "signature"),
        (lambda: "a.b.c", "malformed token"),
    ],
)
async def test_a_bad_jwt_is_unauthenticated_and_says_why(
    stub: rpb_grpc.RunnerServiceStub, make: Any, message: str
) -> None:
    token = make()
    error = await refused(stub, "GetRun", bearer(token))
    assert_unauthenticated(error, message)
    assert token not in (error.details() or "")


async def test_the_tenant_claim_is_configurable(start: StartServer, auth_files: tuple[Path, Path]) -> None:
    server = await start(auth_jwks_file=auth_files[1], auth_tenant_claim="org")
    async with Client(f"127.0.0.1:{server.port}", token=KEY.sign(org="initech", iss=None, aud=None)) as client:
        with pytest.raises(RunNotFound):
            await client.get_run("r-1")
    async with Client(f"127.0.0.1:{server.port}", token=KEY.sign(tenant="initech", aud=None)) as client:
        with pytest.raises(Unauthenticated, match="'org' claim"):
            await client.get_run("r-1")
    async with Client(f"127.0.0.1:{server.port}", token=KEY.sign(org="initech")) as client:  # aud, none expected
        with pytest.raises(Unauthenticated, match="audience"):
            await client.get_run("r-1")


# ------------------------------------------------------------------------------------------------ no leaks


async def test_no_token_hash_or_jwt_reaches_a_log_line_or_an_error(
    stub: rpb_grpc.RunnerServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    jwt_token = KEY.sign(tenant="acme", roles=["reader"])
    secrets = [ALL.value, ALL.sha256, READER.value, READER.sha256, jwt_token, NOBODY.value, NOBODY.sha256]
    texts: list[str] = []
    attempts = [
        bearer(ALL.value + "x"),
        bearer(ALL.value[:-1]),
        bearer(NOBODY.value),
        bearer(ALL.sha256),
        bearer(jwt_token[:-3]),
        bearer(READER.value),
        bearer(jwt_token),
        (("authorization", f"Basic {ALL.value}"),),
    ]
    for metadata in attempts:
        for method in ("StartRun", "StreamingRun"):
            error = await refused(stub, method, metadata)
            texts += [error.details() or "", str(error.trailing_metadata())]
    texts += [record.getMessage() for record in caplog.records]
    for secret in secrets:
        for fragment in {secret, secret[:16], secret[-16:]}:
            assert not any(fragment in text for text in texts), "a credential leaked into a message or log line"


def test_a_bad_tokens_file_is_refused_without_echoing_its_values(tmp_path: Path) -> None:
    cases = {
        'tokens = "x"': "array of tables",
        '[[tokens]]\ntenant = "a"\ntoken = "sekrit-value-123"': "unknown key(s) ['token']",
        '[[tokens]]\ntenant = "a"\nsha256 = "sekrit-value-123"': "64 hex digits",
        f'[[tokens]]\nsha256 = "{ALL.sha256}"': "'tenant'",
        f'[[tokens]]\ntenant = "a"\nsha256 = "{ALL.sha256}"\nroles = ["writer"]': "unknown role(s) ['writer']",
        f'[[tokens]]\ntenant = "a"\nsha256 = "{ALL.sha256}"\n' * 2: "twice",
        'sekrit-value-123 = = "': "not valid TOML (at line 1",
    }
    for text, message in cases.items():
        path = tmp_path / "tokens.toml"
        path.write_text(text)
        with pytest.raises(ValueError, match="tokens") as caught:
            open_auth(Settings(auth_tokens_file=path))
        assert message in str(caught.value), str(caught.value)
        assert "sekrit" not in str(caught.value) and ALL.sha256 not in str(caught.value)


def test_a_jwks_file_with_a_private_or_shared_key_is_refused(tmp_path: Path) -> None:
    for jwk in ({**KEY.jwk, "d": "AAAA"}, {"kty": "oct", "k": "c2VjcmV0"}):
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps({"keys": [jwk]}))
        with pytest.raises(ValueError, match="public keys only") as caught:
            open_auth(Settings(auth_jwks_file=path))
        assert "AAAA" not in str(caught.value) and "c2VjcmV0" not in str(caught.value)


# ------------------------------------------------------------------------------------------------ without auth


async def test_without_auth_calls_work_and_one_warning_says_so(
    start: StartServer, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    fake_llm.responder = default_responder
    caplog.set_level(logging.INFO)
    server = await start()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "not authenticated" in r.getMessage()]
    assert len(warnings) == 1
    async with Client(f"127.0.0.1:{server.port}") as client:
        messages = [m async for m in client.streaming_run("hi")]
    assert messages[-1].is_terminal


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.com"])
def test_a_network_address_without_auth_needs_insecure(host: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--insecure"):
        open_auth(Settings(host=host))
    assert not open_auth(Settings(host=host, insecure=True)).enabled
    tokens = write_tokens_file(tmp_path / "tokens.toml", [ALL])
    assert open_auth(Settings(host=host, auth_tokens_file=tokens)).enabled


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_needs_nothing(host: str) -> None:
    assert not open_auth(Settings(host=host)).enabled


# ------------------------------------------------------------------------------------------------ the SDK


async def test_the_python_sdks_send_their_token(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    target = f"127.0.0.1:{server.port}"
    async with Client(target, token=RUNNER.value) as client:
        run_id = await client.start_run("hi")
        assert (await client.get_run(run_id)).run_id == run_id
    async with Client(target) as client:
        with pytest.raises(Unauthenticated):
            await client.get_run(run_id)
    monkeypatch.setenv("AGENTSTREAM_TOKEN", READER.value)
    async with Client(target) as client:
        assert (await client.get_run(run_id)).run_id == run_id
        with pytest.raises(PermissionDenied) as caught:
            await client.start_run("hi")
        assert caught.value.required_role == "runner"

    def blocking() -> None:  # in a thread: the server shares this test's event loop
        with SyncClient(target) as sync_client:
            assert sync_client.get_run(run_id).run_id == run_id
        with SyncClient(target, token=OTHER.value) as sync_client, pytest.raises(RunNotFound):
            sync_client.get_run(run_id)

    await asyncio.to_thread(blocking)


async def test_the_seed_runners_send_their_token(server: RunningServer) -> None:
    target = f"127.0.0.1:{server.port}"
    messages = [m async for m in Runners.streaming_run("hi", target=target, token=RUNNER.value)]
    assert messages[-1].is_terminal
    task = Task(input="hi", run_id="task-with-token")
    messages = [m async for m in Runners.streaming_run_task(task, target=target, token=RUNNER.value)]
    assert {m.run_id for m in messages} == {"task-with-token"}
    with pytest.raises(Unauthenticated):
        _ = [m async for m in Runners.streaming_run_task(Task(input="hi"), target=target)]
