"""Authentication in a server process: SIGHUP re-reads the tokens file without dropping live runs, a bad file
keeps the old one; start-up refuses an exposed unauthenticated address; the CLI sends --token."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.transport.server import RunningServer
from tests.conftest import StartServer
from tests.service.helpers import request, terminal_of
from tests.service.test_run_outcomes import read_rest
from tests.service.test_server_process import ServerProcess, spawn_server
from tests.service.test_workers import Group, channel_to, spawn_group
from tests.support.auth import new_token, write_tokens_file
from tests.support.fakellm import FakeLLM, Stall, default_responder
from tests.test_cli import cli

OLD = new_token("acme")
NEW = new_token("acme")


@pytest.fixture
async def auth_process(fake_llm: FakeLLM, tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, Path]]:
    tokens = write_tokens_file(tmp_path / "tokens.toml", [OLD])
    proc = await spawn_server(fake_llm, "--auth-tokens", str(tokens), "--grace", "0.5")
    yield proc, tokens
    if proc.process.returncode is None:
        proc.process.kill()
        await proc.process.wait()


async def wait_for_line(proc: ServerProcess, pattern: str) -> str:
    assert proc.process.stdout is not None
    async with asyncio.timeout(10):
        while True:
            line = (await proc.process.stdout.readline()).decode()
            assert line, "the server exited"
            if re.search(pattern, line):
                return line


async def status_of(stub: rpb_grpc.RunnerServiceStub, token: str) -> grpc.StatusCode:
    try:
        await stub.GetRun(rpb.GetRunRequest(run_id="r-1"), metadata=(("authorization", f"Bearer {token}"),))
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_sighup_reloads_the_tokens_file_and_live_runs_go_on(
    fake_llm: FakeLLM, auth_process: tuple[ServerProcess, Path]
) -> None:
    proc, tokens = auth_process
    fake_llm.script(Stall(tokens=["Hel"]))
    async with grpc.aio.insecure_channel(proc.target) as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        live = stub.StreamingRun(request("hi", run_id="live-1"), metadata=(("authorization", f"Bearer {OLD.value}"),))
        await live.read()
        assert await status_of(stub, NEW.value) == grpc.StatusCode.UNAUTHENTICATED

        write_tokens_file(tokens, [NEW])
        proc.process.send_signal(signal.SIGHUP)
        line = await wait_for_line(proc, "reloaded 1 tokens")
        assert NEW.sha256 not in line and OLD.sha256 not in line
        assert await status_of(stub, NEW.value) == grpc.StatusCode.NOT_FOUND  # authenticated; no such run
        assert await status_of(stub, OLD.value) == grpc.StatusCode.UNAUTHENTICATED

        tokens.write_text(f'[[tokens]]\ntenant = "acme"\ntoken = "{OLD.value}"\n')  # a mistake: a token in clear
        proc.process.send_signal(signal.SIGHUP)
        line = await wait_for_line(proc, "reload failed")
        assert "keeping the previous 1 tokens" in line and "unknown key(s) ['token']" in line
        assert OLD.value not in line
        assert await status_of(stub, NEW.value) == grpc.StatusCode.NOT_FOUND

        # the run started before both reloads is still streaming: cancel it with the new token
        await stub.CancelRun(
            rpb.CancelRunRequest(run_id="live-1"), metadata=(("authorization", f"Bearer {NEW.value}"),)
        )
        assert terminal_of(await read_rest(live)).status == pb.TASK_STATUS_CANCELLED
    proc.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        assert await proc.process.wait() == 0


async def test_serve_refuses_a_network_address_without_auth_and_says_how() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentstream_server", "serve", "--port", "0", "--host", "0.0.0.0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 1
    assert "refusing to listen on 0.0.0.0 without authentication" in out.decode()
    assert "--insecure" in out.decode()


async def test_the_cli_sends_its_token(start: StartServer, fake_llm: FakeLLM, tmp_path: Path) -> None:
    fake_llm.responder = default_responder
    server: RunningServer = await start(auth_tokens_file=write_tokens_file(tmp_path / "tokens.toml", [OLD]))
    target = f"127.0.0.1:{server.port}"
    code, _, err = await cli("run", "hi", "--target", target)
    assert code == 2 and "UNAUTHENTICATED" in err
    code, out, _ = await cli("run", "hi", "--target", target, "--token", OLD.value, "--json")
    assert code == 0 and "__task_response" in out
    code, _, err = await cli("cancel", "nope", "--target", target, "--token", OLD.value)
    assert code == 2 and "RUN_NOT_FOUND" in err
    code, _, err = await cli("attach", "nope", "--target", target, "--token", NEW.value)
    assert code == 2 and "UNAUTHENTICATED unknown token" in err.replace(":", "")


async def test_sighup_to_a_workers_supervisor_reloads_every_worker(fake_llm: FakeLLM, tmp_path: Path) -> None:
    tokens = write_tokens_file(tmp_path / "tokens.toml", [OLD])
    group = await spawn_group(fake_llm, "--workers", "2", "--workers-allow-memory", "--auth-tokens", str(tokens))
    try:
        await reload_every_worker(group, tokens)
    finally:
        workers = group.workers()
        await group.kill()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def reload_every_worker(group: Group, tokens: Path) -> None:
    write_tokens_file(tokens, [NEW])
    start = len(group.lines)
    group.process.send_signal(signal.SIGHUP)
    async with asyncio.timeout(10):
        while len(re.findall(r"\[worker \d pid \d+\] agentstream\.auth: reloaded 1 tokens", group.output())) < 2:
            await group.wait_for("reloaded 1 tokens", start=start)
            start = len(group.lines)
    assert group.process.returncode is None and len(group.workers()) == 2
    for _ in range(6):  # new connections land on either worker
        async with channel_to(group.target) as channel:
            stub = rpb_grpc.RunnerServiceStub(channel)
            assert await status_of(stub, NEW.value) == grpc.StatusCode.NOT_FOUND
            assert await status_of(stub, OLD.value) == grpc.StatusCode.UNAUTHENTICATED
