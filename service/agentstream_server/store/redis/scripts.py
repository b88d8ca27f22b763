"""Key names and the Lua scripts that make the Redis store's multi-key steps atomic."""

from __future__ import annotations

PREFIX = "agentstream"


def run_key(tenant: str, run_id: str, suffix: str = "") -> str:
    """A run's keys: namespaced by tenant (hex, so no tenant name or run id can reach another's keys), and
    sharing one hash tag, so a Redis Cluster keeps them on one shard (the scripts need that)."""
    namespace = f"{tenant.encode().hex()}/" if tenant else ""
    return f"{PREFIX}:run:{{{namespace}{run_id}}}{suffix}"


def control_key(replica_id: str) -> str:
    """The stream a replica reads cancel requests routed to it from."""
    return f"{PREFIX}:replica:{replica_id}:control"


def wake_key(replica_id: str) -> str:
    """The stream that wakes a replica's shared tail when it starts following a new run."""
    return f"{PREFIX}:replica:{replica_id}:wake"


def seq_of(entry_id: bytes | str) -> int:
    """The seq of a ``SEQ-0`` stream entry ID."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'agent', ARGV[2], 'session_id', ARGV[3], 'created_at', ARGV[4],
           'status', 'running', 'last_seq', 0)
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[5])
return 1
"""
"""Registers a run, with its lease and an expiry, unless its id is taken; all or nothing."""

INTERRUPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local top_id = '0-0'
if #top > 0 then
  top_id = top[1][1]
  local fields = top[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 't' and fields[i + 1] == '1' then return 0 end
  end
end
if top_id ~= ARGV[1] then return -1 end
redis.call('XADD', KEYS[1], ARGV[2], 'm', ARGV[3], 't', '1')
redis.call('HSET', KEYS[3], 'status', ARGV[4], 'finished_at', ARGV[5], 'last_seq', ARGV[6], 'terminal', ARGV[7])
return 1
"""
"""Appends the interrupted terminal only if the executor's lease is gone and the log's top is still ARGV[1]."""
