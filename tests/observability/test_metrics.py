"""/metrics scraped from a live server after a known sequence of runs: every metric present, every delta exact."""

from __future__ import annotations

import asyncio
import urllib.request
from collections import Counter

import grpc
from prometheus_client.parser import text_string_to_metric_families

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from tests.conftest import StartServer
from tests.service.helpers import collect, request, terminal_of
from tests.support.fakellm import FakeLLM, HTTPError, Text, ToolCalls

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
MODEL = "gpt-4o-mini"


async def scrape(port: int) -> Samples:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return str(response.read().decode())

    text = await asyncio.to_thread(get)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in after, f"{name}{labels} missing from /metrics"
    return after[key] - before.get(key, 0.0)


async def test_metrics_after_a_known_sequence_of_runs(start: StartServer, fake_llm: FakeLLM) -> None:
    server = await start(metrics_port=0, llm_max_retries=0)
    assert server.metrics_port
    before = await scrape(server.metrics_port)
    streamed: list[pb.Message] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpb_grpc.RunnerServiceStub(channel)
        fake_llm.script(ToolCalls([("calculator", {"expression": "6 * 7"})], usage=(11, 5)), Text(["42"]))
        first = await collect(stub, request("6 * 7?"))  # succeeds, one calculator call
        fake_llm.script(ToolCalls([("explode", {"reason": "boom"})]), Text(["sorry"]))
        second = await collect(stub, request("break", agent="tester"))  # succeeds, a failing tool
        fake_llm.script(HTTPError(503, "overloaded"))
        third = await collect(stub, request("hi"))  # fails: LLM 503
        fake_llm.script(ToolCalls([("no_such_tool", {})]), Text(["done"]))
        fourth = await collect(stub, request("use a tool"))  # succeeds, a call of a tool the agent lacks
        try:
            await collect(stub, request("hi", agent="nobody"))
        except grpc.aio.AioRpcError as exc:
            assert exc.code() is grpc.StatusCode.NOT_FOUND
        replay = rpb.SubscribeRunRequest(run_id=first[0].run_id, streaming_mode=rpb.STREAMING_MODE_ALL)
        replayed = [message async for message in stub.SubscribeRun(replay)]
        streamed = [*first, *second, *third, *fourth, *replayed]
    assert [terminal_of(m).success for m in (first, second, third, fourth)] == [True, True, False, True]
    after = await scrape(server.metrics_port)

    assert delta(before, after, "agentstream_runs_started_total", agent="assistant") == 3
    assert delta(before, after, "agentstream_runs_started_total", agent="tester") == 1
    assert delta(before, after, "agentstream_runs_finished_total", agent="assistant", status="succeeded") == 2
    assert delta(before, after, "agentstream_runs_finished_total", agent="assistant", status="failed") == 1
    assert delta(before, after, "agentstream_runs_finished_total", agent="tester", status="succeeded") == 1
    assert delta(before, after, "agentstream_runs_live") == 0
    assert delta(before, after, "agentstream_run_duration_seconds_count", agent="assistant", status="succeeded") == 2
    for category, count in Counter(m.category for m in streamed).items():
        assert delta(before, after, "agentstream_events_streamed_total", category=category) == count, category
    assert delta(before, after, "agentstream_time_to_first_event_seconds_count") == 4
    assert delta(before, after, "agentstream_subscribers_live", method="StreamingRun") == 0
    assert delta(before, after, "agentstream_subscribers_live", method="SubscribeRun") == 0
    assert delta(before, after, "agentstream_rejected_calls_total", reason="AGENT_NOT_FOUND") == 1
    assert delta(before, after, "agentstream_llm_call_duration_seconds_count", model=MODEL) == 7
    assert delta(before, after, "agentstream_llm_time_to_first_token_seconds_count", model=MODEL) == 6
    assert delta(before, after, "agentstream_llm_errors_total", model=MODEL, status="503") == 1
    usage = [terminal_of(m).usage for m in (first, second, third, fourth)]
    input_tokens = sum(u.prompt_tokens for u in usage)
    output_tokens = sum(u.completion_tokens for u in usage)
    assert delta(before, after, "agentstream_llm_tokens_total", model=MODEL, direction="input") == input_tokens
    assert delta(before, after, "agentstream_llm_tokens_total", model=MODEL, direction="output") == output_tokens
    assert delta(before, after, "agentstream_tool_duration_seconds_count", tool="calculator") == 1
    assert delta(before, after, "agentstream_tool_duration_seconds_count", tool="explode") == 1
    assert delta(before, after, "agentstream_tool_duration_seconds_count", tool="unknown") == 1
    assert delta(before, after, "agentstream_tool_errors_total", tool="explode") == 1
    assert delta(before, after, "agentstream_tool_errors_total", tool="unknown") == 1
    assert ("agentstream_tool_errors_total", frozenset({("tool", "calculator")})) not in after or (
        delta(before, after, "agentstream_tool_errors_total", tool="calculator") == 0
    )
    assert not [key for key in after if "no_such_tool" in str(key) or first[0].run_id in str(key)]


async def test_redis_mirror_lag_and_lease_renewals(start: StartServer, fake_llm: FakeLLM, redis_url: str) -> None:
    server = await start(metrics_port=0, store=redis_url, lease_s=0.3)
    assert server.metrics_port
    before = await scrape(server.metrics_port)
    fake_llm.script(Text(["mirrored"]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        messages = await collect(rpb_grpc.RunnerServiceStub(channel), request("hi"))
    assert terminal_of(messages).success
    renewed = ("agentstream_redis_lease_renewals_total", frozenset({("outcome", "ok")}))
    for _ in range(100):  # renewals run every lease / 3 (0.1 s): wait for one, boundedly
        after = await scrape(server.metrics_port)
        if after.get(renewed, 0.0) > before.get(renewed, 0.0):
            break
        await asyncio.sleep(0.05)
    assert delta(before, after, "agentstream_redis_lease_renewals_total", outcome="ok") > 0
    assert delta(before, after, "agentstream_redis_mirror_lag_seconds_count") >= 1


def test_the_grafana_dashboard_uses_every_metric_and_only_metrics_the_server_has() -> None:
    import json
    import re
    from pathlib import Path

    from prometheus_client import REGISTRY

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text())
    used = {
        re.sub(r"_(total|bucket)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"agentstream_[a-z_]+", target["expr"])
    }
    ours = {family.name for family in REGISTRY.collect() if family.name.startswith("agentstream_")}
    assert used == ours
