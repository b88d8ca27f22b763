"""CPU of the LLM client's HTTP transport, in-process: runtime/h1.py against httpx2's stock httpcore2 transport.

Against the Go scripted LLM (started here unless --url is given), each transport makes one-token calls
through OpenAIChatModel.stream (time.process_time over --calls calls after a warm-up), then one call of
--tokens tokens (CPU per token). Transports alternate within each round and the figures are the median of
--rounds rounds, all in this one process, so every row has its baseline from the same run.

    .venv/bin/python -m benchmarks.h1_transport [--url URL] [--calls 1000] [--tokens 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx2
import openai
import uvloop

from agentstream_server.runtime.h1 import H1Transport
from agentstream_server.runtime.llm import OpenAIChatModel

LOADGEN = Path(__file__).parent / "loadgen"
MAX_CONNECTIONS = 200


def _stock() -> httpx2.AsyncBaseTransport:
    limits = httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
    return httpx2.AsyncHTTPTransport(limits=limits)


TRANSPORTS: dict[str, Callable[[], httpx2.AsyncBaseTransport]] = {
    "httpcore2 + h11 (httpx2 stock)": _stock,
    "h1 (httptools)": lambda: H1Transport(max_connections=MAX_CONNECTIONS),
}


@contextlib.asynccontextmanager
async def go_fakellm() -> AsyncIterator[str]:
    build = await asyncio.create_subprocess_exec("go", "build", "-o", "bin/", "./cmd/...", cwd=LOADGEN)
    assert await build.wait() == 0, "go build of benchmarks/loadgen failed"
    proc = await asyncio.create_subprocess_exec(str(LOADGEN / "bin" / "fakellm"), stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await proc.stdout.readline()).decode()
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        proc.terminate()
        await proc.wait()


def model_for(url: str, transport: httpx2.AsyncBaseTransport) -> OpenAIChatModel:
    http_client = openai.DefaultAsyncHttpxClient(transport=transport, timeout=60)
    client = openai.AsyncOpenAI(base_url=url, api_key="k", timeout=60, max_retries=0, http_client=http_client)
    return OpenAIChatModel(client, "m")


async def call(model: OpenAIChatModel, tokens: int) -> None:
    async for _ in model.stream([{"role": "user", "content": f"bench: tokens={tokens}"}], []):
        pass


async def per_call_us(model: OpenAIChatModel, calls: int) -> float:
    for _ in range(max(10, calls // 10)):
        await call(model, 1)
    start = time.process_time()
    for _ in range(calls):
        await call(model, 1)
    return (time.process_time() - start) / calls * 1e6


async def per_token_us(model: OpenAIChatModel, tokens: int) -> float:
    await call(model, 100)
    start = time.process_time()
    await call(model, tokens)
    return (time.process_time() - start) / tokens * 1e6


async def main(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url = args.url or await stack.enter_async_context(go_fakellm())
        models = {name: model_for(url, make()) for name, make in TRANSPORTS.items()}
        calls: dict[str, list[float]] = {name: [] for name in models}
        tokens: dict[str, list[float]] = {name: [] for name in models}
        names = list(models)
        for round_ in range(args.rounds):
            for name in names if round_ % 2 == 0 else reversed(names):
                calls[name].append(await per_call_us(models[name], args.calls))
                tokens[name].append(await per_token_us(models[name], args.tokens))
        print(f"CPU per one-token call and per token of a {args.tokens}-token call, median of {args.rounds} rounds")
        print(f"{'transport':34} {'µs/call':>9} {'µs/token':>9}")
        for name in names:
            print(f"{name:34} {statistics.median(calls[name]):9.0f} {statistics.median(tokens[name]):9.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an OpenAI-compatible endpoint serving `bench: tokens=N` (default: Go fakellm)")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    uvloop.run(main(parser.parse_args()))
