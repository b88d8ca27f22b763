"""Upstream fuzzing against a live server: whatever chunk JSON the LLM endpoint streams, every run ends with
exactly one terminal message, last, and the run stays readable (GetRun, SubscribeRun) afterwards."""

from __future__ import annotations

import json
from typing import Any

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.transport.server import RunningServer
from tests.service.helpers import terminal_of
from tests.support import wild_json
from tests.support.fakellm import Chunks, FakeLLM, Response, Text


def field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a well-typed value, sometimes any JSON value at all."""
    return st.one_of(good, good, wild_json.values(max_leaves=6))


arguments = st.one_of(
    st.just('{"expression": "1 + 1"}'),
    st.text(max_size=12),
    wild_json.values().map(json.dumps),
    st.dictionaries(st.sampled_from(["expression", "x"]) | wild_json.texts, wild_json.values()).map(json.dumps),
    st.just('{"expression": ' + "[" * 5000 + "]" * 5000 + "}"),
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "index": field(st.integers(0, 2)),
            "id": field(wild_json.texts),
            "type": field(st.just("function")),
            "function": field(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "name": field(st.sampled_from(["calculator", "current_time"]) | wild_json.texts),
                        "arguments": field(arguments),
                    },
                )
            ),
        },
    ),
    max_size=2,
)
deltas = st.fixed_dictionaries(
    {},
    optional={
        "role": field(st.just("assistant")),
        "content": field(st.none() | wild_json.texts),
        "reasoning_content": field(wild_json.texts),
        "tool_calls": field(tool_calls),
    },
)
choices = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "index": field(st.just(0)),
            "delta": field(deltas),
            "finish_reason": field(st.sampled_from(["stop", "tool_calls", "length", None])),
        },
    ),
    max_size=2,
)
usage = st.fixed_dictionaries(
    {}, optional={name: field(st.integers(0, 100)) for name in ("prompt_tokens", "completion_tokens", "total_tokens")}
)
chunks = st.fixed_dictionaries(
    {"id": field(st.just("chatcmpl-fuzz"))},
    optional={"choices": field(choices), "usage": field(usage), "error": wild_json.values(max_leaves=3)},
)
FINISH = {"id": "chatcmpl-fuzz", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
fuzzed_streams = st.builds(
    lambda payloads, finish, done: Chunks([*payloads, *([FINISH] if finish else [])], done=done),
    st.lists(st.one_of(chunks, chunks, wild_json.values(max_leaves=6)), max_size=6),
    st.booleans(),
    st.booleans(),
)


def tool_turn(name: str, arguments: str) -> Chunks:
    """A well-formed turn calling one tool, so that wild arguments get as far as the tool and the wire."""
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}
    return Chunks(
        [
            {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]},
            {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        ]
    )


streams = st.one_of(
    fuzzed_streams, st.builds(tool_turn, st.sampled_from(["calculator", "current_time"]) | wild_json.texts, arguments)
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=streams)
async def test_any_upstream_stream_ends_the_run_with_one_terminal_message(
    fake_llm: FakeLLM, server: RunningServer, stream: Chunks
) -> None:
    def respond(body: dict[str, Any]) -> Response:
        followup = any(m.get("role") == "tool" for m in body["messages"])
        return Text(["done"]) if followup else stream

    fake_llm.responder = respond
    request = rpb.StreamingRunRequest(input="fuzz", streaming_mode=rpb.STREAMING_MODE_ALL)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        messages = [m async for m in stub.StreamingRun(request, timeout=20)]
        task = terminal_of(messages)
        if task.status != pb.TASK_STATUS_SUCCEEDED:
            assert task.status == pb.TASK_STATUS_FAILED
            assert task.error.reason == "LLM_UPSTREAM_ERROR", task.msg
            assert len(task.msg) < 1000
        run_id = messages[-1].run_id
        run = await stub.GetRun(rpb.GetRunRequest(run_id=run_id), timeout=5)
        assert (run.status, run.response) == (task.status, task)
        replay = [m async for m in stub.SubscribeRun(rpb.SubscribeRunRequest(run_id=run_id), timeout=5)]
        assert terminal_of(replay) == task
