"""JSON log lines carry the trace and span ids, and the run id, tenant and agent of the run they are about."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.observability.logs import CHATTY_HTTP_LOGGERS, ContextFilter, configure_logging, json_formatter
from tests.conftest import StartServer
from tests.observability.conftest import by_name, span_id, trace_id
from tests.service.helpers import request, terminal_of
from tests.support.fakellm import FakeLLM, HTTPError

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the server's loggers write, as --log-format json writes it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ContextFilter())
    handler.setFormatter(json_formatter())
    logger = logging.getLogger("agentstream")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield out
    logger.removeHandler(handler)
    logger.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_lines_about_a_run_carry_its_ids_and_the_current_span(
    exported: InMemorySpanExporter, start: StartServer, fake_llm: FakeLLM, json_lines: io.StringIO
) -> None:
    server = await start(llm_max_retries=0)
    fake_llm.script(HTTPError(503, "overloaded"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = rpb_grpc.RunnerServiceStub(channel).StreamingRun(request("hi"), metadata=[("traceparent", TRACEPARENT)])
        messages = [message async for message in call]
    assert not terminal_of(messages).success
    run_id = messages[0].run_id
    (chat,) = by_name(exported, "chat ")
    records = lines(json_lines)
    (upstream,) = [r for r in records if r["logger"] == "agentstream.llm"]
    assert upstream["level"] == "WARNING" and "HTTP 503" in str(upstream["message"])
    assert (upstream["run_id"], upstream["tenant"], upstream["agent"]) == (run_id, "", "assistant")
    assert upstream["trace_id"] == f"{trace_id(chat):032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert upstream["span_id"] == f"{span_id(chat):016x}"
    ended = [r for r in records if str(r["message"]).startswith(f"run {run_id} ended")]
    assert len(ended) == 1 and ended[0]["run_id"] == run_id and ended[0]["agent"] == "assistant"
    assert ended[0]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert {"time", "level", "logger", "message"} <= set(ended[0])
    assert [r for r in records if r["logger"] == "agentstream.runs"] == ended  # at INFO, one line per run


def test_configure_logging_json_writes_one_object_per_line_and_text_stays_the_default() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        out = io.StringIO()
        configure_logging("info", "json", worker=2, pid=1234, stream=out)
        logging.getLogger("agentstream.test").info("hello %s", "world")
        (record,) = lines(out)
        assert record["message"] == "hello world" and record["worker"] == 2 and record["pid"] == 1234
        assert "trace_id" not in record and "run_id" not in record  # nothing made up when nothing is known
        text = io.StringIO()
        configure_logging("info", stream=text)
        logging.getLogger("agentstream.test").info("plain")
        assert text.getvalue().rstrip().endswith("INFO agentstream.test: plain")
        with pytest.raises(ValueError, match="log format"):
            configure_logging("info", "yaml")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


@pytest.mark.parametrize(("level", "written"), [("info", False), ("debug", True)])
def test_http_request_lines_are_written_only_at_debug(level: str, written: bool) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        out = io.StringIO()
        configure_logging(level, stream=out)
        logging.getLogger("httpx2").info("HTTP Request: POST http://llm/v1/chat/completions 200 OK")
        logging.getLogger("httpx2").warning("a warning still shows")
        assert ("HTTP Request" in out.getvalue()) is written
        assert "a warning still shows" in out.getvalue()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name in CHATTY_HTTP_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
