"""RunLog: seq assignment, cursors, replay, several readers, slow readers."""

from __future__ import annotations

import asyncio

import pytest

from agentstream_server.runtime.events import Chunk, TaskFinished, TaskStatus
from agentstream_server.store.log import EventsNotRetained, RunLog, RunLogClosed


def chunk(text: str) -> Chunk:
    return Chunk(content=text, model="m", agent_name="a", step=1)


def terminal() -> TaskFinished:
    return TaskFinished(status=TaskStatus.SUCCEEDED, success=True, answer="x", msg="ok", agent_name="a")


async def collect(log: RunLog, after_seq: int = 0) -> list[int]:
    return [record.seq async for record in log.follow(after_seq)]


async def test_seq_is_assigned_on_append_from_one_without_gaps() -> None:
    log = RunLog("r1", "s1")
    seqs = [log.append(chunk(str(i))).seq for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert log.last_seq == 5
    assert not log.closed


async def test_follow_replays_then_follows_live_until_terminal() -> None:
    log = RunLog("r1")
    log.append(chunk("a"))
    reader = asyncio.create_task(collect(log))
    await asyncio.sleep(0)
    for text in "bcd":
        log.append(chunk(text))
        await asyncio.sleep(0)
    log.append(terminal())
    assert await reader == [1, 2, 3, 4, 5]


async def test_follow_from_a_position_skips_earlier_events() -> None:
    log = RunLog("r1")
    for text in "abc":
        log.append(chunk(text))
    log.append(terminal())
    assert await collect(log, after_seq=2) == [3, 4]
    assert await collect(log, after_seq=4) == []


async def test_several_readers_each_get_every_event_and_a_slow_one_holds_nobody_back() -> None:
    log = RunLog("r1")
    fast = asyncio.create_task(collect(log))
    slow_started = asyncio.Event()
    release_slow = asyncio.Event()

    async def slow_reader() -> list[int]:
        seen = []
        async for record in log.follow():
            seen.append(record.seq)
            if record.seq == 1:
                slow_started.set()
                await release_slow.wait()
        return seen

    slow = asyncio.create_task(slow_reader())
    log.append(chunk("first"))
    await slow_started.wait()
    for i in range(100):
        log.append(chunk(str(i)))
    log.append(terminal())
    assert await fast == list(range(1, 103))
    release_slow.set()
    assert await slow == list(range(1, 103))


async def test_cancelling_one_reader_does_not_disturb_another() -> None:
    log = RunLog("r1")
    victim = asyncio.create_task(collect(log))
    survivor = asyncio.create_task(collect(log))
    await asyncio.sleep(0)
    victim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await victim
    log.append(chunk("a"))
    log.append(terminal())
    assert await survivor == [1, 2]


async def test_append_after_terminal_is_refused() -> None:
    log = RunLog("r1")
    log.append(terminal())
    assert log.closed
    assert log.terminal is not None
    with pytest.raises(RunLogClosed):
        log.append(chunk("late"))


async def test_a_pacing_reader_that_stops_reading_holds_the_producer_back_without_losing_events() -> None:
    log = RunLog("r1", max_unread=10)
    reader = log.follow(pace=True)
    log.append(chunk("first"))
    first = await anext(reader)
    produced = 0

    async def produce() -> None:
        nonlocal produced
        for i in range(100):
            log.append(chunk(str(i)))
            produced += 1
            if log.must_wait:
                await log.wait_writable()
        log.append(terminal())

    producer = asyncio.create_task(produce())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not producer.done()
    assert produced <= 11, "the producer ran past the bound while the reader was stalled"
    seqs = [first.seq] + [record.seq async for record in reader]
    await producer
    assert seqs == list(range(1, 103))


async def test_a_pacing_reader_that_leaves_releases_the_producer() -> None:
    log = RunLog("r1", max_unread=2)
    reader = log.follow(pace=True)
    log.append(chunk("a"))
    await anext(reader)
    for text in "bcde":
        log.append(chunk(text))
    assert log.must_wait
    await reader.aclose()
    assert not log.must_wait


async def test_the_log_retains_only_the_newest_events_and_a_reader_behind_them_gets_a_clear_error() -> None:
    log = RunLog("r1", max_unread=5, max_retained=16)
    for i in range(100):
        log.append(chunk(str(i)))
    log.append(terminal())
    oldest = log.oldest_retained_seq
    assert 101 - 18 <= oldest <= 101 - 16 + 1
    assert [r.seq async for r in log.follow(after_seq=oldest - 1)] == list(range(oldest, 102))
    with pytest.raises(EventsNotRetained) as caught:
        await collect(log, after_seq=0)
    assert caught.value.oldest_seq == oldest


async def test_a_pacing_reader_never_loses_events_to_retention() -> None:
    log = RunLog("r1", max_unread=4, max_retained=8, paced=True)

    async def produce() -> None:
        for i in range(200):
            log.append(chunk(str(i)))
            if log.must_wait:
                await log.wait_writable()
        log.append(terminal())

    reader = asyncio.create_task(collect_paced(log))
    await produce()
    assert await reader == list(range(1, 202))


async def collect_paced(log: RunLog) -> list[int]:
    seen = []
    async for record in log.follow(pace=True):
        seen.append(record.seq)
        await asyncio.sleep(0)
    return seen


def test_max_unread_must_be_below_max_retained() -> None:
    with pytest.raises(ValueError, match="below max_retained"):
        RunLog("r1", max_unread=10, max_retained=10)
