"""RedisStore's own helpers and keys, against a real redis-server where Redis is involved."""

from __future__ import annotations

import pytest

from service.redis_store import _redacted


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://user:p%40ss:word@host:6380/1", "rediss://user:***@host:6380/1"),
        ("redis://user@host/0", "redis://user@host/0"),
        ("redis://host/0?password=pw&db=2", "redis://host/0?password=***&db=2"),
        ("unix://:pw@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
    ],
)
def test_redacted_urls_never_show_a_password(url: str, shown: str) -> None:
    assert _redacted(url) == shown
