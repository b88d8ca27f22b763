"""The Redis RunStore: runs shared across replicas (registry hashes, event Streams, leases, routed cancels)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from agentstream_server.errors import (
    InternalError,
    RunAlreadyExists,
    RunNotFound,
    RunStoreUnavailable,
    check_subscription_position,
    interrupt_not_found,
)
from agentstream_server.observability import metrics
from agentstream_server.redact import redact_url
from agentstream_server.runtime.events import Interrupt, RunEvent, TaskFinished, TaskStatus
from agentstream_server.store.base import NewRun, RunControl, RunInfo
from agentstream_server.store.codec import CodecError, decode_record, decode_terminal, encode_record, encode_terminal
from agentstream_server.store.log import EventsNotRetained, RunLog
from agentstream_server.store.redis import scripts
from agentstream_server.store.redis.approvals import InterruptLedger, decode_pending
from agentstream_server.store.redis.control import watch_control
from agentstream_server.store.redis.entries import LIVE, not_found, nothing, status_of
from agentstream_server.store.redis.interrupts import interrupt_if_orphaned
from agentstream_server.store.redis.scripts import control_key, run_key, seq_of
from agentstream_server.store.redis.sessions import RedisSessions
from agentstream_server.store.redis.subscribers import SubscriberSlots
from agentstream_server.store.redis.tail import Entry, StreamTail
from agentstream_server.store.sessions import SessionBounds

logger = logging.getLogger("agentstream.redis")

MIRROR_BATCH = 512
BLOCK_MS = 500
POOL_WAIT_S = 5.0
"""How long a call waits for a free connection when all of the pool's are in use, before RunStoreUnavailable."""
CONNECT_TIMEOUT_S = 5.0
CONTROL_TTL_S = 60
"""A replica's control stream expires this long after its last cancel request (its watcher reads them at once)."""
CLOSE_TIMEOUT_S = 2.0


class RedisUnavailable(RuntimeError):
    """Redis cannot be reached at start-up."""


class RedisStore:
    """Every replica on one Redis can describe, follow and cancel any run; each mirrors the runs it executes."""

    def __init__(
        self,
        url: str,
        *,
        lease_s: float,
        ttl_s: float,
        max_retained: int,
        run_timeout_s: float,
        max_connections: int,
        sessions: SessionBounds | None = None,
    ) -> None:
        """``ttl_s``: how long a finished run stays in Redis; ``run_timeout_s``: the longest a run can execute;
        ``max_connections``: the most connections this replica opens to Redis (callers queue for a free one)."""
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
        self._url = redact_url(url)  # for messages and logs: never the password
        self._lease_ms = int(lease_s * 1000)
        self._ttl_s = int(max(ttl_s, 1))
        # A run ends within its timeout, and its terminal then sets _ttl_s; this bounds a dead replica's runs.
        self.live_ttl_s = int(run_timeout_s + lease_s) + self._ttl_s + 1
        """Expiry of a running run's keys, set at claim: a run whose replica died does not live forever."""
        self._max_retained = max_retained
        self._claim = self._redis.register_script(scripts.CLAIM)
        self._interrupt = self._redis.register_script(scripts.INTERRUPT)
        self._approvals = InterruptLedger(self._redis, self.live_ttl_s)
        self._tasks: set[asyncio.Task[None]] = set()
        self._mirrors: set[asyncio.Task[None]] = set()
        self._controls: dict[tuple[str, str], RunControl] = {}
        """The runs executing here, by (tenant, run id)."""
        self._slots = SubscriberSlots(self._redis, self.replica_id, self._lease_ms, self._spawn)
        self._tail = StreamTail(
            self._redis, scripts.wake_key(self.replica_id), self._interrupt_if_orphaned, block_ms=BLOCK_MS,
            batch=MIRROR_BATCH,
        )  # fmt: skip
        self.sessions = RedisSessions(
            self._redis, self._store_errors, lease_ms=self._lease_ms, live_ttl_s=self.live_ttl_s,
            bounds=sessions or SessionBounds(),
        )  # fmt: skip
        """Sessions shared by every replica on this Redis."""
        self._healthy = True

    @property
    def healthy(self) -> bool:
        """False while Redis does not answer (health reports NOT_SERVING)."""
        return self._healthy

    @property
    def description(self) -> str:
        """For the start-up log line (the URL's password redacted)."""
        return f"redis at {self._url}, replica {self.replica_id}"

    async def connect(self) -> None:
        """Check that Redis answers, then start the background loops; raises RedisUnavailable naming it."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"cannot reach Redis at {self._url}: {type(exc).__name__}: {exc}") from None
        self._spawn(self._renew_leases())
        self._spawn(watch_control(self._redis, self.replica_id, self._controls, BLOCK_MS))
        self._spawn(self._tail.run())

    async def close(self, flush_timeout_s: float = 5.0) -> None:
        """Let mirrors write what their runs ended with (bounded), then stop the background tasks and disconnect."""
        if self._mirrors:
            await asyncio.wait(list(self._mirrors), timeout=flush_timeout_s)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: closing never hangs on a background task, whatever it waits on
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
            if stuck:
                logger.warning("%d background tasks did not stop within %.0f s: %s", len(stuck), CLOSE_TIMEOUT_S, stuck)
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    @contextlib.contextmanager
    def _store_errors(self) -> Iterator[None]:
        """The store boundary: a Redis failure inside becomes RunStoreUnavailable (UNAVAILABLE), never UNKNOWN."""
        try:
            yield
        except (RedisError, OSError) as exc:  # OSError: ConnectionError and TimeoutError that redis-py lets through
            raise RunStoreUnavailable(
                f"the run store (Redis at {self._url}) is unavailable: {type(exc).__name__}"
            ) from exc
        except CodecError as exc:
            raise InternalError(f"the run store holds an entry that is not a run event: {exc}") from exc

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------------------------- executing side

    async def claim(self, run: NewRun) -> None:
        """Register a run owned by this replica; RunAlreadyExists if any replica knows the id.

        The run's keys expire even if this replica dies before finishing it (see ``live_ttl_s``).
        """
        with self._store_errors():
            claimed = await self._claim(
                keys=[run_key(run.tenant, run.run_id), run_key(run.tenant, run.run_id, ":lease")],
                args=[self.replica_id, run.agent, run.session_id, repr(run.created_at), self._lease_ms,
                      self.live_ttl_s],
            )  # fmt: skip
        if not claimed:
            raise RunAlreadyExists(
                f"run_id {run.run_id!r} is already in use", field="run_id", metadata={"run_id": run.run_id}
            )

    def publish(self, log: RunLog, control: RunControl) -> asyncio.Future[None]:
        """Mirror a local run's log to Redis as it grows; done once its terminal event is written (or lost)."""
        self._controls[log.tenant, log.run_id] = control
        task = self._spawn(self._mirror(log, control))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)
        return task

    async def _mirror(self, log: RunLog, control: RunControl) -> None:
        key, hkey = run_key(log.tenant, log.run_id, ":events"), run_key(log.tenant, log.run_id)
        pending: list[RunEvent] = []
        try:
            async for record in log.follow():
                pending.append(record)
                if len(pending) < MIRROR_BATCH and record.seq < log.last_seq and not record.is_terminal:
                    continue
                await self._flush(key, hkey, pending)
                metrics.mirror_flushed(time.time() - pending[0].timestamp_ns / 1e9)
                pending = []
        except (RedisError, OSError) as exc:
            self._healthy = False
            logger.error("run %s: lost Redis while mirroring: %s", log.run_id, type(exc).__name__)
            control.fail(RunStoreUnavailable(f"lost the run store (Redis at {self._url}): {type(exc).__name__}"))
        except EventsNotRetained:
            control.fail(RunStoreUnavailable("the run store (Redis) fell behind the run's log"))
        finally:
            self._controls.pop((log.tenant, log.run_id), None)

    async def _flush(self, key: str, hkey: str, records: list[RunEvent]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for record in records:
                fields = {"m": encode_record(record), "t": "1" if record.is_terminal else "0"}
                pipe.xadd(key, fields, id=f"{record.seq}-0", maxlen=self._max_retained, approximate=True)
            last = records[-1]
            if records[0].seq == 1:  # this batch created the stream
                pipe.expire(key, self.live_ttl_s)
            pipe.hset(hkey, "last_seq", last.seq)
            if isinstance(last.event, TaskFinished):
                pipe.hset(
                    hkey,
                    mapping={"status": last.event.status.value, "finished_at": repr(time.time()),
                             "terminal": encode_terminal(last.event)},
                )  # fmt: skip
                pipe.delete(f"{hkey}:lease")
                for name in (hkey, key):
                    pipe.expire(name, self._ttl_s)
            results = await pipe.execute(raise_on_error=False)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise errors[0] if isinstance(errors[0], RedisError) else RedisError(str(errors[0]))

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for tenant, run_id in list(self._controls):
                        pipe.set(run_key(tenant, run_id, ":lease"), self.replica_id, px=self._lease_ms)
                    await self._slots.renew(pipe)
                    await self.sessions.renew(pipe)
                    pipe.ping()
                    await pipe.execute()
                metrics.leases_renewed(ok=True)
                self._healthy = True
            except (RedisError, OSError) as exc:
                metrics.leases_renewed(ok=False)
                if self._healthy:
                    logger.error("lost Redis at %s: %s", self._url, type(exc).__name__)
                self._healthy = False
                for control in list(self._controls.values()):  # runs whose events can no longer be shared
                    control.fail(RunStoreUnavailable(f"lost the run store (Redis at {self._url})"))

    # ---------------------------------------------------------------------------------------- any replica

    async def read(self, run_id: str, after_seq: int, *, tenant: str = "") -> AsyncIterator[RunEvent]:
        """The run's events with seq > after_seq, live, to its terminal event (RunNotFound/SeqOutOfRange at once)."""
        key = run_key(tenant, run_id, ":events")
        await self._entry(tenant, run_id)
        with self._store_errors():
            top = await self._redis.xrevrange(key, count=1)
            last_seq = seq_of(top[0][0]) if top else 0
            first = await self._redis.xrange(key, count=1)
            oldest = seq_of(first[0][0]) if first else 1
        check_subscription_position(run_id, after_seq, last_seq, oldest)
        if top and after_seq == last_seq and top[0][1].get(b"t") == b"1":
            return nothing()  # the reader has the terminal event already: nothing more will come
        return self._follow((tenant, run_id), key, after_seq)

    async def _follow(self, run: tuple[str, str], key: str, after_seq: int) -> AsyncIterator[RunEvent]:
        # Catches up with XRANGE, then takes live entries from the replica's shared tail: no connection held.
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
                                raise RunNotFound(f"run {run[1]!r} is no longer in the run store")
                            await self._tail.watch(run, key, position)
                            watching = True
                            continue
                    if not batch:
                        await self._tail.wait(key, position)
                        continue
                    if batch[0][0] != position + 1:  # trimmed before this follower read them: never a silent gap
                        check_subscription_position(run[1], position, batch[-1][0], batch[0][0])
                    for seq, record in batch:
                        position = seq
                        yield record
                        if record.is_terminal:
                            return
        finally:
            if watching:
                self._tail.unwatch(key)

    async def _read(self, key: str, after: int) -> list[Entry]:
        entries = await self._redis.xrange(key, min=f"({after}-0", count=MIRROR_BATCH)
        return [(seq_of(entry_id), decode_record(fields[b"m"])) for entry_id, fields in entries]

    async def describe(self, run_id: str, *, tenant: str = "") -> RunInfo:
        """What the registry says about the run (a run whose executor died is ended INTERRUPTED first)."""
        entry = await self._entry(tenant, run_id)
        with self._store_errors():
            terminal = decode_terminal(entry[b"terminal"]) if b"terminal" in entry else None
            status = status_of(entry)
            pending = decode_pending(entry.get(b"pending")) if status is TaskStatus.INPUT_REQUIRED else ()
        return RunInfo(
            run_id=run_id,
            agent=entry.get(b"agent", b"").decode(),
            session_id=entry.get(b"session_id", b"").decode(),
            status=status,
            pending_interrupts=pending,
            created_at=float(entry.get(b"created_at", b"0")),
            finished_at=float(entry[b"finished_at"]) if b"finished_at" in entry else None,
            last_seq=int(entry.get(b"last_seq", b"0")),
            terminal=terminal,
        )

    async def open_interrupt(
        self, tenant: str, run_id: str, interrupt: Interrupt, pending: tuple[Interrupt, ...]
    ) -> None:
        """Record a run's waiting interrupt for every replica (status INPUT_REQUIRED)."""
        with self._store_errors():
            await self._approvals.open(tenant, run_id, interrupt, pending)

    async def close_interrupt(
        self, tenant: str, run_id: str, interrupt_id: str, pending: tuple[Interrupt, ...]
    ) -> bool:
        """Mark a run's interrupt resolved unless a decision got there first (False then)."""
        with self._store_errors():
            return await self._approvals.close(tenant, run_id, interrupt_id, pending)

    async def resolve_interrupt(
        self, run_id: str, interrupt_id: str, approve: bool, message: str, *, tenant: str = ""
    ) -> TaskStatus:
        """Claim the decision (exactly once across replicas) and route it to the replica executing the run."""
        try:
            entry = await self._entry(tenant, run_id)
        except RunNotFound:
            raise interrupt_not_found(run_id, interrupt_id) from None
        with self._store_errors():
            owner = entry.get(b"owner", b"").decode()
            return await self._approvals.resolve(tenant, run_id, owner, interrupt_id, approve, message)

    async def cancel(self, run_id: str, reason: str, *, tenant: str = "") -> tuple[bool, TaskStatus]:
        """Route a cancel to the replica executing the run and wait (bounded) for its terminal event."""
        entry = await self._entry(tenant, run_id)
        if status_of(entry) not in LIVE:
            return True, status_of(entry)
        key = run_key(tenant, run_id, ":events")
        with self._store_errors():  # read before the request: the terminal may be written before we look again
            top = await self._redis.xrevrange(key, count=1)
            owner = entry.get(b"owner", b"").decode()
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(control_key(owner), {"tenant": tenant, "run_id": run_id, "reason": reason}, maxlen=1000)
                pipe.expire(control_key(owner), CONTROL_TTL_S)  # the owner may be gone: do not keep its stream
                await pipe.execute()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._lease_ms / 1000 + 2):
                async for _ in self._follow((tenant, run_id), key, seq_of(top[0][0]) if top else 0):
                    pass
        with self._store_errors():
            return False, status_of(await self._redis.hgetall(run_key(tenant, run_id)))

    @contextlib.asynccontextmanager
    async def subscriber(self, run_id: str, limit: int, *, tenant: str = "") -> AsyncIterator[None]:
        """Hold one of the run's subscriber slots, counted across replicas (renewed with the leases)."""
        with self._store_errors():
            if not await self._redis.exists(run_key(tenant, run_id)):
                raise not_found(run_id)
            slot = await self._slots.acquire(run_key(tenant, run_id, ":subscribers"), run_id, limit)
        slot.hold()
        try:
            yield
        finally:
            await asyncio.shield(slot.release())  # a cancelled subscriber still gives its slot back

    async def _entry(self, tenant: str, run_id: str) -> dict[bytes, bytes]:
        with self._store_errors():
            entry: dict[bytes, bytes] = await self._redis.hgetall(run_key(tenant, run_id))
            if not entry or b"agent" not in entry:
                raise not_found(run_id)
            if entry.get(b"status") in (b"running", b"input_required") and await self._interrupt_if_orphaned(
                (tenant, run_id)
            ):
                entry = await self._redis.hgetall(run_key(tenant, run_id))
            return entry

    async def _interrupt_if_orphaned(self, run: tuple[str, str]) -> bool:
        """End a run whose executor's lease expired with an interrupted terminal, exactly once; True if ended."""
        return await interrupt_if_orphaned(self._redis, self._interrupt, run, self._ttl_s)
