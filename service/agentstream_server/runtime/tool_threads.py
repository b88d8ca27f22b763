"""The threads sync tools run on: a bounded number of daemon threads, so a tool that never returns can
neither multiply threads without end nor keep the process from exiting.

asyncio.to_thread would use the loop's default executor, which has no bound we choose, is joined by
asyncio.run on the way out, and whose threads concurrent.futures joins at interpreter exit: one stuck
tool then kept the server from ever exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_TOOL_THREADS = 32


@dataclass(eq=False, slots=True)
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    call: Callable[[], Any]


class ToolThreads:
    """Runs sync calls on at most ``max_workers`` daemon threads; calls beyond that wait in line.

    A waiting call that is cancelled (by its tool timeout, or its run's cancellation) leaves the line
    and never runs. A running call cannot be interrupted: its thread stays busy until the call returns.
    """

    def __init__(self, max_workers: int = DEFAULT_TOOL_THREADS, *, name: str = "agentstream-tool") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max_workers = max_workers
        self._name = name
        self._lock = threading.Condition()
        self._waiting: deque[_Job] = deque()
        self._threads = 0
        self._idle = 0

    @property
    def max_workers(self) -> int:
        """The most threads this pool starts."""
        return self._max_workers

    @max_workers.setter
    def max_workers(self, value: int) -> None:
        if value < 1:
            raise ValueError("max_workers must be at least 1")
        with self._lock:
            self._max_workers = value  # lowering it stops new threads; started ones stay

    @property
    def threads(self) -> int:
        """Threads started so far (they never exit; idle ones wait for the next call)."""
        return self._threads

    @property
    def waiting(self) -> int:
        """Calls waiting for a free thread."""
        return len(self._waiting)

    async def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on a pool thread, in a copy of the current context; its result or exception."""
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), functools.partial(contextvars.copy_context().run, fn, *args, **kwargs))
        with self._lock:
            self._waiting.append(job)
            if self._idle >= len(self._waiting):
                self._lock.notify()
            elif self._threads < self._max_workers:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True).start()
        try:
            return await job.future
        finally:
            if job.future.cancelled():
                self._withdraw(job)

    def _withdraw(self, job: _Job) -> None:
        # ValueError: a thread took it already; the call runs to its end and its result is dropped
        with self._lock, contextlib.suppress(ValueError):
            self._waiting.remove(job)

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
                while not self._waiting:
                    self._lock.wait()
                self._idle -= 1
                job = self._waiting.popleft()
            if job.future.cancelled():  # cancelled between leaving the line and reaching a thread
                continue
            try:
                outcome: tuple[bool, Any] = (True, job.call())
            except BaseException as exc:  # handed to the caller, as asyncio.to_thread would
                outcome = (False, exc)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this result any more
                job.loop.call_soon_threadsafe(_settle, job.future, outcome)
            del job, outcome


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # cancelled while the call ran
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    elif isinstance(value, StopIteration):  # a future refuses it: it would end the coroutine awaiting it
        future.set_exception(RuntimeError(f"the tool raised StopIteration: {value}"))
    else:
        future.set_exception(value)


TOOL_THREADS = ToolThreads()
"""The pool every sync tool runs on; the server sets its size from AGENTSTREAM_TOOL_THREADS."""
