"""Figure 14: what observability costs per token: tracing (every span exported) and /metrics on, against both off.

CPU per token on this shared 2-core VM moves ±15% from one run to the next, and a process's figure also depends
on which core the scheduler gives it, so two servers measured one after the other cannot resolve a 5%
difference. The figure therefore runs both servers at the same time on the same core (the scripted LLM and this
client on the other), streams one paced run through each per round with the order alternating, and reports the
median of the per-round ratios. A control row does the same with two identical servers (both off): its distance
from 1.00x is the method's own error, measured in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
from collections.abc import Callable, Iterator
from typing import Any

from agentstream import Client
from benchmarks.streams import stream_tokens

RATE = 1000
"""Tokens per second of each paced run: every token is its own upstream read and its own gRPC message."""


async def observability_cost(
    tokens: int,
    rounds: int,
    process: Callable[..., Any],
    cpu_seconds: Callable[[int], float],
    table: Callable[[str, list[tuple[str, str, str, str]]], None],
) -> None:
    """Print figure 14: the on/off ratio of server CPU per token, and the same method's off/off control."""
    async with process("tests.support.fakellm", "--port", "0", ready=r"listening on (\S+)") as (llm_pid, llm_url):
        env = {"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "bench"}
        observed_env = env | {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "bench"}
        serve = ("agentstream_server", "serve", "--port", "0", "--grace", "1")
        ready = r"listening on (\S+)"
        async with (
            process(*serve, ready=ready, env=env) as (off_pid, off_target),
            process(*serve, ready=ready, env=env) as (control_pid, control_target),
            process(*serve, "--metrics-port", "0", ready=ready, env=observed_env) as (on_pid, on_target),
            Client(off_target) as off,
            Client(control_target) as control,
            Client(on_target) as on,
        ):
            with _pinned(servers=(off_pid, control_pid, on_pid), others=(llm_pid, os.getpid())) as pinned:
                for client in (off, control, on):
                    await _stream(client, 200)  # warm up
                measured = await _ratios((on, on_pid), (off, off_pid), tokens, rounds, cpu_seconds)
                noise = await _ratios((control, control_pid), (off, off_pid), tokens, rounds, cpu_seconds)
    on_us, off_us, ratios = measured
    control_us, control_off_us, control_ratios = noise
    how = f"{tokens:,} tokens at {RATE}/s per run, {rounds} rounds, median of per-round ratios"
    if not pinned:
        how += ", NOT pinned (fewer than 2 cores)"
    table(
        f"14. Observability: server CPU per token, coalescing off ({how}) (goal: <= 1.05x)",
        [
            ("tracing + metrics on", f"{on_us:.1f} µs", f"{off_us:.1f} µs both off", _spread(ratios)),
            (
                "control: off vs off",
                f"{control_us:.1f} µs",
                f"{control_off_us:.1f} µs both off",
                _spread(control_ratios),
            ),
        ],
    )


async def _ratios(
    measured: tuple[Client, int], baseline: tuple[Client, int], tokens: int, rounds: int, cpu: Callable[[int], float]
) -> tuple[float, float, list[float]]:
    """Rounds of one run through each server at once: (median µs/token measured, baseline, per-round ratios)."""
    pair = [measured, baseline]
    figures: list[list[float]] = [[], []]
    for round_ in range(rounds):
        order = pair if round_ % 2 == 0 else pair[::-1]  # who asks the scripted LLM first alternates
        before = [cpu(pid) for _, pid in order]
        received = await asyncio.gather(*(_stream(client, tokens) for client, _ in order))
        for (client, pid), start, count in zip(order, before, received, strict=True):
            figures[pair.index((client, pid))].append((cpu(pid) - start) / count * 1e6)
    ratios = [m / b for m, b in zip(*figures, strict=True)]
    return statistics.median(figures[0]), statistics.median(figures[1]), ratios


async def _stream(client: Client, tokens: int) -> int:
    """One CHUNK-mode run of N paced tokens, coalescing off; the tokens received (all of them, or it raises)."""
    received, _ = await stream_tokens(client, tokens, rate=RATE)
    if received != tokens:
        raise RuntimeError(f"lost tokens: {received} of {tokens}")
    return received


def _spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.3f}x ({min(ratios):.2f}-{max(ratios):.2f})"


@contextlib.contextmanager
def _pinned(servers: tuple[int, ...], others: tuple[int, ...]) -> Iterator[bool]:
    """Every thread of the servers on the last core, the LLM's and this process's on the others; undone after.

    Yields whether it pinned (it cannot on one core, or where the OS has no affinity call)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) < 2:
        yield False
        return
    original = set(cores)
    _set_affinity(servers, {cores[-1]})
    _set_affinity(others, set(cores[:-1]))
    try:
        yield True
    finally:
        _set_affinity((os.getpid(),), original)


def _set_affinity(pids: tuple[int, ...], cores: set[int]) -> None:
    for pid in pids:
        for thread in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(thread), cores)
