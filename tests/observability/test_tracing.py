"""Traces through a live server: the span tree, GenAI attributes, the caller's trace continued, nothing when off."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.observability import spans, tracing
from tests.conftest import StartServer
from tests.observability.conftest import by_name, parent_id, span_id, trace_id
from tests.service.helpers import collect, request, terminal_of
from tests.support.fakellm import FakeLLM, Text, ToolCalls

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def tool_then_answer(fake_llm: FakeLLM) -> None:
    fake_llm.script(
        ToolCalls([("calculator", {"expression": "6 * 7"})], text_tokens=["Let me ", "compute."], usage=(11, 5)),
        Text(["The ", "answer ", "is ", "42."]),
    )


async def test_a_run_is_one_trace_continuing_the_callers_rpc_run_steps_llm_calls_and_tools(
    exported: InMemorySpanExporter, start: StartServer, fake_llm: FakeLLM
) -> None:
    server = await start()
    tool_then_answer(fake_llm)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        req = request("What is 6 * 7?", session_id="sess-9")
        call = stub.StreamingRun(req, metadata=[("traceparent", TRACEPARENT)])
        messages = [message async for message in call]
    assert terminal_of(messages).success

    (rpc,) = by_name(exported, "agentstream.v1.RunnerService/StreamingRun")
    (run,) = by_name(exported, "run ")
    steps = by_name(exported, "invoke_agent ")
    chats = by_name(exported, "chat ")
    (tool,) = by_name(exported, "execute_tool ")
    assert {trace_id(s) for s in exported.get_finished_spans()} == {int(CALLER_TRACE, 16)}
    assert rpc.kind is SpanKind.SERVER and parent_id(rpc) == int(CALLER_SPAN, 16)
    assert rpc.attributes is not None and rpc.attributes["rpc.grpc.status_code"] == 0
    assert rpc.attributes["rpc.method"] == "StreamingRun"
    assert parent_id(run) == span_id(rpc)
    assert [parent_id(s) for s in steps] == [span_id(run)] * 2
    assert [parent_id(c) for c in chats] == [span_id(s) for s in steps]
    assert parent_id(tool) == span_id(steps[0])

    assert run.name == "run assistant" and run.attributes is not None
    assert run.attributes["agentstream.run_id"] == messages[0].run_id
    assert run.attributes["agentstream.events"] == messages[-1].seq
    assert run.attributes["agentstream.status"] == "succeeded"
    assert run.attributes["gen_ai.conversation.id"] == "sess-9"
    assert [s.name for s in steps] == ["invoke_agent assistant"] * 2
    assert [s.attributes and s.attributes["agentstream.step"] for s in steps] == [1, 2]
    first = chats[0].attributes
    assert first is not None and chats[0].name == "chat gpt-4o-mini" and chats[0].kind is SpanKind.CLIENT
    assert first["gen_ai.operation.name"] == "chat" and first["gen_ai.request.model"] == "gpt-4o-mini"
    assert (first["gen_ai.usage.input_tokens"], first["gen_ai.usage.output_tokens"]) == (11, 5)
    assert first["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert [event.name for event in chats[0].events] == ["first_token"]
    assert tool.name == "execute_tool calculator" and tool.attributes is not None
    (action,) = next(m for m in messages if m.WhichOneof("payload") == "tool").tool.actions
    assert tool.attributes["gen_ai.tool.name"] == "calculator"
    assert tool.attributes["gen_ai.tool.call.id"] == action.tool_call_id
    assert tool.status.status_code is StatusCode.UNSET
    no_content = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.call.arguments")
    for span in [*chats, tool]:
        assert span.attributes is not None and not set(no_content) & set(span.attributes)

    # The LLM requests carried each chat span's context: an instrumented gateway joins the trace.
    sent = [headers["traceparent"] for headers in fake_llm.request_headers]
    assert sent == [f"00-{CALLER_TRACE}-{span_id(c):016x}-01" for c in chats]


async def test_content_is_recorded_only_with_the_option(start: StartServer, fake_llm: FakeLLM) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider, content=True)
    try:
        server = await start()
        tool_then_answer(fake_llm)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await collect(rpb_grpc.RunnerServiceStub(channel), request("What is 6 * 7?"))
    finally:
        tracing.use_provider(None)
    chats = by_name(exporter, "chat ")
    (tool,) = by_name(exporter, "execute_tool ")
    assert chats[0].attributes is not None and "What is 6 * 7?" in str(chats[0].attributes["gen_ai.input.messages"])
    assert chats[1].attributes is not None and "The answer is 42." in str(chats[1].attributes["gen_ai.output.messages"])
    assert tool.attributes is not None and tool.attributes["gen_ai.tool.call.result"] == "42"


async def test_a_refused_call_carries_its_status_and_reason(exported: InMemorySpanExporter, start: StartServer) -> None:
    server = await start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await collect(rpb_grpc.RunnerServiceStub(channel), request("hi", agent="nobody"))
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError):
            await rpb_grpc.RunnerServiceStub(channel).GetRun(rpb.GetRunRequest(run_id="missing"))
    (streaming,) = by_name(exported, "agentstream.v1.RunnerService/StreamingRun")
    (get,) = by_name(exported, "agentstream.v1.RunnerService/GetRun")
    assert streaming.attributes is not None and streaming.attributes["rpc.grpc.status_code"] == 5
    assert streaming.attributes["agentstream.error.reason"] == "AGENT_NOT_FOUND"
    assert get.attributes is not None and get.attributes["agentstream.error.reason"] == "RUN_NOT_FOUND"
    assert not by_name(exported, "run ")


async def test_a_failed_llm_call_marks_its_span_and_the_run(
    exported: InMemorySpanExporter, start: StartServer, fake_llm: FakeLLM
) -> None:
    from tests.support.fakellm import HTTPError

    server = await start(llm_max_retries=0)
    fake_llm.script(HTTPError(503, "overloaded"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        messages = await collect(rpb_grpc.RunnerServiceStub(channel), request("hi"))
    assert not terminal_of(messages).success
    (chat,) = by_name(exported, "chat ")
    (run,) = by_name(exported, "run ")
    assert chat.status.status_code is StatusCode.ERROR and chat.attributes is not None
    assert chat.attributes["error.type"] == "503"
    assert run.status.status_code is StatusCode.ERROR and run.attributes is not None
    assert run.attributes["agentstream.status"] == "failed"
    assert run.attributes["agentstream.error.reason"] == "LLM_UPSTREAM_ERROR"


async def test_nothing_is_traced_or_propagated_when_no_otel_variables_are_set(
    start: StartServer, fake_llm: FakeLLM
) -> None:
    assert tracing.configure_from_env(env={}) is None
    assert tracing.tracer() is None
    server = await start()
    fake_llm.script(Text(["hello"]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = rpb_grpc.RunnerServiceStub(channel).StreamingRun(request("hi"), metadata=[("traceparent", TRACEPARENT)])
        assert terminal_of([message async for message in call]).success
    assert fake_llm.request_headers and "traceparent" not in fake_llm.request_headers[0]
    # every helper the runtime calls is the shared no-op: no span object is even made
    assert spans.agent_step("assistant", 1) is spans.agent_step("other", 2)
    with spans.LLMCall("model", "assistant") as llm, spans.ToolCall("calculator", "call_1") as tool:
        assert llm._span is None and tool._span is None
    assert spans.trace_headers() == {}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, None),
    ],
)
def test_the_standard_variables_decide_whether_tracing_is_on(env: dict[str, str], expected: str | None) -> None:
    assert tracing.requested(env) == expected


def test_an_unsupported_exporter_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        tracing.requested({"OTEL_TRACES_EXPORTER": "zipkin"})
