"""RedisStore's own helpers and keys, against a real redis-server where Redis is involved."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from agentstream import Client, StreamingMode
from agentstream_server.redact import redact_url as _redacted
from agentstream_server.store.redis.store import CONTROL_TTL_S
from tests.conftest import StartServer
from tests.support.fakellm import FakeLLM, Stall


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("rediss://user:p%40ss:word@host:6380/1", "rediss://user:***@host:6380/1"),
        ("redis://user@host/0", "redis://***@host/0"),  # a user name alone may be a token: masked too
        ("redis://host/0?password=pw&db=2", "redis://host/0?password=***&db=2"),
        ("unix://:pw@/run/redis.sock?db=0", "unix://***@/run/redis.sock?db=0"),
    ],
)
def test_redacted_urls_never_show_a_password(url: str, shown: str) -> None:
    assert _redacted(url) == shown


async def test_regression_claimed_run_keys_have_a_ttl_so_a_dead_replicas_runs_do_not_live_forever(
    fake_llm: FakeLLM, start: StartServer, redis_url: str
) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    await redis.flushdb()
    a = await start(store=redis_url, run_timeout_s=100, completed_run_ttl_s=50, lease_s=2)
    b = await start(store=redis_url)
    assert a.store is not None
    fake_llm.script(Stall(["Hel"]))
    async with Client(f"127.0.0.1:{a.port}") as on_a, Client(f"127.0.0.1:{b.port}") as on_b:
        run_id = await on_a.start_run("hi")
        assert 0 < await redis.ttl(f"agentstream:run:{{{run_id}}}") <= a.store.live_ttl_s == 100 + 2 + 50 + 1
        follower = on_b.subscribe_run(run_id, streaming_mode=StreamingMode.ALL)
        await anext(follower)  # the events stream exists in Redis
        assert 0 < await redis.ttl(f"agentstream:run:{{{run_id}}}:events") <= a.store.live_ttl_s
        await on_b.cancel_run(run_id)  # routed through A's control stream
        assert 0 < await redis.ttl(f"agentstream:replica:{a.store.replica_id}:control") <= CONTROL_TTL_S
        [m async for m in follower]
        for suffix in ("", ":events"):
            assert 0 < await redis.ttl(f"agentstream:run:{{{run_id}}}{suffix}") <= 50
    assert [key async for key in redis.scan_iter() if await redis.ttl(key) < 0] == []
    await redis.aclose()
