"""Runs 1 MiB hostile prompts back to back against a server until SIGTERM, in a process of its own.

``python -m benchmarks.hostile_load HOST:PORT [--streams N]`` prints ``busy`` once the first run has
ended, and on SIGTERM finishes its current runs and prints ``runs N failed M``. Figure 9 of bench.py
measures the server's health checks meanwhile, from a process whose own event loop stays idle.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from agentstream import Client, StreamingMode, TaskMessage

HOSTILE_PROMPTS = (
    "x " + "1" * (2**20 - 2),  # a digit run: the demo's old backtracking regex took ~7 s per 10,000 digits
    "1+" * 2**19,  # half a million terms
    "(" * (2**20 - 1) + "1",
)
"""1 MiB inputs (AGENTSTREAM_MAX_INPUT_BYTES' default) built to make a scan over the prompt slow."""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target")
    parser.add_argument("--streams", type=int, default=len(HOSTILE_PROMPTS))
    args = parser.parse_args()
    stop, busy = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    outcomes: list[bool] = []

    async def load(client: Client, offset: int) -> None:
        n = offset
        while not stop.is_set():
            prompt = HOSTILE_PROMPTS[n % len(HOSTILE_PROMPTS)]
            n += 1
            async for message in client.streaming_run(prompt, streaming_mode=StreamingMode.OUTPUT):
                if isinstance(message, TaskMessage) and message.is_terminal:
                    outcomes.append(message.payload.success)
                    if not busy.is_set():
                        busy.set()
                        print("busy", flush=True)

    async with Client(args.target) as client:
        await asyncio.gather(*(load(client, offset) for offset in range(args.streams)))
    print(f"runs {len(outcomes)} failed {outcomes.count(False)}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
