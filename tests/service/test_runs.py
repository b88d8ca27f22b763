"""Run and RunManager without grpc: every run ends with exactly one terminal event, however it ends."""

from __future__ import annotations

import pytest

from agentstream_server.config import Settings
from agentstream_server.errors import AgentNotFound, RunAlreadyExists, ServerDraining, TooManyRuns
from agentstream_server.runs.manager import RunLimits, RunManager
from agentstream_server.runs.modes import Mode
from agentstream_server.runs.request import ValidRunRequest
from agentstream_server.runtime.agents import default_agents
from agentstream_server.runtime.demo import DemoChatModel
from agentstream_server.runtime.events import TaskFinished, TaskStatus
from agentstream_server.store.memory import MemoryStore


def manager(max_runs: int = 10) -> RunManager:
    catalog = default_agents()
    demo = DemoChatModel(token_delay_s=0.01)
    limits = RunLimits.from_settings(Settings(max_concurrent_runs=max_runs, run_timeout_s=60.0))
    return RunManager(catalog.agents, catalog.default, lambda agent: demo, limits, MemoryStore())


def request(run_id: str = "", agent: str = "") -> ValidRunRequest:
    return ValidRunRequest(
        input="What is 2 + 2?", agent=agent, mode=Mode.ALL, session_id="", run_id=run_id, metadata={}, timeout_s=None
    )


async def terminals(runs: RunManager, run_id: str) -> list[TaskFinished]:
    return [r.event async for r in await runs.subscribe(run_id, 0) if isinstance(r.event, TaskFinished)]


async def test_a_run_cancelled_before_its_first_step_still_ends_with_one_terminal_event() -> None:
    runs = manager()
    run = await runs.start(request("early"))
    run.cancel("changed my mind")
    await run.wait()
    (terminal,) = await terminals(runs, "early")
    assert terminal.status == TaskStatus.CANCELLED
    assert "changed my mind" in terminal.msg
    assert runs.live_runs == 0


async def test_a_run_cancelled_mid_way_ends_cancelled_after_its_earlier_events() -> None:
    runs = manager()
    run = await runs.start(request("mid"))
    async for record in run.log.follow():
        if record.event.category == "chunk":
            run.cancel("stop")
            break
    await run.wait()
    (terminal,) = await terminals(runs, "mid")
    assert terminal.status == TaskStatus.CANCELLED
    assert [r.seq async for r in run.log.follow()] == list(range(1, run.log.last_seq + 1))


async def test_admission_errors() -> None:
    runs = manager(max_runs=1)
    with pytest.raises(AgentNotFound):
        await runs.start(request(agent="ghost"))
    first = await runs.start(request("one"))
    with pytest.raises(RunAlreadyExists):
        await runs.start(request("one"))
    with pytest.raises(TooManyRuns):
        await runs.start(request("two"))
    runs.begin_drain()
    with pytest.raises(ServerDraining):
        await runs.start(request("three"))
    await runs.drain(0)
    assert first.done
    assert runs.live_runs == 0


async def test_a_run_failed_before_its_first_step_ends_failed_with_that_error() -> None:
    from agentstream_server.errors import RunStoreUnavailable

    runs = manager()
    run = await runs.start(request("early-fail"))
    run.fail(RunStoreUnavailable("lost the run store"))
    await run.wait()
    (terminal,) = await terminals(runs, "early-fail")
    assert terminal.status == TaskStatus.FAILED
    assert terminal.error is not None
    assert terminal.error.reason == "RUN_STORE_UNAVAILABLE"
