"""An event that cannot be converted to protobuf never breaks the one-terminal-message guarantee (issue #9)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.runtime.events import Output, RunEvent, TaskFinished
from agentstream_server.transport import convert
from tests.service.helpers import collect, request, terminal_of
from tests.support.fakellm import FakeLLM, Stall, Text

ENCODE_ERROR_HEADER = "agentstream-encode-error"


def failing_for(monkeypatch: pytest.MonkeyPatch, kind: type) -> None:
    """Make the event-to-protobuf conversion raise for one kind of event, as a bug would."""
    real = convert.to_proto

    def to_proto(record: RunEvent) -> pb.Message:
        if type(record.event) is kind:
            raise ValueError("injected conversion failure")
        return real(record)

    monkeypatch.setattr(convert, "to_proto", to_proto)


async def test_regression_an_unencodable_event_is_a_placeholder_and_the_stream_still_ends_once(
    monkeypatch: pytest.MonkeyPatch, fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    failing_for(monkeypatch, Output)
    fake_llm.script(Text(["The ", "answer"]))
    messages = await collect(stub, request(streaming_mode=rpb.STREAMING_MODE_ALL))
    terminal_of(messages)
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1)), "no seq is skipped"
    placeholders = [m for m in messages if ENCODE_ERROR_HEADER in m.headers]
    assert len(placeholders) == 1
    assert (placeholders[0].category, placeholders[0].WhichOneof("payload")) == ("output", None)


async def test_regression_an_unencodable_event_of_a_live_run_fails_the_run_internal(
    monkeypatch: pytest.MonkeyPatch, fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    from agentstream_server.runtime.events import Chunk

    failing_for(monkeypatch, Chunk)
    fake_llm.script(Stall(tokens=["Hel"]))  # the run is still live when its first chunk is encoded
    messages = await collect(stub, request(streaming_mode=rpb.STREAMING_MODE_ALL))
    terminal = terminal_of(messages)
    assert (terminal.status, terminal.error.reason) == (pb.TASK_STATUS_FAILED, "INTERNAL")
    assert "could not be encoded" in terminal.msg


async def test_regression_an_unencodable_terminal_still_ends_every_stream_and_get_run_answers(
    monkeypatch: pytest.MonkeyPatch, fake_llm: FakeLLM, stub: rpb_grpc.RunnerServiceStub
) -> None:
    failing_for(monkeypatch, TaskFinished)
    real_fill = convert._fill_task_finished

    def fill(task: pb.TaskPayload, event: TaskFinished, *args: Any) -> None:
        raise ValueError("injected conversion failure")

    monkeypatch.setattr(convert, "_fill_task_finished", fill)
    fake_llm.script(Text(["hi"]))
    messages = await collect(stub, request(run_id="bad-terminal"))
    terminal = terminal_of(messages)
    assert (terminal.success, terminal.error.reason) == (False, "INTERNAL")
    for mode in (rpb.STREAMING_MODE_CHUNK, rpb.STREAMING_MODE_OUTPUT):
        replay = [
            m async for m in stub.SubscribeRun(rpb.SubscribeRunRequest(run_id="bad-terminal", streaming_mode=mode))
        ]
        assert terminal_of(replay).error.reason == "INTERNAL"
    run = await stub.GetRun(rpb.GetRunRequest(run_id="bad-terminal"))
    assert run.response.error.reason == "INTERNAL"
    monkeypatch.setattr(convert, "_fill_task_finished", real_fill)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetRun(rpb.GetRunRequest(run_id="never-started"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
