"""`agentstream serve --workers N`: a supervisor running N server processes on one port (SO_REUSEPORT).

Each worker is a whole server (`serve --workers 1 --port P --reuse-port`): its own event loop, run store
connection, health service and graceful shutdown; the kernel spreads new connections across them. The
supervisor holds no gRPC server and imports no layer of the package. It:

- reserves the port (a bound, non-listening SO_REUSEPORT socket, so port 0 names one port for all workers
  and no other program can take it while a worker restarts) and starts the workers;
- logs `listening on HOST:PORT` once every worker listens (workers log `ready on`, never `listening on`);
  a worker that exits before the group is up stops the group (status 1): it is a configuration error;
- restarts a worker that dies later, after a backoff (1 s, doubling to 30 s; back to 1 s once a worker
  stayed up 60 s);
- forwards SIGTERM/SIGINT to every worker as SIGTERM (each drains its runs) and exits 0 when every worker's
  last process exited 0, else 1; a second signal forwards a second SIGTERM (workers exit at once) and exits
  with 128 + its number; a shutdown still unfinished after grace + 15 s kills the workers and exits 1.
- forwards SIGHUP to every worker (each re-reads its tokens and JWKS files).

Workers run in their own process group, so a terminal's Ctrl-C reaches the supervisor only (and is not
counted twice); on Linux they get SIGTERM if the supervisor dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agentstream_server.config import Settings

logger = logging.getLogger("agentstream.workers")

RESTART_BACKOFF_S = 1.0
"""Wait before restarting a worker that died; doubles on each further death, up to MAX_RESTART_BACKOFF_S."""
MAX_RESTART_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0
"""A worker that stayed up this long died by accident, not in a loop: its next restart waits RESTART_BACKOFF_S."""
SHUTDOWN_SLACK_S = 15.0
"""Beyond the grace period, how long the workers get to exit (each ends itself within grace + 7 s)."""
FORCED_EXIT_WAIT_S = 3.0
"""After a second signal, how long the workers get before they are killed."""
PR_SET_PDEATHSIG = 1


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) an SO_REUSEPORT socket on host:port: it picks the port when 0 and holds it.

    A bound socket that does not listen takes no connections; the workers bind the same port beside it.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def describe_exit(returncode: int) -> str:
    """'status 3' or 'signal SIGKILL' (asyncio reports a death by signal N as -N)."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGTERM the child when this process dies (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before the call above: do not outlive it
            os._exit(1)

    return preexec


@dataclass
class Worker:
    """One slot of the group: its current process, and what shutdown needs to know about it."""

    index: int
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    last_returncode: int | None = None
    restarts: int = 0
    started_at: float = 0.0


class Supervisor:
    """Runs `settings.workers` server processes on one port until a signal stops them (see the module doc)."""

    def __init__(self, settings: Settings, child_args: Sequence[str]) -> None:
        self.settings = settings
        self.child_args = list(child_args)
        self.workers = [Worker(index) for index in range(1, settings.workers + 1)]
        self.stopping = asyncio.Event()
        self.group_changed = asyncio.Event()
        self.announced = False
        self.startup_failed = False
        self.forced_by: signal.Signals | None = None
        self.port = 0
        self._preexec = _parent_death_signal()

    async def run(self) -> int:
        """Start the workers, keep them running until a signal, stop them; the process's exit status."""
        reservation = reserve_port(self.settings.host, self.settings.port)
        try:
            self.port = reservation.getsockname()[1]
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
            loop.add_signal_handler(signal.SIGHUP, self._signal_all, signal.SIGHUP)  # workers re-read auth files
            if self.settings.store == "memory":
                logger.warning(
                    "%d workers with the memory store (AGENTSTREAM_WORKERS_ALLOW_MEMORY): a run is visible only "
                    "to the worker executing it; SubscribeRun, GetRun and CancelRun reaching another worker "
                    "answer NOT_FOUND",
                    len(self.workers),
                )
            logger.info("starting %d workers on %s:%d", len(self.workers), self.settings.host, self.port)
            slots = [asyncio.create_task(self._keep(worker)) for worker in self.workers]
            announcer = asyncio.create_task(self._announce())
            await self.stopping.wait()
            announcer.cancel()
            try:
                async with asyncio.timeout(self.settings.shutdown_grace_s + SHUTDOWN_SLACK_S):
                    await asyncio.gather(*slots)
            except TimeoutError:
                logger.error("workers did not stop within grace + %.0fs: killing them", SHUTDOWN_SLACK_S)
                await self._kill_all(slots)
                return 1
            if self.forced_by is not None:
                return 128 + self.forced_by.value
            if self.startup_failed:
                return 1
            failed = [w for w in self.workers if w.last_returncode != 0]
            for worker in failed:
                logger.error("worker %d ended with %s", worker.index, describe_exit(worker.last_returncode or 1))
            logger.info("all workers stopped")
            return 1 if failed else 0
        finally:
            reservation.close()

    async def _announce(self) -> None:
        """Log `listening on HOST:PORT` once every worker is ready (the line tooling waits for)."""
        while not all(w.ready for w in self.workers):
            await self.group_changed.wait()
            self.group_changed.clear()
        self.announced = True
        pids = ", ".join(str(w.process.pid) for w in self.workers if w.process)
        logger.info("listening on %s:%d (%d workers, pids %s)", self.settings.host, self.port, len(self.workers), pids)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stopping.is_set():
            if self.forced_by is None:
                logger.warning("%s during shutdown: stopping the workers now, without waiting for live runs", sig.name)
                self.forced_by = sig
                self._signal_all(signal.SIGTERM)  # a worker's second SIGTERM exits it at once
                asyncio.get_running_loop().call_later(FORCED_EXIT_WAIT_S, self._signal_all, signal.SIGKILL)
            return
        logger.info("%s: stopping %d workers", sig.name, len(self.workers))
        self.stopping.set()
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: signal.Signals) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # exited, not yet reaped
                    worker.process.send_signal(sig)

    async def _kill_all(self, slots: list[asyncio.Task[None]]) -> None:
        self._signal_all(signal.SIGKILL)
        for worker in self.workers:
            if worker.process is not None:
                await worker.process.wait()
        for slot in slots:
            slot.cancel()

    async def _keep(self, worker: Worker) -> None:
        """Run one worker's process; restart it with backoff when it dies, until the group stops."""
        backoff = RESTART_BACKOFF_S
        while True:
            process, ready = await self._start(worker)
            if ready and not self.stopping.is_set():
                worker.ready = True
                self.group_changed.set()
                if worker.restarts:
                    logger.info("worker %d restarted (pid %d)", worker.index, process.pid)
            worker.last_returncode = returncode = await process.wait()
            worker.ready = False
            if self.stopping.is_set():
                if returncode == -signal.SIGTERM and not ready:  # stopped before it served anything
                    worker.last_returncode = 0
                return
            if not self.announced:
                logger.error(
                    "worker %d (pid %d) exited with %s before the group was up: stopping",
                    worker.index,
                    process.pid,
                    describe_exit(returncode),
                )
                self.startup_failed = True
                self.stopping.set()
                self._signal_all(signal.SIGTERM)
                return
            if time.monotonic() - worker.started_at >= STABLE_AFTER_S:
                backoff = RESTART_BACKOFF_S
            logger.error(
                "worker %d (pid %d) exited with %s: restarting in %.1fs",
                worker.index,
                process.pid,
                describe_exit(returncode),
                backoff,
            )
            try:
                async with asyncio.timeout(backoff):
                    await self.stopping.wait()
                return  # the group stopped during the backoff: this slot's last exit stands
            except TimeoutError:
                pass
            backoff = min(backoff * 2, MAX_RESTART_BACKOFF_S)
            worker.restarts += 1

    async def _start(self, worker: Worker) -> tuple[asyncio.subprocess.Process, bool]:
        """Spawn the worker's process; return it and whether it reported ready (False: it exited first)."""
        read_fd, write_fd = os.pipe()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "agentstream_server",
                "serve",
                *self.child_args,
                "--workers",
                "1",
                "--port",
                str(self.port),
                "--reuse-port",
                "--worker-id",
                str(worker.index),
                "--ready-fd",
                str(write_fd),
                pass_fds=(write_fd,),
                process_group=0,
                preexec_fn=self._preexec,
            )
        finally:
            os.close(write_fd)
        worker.started_at = time.monotonic()
        if self.stopping.is_set():  # a signal arrived while spawning: it did not reach this process
            worker.process.send_signal(signal.SIGTERM)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        try:
            ready = (await reader.readline()) == b"ready\n"  # EOF: the worker exited (or closed it) first
        finally:
            transport.close()
        return worker.process, ready


def run_workers(settings: Settings, child_args: Sequence[str]) -> int:
    """Supervise settings.workers server processes; the supervisor's exit status."""
    return asyncio.run(Supervisor(settings, child_args).run())


def tell_supervisor(ready_fd: int, worker_id: int, host: str) -> Callable[[int], None]:
    """A worker's `ready` callback for transport.server.serve: log `ready on`, then write to the pipe."""

    def ready(port: int) -> None:
        logger.info("worker %d ready on %s:%d", worker_id, host, port)
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)

    return ready
