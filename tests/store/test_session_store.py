"""One behaviour suite for the sessions of every RunStore: the in-memory store and the Redis store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis

from agentstream_server.errors import SessionBusy, SessionNotFound
from agentstream_server.runtime.events import Action
from agentstream_server.runtime.history import Turn
from agentstream_server.store.base import RunStore
from agentstream_server.store.memory import MemoryStore, Retention
from agentstream_server.store.redis import RedisStore
from agentstream_server.store.sessions import SessionBounds

BOUNDS = SessionBounds(max_turns=6, max_chars=1000, idle_ttl_s=60)


def redis_store(url: str, bounds: SessionBounds = BOUNDS) -> RedisStore:
    return RedisStore(
        url, lease_s=1.0, ttl_s=60, max_retained=64, run_timeout_s=60, max_connections=16, sessions=bounds
    )


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RunStore]:
    """Each store, fresh, with small session bounds."""
    if request.param == "memory":
        memory = MemoryStore(Retention(), BOUNDS)
        yield memory
        await memory.close()
        return
    url: str = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    shared = redis_store(url)
    await shared.connect()
    yield shared
    await shared.close()


def exchange(run_id: str, question: str, answer: str) -> list[Turn]:
    return [Turn("user", question, run_id=run_id), Turn("assistant", answer, run_id=run_id)]


def with_call(run_id: str) -> list[Turn]:
    call = Action("calculator", f"call-{run_id}", "agent", {"expression": "1+1"})
    return [
        Turn("user", "1+1?", run_id=run_id),
        Turn("assistant", "", tool_calls=(call,), reasoning_content="think", run_id=run_id, agent_name="agent"),
        Turn("tool", "2", tool_call_id=call.tool_call_id, run_id=run_id),
        Turn("assistant", "2", run_id=run_id),
    ]


async def test_a_claim_starts_from_the_history_earlier_runs_left(store: RunStore) -> None:
    sessions = store.sessions
    assert await sessions.claim("s", "r1") == ()
    await sessions.release("s", "r1", with_call("r1"))
    assert await sessions.claim("s", "r2") == tuple(with_call("r1"))  # every field round-trips
    await sessions.release("s", "r2", exchange("r2", "and?", "done"))
    info = await sessions.describe("s")
    assert info.turns == (*with_call("r1"), *exchange("r2", "and?", "done"))
    assert (info.run_ids, info.live_run_id) == (("r1", "r2"), "")
    assert 0 < info.created_at <= info.updated_at


async def test_one_live_run_per_session(store: RunStore) -> None:
    sessions = store.sessions
    await sessions.claim("s", "r1")
    with pytest.raises(SessionBusy) as caught:
        await sessions.claim("s", "r2")
    assert caught.value.metadata["run_id"] == "r1"
    with pytest.raises(SessionBusy):
        await sessions.delete("s")
    assert (await sessions.describe("s")).live_run_id == "r1"
    await sessions.release("s", "r2", exchange("r2", "not", "mine"))  # r2 never held it: changes nothing
    await sessions.release("s", "r1", exchange("r1", "q", "a"))
    await sessions.claim("s", "r3")
    await sessions.release("s", "r3", ())
    info = await sessions.describe("s")
    assert [t.run_id for t in info.turns] == ["r1", "r1"] and info.run_ids == ("r1", "r3")


async def test_concurrent_claims_admit_exactly_one(store: RunStore) -> None:
    outcomes = await asyncio.gather(*(store.sessions.claim("race", f"r{i}") for i in range(20)), return_exceptions=True)
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, SessionBusy) for o in outcomes if isinstance(o, BaseException))


async def test_a_run_that_never_started_is_forgotten_with_the_session_it_created(store: RunStore) -> None:
    sessions = store.sessions
    await sessions.claim("new", "r1")
    await sessions.release("new", "r1", None)
    with pytest.raises(SessionNotFound):
        await sessions.describe("new")
    await sessions.claim("old", "r1")
    await sessions.release("old", "r1", exchange("r1", "q", "a"))
    await sessions.claim("old", "r2")
    await sessions.release("old", "r2", None)
    assert (await sessions.describe("old")).run_ids == ("r1",)


async def test_bounds_drop_the_oldest_turns_never_half_a_call(store: RunStore) -> None:
    sessions = store.sessions
    for run in ("r1", "r2"):
        await sessions.claim("b", run)
        await sessions.release("b", run, with_call(run))
    turns = (await sessions.describe("b")).turns
    # 8 turns > 6: r1's user turn went, then its call together with its result (5 remain, not 6)
    assert turns == (with_call("r1")[3], *with_call("r2"))
    await sessions.claim("b", "r3")
    await sessions.release("b", "r3", [Turn("user", "x" * 1001, run_id="r3")])
    assert (await sessions.describe("b")).turns == ()  # one turn over the character bound leaves nothing


async def test_delete_forgets_and_unknown_sessions_are_not_found(store: RunStore) -> None:
    sessions = store.sessions
    await sessions.claim("d", "r1")
    await sessions.release("d", "r1", exchange("r1", "q", "a"))
    assert await sessions.delete("d") == 2
    for call in (sessions.describe("d"), sessions.delete("d"), sessions.describe("ghost")):
        with pytest.raises(SessionNotFound):
            await call
    assert await sessions.claim("d", "r2") == ()


async def test_sessions_belong_to_their_tenant(store: RunStore) -> None:
    sessions = store.sessions
    await sessions.claim("shared", "r1", tenant="acme")
    assert await sessions.claim("shared", "r1", tenant="globex") == ()  # not busy: another tenant's session
    await sessions.release("shared", "r1", exchange("r1", "acme's", "a"), tenant="acme")
    with pytest.raises(SessionNotFound):
        await sessions.describe("shared")
    await sessions.release("shared", "r1", (), tenant="globex")
    assert [t.content for t in (await sessions.describe("shared", tenant="acme")).turns] == ["acme's", "a"]
    assert (await sessions.describe("shared", tenant="globex")).turns == ()
    assert await sessions.delete("shared", tenant="globex") == 0
    assert len((await sessions.describe("shared", tenant="acme")).turns) == 2


async def test_an_idle_session_expires(request: pytest.FixtureRequest, store: RunStore) -> None:
    short = SessionBounds(idle_ttl_s=1.0)
    if isinstance(store, MemoryStore):
        store = MemoryStore(Retention(), short)
    else:
        store = redis_store(request.getfixturevalue("redis_url"), short)
        await store.connect()
    try:
        await store.sessions.claim("idle", "r1")
        await asyncio.sleep(1.5)
        assert (await store.sessions.describe("idle")).live_run_id == "r1"  # a held session is never idle
        await store.sessions.release("idle", "r1", exchange("r1", "q", "a"))
        await asyncio.sleep(2.2)  # Redis expires keys with one-second granularity
        with pytest.raises(SessionNotFound):
            await store.sessions.describe("idle")
    finally:
        await store.close()


async def test_a_session_held_by_a_replica_that_died_is_free_one_lease_later(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    dead, alive = redis_store(redis_url), redis_store(redis_url)
    await dead.connect()
    await alive.connect()
    try:
        await dead.sessions.claim("s", "r1")
        await asyncio.sleep(2.0)  # renewed with the replica's leases while it lives
        with pytest.raises(SessionBusy):
            await alive.sessions.claim("s", "r2")
        await dead.close()  # stops renewing, as a killed replica would
        async with asyncio.timeout(15):  # one lease after its last renewal; generous for a loaded CI machine
            while True:
                try:
                    await alive.sessions.claim("s", "r2")
                    break
                except SessionBusy:
                    await asyncio.sleep(0.1)
        await alive.sessions.release("s", "r2", exchange("r2", "q", "a"))
        late = redis_store(redis_url)  # r1's replica, back after its hold lapsed: its write changes nothing
        await late.sessions.release("s", "r1", exchange("r1", "late", "write"))
        await late.close()
        assert [t.run_id for t in (await alive.sessions.describe("s")).turns] == ["r2", "r2"]
    finally:
        await alive.close()


async def test_regression_the_memory_store_keeps_at_most_max_sessions_forgetting_idle_ones_first() -> None:
    """Any caller can name new sessions: the memory store must not grow without bound until the idle TTL."""
    sessions = MemoryStore(Retention(), SessionBounds(max_sessions=2)).sessions
    await sessions.claim("held", "r0")  # a session with a live run is never forgotten
    for n in range(1, 4):
        await sessions.claim(f"s{n}", f"r{n}")
        await sessions.release(f"s{n}", f"r{n}", [Turn(role="user", content=f"hi {n}", run_id=f"r{n}")])
    assert (await sessions.describe("held")).live_run_id == "r0"
    assert (await sessions.describe("s3")).turns[0].content == "hi 3"
    for gone in ("s1", "s2"):
        with pytest.raises(SessionNotFound):
            await sessions.describe(gone)
