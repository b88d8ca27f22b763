"""Two replicas sharing one Redis: any replica follows, describes and cancels any run.

A replica that dies mid-run loses its lease, and its runs end with an interrupted terminal message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

import agentstream
from agentstream import Client, StreamingMode, TaskMessage, TaskStatus
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.errors import TooManySubscribers
from tests.conftest import StartServer
from tests.service.helpers import error_details
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


async def subscribe_error(stub: rpb_grpc.RunnerServiceStub, run_id: str) -> grpc.aio.AioRpcError:
    """The status a SubscribeRun call fails with at its start."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubscribeRun(rpb.SubscribeRunRequest(run_id=run_id)).read()
    return caught.value


async def test_regression_subscriber_limit_is_enforced_across_replicas(
    fake_llm: FakeLLM, start: StartServer, redis_url: str
) -> None:
    a = await start(store=redis_url, max_subscribers_per_run=2)
    b = await start(store=redis_url, max_subscribers_per_run=2)
    fake_llm.script(Stall(["Hel"]))
    redis = aioredis.Redis.from_url(redis_url)
    async with (
        Client(f"127.0.0.1:{a.port}") as on_a,
        Client(f"127.0.0.1:{b.port}") as on_b,
        grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel_a,
        grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as channel_b,
    ):
        run_id = await on_a.start_run("hi")
        first, second = on_b.subscribe_run(run_id), on_b.subscribe_run(run_id)
        await anext(first)
        await anext(second)
        for stub in (rpb_grpc.RunnerServiceStub(channel_b), rpb_grpc.RunnerServiceStub(channel_a)):
            error = await subscribe_error(stub, run_id)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            info, _ = error_details(error)
            assert (info.reason, dict(info.metadata)) == ("TOO_MANY_SUBSCRIBERS", {"limit": "2"})
        await first.aclose()
        async with asyncio.timeout(5):  # the slot is given back in the background
            while await redis.zcard(f"agentstream:run:{{{run_id}}}:subscribers") != 1:
                await asyncio.sleep(0.01)
        local = on_a.subscribe_run(run_id)  # a subscriber on the executing replica takes the freed slot
        await anext(local)
        error = await subscribe_error(rpb_grpc.RunnerServiceStub(channel_b), run_id)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await on_a.cancel_run(run_id)
        await local.aclose()
        await second.aclose()
    await redis.aclose()


async def test_regression_a_follower_slot_lapses_when_its_follower_never_runs(
    fake_llm: FakeLLM, start: StartServer, redis_url: str
) -> None:
    a = await start(store=redis_url)
    b = await start(store=redis_url, lease_s=0.3)
    assert b.store is not None
    fake_llm.script(Stall(["Hel"]))
    async with Client(f"127.0.0.1:{a.port}") as on_a:
        run_id = await on_a.start_run("hi")
        slots = b.store._slots  # a slot taken, never held: like a follower whose replica died
        key = f"agentstream:run:{{{run_id}}}:subscribers"
        await slots.acquire(key, run_id, 1)
        with pytest.raises(TooManySubscribers):
            async with b.store.subscriber(run_id, 1):
                pass
        async with asyncio.timeout(5):
            while True:
                with contextlib.suppress(TooManySubscribers):
                    async with b.store.subscriber(run_id, 1):
                        break
                await asyncio.sleep(0.05)
        await on_a.cancel_run(run_id)


async def replica_connections(redis: aioredis.Redis, replica_id: str) -> int:
    """How many connections one replica has open to Redis (they are named after it)."""
    clients = await redis.client_list()
    return sum(1 for c in clients if c.get("name") == f"agentstream-{replica_id}")


async def test_regression_followers_on_a_replica_share_its_redis_connections(
    fake_llm: FakeLLM, start: StartServer, redis_url: str
) -> None:
    followers_count = 20
    a = await start(store=redis_url)
    b = await start(store=redis_url, redis_max_connections=4)  # fewer connections than followers
    assert b.store is not None
    fake_llm.script(Stall(["Hel"]))
    redis = aioredis.Redis.from_url(redis_url)
    async with Client(f"127.0.0.1:{a.port}") as on_a, Client(f"127.0.0.1:{b.port}") as on_b:
        run_id = await on_a.start_run("hi")
        followers = []
        for _ in range(followers_count):  # one at a time: a burst of subscribes may briefly use more connections
            follower = on_b.subscribe_run(run_id, streaming_mode=StreamingMode.ALL)
            await anext(follower)
            followers.append(follower)
        assert await replica_connections(redis, b.store.replica_id) <= 4
        await on_a.cancel_run(run_id)
        for follower in followers:
            rest = [m async for m in follower]
            terminal = rest[-1]
            assert isinstance(terminal, TaskMessage)
            assert terminal.payload.status == TaskStatus.CANCELLED
    await redis.aclose()


async def test_followers_sharing_the_tail_each_see_every_event_of_a_long_run(
    fake_llm: FakeLLM, start: StartServer, redis_url: str
) -> None:
    a, b = await start(store=redis_url), await start(store=redis_url, redis_max_connections=4)
    fake_llm.script(Text([f"t{i} " for i in range(1500)], delay_s=0.0005))
    async with Client(f"127.0.0.1:{a.port}") as on_a, Client(f"127.0.0.1:{b.port}") as on_b:
        run_id = await on_a.start_run("hi")

        async def follow(after_seq: int) -> list[int]:
            return [
                m.seq async for m in on_b.subscribe_run(run_id, after_seq=after_seq, streaming_mode=StreamingMode.ALL)
            ]

        runs = await asyncio.gather(*(follow(0) for _ in range(8)), follow(1))
    assert all(seqs == list(range(1, len(runs[0]) + 1)) for seqs in runs[:-1])
    assert runs[-1] == runs[0][1:]
    assert len(runs[0]) > 1500


async def test_regression_cancel_through_another_replica_does_not_wait_out_its_lease(
    fake_llm: FakeLLM, start: StartServer, redis_url: str
) -> None:
    # B looked for the terminal only after routing the cancel, so a fast terminal was missed and B waited
    # lease + 2 s; with a lease longer than the test timeout, that bug fails this test.
    a, b = await start(store=redis_url), await start(store=redis_url, lease_s=120)
    async with Client(f"127.0.0.1:{a.port}") as on_a, Client(f"127.0.0.1:{b.port}") as on_b:
        for _ in range(5):
            fake_llm.script(Stall(["Hel"]))
            run_id = await on_a.start_run("hi")
            result = await on_b.cancel_run(run_id, reason="stop")
            assert (result.already_finished, result.status) == (False, TaskStatus.CANCELLED)
