"""A bare grpc.aio server answering StreamingRun with paced, stamped chunks: the baseline of figure 5.

It serves ``agentstream.v1.RunnerService/StreamingRun`` (the real request and Message types, so the Go load
generator calls it exactly as it calls agentstream) and answers ``bench: tokens=N rate=R stamp`` the way the
scripted LLM does: N chunk messages on a fixed schedule of R per second from the call's start, each carrying
its send time (time.perf_counter_ns(): CLOCK_MONOTONIC), then a terminal message. Nothing else happens per
message: no LLM, no run log, no agent loop: what any grpc.aio server pays to stream the same events.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import grpc

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream_server.cli import run_event_loop
from benchmarks.raw_grpc_server import serve_stream

PROMPT = re.compile(r"^bench: tokens=(\d+)(?: rate=(\d+(?:\.\d+)?))?( stamp)?$")
TASK_RESPONSE = "__task_response"


async def streaming_run(
    request: rpb.StreamingRunRequest, context: grpc.aio.ServicerContext
) -> AsyncIterator[pb.Message]:  # type: ignore[type-arg]
    match = PROMPT.match(request.input)
    if not match:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected 'bench: tokens=N rate=R stamp'")
    tokens, rate = int(match.group(1)), float(match.group(2) or 0)
    interval = 1 / rate if rate else 0.0
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(tokens):
        message = pb.Message(run_id="raw", seq=i + 1, category="chunk", topic="chunk")
        message.chunk.content = str(time.perf_counter_ns())
        yield message
        if interval:
            await asyncio.sleep(start + (i + 1) * interval - loop.time())
    terminal = pb.Message(run_id="raw", seq=tokens + 1, category="task", topic=TASK_RESPONSE)
    terminal.task.success = True
    yield terminal


async def main() -> None:
    service = rpb.DESCRIPTOR.services_by_name["RunnerService"].full_name
    await serve_stream(
        service,
        "StreamingRun",
        streaming_run,
        rpb.StreamingRunRequest.FromString,
        options=[("grpc.max_concurrent_streams", 1 << 20)],
    )


if __name__ == "__main__":
    run_event_loop(main())  # the same event loop the service runs on, so the baseline is like for like
