"""agentstream benchmarks: fourteen figures, each printed beside a baseline measured in the same run.

Run with ``make bench`` (full sizes) or ``make bench-quick`` (tiny sizes, a smoke run). The scripted LLM
(``tests.support.fakellm``) and the agentstream server each run in their own process, as in production;
this process is the client. Figures are medians over repetitions; ratios matter more than absolutes on
a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import openai
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentstream import ChunkMessage, Client, StreamingMode, TaskMessage
from agentstream.v1 import message_pb2 as pb
from benchmarks.nested import nested_agent_cost
from benchmarks.observability import observability_cost
from benchmarks.streams import stream_tokens

ROOT = Path(__file__).resolve().parents[1]
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sizes:
    """Workload sizes for one benchmark run."""

    tokens: int
    transport_messages: int
    repeats: int
    ttfc_runs: int
    concurrency: tuple[int, ...]
    concurrent_tokens: int
    rate: float
    slow_tokens: int
    slow_pause_s: float
    health_checks: int
    auth_calls: int
    held_runs: int
    idle_subscribers: int
    paced_tokens: int
    paced_rounds: int


FULL = Sizes(
    50_000,
    50_000,
    3,
    200,
    (100, 250, 500, 750, 1000, 1500, 2000),
    60,
    10.0,
    1_000_000,
    10.0,
    2_000,
    5_000,
    1_000,
    10_000,
    5_000,
    10,
)
QUICK = Sizes(2_000, 2_000, 1, 10, (20, 50), 10, 20.0, 20_000, 1.0, 100, 200, 20, 100, 200, 2)


def table(title: str, rows: list[tuple[str, str, str, str]]) -> None:
    """Print one figure as a table: what, figure, baseline, ratio."""
    print(f"\n## {title}")
    widths = [max(len(r[i]) for r in [("what", "figure", "baseline", "ratio"), *rows]) for i in range(4)]
    for row in [("what", "figure", "baseline", "ratio"), *rows]:
        print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    sys.stdout.flush()


def rate(n: float) -> str:
    return f"{n:,.0f}/s"


# ---------------------------------------------------------------------------------------------- processes


def process(*args: str, ready: str, env: dict[str, str] | None = None) -> AbstractAsyncContextManager[tuple[int, str]]:
    """Start ``python -m ARGS``, wait for a line matching ``ready``; yield (pid, the match's first group)."""
    return process_exec(sys.executable, "-m", *args, ready=ready, env=env)


@asynccontextmanager
async def process_exec(*argv: str, ready: str, env: dict[str, str] | None = None) -> AsyncIterator[tuple[int, str]]:
    """Start ARGV, wait for a line matching ``ready``; yield (pid, the match's first group)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"{argv} exited before it was ready")
                match = re.search(ready, line)
                if match:
                    break
        drain = asyncio.create_task(_drain(proc.stdout))
        yield proc.pid, match.group(1)
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
    drain.cancel()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (a --workers supervisor and its workers)."""
    total = cpu_seconds(pid)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        total += cpu_seconds(int(entry))
            except (OSError, ValueError):
                continue  # gone meanwhile
    return total


# ---------------------------------------------------------------------------------------------- figures


async def upstream_ceiling(llm_url: str, sizes: Sizes) -> None:
    """(1) The openai SDK alone reading N tokens: typed chunk objects versus raw SSE lines + json.loads."""

    client = openai.AsyncOpenAI(base_url=llm_url, api_key="bench", max_retries=0)
    messages = [{"role": "user", "content": f"bench: tokens={sizes.tokens}"}]

    async def typed() -> float:
        start = time.perf_counter()
        stream = await client.chat.completions.create(model="m", messages=messages, stream=True)  # type: ignore[arg-type]
        count = sum([1 async for chunk in stream if chunk.choices and chunk.choices[0].delta.content])
        assert count == sizes.tokens
        return count / (time.perf_counter() - start)

    async def raw() -> float:
        start = time.perf_counter()
        count = 0
        async with client.chat.completions.with_streaming_response.create(
            model="m",
            messages=messages,
            stream=True,  # type: ignore[arg-type]
        ) as response:
            async for line in response.iter_lines():
                if line.startswith("data:") and line[5:].strip() != "[DONE]":
                    choices = json.loads(line[5:])["choices"]
                    count += bool(choices and choices[0]["delta"].get("content"))
        assert count == sizes.tokens
        return count / (time.perf_counter() - start)

    typed_rate = statistics.median([await typed() for _ in range(sizes.repeats)])
    raw_rate = statistics.median([await raw() for _ in range(sizes.repeats)])
    await client.close()
    table(
        f"1. Upstream ceiling: openai SDK reading {sizes.tokens:,} tokens from the scripted LLM",
        [("raw SSE lines + json.loads (what agentstream uses)", rate(raw_rate), rate(typed_rate) + " typed",
          f"{raw_rate / typed_rate:.1f}x")],
    )  # fmt: skip


@dataclass(frozen=True)
class Transport:
    """The raw gRPC baseline: messages/s on one stream, and the server's CPU per message."""

    rate: float
    cpu_us: float


RawRound = Callable[[], Awaitable[tuple[float, float]]]
"""One raw grpc.aio stream of the transport figure's messages: (messages/s, server CPU µs per message)."""


@asynccontextmanager
async def raw_stream(sizes: Sizes) -> AsyncIterator[RawRound]:
    """(2)'s raw grpc.aio server, running; yields a function that streams one round from it."""
    async with process(
        "benchmarks.raw_grpc_server", "--messages", str(sizes.transport_messages), ready=r"listening on (\S+)"
    ) as (pid, target):
        async with grpc.aio.insecure_channel(target) as channel:
            method = channel.unary_stream(
                "/bench.Raw/Stream", request_serializer=lambda b: b, response_deserializer=pb.Message.FromString
            )

            async def one_round() -> tuple[float, float]:
                cpu_before = cpu_seconds(pid)
                start = time.perf_counter()
                count = 0
                async for _message in method(b""):
                    count += 1
                assert count == sizes.transport_messages
                return count / (time.perf_counter() - start), (cpu_seconds(pid) - cpu_before) / count * 1e6

            yield one_round


def transport_table(sizes: Sizes, rounds: list[tuple[float, float]]) -> Transport:
    """Print (2) from its rounds; the medians, the baseline of (3) and (7)."""
    ceiling = Transport(statistics.median(r for r, _ in rounds), statistics.median(c for _, c in rounds))
    table(
        f"2. Transport ceiling: raw grpc.aio, {sizes.transport_messages:,} small messages, one stream",
        [
            ("messages/s", rate(ceiling.rate), "-", "1.0x"),
            ("server CPU per message", f"{ceiling.cpu_us:.1f} µs", "-", "1.0x"),
        ],
    )
    return ceiling


async def transport_ceiling(raw: RawRound, sizes: Sizes) -> Transport:
    """(2) alone: raw grpc.aio, a server process streams N small Messages to this process."""
    return transport_table(sizes, [await raw() for _ in range(sizes.repeats)])


async def full_stack(client: Client, server_pid: int, raw: RawRound, sizes: Sizes) -> None:
    """(2) raw grpc.aio, (3) scripted LLM -> service -> gRPC -> SDK, CHUNK mode, (7) server CPU per token.

    The raw stream and the full stack without coalescing run in turns, and (3) gives the median of each turn's
    ratio and the lowest: the raw ceiling itself moves by a third between runs on a shared box, so a ratio
    against a ceiling measured minutes earlier says more about the box than about the service."""
    raw_rounds: list[tuple[float, float]] = []
    ratios: list[float] = []
    rows, cpu_rows, figures = [], [], []
    for window in (0, 20):
        rates, cpus = [], []
        for _ in range(sizes.repeats if window else max(5, sizes.repeats)):
            if not window:
                raw_rounds.append(await raw())
            cpu_before = cpu_seconds(server_pid)
            received, seconds = await stream_tokens(client, sizes.tokens, window)
            assert received == sizes.tokens, f"lost tokens: {received} of {sizes.tokens}"
            rates.append(received / seconds)
            cpus.append((cpu_seconds(server_pid) - cpu_before) / received * 1e6)
            if not window:
                ratios.append(rates[-1] / raw_rounds[-1][0])
        figures.append((window, statistics.median(rates), statistics.median(cpus)))
    transport = transport_table(sizes, raw_rounds)
    for window, tokens_per_s, cpu_us in figures:
        label = "coalescing off" if window == 0 else f"coalescing {window} ms"
        ratio = (f"{statistics.median(ratios):.2f}x (lowest {min(ratios):.2f}x, {len(ratios)} turns)" if not window
                 else f"{tokens_per_s / transport.rate:.2f}x")  # fmt: skip
        rows.append((f"tokens/s, {label}", rate(tokens_per_s), rate(transport.rate) + " (2)", ratio))
        cpu_rows.append((f"server CPU per token, {label}", f"{cpu_us:.1f} µs",
                         f"{transport.cpu_us:.1f} µs per raw gRPC message (2)", f"{cpu_us / transport.cpu_us:.2f}x"))  # fmt: skip
    table(f"3. Full stack, one stream, CHUNK mode, {sizes.tokens:,} tokens (raw and full stack in turns)", rows)
    table("7. Server CPU per token (process CPU time / tokens, from (3))", cpu_rows)


async def first_chunk_latency(client: Client, llm_url: str, sizes: Sizes) -> None:
    """(4) When the SDK gets the first chunk minus when the scripted LLM sent it; baseline: the openai SDK alone."""
    added = []
    for _ in range(sizes.ttfc_runs):
        async for message in client.streaming_run("bench: tokens=1 stamp", streaming_mode=StreamingMode.CHUNK):
            if isinstance(message, ChunkMessage):
                added.append((time.perf_counter_ns() - int(message.payload.content.split()[0])) / 1e6)
    direct = []
    oai = openai.AsyncOpenAI(base_url=llm_url, api_key="bench", max_retries=0)
    for _ in range(sizes.ttfc_runs):
        async with oai.chat.completions.with_streaming_response.create(
            model="m", messages=[{"role": "user", "content": "bench: tokens=1 stamp"}], stream=True
        ) as response:
            async for line in response.iter_lines():
                if '"content": "' in line and '"content": ""' not in line:
                    stamp = int(re.search(r'"content": "(\d+)', line).group(1))  # type: ignore[union-attr]
                    direct.append((time.perf_counter_ns() - stamp) / 1e6)
    await oai.close()
    table(
        f"4. Added time to first chunk, {sizes.ttfc_runs} runs (LLM sent -> SDK received)",
        [
            ("p50", f"{percentile(added, 50):.2f} ms", f"{percentile(direct, 50):.2f} ms openai SDK alone",
             f"+{percentile(added, 50) - percentile(direct, 50):.2f} ms"),
            ("p99", f"{percentile(added, 99):.2f} ms", f"{percentile(direct, 99):.2f} ms openai SDK alone",
             f"+{percentile(added, 99) - percentile(direct, 99):.2f} ms"),
        ],
    )  # fmt: skip


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


LOADGEN = ROOT / "benchmarks" / "loadgen"
LOAD_ENV = {
    "AGENTSTREAM_MAX_RUNS": "100000",  # default 256: the load is all runs at once
    "AGENTSTREAM_MAX_RUNS_PER_PEER": "0",  # default 64: every stream comes from 127.0.0.1, so no per-peer limit
}
"""Settings the concurrency figure's server runs with; the rest (128 streams per connection...) are the defaults."""


def build_loadgen() -> Path:
    """go build the load generator and the Go scripted LLM into benchmarks/loadgen/bin (gitignored)."""
    import subprocess

    subprocess.run(["go", "build", "-o", "bin/", "./cmd/..."], cwd=LOADGEN, check=True)
    return LOADGEN / "bin"


@dataclass(frozen=True)
class Load:
    """One load generator run against one server, and that server's CPU time over it."""

    report: dict[str, Any]
    cpu_s: float

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_s / max(1, self.report["events"]) * 1e6

    @property
    def errors(self) -> int:
        return sum(self.report["errors"].values()) + self.report["incomplete"]

    def error_text(self) -> str:
        errors = ", ".join(f"{n} {code}" for code, n in sorted(self.report["errors"].items()))
        incomplete = self.report["incomplete"]
        return (errors + (f", {incomplete} incomplete" if incomplete else "")) or "0"


def connections(streams: int) -> int:
    """HTTP/2 connections the load generator spreads `streams` over: one per STREAMS_PER_CONNECTION, so that
    `--workers` (SO_REUSEPORT balances connections, not calls) has enough of them to balance."""
    return max(1, -(-streams // STREAMS_PER_CONNECTION))


STREAMS_PER_CONNECTION = 25


async def load(loadgen: Path, target: str, server_pid: int, streams: int, sizes: Sizes) -> Load:
    """Run the Go load generator: `streams` StreamingRun calls of stamped tokens at the paced rate."""
    cpu_before = tree_cpu_seconds(server_pid)
    proc = await asyncio.create_subprocess_exec(
        str(loadgen / "loadgen"), "-target", target, "-streams", str(streams),
        "-tokens", str(sizes.concurrent_tokens), "-rate", f"{sizes.rate:g}", "-conns", str(connections(streams)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    cpu = tree_cpu_seconds(server_pid) - cpu_before
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err.decode()[-2000:]}")
    return Load(json.loads(out.decode().strip().splitlines()[-1]), cpu)


def load_rows(streams: int, ours: Load, raw: Load, label: str = "") -> list[tuple[str, str, str, str]]:
    """The rows of one load level: events/s, added latency, call -> first event, CPU per event, errors."""
    a, b = ours.report, raw.report
    name = f"{streams} streams{label}"
    return [
        (f"{name}: delivered events/s", rate(a["events_per_s"]), rate(b["events_per_s"]) + " raw",
         f"{a['events_per_s'] / b['events_per_s']:.2f}x"),
        (f"{name}: latency p50 / p99", f"{a['p50_ms']:.1f} / {a['p99_ms']:.1f} ms",
         f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f} ms raw",
         f"+{a['p50_ms'] - b['p50_ms']:.1f} / +{a['p99_ms'] - b['p99_ms']:.1f} ms"),
        (f"{name}: call -> first event p50 / p99", f"{a['first_event_p50_ms']:.0f} / "
         f"{a['first_event_p99_ms']:.0f} ms", f"{b['first_event_p50_ms']:.0f} / {b['first_event_p99_ms']:.0f} ms raw",
         f"+{a['first_event_p50_ms'] - b['first_event_p50_ms']:.0f} / "
         f"+{a['first_event_p99_ms'] - b['first_event_p99_ms']:.0f} ms"),
        (f"{name}: server CPU per event", f"{ours.cpu_us_per_event:.0f} µs",
         f"{raw.cpu_us_per_event:.0f} µs raw", f"{ours.cpu_us_per_event / raw.cpu_us_per_event:.2f}x"),
        (f"{name}: errors", ours.error_text(), raw.error_text() + " raw", "-"),
    ]  # fmt: skip


def keeps_up(ours: Load, raw: Load) -> bool:
    """A level is below the knee when it delivers >= 0.9x the raw server's events/s with no error."""
    return ours.report["events_per_s"] >= 0.9 * raw.report["events_per_s"] and not ours.errors


def knee_text(passed: int | None, failed: int | None, levels: tuple[int, ...]) -> str:
    if failed is None:
        return f"not reached up to {levels[-1]} streams"
    if passed is None:
        return f"at or below {failed} streams"
    return f"between {passed} and {failed} streams"


async def concurrency(sizes: Sizes) -> None:
    """(5) N concurrent streams at R tokens/s each, driven by the Go load generator (not the bottleneck),
    against agentstream and, in the same run, a raw grpc.aio server sending the same messages on the same
    schedule: delivered events/s, per-event latency (LLM or raw server sent -> Go SDK received), server CPU
    per event, errors by status code. (12) The same levels against `serve --workers 2` until its knee."""
    bins = build_loadgen()
    serve = ("agentstream_server", "serve", "--port", "0", "--grace", "1")
    levels = sizes.concurrency
    async with (
        process_exec(str(bins / "fakellm"), ready=r"listening on (\S+)") as (_, llm_url),
        process("benchmarks.raw_paced_server", ready=r"listening on (\S+)") as (raw_pid, raw_target),
    ):
        env = {"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "bench", **LOAD_ENV}
        raws: dict[int, Load] = {}
        rows = []
        passed: int | None = None
        failed: int | None = None
        async with process(*serve, ready=r"listening on (\S+)", env=env) as (pid, target):
            await load(bins, raw_target, raw_pid, 10, sizes)  # warm up both
            await load(bins, target, pid, 10, sizes)
            for streams in levels:
                raws[streams] = raw = await load(bins, raw_target, raw_pid, streams, sizes)
                ours = await load(bins, target, pid, streams, sizes)
                rows += load_rows(streams, ours, raw)
                if failed is None:
                    passed, failed = (streams, None) if keeps_up(ours, raw) else (passed, streams)
        table(
            f"5. Concurrency: Go load generator, N streams x {sizes.concurrent_tokens} tokens at {sizes.rate:g} tok/s, "
            f"{STREAMS_PER_CONNECTION} streams per connection (baseline: raw grpc.aio, same schedule)",
            rows,
        )
        print(f"  knee: {knee_text(passed, failed, levels)} (first level below 0.9x the raw events/s, or with errors)")
        rows2 = []
        passed2: int | None = None
        failed2: int | None = None
        async with process(*serve, "--workers", "2", "--workers-allow-memory", ready=r"listening on (\S+)",
                           env=env) as (pid2, target2):  # fmt: skip
            await load(bins, target2, pid2, 20, sizes)  # warm up both workers
            for streams in levels:
                ours = await load(bins, target2, pid2, streams, sizes)
                rows2 += load_rows(streams, ours, raws[streams], ", 2 workers")
                if keeps_up(ours, raws[streams]):
                    passed2 = streams
                else:
                    failed2 = streams
                    break
    one = f"{passed} streams" if passed else f"below {levels[0]}"
    two = f"{passed2} streams" if passed2 else f"below {levels[0]}"
    moved = f"{passed2 / passed:.2f}x" if passed and passed2 else "-"
    rows2.append(("knee, last level that keeps up: 2 workers vs 1 (5)", two, one, moved))
    table("12. Every core: the same load on `serve --workers 2` (baseline: raw grpc.aio from (5), and 1 worker)", rows2)
    print(f"  knee with 2 workers: {knee_text(passed2, failed2, levels)}")


async def memory_per_stream(sizes: Sizes) -> None:
    """(13) Memory per live run and per idle subscriber: the Go holdgen starts runs whose LLM call stays open,
    then opens idle SubscribeRun streams on them; the server's RSS before, after the runs, after the streams."""
    bins = build_loadgen()
    env = {
        **LOAD_ENV,
        "AGENTSTREAM_MAX_SUBSCRIBERS": "1000",
        "AGENTSTREAM_MAX_CONCURRENT_RPCS": "20000",
    }  # 10,000 streams
    async with (
        process_exec(str(bins / "fakellm"), ready=r"listening on (\S+)") as (_, llm_url),
        process("agentstream_server", "serve", "--port", "0", "--grace", "0", ready=r"listening on (\S+)",
                env={"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "bench", **env}) as (pid, target),
    ):  # fmt: skip
        await load(bins, target, pid, 10, sizes)  # warm up
        before = rss_mib(pid)
        proc = await asyncio.create_subprocess_exec(
            str(bins / "holdgen"), "-target", target, "-runs", str(sizes.held_runs),
            "-subscribers", str(sizes.idle_subscribers),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        phases = []
        for _ in range(2):
            phases.append(json.loads(await proc.stdout.readline()))
            await asyncio.sleep(1)  # let the server settle (freed buffers, finished starts)
            phases[-1]["rss"] = rss_mib(pid)
            proc.stdin.write(b"next\n")
            await proc.stdin.drain()
        proc.stdin.close()
        await proc.wait()
    runs, subs = phases
    per_run = (runs["rss"] - before) * 2**20 / max(1, runs["count"] - runs["failed"])
    per_sub = (subs["rss"] - runs["rss"]) * 2**20 / max(1, subs["count"] - subs["failed"])
    table(
        f"13. Memory: {runs['count']:,} live runs (LLM call open, idle), then {subs['count']:,} idle SubscribeRun "
        "streams on them, one server",
        [
            ("server RSS", f"{runs['rss']:.0f} / {subs['rss']:.0f} MiB", f"{before:.0f} MiB before", "runs / +streams"),
            ("memory per live run", f"{per_run / 1024:.1f} KiB", f"{before:.0f} MiB idle server",
             f"{runs['failed']} failed"),
            ("memory per idle subscriber stream", f"{per_sub / 1024:.1f} KiB", "-", f"{subs['failed']} failed"),
        ],
    )  # fmt: skip


async def slow_consumer(client: Client, server_pid: int, sizes: Sizes) -> None:
    """(6) A client stops reading while the LLM produces many tokens: is the run held back or buffered?"""
    before = rss_mib(server_pid)
    stream = client.streaming_run(f"bench: tokens={sizes.slow_tokens}", streaming_mode=StreamingMode.CHUNK)
    received = 0
    first = await anext(stream)
    received += first.payload.content.count("x") if isinstance(first, ChunkMessage) else 0
    samples = []
    for _ in range(3):
        await asyncio.sleep(sizes.slow_pause_s)
        samples.append(rss_mib(server_pid))
    paused, paused_later = samples[1], samples[2]
    terminal = None
    async for message in stream:
        if isinstance(message, ChunkMessage):
            received += message.payload.content.count("x")
        elif isinstance(message, TaskMessage):
            terminal = message
    after = rss_mib(server_pid)
    held = paused_later - paused < 2.0  # MiB: what a run still producing ~5k events/s would add in seconds
    table(
        f"6. Slow consumer: client pauses {3 * sizes.slow_pause_s:g} s during a {sizes.slow_tokens:,}-token run",
        [
            ("server RSS while paused", f"{paused_later:.0f} MiB", f"{before:.0f} MiB before the run",
             f"+{paused_later - before:.0f} MiB"),
            ("RSS growth during the last third of the pause", f"{paused_later - paused:+.1f} MiB", "~0 if held back",
             "held back" if held else "buffering"),
            ("tokens received after resuming", f"{received:,}", f"{sizes.slow_tokens:,} sent",
             "none lost" if received == sizes.slow_tokens else "LOST"),
            ("terminal message", "yes" if terminal and terminal.is_terminal else "NO", "yes", f"{after:.0f} MiB after"),
        ],
    )  # fmt: skip


async def subscribe_tokens(start_on: Client, follow_on: Client, tokens: int) -> float:
    """Start a run on one server, follow it with SubscribeRun on another (or the same); tokens/s."""
    run_id = await start_on.start_run(f"bench: tokens={tokens}")
    start = time.perf_counter()
    received = 0
    async for message in follow_on.subscribe_run(run_id, streaming_mode=StreamingMode.CHUNK):
        if isinstance(message, ChunkMessage):
            received += message.payload.content.count("x")
    assert received == tokens, f"lost tokens: {received} of {tokens}"
    return received / (time.perf_counter() - start)


async def redis_versus_memory(llm_url: str, sizes: Sizes) -> None:
    """(8) SubscribeRun throughput: a run followed on a second replica through Redis versus in one process."""
    from tests.support.redis_server import redis_server

    env = {"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "bench"}
    serve = ("agentstream_server", "serve", "--port", "0", "--grace", "1")
    async with process(*serve, ready=r"listening on (\S+)", env=env) as (_, memory_target):
        async with Client(memory_target) as client:
            await subscribe_tokens(client, client, 100)
            memory = statistics.median(
                [await subscribe_tokens(client, client, sizes.tokens) for _ in range(sizes.repeats)]
            )
    with redis_server() as redis:
        renv = {**env, "AGENTSTREAM_STORE": redis.url}
        async with (
            process(*serve, ready=r"listening on (\S+)", env=renv) as (_, a_target),
            process(*serve, ready=r"listening on (\S+)", env=renv) as (_, b_target),
            Client(a_target) as on_a,
            Client(b_target) as on_b,
        ):
            await subscribe_tokens(on_a, on_b, 100)
            shared = statistics.median([await subscribe_tokens(on_a, on_b, sizes.tokens) for _ in range(sizes.repeats)])
    table(
        f"8. Run store: SubscribeRun of a {sizes.tokens:,}-token run, CHUNK mode",
        [("redis: started on replica A, followed on replica B", rate(shared), rate(memory) + " memory, one replica",
          f"{shared / memory:.2f}x")],
    )  # fmt: skip


async def health_latencies(check: grpc.aio.UnaryUnaryMultiCallable, count: int) -> list[float]:  # type: ignore[type-arg]
    """Round trips of `count` sequential grpc.health.v1 Check calls, ms: mostly time queued behind the event loop."""
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        await check(health_pb2.HealthCheckRequest(service=""))
        latencies.append((time.perf_counter() - start) * 1e3)
    return latencies


async def hostile_input(sizes: Sizes) -> None:
    """(9) Event-loop lag seen by health checks while 1 MiB hostile prompts run back to back on the demo model."""
    env = {"OPENAI_BASE_URL": "", "OPENAI_API_KEY": "", "AGENTSTREAM_DEMO_TOKEN_DELAY": "0"}  # offline: the demo model
    serve = ("agentstream_server", "serve", "--port", "0", "--grace", "1")
    async with (
        process(*serve, ready=r"listening on (\S+)", env=env) as (_, target),
        grpc.aio.insecure_channel(target) as channel,
    ):
        check = health_pb2_grpc.HealthStub(channel).Check
        await health_latencies(check, 10)  # warm up
        idle = await health_latencies(check, sizes.health_checks)
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.hostile_load", target, cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )  # its own process: this one's event loop stays free to time the checks
        assert load.stdout is not None
        try:
            assert (await load.stdout.readline()).strip() == b"busy", "the hostile load did not start"
            busy = await health_latencies(check, sizes.health_checks)
        finally:
            load.terminate()
            tally = (await load.stdout.read()).decode().strip()
            await load.wait()
    table(
        f"9. Hostile input: {sizes.health_checks} health checks while 3 streams of 1 MiB prompts run back to back "
        f"({tally or 'no tally'})",
        [
            ("health check p50", f"{percentile(busy, 50):.2f} ms", f"{percentile(idle, 50):.2f} ms idle server",
             f"+{percentile(busy, 50) - percentile(idle, 50):.2f} ms"),
            ("health check p99 (event-loop lag)", f"{percentile(busy, 99):.2f} ms",
             f"{percentile(idle, 99):.2f} ms idle server", f"+{percentile(busy, 99) - percentile(idle, 99):.2f} ms"),
            ("health check max", f"{max(busy):.2f} ms", f"{max(idle):.2f} ms idle server",
             f"+{max(busy) - max(idle):.2f} ms"),
        ],
    )  # fmt: skip


async def get_run_cost(client: Client, run_id: str, server_pid: int, calls: int) -> tuple[float, float]:
    """`calls` sequential GetRun calls: (round trip, server CPU) per call, in µs."""
    cpu, start = cpu_seconds(server_pid), time.perf_counter()
    for _ in range(calls):
        await client.get_run(run_id)
    return (time.perf_counter() - start) / calls * 1e6, (cpu_seconds(server_pid) - cpu) / calls * 1e6


async def auth_cost(sizes: Sizes) -> None:
    """(10) What authentication adds to a call: GetRun with a bearer token and with a JWT against no auth."""
    import tempfile

    from tests.support.auth import AUDIENCE, ISSUER, SigningKey, new_token, write_jwks_file, write_tokens_file

    token, key = new_token("bench"), SigningKey("bench-key")
    env = {"OPENAI_BASE_URL": "", "OPENAI_API_KEY": "", "AGENTSTREAM_DEMO_TOKEN_DELAY": "0"}
    serve = ("agentstream_server", "serve", "--port", "0", "--grace", "1")
    with tempfile.TemporaryDirectory() as tmp:
        tokens = write_tokens_file(Path(tmp) / "tokens.toml", [token])
        jwks = write_jwks_file(Path(tmp) / "jwks.json", [key])
        async with (
            process(*serve, ready=r"listening on (\S+)", env=env) as (open_pid, open_target),
            process(*serve, "--auth-tokens", str(tokens), "--auth-jwks", str(jwks), "--auth-jwt-issuer", ISSUER,
                    "--auth-jwt-audience", AUDIENCE, ready=r"listening on (\S+)",
                    env=env) as (auth_pid, auth_target),
            Client(open_target) as open_client,
            Client(auth_target, token=token.value) as token_client,
            Client(auth_target, token=key.sign(tenant="bench", expires_in=3600)) as jwt_client,
        ):  # fmt: skip
            runs = {id(c): await c.start_run("hi") for c in (open_client, token_client)}
            runs[id(jwt_client)] = await jwt_client.start_run("hi")
            cases = [(open_client, open_pid), (token_client, auth_pid), (jwt_client, auth_pid)]
            samples: list[list[tuple[float, float]]] = [[], [], []]
            for _ in range(max(3, sizes.repeats)):  # interleaved, so drift on a shared machine hits all three
                for i, (client, pid) in enumerate(cases):
                    samples[i].append(await get_run_cost(client, runs[id(client)], pid, sizes.auth_calls))
    (base_rt, base_cpu), (tok_rt, tok_cpu), (jwt_rt, jwt_cpu) = [
        (statistics.median(s[0] for s in sample), statistics.median(s[1] for s in sample)) for sample in samples
    ]
    table(
        f"10. Authentication: {sizes.auth_calls} sequential GetRun calls, µs per call",
        [
            ("round trip, bearer token (tokens file)", f"{tok_rt:.0f} µs", f"{base_rt:.0f} µs no auth", f"{tok_rt - base_rt:+.0f} µs"),
            ("round trip, JWT (ES256, JWKS file)", f"{jwt_rt:.0f} µs", f"{base_rt:.0f} µs no auth", f"{jwt_rt - base_rt:+.0f} µs"),
            ("server CPU, bearer token", f"{tok_cpu:.0f} µs", f"{base_cpu:.0f} µs no auth", f"{tok_cpu - base_cpu:+.0f} µs"),
            ("server CPU, JWT", f"{jwt_cpu:.0f} µs", f"{base_cpu:.0f} µs no auth", f"{jwt_cpu - base_cpu:+.0f} µs"),
        ],
    )  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run that prints every figure")
    parser.add_argument(
        "--only", default="1,2,3,4,5,6,7,8,9,10,11,12,13,14", help="comma-separated figure numbers to run"
    )
    parser.add_argument(
        "--streams", help="comma-separated stream counts for the concurrency figures (default: the size's)"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.streams:
        sizes = replace(sizes, concurrency=tuple(int(n) for n in args.streams.split(",")))
    only = set(args.only.split(","))
    print(
        f"agentstream benchmarks ({'quick' if args.quick else 'full'}), {os.cpu_count()} cores, python {sys.version.split()[0]}"
    )
    # The Go scripted LLM: one write per token, like real endpoints, at a few µs of CPU per token, so the box's
    # two cores go to what is measured (the Python one, kept for the figures whose scripts it alone has, costs
    # about as much per token as the server).
    async with (
        process_exec(str(build_loadgen() / "fakellm"), ready=r"listening on (\S+)") as (_, llm_url),
        raw_stream(sizes) as raw,
    ):
        if "1" in only:
            await upstream_ceiling(llm_url, sizes)
        if not only & {"3", "7"}:
            await transport_ceiling(raw, sizes)
        env = {"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "bench", "AGENTSTREAM_MAX_RUNS": "2000"}
        async with process("agentstream_server", "serve", "--port", "0", "--grace", "1",
                           ready=r"listening on (\S+)", env=env) as (server_pid, target):  # fmt: skip
            async with Client(target) as client:
                await stream_tokens(client, 100, 0)  # warm up
                if only & {"3", "7"}:
                    await full_stack(client, server_pid, raw, sizes)
                if "4" in only:
                    await first_chunk_latency(client, llm_url, sizes)
                if "6" in only:
                    await slow_consumer(client, server_pid, sizes)
        if "8" in only:
            await redis_versus_memory(llm_url, sizes)
    if "11" in only:
        async with process("tests.support.fakellm", "--port", "0", ready=r"listening on (\S+)") as (_, py_llm):
            await nested_agent_cost(py_llm, sizes.tokens, sizes.repeats, process, cpu_seconds, table)
    if "14" in only:
        await observability_cost(sizes.paced_tokens, sizes.paced_rounds, process, cpu_seconds, table)
    if only & {"5", "12"}:
        await concurrency(sizes)
    if "13" in only:
        await memory_per_stream(sizes)
    if "9" in only:
        await hostile_input(sizes)
    if "10" in only:
        await auth_cost(sizes)
    if len(only) == 14:
        print("\nall 14 figures printed")


if __name__ == "__main__":
    asyncio.run(main())
