"""The daemon thread pool sync tools run on: bounded, cancellable while waiting, never in the way of exit."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator

import pytest

from agentstream_server.runtime.tool_threads import TOOL_THREADS, ToolThreads

VARIABLE: contextvars.ContextVar[str] = contextvars.ContextVar("VARIABLE", default="unset")


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test, so that no blocked thread outlives it."""
    event = threading.Event()
    yield event
    event.set()


async def test_regression_stuck_sync_tools_cannot_take_more_threads_than_the_pool_has(
    release: threading.Event,
) -> None:
    pool = ToolThreads(2, name="test-pool")
    ran: list[str] = []

    def block(label: str) -> str:
        ran.append(label)
        release.wait()
        return label

    stuck = [asyncio.create_task(pool.run(block, f"stuck-{i}")) for i in range(2)]
    while len(ran) < 2:
        await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):  # what a tool timeout does to a call waiting in line
            await pool.run(block, "waited")
    assert (pool.threads, pool.waiting) == (2, 0), "no third thread; the timed-out call left the line"
    for task in stuck:  # a run cancelled while its tools were stuck
        task.cancel()
    await asyncio.wait(stuck)
    assert pool.threads == 2
    release.set()
    assert await asyncio.wait_for(pool.run(str.upper, "free again"), 10) == "FREE AGAIN"
    assert ran == ["stuck-0", "stuck-1"], "the call that timed out while waiting never ran"
    assert pool.threads == 2


async def test_pool_threads_are_daemon_threads_so_they_cannot_hold_up_interpreter_exit(
    release: threading.Event,
) -> None:
    pool = ToolThreads(1, name="test-daemon")
    task = asyncio.create_task(pool.run(release.wait))
    while pool.threads < 1:
        await asyncio.sleep(0.01)
    (thread,) = [t for t in threading.enumerate() if t.name.startswith("test-daemon-")]
    assert thread.daemon
    release.set()
    assert await task is True


async def test_results_exceptions_and_context_come_back_to_the_caller() -> None:
    pool = ToolThreads(4)

    def fail() -> None:
        raise KeyError("missing")

    def stop() -> None:
        raise StopIteration("done")

    VARIABLE.set("from the caller")
    assert await pool.run(lambda a, *, b: a + b, 1, b=2) == 3
    assert await pool.run(VARIABLE.get) == "from the caller"
    with pytest.raises(KeyError, match="missing"):
        await pool.run(fail)
    with pytest.raises(RuntimeError, match="the tool raised StopIteration: done"):
        await pool.run(stop)
    results = await asyncio.gather(*(pool.run(pow, n, 2) for n in range(50)))
    assert results == [n * n for n in range(50)]
    assert pool.threads <= 4


def test_the_pool_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ToolThreads(0)
    with pytest.raises(ValueError, match="at least 1"):
        TOOL_THREADS.max_workers = 0
