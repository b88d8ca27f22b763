"""Figure 11: what nesting costs per token: a nested agent (called as a tool) streaming N tokens vs a top-level one."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentstream import ChunkMessage, Client, StreamingMode, TaskMessage

TEAM = """
[agents.assistant]
instructions = "You answer."

[agents.parent]
instructions = "You ask the assistant."
agent_tools = ["assistant"]
"""


async def _stream(client: Client, agent: str, tokens: int) -> tuple[int, int]:
    """One CHUNK-mode run; returns (tokens received from depth 1, tokens received from depth 0)."""
    nested = top = 0
    async for message in client.streaming_run(
        f"bench: tokens={tokens}", agent=agent, streaming_mode=StreamingMode.CHUNK
    ):
        if isinstance(message, ChunkMessage):
            count = message.payload.content.count("x")
            if message.depth:
                nested += count
            else:
                top += count
        elif isinstance(message, TaskMessage) and not message.payload.success:
            raise RuntimeError(f"run failed: {message.payload.msg}")
    return nested, top


async def nested_agent_cost(
    llm_url: str,
    tokens: int,
    repeats: int,
    process: Callable[..., Any],
    cpu_seconds: Callable[[int], float],
    table: Callable[[str, list[tuple[str, str, str, str]]], None],
) -> None:
    """(11) Server CPU per token and tokens/s through an agent called as a tool, against a top-level agent."""
    env = {"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "bench"}
    with tempfile.TemporaryDirectory() as tmp:
        agents = Path(tmp) / "team.toml"
        agents.write_text(TEAM)
        async with process("agentstream_server", "serve", "--port", "0", "--grace", "1", "--agents", str(agents),
                           ready=r"listening on (\S+)", env=env) as (pid, target), Client(target) as client:  # fmt: skip
            await _stream(client, "parent", 100)  # warm up both paths
            samples: dict[str, list[tuple[float, float]]] = {"assistant": [], "parent": []}
            for _ in range(max(3, repeats)):  # interleaved, so drift on a shared machine hits both
                for agent in ("assistant", "parent"):
                    cpu_before = cpu_seconds(pid)
                    start = time.perf_counter()
                    nested, top = await _stream(client, agent, tokens)
                    seconds = time.perf_counter() - start
                    received = nested if agent == "parent" else top
                    assert received == tokens, f"lost tokens through {agent}: {received} of {tokens}"
                    samples[agent].append(((cpu_seconds(pid) - cpu_before) / tokens * 1e6, tokens / seconds))
    (top_cpu, top_rate), (nested_cpu, nested_rate) = [
        (statistics.median(s[0] for s in samples[a]), statistics.median(s[1] for s in samples[a]))
        for a in ("assistant", "parent")
    ]
    table(
        f"11. Several agents: {tokens:,} tokens streamed by an agent called as a tool (depth 1), CHUNK mode",
        [
            ("server CPU per token, nested", f"{nested_cpu:.1f} µs", f"{top_cpu:.1f} µs top-level",
             f"{nested_cpu / top_cpu:.2f}x ({nested_cpu - top_cpu:+.1f} µs)"),
            ("tokens/s, nested", f"{nested_rate:,.0f}", f"{top_rate:,.0f} top-level", f"{nested_rate / top_rate:.2f}x"),
        ],
    )  # fmt: skip
