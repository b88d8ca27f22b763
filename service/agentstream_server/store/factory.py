"""Opens the run store the settings name: in-memory (default) or Redis (shared by replicas)."""

from __future__ import annotations

from agentstream_server.config import Settings
from agentstream_server.store.base import RunStore
from agentstream_server.store.memory import MemoryStore, Retention
from agentstream_server.store.sessions import SessionBounds


async def open_store(settings: Settings) -> RunStore:
    """The run store, connected; a Redis that does not answer raises RedisUnavailable naming it (redacted)."""
    sessions = SessionBounds(
        max_turns=settings.session_max_turns,
        max_chars=settings.session_max_chars,
        idle_ttl_s=settings.session_idle_ttl_s,
        max_sessions=settings.session_max_count,
    )
    if settings.store == "memory":
        retention = Retention(
            ttl_s=settings.completed_run_ttl_s,
            max_runs=settings.max_finished_runs,
            max_bytes=settings.max_finished_bytes,
        )
        return MemoryStore(retention, sessions)
    from agentstream_server.store.redis import RedisStore  # only servers that use Redis import redis

    store = RedisStore(
        settings.store,
        lease_s=settings.lease_s,
        ttl_s=settings.completed_run_ttl_s,
        max_retained=settings.max_retained_events,
        run_timeout_s=settings.run_timeout_s,
        max_connections=settings.redis_max_connections,
        sessions=sessions,
    )
    await store.connect()
    return store
