"""Figure 14: what observability costs per token: tracing (every span exported) and /metrics on, against both off."""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from typing import Any

from agentstream import Client


async def observability_cost(
    llm_url: str,
    tokens: int,
    repeats: int,
    process: Callable[..., Any],
    cpu_seconds: Callable[[int], float],
    stream_tokens: Callable[[Client, int, int], Awaitable[tuple[int, float]]],
    table: Callable[[str, list[tuple[str, str, str, str]]], None],
) -> None:
    """Two servers on one scripted LLM, runs interleaved (drift on a shared machine hits both); coalescing off,
    the worst case for per-token cost. Spans go to the console exporter (stdout, drained by `process`)."""
    env = {"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "bench"}
    observed_env = env | {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "bench"}
    serve = ("agentstream_server", "serve", "--port", "0", "--grace", "1")
    async with (
        process(*serve, ready=r"listening on (\S+)", env=env) as (off_pid, off_target),
        process(*serve, "--metrics-port", "0", ready=r"listening on (\S+)", env=observed_env) as (on_pid, on_target),
        Client(off_target) as off_client,
        Client(on_target) as on_client,
    ):
        cases = [(off_client, off_pid), (on_client, on_pid)]
        samples: list[list[float]] = [[], []]
        for client, _ in cases:
            await stream_tokens(client, 100, 0)  # warm up
        for _ in range(max(5, repeats)):
            for i, (client, pid) in enumerate(cases):
                before = cpu_seconds(pid)
                received, _ = await stream_tokens(client, tokens, 0)
                samples[i].append((cpu_seconds(pid) - before) / received * 1e6)
    off, on = statistics.median(samples[0]), statistics.median(samples[1])
    table(
        f"14. Observability: server CPU per token, {tokens:,} tokens, coalescing off (goal: <= 1.05x)",
        [("tracing + metrics on", f"{on:.1f} µs", f"{off:.1f} µs both off", f"{on / off:.3f}x")],
    )
