"""Two replicas sharing one Redis: any replica follows, describes and cancels any run.

A replica that dies mid-run loses its lease, and its runs end with an interrupted terminal message.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import agentstream
from agentstream import Client, StreamingMode, TaskMessage, TaskStatus
from tests.conftest import StartServer
from tests.support.fakellm import FakeLLM, Stall, Text

ROOT = Path(__file__).resolve().parents[2]


async def test_a_run_started_on_a_is_followed_described_and_cancelled_through_b(
    fake_llm: FakeLLM, start: StartServer, redis_url: str
) -> None:
    a, b = await start(store=redis_url), await start(store=redis_url)
    fake_llm.script(Stall(["Hel"]))
    async with Client(f"127.0.0.1:{a.port}") as on_a, Client(f"127.0.0.1:{b.port}") as on_b:
        run_id = await on_a.start_run("hi")
        follower = on_b.subscribe_run(run_id, streaming_mode=StreamingMode.ALL)
        first = await anext(follower)
        assert first.seq == 1
        assert (await on_b.get_run(run_id)).status == TaskStatus.RUNNING
        result = await on_b.cancel_run(run_id, reason="stopped through B")
        assert (result.already_finished, result.status) == (False, TaskStatus.CANCELLED)
        rest = [m async for m in follower]
        seqs = [first.seq] + [m.seq for m in rest]
        assert seqs == list(range(1, len(seqs) + 1))
        terminal = rest[-1]
        assert isinstance(terminal, TaskMessage)
        assert terminal.payload.status == TaskStatus.CANCELLED
        assert "stopped through B" in terminal.payload.msg
        assert await fake_llm.wait_closed(1.0)
        info = await on_b.get_run(run_id)
        assert info.status == TaskStatus.CANCELLED
        assert info.last_seq == terminal.seq
        again = await on_b.cancel_run(run_id)
        assert again.already_finished


async def test_run_ids_are_unique_across_replicas(fake_llm: FakeLLM, start: StartServer, redis_url: str) -> None:
    a, b = await start(store=redis_url), await start(store=redis_url)
    fake_llm.script(Text(["ok"]))
    async with Client(f"127.0.0.1:{a.port}") as on_a, Client(f"127.0.0.1:{b.port}") as on_b:
        await on_a.start_run("hi", run_id="shared-id-1")
        try:
            await on_b.start_run("hi", run_id="shared-id-1")
        except agentstream.RunAlreadyExists:
            pass
        else:
            raise AssertionError("a second replica accepted a run id already in use")
        replay = [m async for m in on_b.subscribe_run("shared-id-1", streaming_mode=StreamingMode.ALL)]
        assert replay[-1].topic == "__task_response"
        assert [m.seq for m in replay] == list(range(1, len(replay) + 1))


async def test_killing_the_executing_replica_ends_its_run_interrupted_on_the_other(
    fake_llm: FakeLLM, start: StartServer, redis_url: str
) -> None:
    b = await start(store=redis_url)
    env = {**os.environ, "OPENAI_BASE_URL": fake_llm.base_url, "OPENAI_API_KEY": "k", "AGENTSTREAM_STORE": redis_url,
           "AGENTSTREAM_LEASE": "1"}  # fmt: skip
    a = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentstream_server", "serve", "--port", "0", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert a.stdout is not None
    try:
        async with asyncio.timeout(20):
            while not (match := re.search(rb"listening on (\S+)", await a.stdout.readline())):
                pass
        fake_llm.script(Stall(["Hel"]))
        async with Client(match.group(1).decode()) as on_a, Client(f"127.0.0.1:{b.port}") as on_b:
            run_id = await on_a.start_run("hi")
            follower = on_b.subscribe_run(run_id, streaming_mode=StreamingMode.ALL)
            await anext(follower)
            a.send_signal(signal.SIGKILL)
            async with asyncio.timeout(10):
                rest = [m async for m in follower]
            terminal = rest[-1]
            assert isinstance(terminal, TaskMessage)
            assert terminal.payload.status == TaskStatus.INTERRUPTED
            assert (await on_b.get_run(run_id)).status == TaskStatus.INTERRUPTED
    finally:
        if a.returncode is None:
            a.kill()
        await a.wait()


async def test_a_resuming_subscriber_survives_a_restart_of_its_replica_without_duplicates_or_gaps(
    fake_llm: FakeLLM, start: StartServer, redis_url: str
) -> None:
    a, b = await start(store=redis_url), await start(store=redis_url)
    fake_llm.script(Text([f"t{i} " for i in range(60)], delay_s=0.05))
    async with Client(f"127.0.0.1:{a.port}") as on_a, Client(f"127.0.0.1:{b.port}") as on_b:
        run_id = await on_a.start_run("hi")
        seqs: list[int] = []
        restarted = False
        async for message in on_b.subscribe_run(run_id, streaming_mode=StreamingMode.ALL, resume=True):
            seqs.append(message.seq)
            if len(seqs) == 10 and not restarted:
                restarted = True
                await b.shutdown(0)
                await start(store=redis_url, port=b.port)
        assert restarted
        assert seqs == list(range(1, len(seqs) + 1)), "a duplicate or a gap across the restart"
        assert message.topic == "__task_response"


async def test_a_replica_shutting_down_hands_its_cancelled_runs_terminal_to_the_store(
    fake_llm: FakeLLM, start: StartServer, redis_url: str
) -> None:
    a, b = await start(store=redis_url), await start(store=redis_url)
    fake_llm.script(Stall(["Hel"]))
    async with Client(f"127.0.0.1:{a.port}") as on_a, Client(f"127.0.0.1:{b.port}") as on_b:
        run_id = await on_a.start_run("hi")
        follower = on_b.subscribe_run(run_id, streaming_mode=StreamingMode.ALL)
        await anext(follower)
        await a.shutdown(0)
        async with asyncio.timeout(5):
            rest = [m async for m in follower]
    terminal = rest[-1]
    assert isinstance(terminal, TaskMessage)
    assert terminal.payload.status == TaskStatus.CANCELLED, "a graceful shutdown is a cancel, not an interruption"
    assert "shutting down" in terminal.payload.msg
