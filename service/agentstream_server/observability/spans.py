"""The spans of a run, after the OpenTelemetry GenAI semantic conventions, and trace context for outgoing calls.

The tree (see the README's Observability section)::

    agentstream.v1.RunnerService/StreamingRun   SERVER, continues the caller's traceparent (transport)
    └── run {agent}                              agentstream.run_id, gen_ai.conversation.id, status, events
        └── invoke_agent {agent}                 one per step of the agent loop
            ├── chat {model}                     CLIENT; usage, finish reasons; event first_token
            └── execute_tool {tool}              gen_ai.tool.name, gen_ai.tool.call.id
                ├── invoke_agent {nested agent}  an agent called as a tool nests here
                └── mcp tools/call {tool}        CLIENT, for MCP tools (mcp_call)

Every helper returns a shared no-op object while tracing (and, for LLM and tool calls, metrics) is off.
Prompt and completion text is recorded only when tracing.capture_content() is on. Nothing here runs per token
except LLMCall.first_token, a flag check after the first.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from agentstream_server.observability import logs, metrics, tracing

_NOOP = contextlib.nullcontext()
_MAX_CONTENT_CHARS = 16 * 1024
"""Longest text recorded on one attribute when content capture is on."""


def trace_headers() -> dict[str, str]:
    """W3C trace context (``traceparent``, ``tracestate``, baggage) of the current span, for an outgoing HTTP
    request (the LLM call, MCP over HTTP); empty while tracing is off."""
    if tracing.tracer() is None:
        return {}
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def inject_headers(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context to a request's headers in place (e.g. from an httpx request event hook)."""
    if tracing.tracer() is not None:
        propagate.inject(headers)


def rpc_error(code: int, code_name: str, reason: str) -> None:
    """Mark the current (RPC) span with the gRPC status a call is refused with and the error table's reason."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", code)
        span.set_attribute("agentstream.error.reason", reason)
        if code_name in _SERVER_ERROR_CODES:
            span.set_attribute("error.type", reason)
            span.set_status(Status(StatusCode.ERROR, code_name))


_SERVER_ERROR_CODES = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)
"""gRPC codes that make a server span an error (the RPC semantic conventions); the rest are the caller's doing."""


class RunObservation:
    """One run's span, metrics and log context: started with the run, ended with its terminal status."""

    __slots__ = ("_agent", "_span", "_started")

    def __init__(self, run_id: str, agent: str, session_id: str, tenant: str) -> None:
        self._agent = agent
        self._started = time.monotonic()
        logs.bind_run(run_id, tenant, agent)
        metrics.run_started(agent)
        tracer = tracing.tracer()
        self._span: Span | None = None
        if tracer is not None:
            attributes: dict[str, Any] = {
                "agentstream.run_id": run_id,
                "gen_ai.agent.name": agent,
                "agentstream.tenant": tenant,
            }
            if session_id:
                attributes["gen_ai.conversation.id"] = session_id
            self._span = tracer.start_span(f"run {agent}", attributes=attributes)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The run span is current inside (a task created here, the run's, keeps it)."""
        if self._span is None:
            yield
            return
        with _current(self._span):
            yield

    def finished(self, status: str, events: int, reason: str = "") -> None:
        """The run ended: its terminal status (``succeeded``, ``failed`` ...), events in its log, error reason."""
        metrics.run_finished(self._agent, status, time.monotonic() - self._started)
        if self._span is not None:
            self._span.set_attribute("agentstream.status", status)
            self._span.set_attribute("agentstream.events", events)
            if reason:
                self._span.set_attribute("agentstream.error.reason", reason)
            if status not in ("succeeded", "cancelled", "input_required"):
                self._span.set_attribute("error.type", reason or status)
                self._span.set_status(Status(StatusCode.ERROR, status))
            self._span.end()


def agent_step(agent: str, step: int) -> contextlib.AbstractContextManager[Any]:
    """The current span for one step of an agent loop: ``invoke_agent {agent}``."""
    tracer = tracing.tracer()
    if tracer is None:
        return _NOOP
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent,
        "agentstream.step": step,
    }
    return tracer.start_as_current_span(f"invoke_agent {agent}", attributes=attributes)


class LLMCall:
    """One LLM call: its ``chat {model}`` span (current while the call runs) and its metrics.

    A context manager, sync or async. Call first_token() on every delta (a flag check after the first) and
    finished(...) once the stream ended; an exception leaving the block is recorded as the call's error.
    """

    __slots__ = ("_first", "_input", "_model", "_output", "_scope", "_span", "_started")

    def __init__(
        self, model: str, agent: str, messages: Sequence[Mapping[str, Any]] = (), temperature: float | None = None
    ) -> None:
        self._model = model
        self._first: float | None = None
        self._input = self._output = 0
        self._span: Span | None = None
        self._scope: contextlib.AbstractContextManager[Any] = _NOOP
        self._started = time.monotonic()
        tracer = tracing.tracer()
        if tracer is not None:
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": model,
                "gen_ai.agent.name": agent,
            }
            if temperature is not None:
                attributes["gen_ai.request.temperature"] = temperature
            if tracing.capture_content():
                attributes["gen_ai.input.messages"] = _clip(json.dumps(list(messages), default=str))
            self._span = tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes)
            self._scope = _current(self._span)

    def first_token(self) -> None:
        """A delta arrived: the first one is the span's ``first_token`` event and the time-to-first-token figure."""
        if self._first is None:
            self._first = time.monotonic()
            if self._span is not None:
                self._span.add_event("first_token", {"agentstream.time_to_first_token_s": self._first - self._started})

    def finished(self, finish_reason: str, input_tokens: int, output_tokens: int, text: Sequence[str] = ()) -> None:
        """The stream ended normally: the finish reason, the usage the LLM reported, the completion's text deltas."""
        self._input, self._output = input_tokens, output_tokens
        if self._span is not None:
            if finish_reason:
                self._span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
            self._span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
            self._span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
            if tracing.capture_content():
                output = json.dumps([{"role": "assistant", "content": "".join(text)}])
                self._span.set_attribute("gen_ai.output.messages", _clip(output))

    def __enter__(self) -> LLMCall:
        self._scope.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        self._scope.__exit__(kind, error, tb)
        status = None if error is None or not isinstance(error, Exception) else llm_error_status(error)
        metrics.llm_call_finished(self._model, self._started, self._first, status, self._input, self._output)
        if self._span is not None:
            if status is not None:
                self._span.set_attribute("error.type", status)
                self._span.set_status(Status(StatusCode.ERROR, status))
            self._span.end()

    async def __aenter__(self) -> LLMCall:
        return self.__enter__()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        self.__exit__(kind, error, tb)


def llm_error_status(error: BaseException) -> str:
    """The status label of a failed LLM call: its HTTP status when the endpoint answered one, else the type of
    what went wrong (``APITimeoutError``, ``APIConnectionError``, ``TimeoutError`` ...; ``CancelledError``)."""
    metadata = getattr(error, "metadata", None)
    if isinstance(metadata, Mapping) and metadata.get("http_status"):
        return str(metadata["http_status"])
    cause = error.__cause__ or error.__context__ or error
    return type(cause).__name__


class ToolCall:
    """One tool call: its ``execute_tool {tool}`` span (current while the tool runs) and its metrics."""

    __slots__ = ("_label", "_scope", "_span", "_started")

    def __init__(
        self, tool: str, call_id: str, *, known: bool = True, arguments: Mapping[str, Any] | None = None
    ) -> None:
        self._label = tool if known else metrics.UNKNOWN_TOOL
        self._started = time.monotonic()
        self._span: Span | None = None
        self._scope: contextlib.AbstractContextManager[Any] = _NOOP
        tracer = tracing.tracer()
        if tracer is not None:
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool,
                "gen_ai.tool.call.id": call_id,
                "gen_ai.tool.type": "function",
            }
            if tracing.capture_content() and arguments is not None:
                attributes["gen_ai.tool.call.arguments"] = _clip(json.dumps(dict(arguments), default=str))
            self._span = tracer.start_span(f"execute_tool {tool}", attributes=attributes)
            self._scope = _current(self._span)

    def finished(self, is_error: bool, result: str = "") -> None:
        """The call produced its result (an error result when the tool failed, timed out or was unusable)."""
        metrics.tool_finished(self._label, time.monotonic() - self._started, is_error)
        if self._span is not None:
            if is_error:
                self._span.set_attribute("error.type", "tool_error")
                self._span.set_status(Status(StatusCode.ERROR, "tool_error"))
            if tracing.capture_content():
                self._span.set_attribute("gen_ai.tool.call.result", _clip(result))

    def __enter__(self) -> ToolCall:
        self._scope.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        self._scope.__exit__(kind, error, tb)
        if self._span is not None:
            self._span.end()


@contextlib.contextmanager
def mcp_call(method: str, server: str, tool: str | None = None) -> Iterator[dict[str, str]]:
    """A ``mcp {method} {tool}`` CLIENT span around one MCP request; yields the trace headers to send with it
    (for MCP over HTTP; a stdio server ignores them). An exception leaving the block marks the span failed."""
    tracer = tracing.tracer()
    if tracer is None:
        yield {}
        return
    attributes: dict[str, Any] = {"mcp.method.name": method, "agentstream.mcp.server": server}
    if tool is not None:
        attributes |= {"gen_ai.tool.name": tool, "gen_ai.operation.name": "execute_tool"}
    name = f"mcp {method}" + (f" {tool}" if tool else "")
    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes) as span:
        try:
            yield trace_headers()
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__name__)
            raise


def _current(span: Span) -> contextlib.AbstractContextManager[Any]:
    """``span`` current inside; its status and errors are ours to set, and its end too."""
    return trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_CONTENT_CHARS else text[:_MAX_CONTENT_CHARS] + "…[truncated]"
