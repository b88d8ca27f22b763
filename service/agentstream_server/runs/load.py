"""Overload detection: how far behind the event loop runs, and the refusal new runs get while it is too far.

Every event of every run and every new call goes through the one event loop of a server process. When the
loop has more work than it can do, it falls behind: events reach callers late, and grpc.aio, which takes
new calls from gRPC core one per loop turn, takes them more and more slowly (core holds them meanwhile, up to
AGENTSTREAM_CALL_QUEUE_TIMEOUT, see transport/server.py, before cancelling them unseen). So
a server that is too far behind refuses new runs at once, with RESOURCE_EXHAUSTED (TOO_MANY_RUNS, scope
``server_load``) and when to retry, which keeps it near its capacity: the runs it has go on at speed, and
calls keep being answered.

The lag is measured with one timer: it fires every TICK_S and notes how late it fired; the figure used is a
moving average (one late turn, a garbage collection, does not refuse anything).
"""

from __future__ import annotations

import asyncio

from agentstream_server.errors import TooManyRuns

TICK_S = 0.05
"""How often the loop's lateness is sampled."""

SMOOTHING = 0.25
"""Weight of the newest sample in the moving average (about the last eight samples count)."""

MIN_RETRY_AFTER_S = 1.0
"""The shortest retry hint given with a refusal."""


class LoopLag:
    """The event loop's lateness, sampled while the server runs; ``check`` refuses a new run when it is too high.

    ``limit_s``: lag above which new runs are refused (0 or less: never refused). Sampling starts on the
    first ``check`` (or ``start``) from within the loop.
    """

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.lag_s = 0.0
        """The moving average of how late the sampling timer fired, seconds."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start sampling on the running loop (again after ``stop``)."""
        if self._timer is None and self.limit_s > 0:
            self._loop = asyncio.get_running_loop()
            self._due = self._loop.time() + TICK_S
            self._timer = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        """Stop sampling."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        late = max(0.0, now - self._due)
        self.lag_s += SMOOTHING * (late - self.lag_s)
        self._due = now + TICK_S
        self._timer = self._loop.call_at(self._due, self._tick)

    @property
    def overloaded(self) -> bool:
        """True while the loop is further behind than the limit."""
        return 0 < self.limit_s < self.lag_s

    def check(self) -> None:
        """Raise TooManyRuns (scope ``server_load``, ``retry_after_s``) while the loop is overloaded."""
        self.start()
        if self.overloaded:
            retry_after = max(MIN_RETRY_AFTER_S, 2 * self.lag_s)
            raise TooManyRuns(
                f"server is overloaded (its event loop runs {self.lag_s * 1000:.0f} ms behind, over the "
                f"{self.limit_s * 1000:.0f} ms limit) and starts no new runs; retry in {retry_after:.0f} s "
                "or on another replica",
                metadata={
                    "scope": "server_load",
                    "retry_after_s": f"{retry_after:.1f}",
                    "loop_lag_ms": f"{self.lag_s * 1000:.0f}",
                },
            )
