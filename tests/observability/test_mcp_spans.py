"""An MCP tool call is a CLIENT span under its execute_tool span (a real MCP server over stdio)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from tests.conftest import StartServer
from tests.observability.conftest import by_name, parent_id, span_id
from tests.runtime.mcp_fixtures import http_mcp_server
from tests.service.helpers import collect, request, terminal_of
from tests.service.test_mcp_runs import STDIO, agents_toml
from tests.support.fakellm import FakeLLM, Text, ToolCalls


async def test_an_mcp_call_is_a_client_span_under_its_tool_span(
    exported: InMemorySpanExporter, start: StartServer, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    agents = tmp_path / "agents.toml"
    agents.write_text(agents_toml(STDIO))
    server = await start(agents_file=agents)
    fake_llm.script(ToolCalls([("add", {"a": 2, "b": 3})]), Text(["5."]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        assert terminal_of(await collect(rpb_grpc.RunnerServiceStub(channel), request("2 + 3?"))).success
    (tool,) = by_name(exported, "execute_tool add")
    (call,) = by_name(exported, "mcp tools/call add")
    assert call.kind is SpanKind.CLIENT and parent_id(call) == span_id(tool)
    assert call.attributes is not None
    assert (call.attributes["agentstream.mcp.server"], call.attributes["gen_ai.tool.name"]) == ("calc", "add")


async def test_an_mcp_call_over_http_carries_its_spans_trace_context(
    exported: InMemorySpanExporter, start: StartServer, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    async with http_mcp_server() as http:
        agents = tmp_path / "agents.toml"
        agents.write_text(agents_toml(f'[mcp_servers.web]\nurl = "{http.url}"\n', uses='["web"]'))
        server = await start(agents_file=agents)
        fake_llm.script(ToolCalls([("traceparent", {})]), Text(["sent."]))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            messages = await collect(rpb_grpc.RunnerServiceStub(channel), request("trace?"))
        await server.shutdown(0)  # its session to the MCP server closes before that server stops
    result = next(m for m in messages if m.WhichOneof("payload") == "tool_result").tool_result.content
    received = json.loads(result)["result"]  # structured output: {"result": "<traceparent>"}
    (call,) = by_name(exported, "mcp tools/call traceparent")
    assert call.context is not None
    version, trace_id, parent, _ = received.split("-")
    assert (version, int(trace_id, 16), int(parent, 16)) == ("00", call.context.trace_id, call.context.span_id)
