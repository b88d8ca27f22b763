"""The Redis run store: runs shared by every replica on one Redis."""

from agentstream_server.store.redis.store import RedisStore, RedisUnavailable

__all__ = ["RedisStore", "RedisUnavailable"]
