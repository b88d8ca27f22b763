"""The Python SDK sends the caller's trace context on every call; the server's spans continue that trace."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentstream import Client, SyncClient
from agentstream.telemetry import KEEPALIVE_OPTIONS, traced, with_keepalive
from tests.conftest import StartServer
from tests.observability.conftest import by_name, parent_id, span_id, trace_id
from tests.support.fakellm import FakeLLM, Text


async def test_every_call_of_the_async_and_sync_clients_continues_the_callers_trace(
    exported: InMemorySpanExporter, start: StartServer, fake_llm: FakeLLM
) -> None:
    server = await start()
    caller = TracerProvider().get_tracer("caller-app")
    fake_llm.script(Text(["hi"]), Text(["again"]))
    with caller.start_as_current_span("handle request") as outer:
        async with Client(f"127.0.0.1:{server.port}") as client:
            run_id = ""
            async for message in client.streaming_run("hello"):
                run_id = message.run_id
            await client.get_run(run_id)

        def sync_call() -> str:  # on a thread (the server shares this event loop), in a copy of this context
            with SyncClient(f"127.0.0.1:{server.port}") as sync:
                return sync.get_run(run_id).run_id

        assert await asyncio.to_thread(sync_call) == run_id
    rpcs = by_name(exported, "agentstream.v1.RunnerService/")
    assert [span.name.rsplit("/", 1)[1] for span in rpcs] == ["StreamingRun", "GetRun", "GetRun"]
    assert {trace_id(span) for span in rpcs} == {outer.get_span_context().trace_id}
    assert {parent_id(span) for span in rpcs} == {outer.get_span_context().span_id}
    (run,) = by_name(exported, "run ")
    assert parent_id(run) == span_id(rpcs[0])


def test_without_a_span_the_metadata_is_unchanged_and_keepalive_defaults_yield_to_the_callers() -> None:
    assert traced((("authorization", "Bearer x"),)) == (("authorization", "Bearer x"),)
    options = dict(with_keepalive([("grpc.keepalive_time_ms", 5_000)]))
    assert options["grpc.keepalive_time_ms"] == 5_000
    assert options["grpc.keepalive_timeout_ms"] == dict(KEEPALIVE_OPTIONS)["grpc.keepalive_timeout_ms"]
    assert dict(with_keepalive(None)) == dict(KEEPALIVE_OPTIONS)
