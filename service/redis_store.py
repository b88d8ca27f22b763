"""Runs shared across replicas on Redis: run registry, event logs (Streams), leases and cancel routing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from service.convert import TASK_STATUS_TO_PROTO, to_proto
from service.errors import (
    AgentStreamError,
    RunAlreadyExists,
    RunNotFound,
    RunStoreUnavailable,
    check_subscription_position,
)
from service.redis_subscribers import SubscriberSlot, SubscriberSlots
from service.redis_tail import Entry, StreamTail
from service.runlog import EventsNotRetained, RunLog
from service.runtime.events import TASK_RESPONSE_TOPIC, TaskStatus

logger = logging.getLogger("agentstream.redis")

PREFIX = "agentstream"
MIRROR_BATCH = 512
BLOCK_MS = 500
POOL_WAIT_S = 5.0
"""How long a call waits for a free connection when all of the pool's are in use, before RunStoreUnavailable."""
CONNECT_TIMEOUT_S = 5.0
CONTROL_TTL_S = 60
"""A replica's control stream expires this long after its last cancel request (its watcher reads them at once)."""

# Registers a run, with its lease and an expiry, unless its id is taken; all or nothing.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'agent', ARGV[2], 'session_id', ARGV[3], 'created_at', ARGV[4],
           'status', 'running', 'last_seq', 0)
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[5])
return 1
"""

# Appends the interrupted terminal only if the executor's lease is gone and the log's top is still `top`.
_INTERRUPT = """
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

STATUS_BY_NAME = {status.value: status for status in TaskStatus}
PROTO_TO_STATUS = {value: status for status, value in TASK_STATUS_TO_PROTO.items()}


def _key(run_id: str, suffix: str = "") -> str:
    return f"{PREFIX}:run:{{{run_id}}}{suffix}"


def _seq_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def _redacted(url: str) -> str:
    """The URL with its password (in the userinfo or a ``password`` query parameter) replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "password" for name, _ in query):
        query = [(name, "***" if name == "password" else value) for name, value in query]
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=urllib.parse.urlencode(query, safe="*")))
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)) if netloc != parts.netloc else url


class RedisUnavailable(RuntimeError):
    """Redis cannot be reached."""


class RedisStore:
    """The Redis side of runs: every replica can describe, follow and cancel any run."""

    def __init__(
        self,
        url: str,
        *,
        lease_s: float = 10.0,
        ttl_s: float = 300.0,
        max_retained: int = 100_000,
        run_timeout_s: float = 600.0,
        max_connections: int = 64,
        max_subscribers: int = 64,
    ) -> None:
        """``ttl_s``: how long a finished run stays in Redis; ``run_timeout_s``: the longest a run can execute;
        ``max_connections``: the most connections this replica opens to Redis (callers queue for a free one);
        ``max_subscribers``: subscribers one run accepts, counted across replicas.
        """
        self.replica_id = uuid.uuid4().hex[:12]
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=POOL_WAIT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            client_name=f"agentstream-{self.replica_id}",  # CLIENT LIST tells the replicas apart
        )
        # redis-py's async client is typed with sync/async unions on every command; treat replies as Any.
        self._redis: Any = aioredis.Redis.from_pool(pool)
        self._url = _redacted(url)  # for messages and logs: never the password
        self._lease_ms = int(lease_s * 1000)
        self._ttl_s = int(max(ttl_s, 1))
        # A run ends within its timeout, and its terminal then sets _ttl_s; this bounds a dead replica's runs.
        self.live_ttl_s = int(run_timeout_s + lease_s) + self._ttl_s + 1
        """Expiry of a running run's keys, set at claim: a run whose replica died does not live forever."""
        self._max_retained = max_retained
        self._claim_script = self._redis.register_script(_CLAIM)
        self._interrupt = self._redis.register_script(_INTERRUPT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._mirrors: set[asyncio.Task[None]] = set()
        self._local: dict[str, Callable[[str], None]] = {}
        self._failers: dict[str, Callable[[AgentStreamError], None]] = {}
        self._max_subscribers = max_subscribers
        self._slots = SubscriberSlots(self._redis, self.replica_id, self._lease_ms, self._spawn)
        self._tail = StreamTail(
            self._redis,
            f"{PREFIX}:replica:{self.replica_id}:wake",
            self._interrupt_if_orphaned,
            block_ms=BLOCK_MS,
            batch=MIRROR_BATCH,
        )
        self.healthy = True

    async def connect(self) -> None:
        """Check that Redis answers; raises RedisUnavailable with the URL otherwise."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"cannot reach Redis at {self._url}: {exc}") from None
        self._spawn(self._renew_leases())
        self._spawn(self._watch_control())
        self._spawn(self._tail.run())

    @contextlib.contextmanager
    def _store_errors(self) -> Iterator[None]:
        """The store boundary: a Redis failure inside becomes RunStoreUnavailable (UNAVAILABLE), never UNKNOWN."""
        try:
            yield
        except (RedisError, OSError) as exc:  # OSError: ConnectionError and TimeoutError that redis-py lets through
            raise RunStoreUnavailable(
                f"the run store (Redis at {self._url}) is unavailable: {type(exc).__name__}"
            ) from exc

    async def close(self, flush_timeout_s: float = 5.0) -> None:
        """Let mirrors write what their runs ended with (bounded), then stop the background tasks and disconnect."""
        if self._mirrors:
            await asyncio.wait(list(self._mirrors), timeout=flush_timeout_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    def _spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------------------------- executing side

    async def claim(self, run_id: str, agent: str, session_id: str, created_at: float) -> None:
        """Register a new run owned by this replica; raises RunAlreadyExists if any replica knows the id.

        The run's keys expire even if this replica dies before finishing it (see ``live_ttl_s``).
        """
        with self._store_errors():
            claimed = await self._claim_script(
                keys=[_key(run_id), _key(run_id, ":lease")],
                args=[self.replica_id, agent, session_id, repr(created_at), self._lease_ms, self.live_ttl_s],
            )
        if not claimed:
            raise RunAlreadyExists(f"run_id {run_id!r} is already in use", field="run_id", metadata={"run_id": run_id})

    def mirror(self, log: RunLog, cancel: Callable[[str], None], fail: Callable[[AgentStreamError], None]) -> None:
        """Copy a local run's log to Redis as it grows.

        ``cancel`` serves cancel requests routed here; ``fail`` ends the run in-band when Redis is lost.
        """
        self._local[log.run_id] = cancel
        self._failers[log.run_id] = fail
        task = self._spawn(self._mirror(log, fail))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _mirror(self, log: RunLog, fail: Callable[[AgentStreamError], None]) -> None:
        key, hkey = _key(log.run_id, ":events"), _key(log.run_id)
        pending: list[Any] = []
        try:
            async for record in log.follow():
                pending.append(record)
                if len(pending) < MIRROR_BATCH and record.seq < log.last_seq and not record.is_terminal:
                    continue
                await self._flush(key, hkey, log.run_id, pending)
                pending = []
        except (RedisError, OSError) as exc:
            self.healthy = False
            logger.error("run %s: lost Redis while mirroring: %s", log.run_id, exc)
            fail(RunStoreUnavailable(f"lost the run store (Redis at {self._url}): {exc}"))
        except EventsNotRetained:
            fail(RunStoreUnavailable("the run store (Redis) fell behind the run's log"))
        finally:
            self._local.pop(log.run_id, None)
            self._failers.pop(log.run_id, None)

    async def _flush(self, key: str, hkey: str, run_id: str, records: list[Any]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for record in records:
                message = to_proto(record).SerializeToString()
                fields: dict[str, Any] = {"m": message, "t": "1" if record.is_terminal else "0"}
                pipe.xadd(key, fields, id=f"{record.seq}-0", maxlen=self._max_retained, approximate=True)
            last = records[-1]
            if records[0].seq == 1:  # this batch created the stream
                pipe.expire(key, self.live_ttl_s)
            pipe.hset(hkey, "last_seq", last.seq)
            if last.is_terminal:
                terminal = to_proto(last).task
                pipe.hset(
                    hkey,
                    mapping={"status": PROTO_TO_STATUS[terminal.status].value, "finished_at": repr(time.time()),
                             "terminal": terminal.SerializeToString()},
                )  # fmt: skip
                pipe.delete(_key(run_id, ":lease"))
                for suffix in ("", ":events"):
                    pipe.expire(_key(run_id, suffix), self._ttl_s)
            results = await pipe.execute(raise_on_error=False)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise errors[0] if isinstance(errors[0], RedisError) else RedisError(str(errors[0]))

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for run_id in list(self._local):
                        pipe.set(_key(run_id, ":lease"), self.replica_id, px=self._lease_ms)
                    await self._slots.renew(pipe)
                    pipe.ping()
                    await pipe.execute()
                self.healthy = True
            except (RedisError, OSError) as exc:
                if self.healthy:
                    logger.error("lost Redis: %s", exc)
                self.healthy = False
                for fail in list(self._failers.values()):  # runs whose events can no longer be shared
                    fail(RunStoreUnavailable(f"lost the run store (Redis at {self._url}): {exc}"))

    async def _watch_control(self) -> None:
        stream = f"{PREFIX}:replica:{self.replica_id}:control"
        last = "$"
        while True:
            try:
                replies = await self._redis.xread({stream: last}, block=BLOCK_MS, count=100)
            except (RedisError, OSError):
                await asyncio.sleep(BLOCK_MS / 1000)
                continue
            for _, entries in replies or ():
                for entry_id, fields in entries:
                    last = entry_id
                    cancel = self._local.get(fields[b"run_id"].decode())
                    if cancel is not None:
                        cancel(fields.get(b"reason", b"").decode() or "cancelled by CancelRun")

    # ---------------------------------------------------------------------------------------- any replica

    async def describe(self, run_id: str) -> dict[bytes, bytes]:
        """The run's registry entry; raises RunNotFound. A run whose executor is gone is ended as interrupted."""
        with self._store_errors():
            entry: dict[bytes, bytes] = await self._redis.hgetall(_key(run_id))
            if not entry or b"agent" not in entry:
                raise RunNotFound(
                    f"run {run_id!r} is not known to any replica", field="run_id", metadata={"run_id": run_id}
                )
            if entry.get(b"status") == b"running" and await self._interrupt_if_orphaned(run_id):
                entry = await self._redis.hgetall(_key(run_id))
            return entry

    async def request_cancel(self, run_id: str, reason: str) -> None:
        """Route a cancel to the replica executing the run."""
        with self._store_errors():
            owner = await self._redis.hget(_key(run_id), "owner")
            if owner is not None:
                control = f"{PREFIX}:replica:{owner.decode()}:control"
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.xadd(control, {"run_id": run_id, "reason": reason}, maxlen=1000)
                    pipe.expire(control, CONTROL_TTL_S)  # the owner may be gone: do not keep its stream forever
                    await pipe.execute()

    async def follow(
        self, run_id: str, after_seq: int, max_subscribers: int | None = None
    ) -> AsyncIterator[pb.Message]:
        """Yield the run's events with seq > after_seq from Redis, live, until the terminal one.

        The follower takes one of the run's ``max_subscribers`` slots (default: the store's limit), counted
        across replicas: raises TooManySubscribers when none is left. Raises RunStoreUnavailable when Redis
        fails, here or while iterating.
        """
        key = _key(run_id, ":events")
        await self.describe(run_id)
        with self._store_errors():
            top = await self._redis.xrevrange(key, count=1)
            last_seq = _seq_of(top[0][0]) if top else 0
            first = await self._redis.xrange(key, count=1)
            oldest = _seq_of(first[0][0]) if first else 1
            check_subscription_position(run_id, after_seq, last_seq, oldest)
            limit = self._max_subscribers if max_subscribers is None else max_subscribers
            # Not held yet: if the iterator is never started, the slot lapses after a lease.
            slot = await self._slots.acquire(_key(run_id, ":subscribers"), run_id, limit)
        return self._follow(run_id, key, after_seq, slot)

    async def subscriber_slot(self, run_id: str, limit: int) -> SubscriberSlot:
        """Take and hold one of the run's ``limit`` subscriber slots, counted across replicas; release() it.

        Raises TooManySubscribers when none is left, RunStoreUnavailable when Redis fails.
        """
        with self._store_errors():
            slot = await self._slots.acquire(_key(run_id, ":subscribers"), run_id, limit)
        slot.hold()
        return slot

    async def _follow(
        self, run_id: str, key: str, after_seq: int, slot: SubscriberSlot | None
    ) -> AsyncIterator[pb.Message]:
        # Catches up with XRANGE, then takes live entries from the replica's shared tail: no connection held.
        if slot is not None:
            slot.hold()
        position = after_seq
        watching = False
        try:
            with self._store_errors():
                while True:
                    batch = self._tail.read(key, position) if watching else None
                    if batch is None:
                        batch = await self._read(key, position)
                        if not batch:
                            if watching:  # the tail has entries that Redis no longer has: the run's keys expired
                                raise RunNotFound(f"run {run_id!r} is no longer in the run store")
                            await self._tail.watch(run_id, key, position)
                            watching = True
                            continue
                    if not batch:
                        await self._tail.wait(key, position)
                        continue
                    if batch[0][0] != position + 1:  # trimmed before this follower read them: never a silent gap
                        check_subscription_position(run_id, position, batch[-1][0], batch[0][0])
                    for seq, message, terminal in batch:
                        position = seq
                        yield pb.Message.FromString(message)
                        if terminal:
                            return
        finally:
            if watching:
                self._tail.unwatch(key)
            if slot is not None:
                slot.release()

    async def _read(self, key: str, after: int) -> list[Entry]:
        entries = await self._redis.xrange(key, min=f"({after}-0", count=MIRROR_BATCH)
        return [(_seq_of(entry_id), fields[b"m"], fields.get(b"t") == b"1") for entry_id, fields in entries]

    async def _interrupt_if_orphaned(self, run_id: str) -> bool:
        """End a run whose executor's lease expired with an interrupted terminal, exactly once; True if ended."""
        key = _key(run_id, ":events")
        for _ in range(5):
            if await self._redis.exists(_key(run_id, ":lease")):
                return False
            top = await self._redis.xrevrange(key, count=1)
            top_id = top[0][0].decode() if top else "0-0"
            seq = _seq_of(top_id) + 1
            entry = await self._redis.hgetall(_key(run_id))
            terminal = pb.TaskPayload(
                status=pb.TASK_STATUS_INTERRUPTED,
                msg="run interrupted: the replica executing it stopped renewing its lease",
                agent_name=entry.get(b"agent", b"").decode(),
            )
            terminal.error.reason = "RUN_INTERRUPTED"
            terminal.error.code = "UNAVAILABLE"
            message = pb.Message(
                id=f"{run_id}:{seq}", run_id=run_id, session_id=entry.get(b"session_id", b"").decode(), seq=seq,
                category="task", topic=TASK_RESPONSE_TOPIC, sender="agentstream",
            )  # fmt: skip
            message.timestamp.GetCurrentTime()
            message.task.CopyFrom(terminal)
            try:
                result = await self._interrupt(
                    keys=[key, _key(run_id, ":lease"), _key(run_id)],
                    args=[top_id, f"{seq}-0", message.SerializeToString(), TaskStatus.INTERRUPTED.value,
                          repr(time.time()), seq, terminal.SerializeToString()],
                )  # fmt: skip
            except ResponseError:
                return False
            if result != -1:
                if result == 1:
                    for suffix in ("", ":events"):
                        await self._redis.expire(_key(run_id, suffix), self._ttl_s)
                return bool(result)
        return False

    async def cancel(self, run_id: str, reason: str) -> tuple[bool, TaskStatus]:
        """Cancel a run executing on another replica; returns (it had already finished, its final status)."""
        entry = await self.describe(run_id)
        if status_of(entry) != TaskStatus.RUNNING:
            return True, status_of(entry)
        key = _key(run_id, ":events")
        with self._store_errors():  # before the request: the terminal may be written before we look again
            top = await self._redis.xrevrange(key, count=1)
        await self.request_cancel(run_id, reason)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._lease_ms / 1000 + 2):
                async for _ in self._follow(run_id, key, _seq_of(top[0][0]) if top else 0, None):
                    pass
        with self._store_errors():
            return False, status_of(await self._redis.hgetall(_key(run_id)))

    async def describe_run(self, run_id: str) -> rpb.Run:
        """GetRun's answer for any run in the store."""
        entry = await self.describe(run_id)
        run = rpb.Run(
            run_id=run_id,
            agent=entry.get(b"agent", b"").decode(),
            session_id=entry.get(b"session_id", b"").decode(),
            status=TASK_STATUS_TO_PROTO[status_of(entry)],
            last_seq=int(entry.get(b"last_seq", b"0")),
        )
        run.created_at.FromNanoseconds(int(float(entry.get(b"created_at", b"0")) * 1e9))
        if b"finished_at" in entry:
            run.finished_at.FromNanoseconds(int(float(entry[b"finished_at"]) * 1e9))
        if b"terminal" in entry:
            run.response.ParseFromString(entry[b"terminal"])
        return run


def status_of(entry: dict[bytes, bytes]) -> TaskStatus:
    """The run status recorded in a registry entry."""
    return STATUS_BY_NAME.get(entry.get(b"status", b"running").decode(), TaskStatus.RUNNING)
