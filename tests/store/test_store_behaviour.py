"""One behaviour suite for every RunStore: the in-memory store and the Redis store (a real redis-server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis

from agentstream_server.errors import (
    AgentStreamError,
    RunAlreadyExists,
    RunNotFound,
    SeqOutOfRange,
    TooManySubscribers,
)
from agentstream_server.runtime.events import Chunk, RunEvent, TaskError, TaskFinished, TaskStarted, TaskStatus
from agentstream_server.store.base import NewRun, RunStore
from agentstream_server.store.log import RunLog
from agentstream_server.store.memory import MemoryStore, Retention
from agentstream_server.store.redis import RedisStore


class Control:
    """Stands in for a run executing here: a cancel ends its log the way a run would."""

    def __init__(self, log: RunLog) -> None:
        self.log = log
        self.cancelled: list[str] = []
        self.failed: list[AgentStreamError] = []

    def cancel(self, reason: str) -> None:
        self.cancelled.append(reason)
        if not self.log.closed:
            self.log.append(finished(TaskStatus.CANCELLED, f"run cancelled: {reason}"))

    def fail(self, error: AgentStreamError) -> None:
        self.failed.append(error)


def finished(status: TaskStatus = TaskStatus.SUCCEEDED, msg: str = "done") -> TaskFinished:
    error = None if status == TaskStatus.SUCCEEDED else TaskError(reason="RUN_CANCELLED", code="CANCELLED")
    return TaskFinished(status, status == TaskStatus.SUCCEEDED, "answer", msg, "agent", error=error)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RunStore]:
    """Each store, fresh."""
    if request.param == "memory":
        memory = MemoryStore(Retention(ttl_s=60, max_runs=100, max_bytes=10**8))
        yield memory
        await memory.close()
        return
    url: str = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    shared = RedisStore(url, lease_s=1.0, ttl_s=60, max_retained=64, run_timeout_s=60, max_connections=16)
    await shared.connect()
    yield shared
    await shared.close()


async def started(store: RunStore, run_id: str, *, max_retained: int = 1000) -> tuple[RunLog, Control]:
    await store.claim(NewRun(run_id, "agent", "session-1", time.time()))
    log = RunLog(run_id, "session-1", max_unread=max_retained // 2, max_retained=max_retained)
    control = Control(log)
    store.publish(log, control)
    log.append(TaskStarted("agent", "hi"), sender="agent")
    return log, control


async def collect(records: AsyncIterator[RunEvent]) -> list[RunEvent]:
    async with asyncio.timeout(10):
        return [record async for record in records]


async def test_a_published_run_reads_back_every_event_in_order_to_its_terminal(store: RunStore) -> None:
    log, _ = await started(store, "r1")
    for i in range(20):
        log.append(Chunk(f"t{i}", "m", "agent", 1), sender="agent")
    log.append(finished(), sender="agent")
    records = await collect(await store.read("r1", 0))
    assert [r.seq for r in records] == list(range(1, 23))
    assert records[0].event == TaskStarted("agent", "hi")
    assert [r.event.content for r in records[1:-1] if isinstance(r.event, Chunk)] == [f"t{i}" for i in range(20)]
    assert records[-1].is_terminal and records[-1].session_id == "session-1"
    assert [r.seq for r in await collect(await store.read("r1", 10))] == list(range(11, 23))
    assert await collect(await store.read("r1", 22)) == []


async def test_a_reader_follows_a_live_run(store: RunStore) -> None:
    log, _ = await started(store, "live")
    reader = asyncio.create_task(collect(await store.read("live", 0)))
    for i in range(5):
        await asyncio.sleep(0.01)
        log.append(Chunk(f"t{i}", "m", "agent", 1), sender="agent")
    log.append(finished(), sender="agent")
    records = await reader
    assert [r.seq for r in records] == list(range(1, 8))


async def test_describe_reports_the_run_and_its_terminal(store: RunStore) -> None:
    log, _ = await started(store, "d1")
    info = await store.describe("d1")
    assert (info.agent, info.session_id, info.status, info.terminal) == ("agent", "session-1", TaskStatus.RUNNING, None)
    log.append(finished(), sender="agent")
    for _ in range(100):
        info = await store.describe("d1")
        if info.terminal is not None:
            break
        await asyncio.sleep(0.02)
    assert info.status == TaskStatus.SUCCEEDED
    assert info.terminal == finished()
    assert info.last_seq == 2 and info.finished_at is not None


async def test_unknown_runs_and_taken_ids(store: RunStore) -> None:
    with pytest.raises(RunNotFound):
        await store.describe("ghost")
    with pytest.raises(RunNotFound):
        await store.read("ghost", 0)
    with pytest.raises(RunNotFound):
        await store.cancel("ghost", "why")
    await started(store, "taken")
    with pytest.raises(RunAlreadyExists):
        await store.claim(NewRun("taken", "agent", "", time.time()))


async def test_positions_past_the_end_or_before_the_retention_are_out_of_range(store: RunStore) -> None:
    # The memory store retains what the run's log retains; the Redis store trims its stream (to 64 here).
    await store.claim(NewRun("range", "agent", "", time.time()))
    retained = 64 if isinstance(store, MemoryStore) else 1000
    log = RunLog("range", max_unread=retained // 2, max_retained=retained)
    held = store.publish(log, Control(log))
    for i in range(400):
        log.append(Chunk(f"t{i}", "m", "agent", 1), sender="agent")
        if i % 50 == 0:
            await asyncio.sleep(0.01)  # let the Redis mirror keep up with the run's own log
    log.append(finished(), sender="agent")
    async with asyncio.timeout(10):
        await held  # the store holds the whole run
    with pytest.raises(SeqOutOfRange) as past:
        await store.read("range", 999)
    assert past.value.metadata["last_seq"] == "401"
    with pytest.raises(SeqOutOfRange) as trimmed:
        await collect(await store.read("range", 0))
    oldest = int(trimmed.value.metadata["oldest_retained_seq"])
    assert 1 < oldest <= 401 - 64
    tail = await collect(await store.read("range", oldest - 1))
    assert [r.seq for r in tail] == list(range(oldest, 402))


async def test_cancel_reaches_the_executing_run_and_reports_its_final_status(store: RunStore) -> None:
    _, control = await started(store, "c1")
    already_finished, status = await store.cancel("c1", "enough")
    assert (already_finished, status) == (False, TaskStatus.CANCELLED)
    assert control.cancelled == ["enough"]
    assert await store.cancel("c1", "again") == (True, TaskStatus.CANCELLED)


async def test_subscriber_slots_are_limited_and_given_back(store: RunStore) -> None:
    await started(store, "s1")
    async with store.subscriber("s1", 2), store.subscriber("s1", 2):
        with pytest.raises(TooManySubscribers) as caught:
            async with store.subscriber("s1", 2):
                pass
        assert caught.value.metadata["limit"] == "2"
    async with store.subscriber("s1", 2), store.subscriber("s1", 2):
        pass


async def test_publish_is_done_once_the_store_holds_the_whole_run(store: RunStore) -> None:
    await store.claim(NewRun("h1", "agent", "", time.time()))
    log = RunLog("h1", max_unread=10, max_retained=100)
    held = store.publish(log, Control(log))
    log.append(TaskStarted("agent", "hi"))
    log.append(finished())
    async with asyncio.timeout(10):
        await held
    assert (await store.describe("h1")).status == TaskStatus.SUCCEEDED


async def test_run_ids_are_per_tenant_and_another_tenants_run_does_not_exist(store: RunStore) -> None:
    for tenant, answer in (("acme", "A"), ("globex", "B")):
        await store.claim(NewRun("same-id", "agent", "", time.time(), tenant))
        log = RunLog("same-id", max_unread=10, max_retained=100, tenant=tenant)
        held = store.publish(log, Control(log))
        log.append(TaskStarted("agent", answer))
        log.append(finished())
        async with asyncio.timeout(10):
            await held
    for tenant, answer in (("acme", "A"), ("globex", "B")):
        records = await collect(await store.read("same-id", 0, tenant=tenant))
        assert records[0].event == TaskStarted("agent", answer)
        assert (await store.describe("same-id", tenant=tenant)).status == TaskStatus.SUCCEEDED
    for call in (
        store.describe("same-id", tenant="initech"),
        store.read("same-id", 0, tenant="initech"),
        store.cancel("same-id", "x", tenant="initech"),
        store.describe("same-id"),  # no tenant is a tenant of its own too
    ):
        with pytest.raises(RunNotFound):
            await call
    with pytest.raises(RunNotFound):
        async with store.subscriber("same-id", 5, tenant="initech"):
            pass


async def test_a_cancel_reaches_only_its_tenants_run(store: RunStore) -> None:
    controls = {}
    for tenant in ("acme", "globex"):
        await store.claim(NewRun("shared", "agent", "", time.time(), tenant))
        log = RunLog("shared", max_unread=10, max_retained=100, tenant=tenant)
        controls[tenant] = Control(log)
        store.publish(log, controls[tenant])
        log.append(TaskStarted("agent", "hi"))
    assert await store.cancel("shared", "stop", tenant="acme") == (False, TaskStatus.CANCELLED)
    assert controls["acme"].cancelled == ["stop"]
    assert controls["globex"].cancelled == []
    assert (await store.describe("shared", tenant="globex")).status == TaskStatus.RUNNING
    await store.cancel("shared", "cleanup", tenant="globex")
