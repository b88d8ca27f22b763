"""Typed errors: every row of the server's error table comes back as its SDK class, from both clients."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

import agentstream
from agentstream import AgentStreamError, Client, SyncClient, TaskMessage, TransportError
from agentstream.errors import ERRORS_BY_REASON, error_for_task, from_rpc_error
from agentstream.messages import from_proto
from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.errors import ERROR_DOMAIN, ERROR_TABLE, ErrorRow
from tests.sdk import ScriptedRunner, Status, calculator_run, rich_status, scripted_server, terminal


async def drain_async(target: str) -> list[agentstream.Message]:
    async with Client(target) as client:
        return [m async for m in client.streaming_run("hi")]


async def drain_sync(target: str) -> list[agentstream.Message]:
    def consume() -> list[agentstream.Message]:
        with SyncClient(target) as client:
            return list(client.streaming_run("hi"))

    return await asyncio.to_thread(consume)


CLIENTS: dict[str, Callable[[str], object]] = {"async": drain_async, "sync": drain_sync}


async def failure(runner: ScriptedRunner, client: str) -> AgentStreamError:
    async with scripted_server(runner) as target:
        with pytest.raises(AgentStreamError) as caught:
            await CLIENTS[client](target)  # type: ignore[misc]
    return caught.value


def row_id(row: ErrorRow) -> str:
    return row.reason


def test_the_sdk_knows_every_reason_of_the_error_table_and_no_other() -> None:
    assert set(ERRORS_BY_REASON) == {row.reason for row in ERROR_TABLE}
    assert agentstream.errors.ERROR_DOMAIN == ERROR_DOMAIN


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("row", ERROR_TABLE, ids=row_id)
async def test_every_row_of_the_error_table_becomes_its_typed_error(row: ErrorRow, client: str) -> None:
    status = rich_status(row.code, "it went wrong", reason=row.reason, metadata={"key": "value"}, field="input")
    error = await failure(ScriptedRunner(abort=status), client)
    sdk_class = getattr(agentstream, row.error.__name__, None)
    assert sdk_class is not None, f"agentstream exports no {row.error.__name__} for {row.reason}"
    assert type(error) is sdk_class
    assert (error.code, error.reason, error.message) == (grpc.StatusCode[row.code], row.reason, "it went wrong")
    assert error.metadata == {"key": "value"}
    assert error.field_violations == [("input", "it went wrong")]
    assert [type(d) for d in error.details] == [error_details_pb2.ErrorInfo, error_details_pb2.BadRequest]
    assert str(error) == f"{row.code} {row.reason}: it went wrong"


@pytest.mark.parametrize("row", [r for r in ERROR_TABLE if r.in_band], ids=row_id)
def test_an_in_band_failure_maps_to_the_same_typed_error(row: ErrorRow) -> None:
    message = from_proto(
        terminal(
            2,
            success=False,
            msg="run failed",
            error=pb.TaskError(reason=row.reason, code=row.code, metadata={"http_status": "503"}),
        )
    )
    assert isinstance(message, TaskMessage)
    error = error_for_task(message.payload)
    assert type(error).__name__ == row.error.__name__
    assert (error.code, error.reason, error.message) == (grpc.StatusCode[row.code], row.reason, "run failed")
    assert error.metadata == {"http_status": "503"}
    assert type(error_for_task(row.reason, row.code, "run failed")) is type(error)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (pb.TASK_STATUS_TIMED_OUT, agentstream.RunTimedOut),
        (pb.TASK_STATUS_CANCELLED, agentstream.RunCancelled),
        (pb.TASK_STATUS_INTERRUPTED, agentstream.RunInterrupted),
        (pb.TASK_STATUS_FAILED, agentstream.InternalError),
    ],
)
def test_a_failed_response_without_an_error_maps_by_status(status: int, expected: type[AgentStreamError]) -> None:
    message = from_proto(terminal(2, success=False, msg="", status=status))
    assert isinstance(message, TaskMessage)
    assert type(error_for_task(message.payload)) is expected


def test_a_successful_response_has_no_error() -> None:
    message = from_proto(terminal(2, answer="ok"))
    assert isinstance(message, TaskMessage)
    with pytest.raises(ValueError, match="succeeded"):
        error_for_task(message.payload)


async def test_agent_not_found_lists_the_known_agents() -> None:
    status = rich_status("NOT_FOUND", "no agent 'ghost'", reason="AGENT_NOT_FOUND", metadata={"known_agents": "a,b"})
    error = await failure(ScriptedRunner(abort=status), "async")
    assert isinstance(error, agentstream.AgentNotFound)
    assert error.known_agents == ["a", "b"]


async def test_seq_out_of_range_exposes_the_retained_window() -> None:
    metadata = {"last_seq": "9", "oldest_retained_seq": "4"}
    status = rich_status("OUT_OF_RANGE", "too old", reason="SEQ_OUT_OF_RANGE", metadata=metadata, field="after_seq")
    error = await failure(ScriptedRunner(abort=status), "sync")
    assert isinstance(error, agentstream.SeqOutOfRange)
    assert (error.last_seq, error.oldest_retained_seq) == (9, 4)


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_status_without_details_is_a_transport_error_with_its_code(client: str) -> None:
    error = await failure(ScriptedRunner(abort=Status(grpc.StatusCode.UNAVAILABLE, "proxy says no")), client)
    assert type(error) is TransportError
    assert (error.code, error.reason, error.message, error.details) == (
        grpc.StatusCode.UNAVAILABLE,
        "",
        "proxy says no",
        [],
    )


async def test_another_domains_error_info_is_a_transport_error() -> None:
    status = rich_status("NOT_FOUND", "elsewhere", reason="AGENT_NOT_FOUND", domain="example.com")
    error = await failure(ScriptedRunner(abort=status), "async")
    assert type(error) is TransportError
    assert error.code == grpc.StatusCode.NOT_FOUND


async def test_an_unknown_reason_of_ours_is_a_plain_error_keeping_the_reason() -> None:
    status = rich_status("FAILED_PRECONDITION", "newer server", reason="SOMETHING_NEW", metadata={"k": "v"})
    error = await failure(ScriptedRunner(abort=status), "async")
    assert type(error) is AgentStreamError
    assert (error.code, error.reason, error.metadata) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SOMETHING_NEW",
        {"k": "v"},
    )
    assert AgentStreamError.reason == ""


async def test_a_details_trailer_contradicting_the_status_is_ignored() -> None:
    inner = status_pb2.Status(code=5, message="not this")
    inner.details.add().Pack(error_details_pb2.ErrorInfo(reason="AGENT_NOT_FOUND", domain=ERROR_DOMAIN))
    mismatched = Status(grpc.StatusCode.INTERNAL, "boom", (("grpc-status-details-bin", inner.SerializeToString()),))
    error = await failure(ScriptedRunner(abort=mismatched), "async")
    assert type(error) is TransportError
    assert error.code == grpc.StatusCode.INTERNAL


@pytest.mark.parametrize("client", CLIENTS)
async def test_messages_before_a_failure_are_delivered_then_the_error_raised(client: str) -> None:
    runner = ScriptedRunner(script=calculator_run()[:3], abort=rich_status("INTERNAL", "crash", reason="INTERNAL"))
    received: list[int] = []
    async with scripted_server(runner) as target:
        with pytest.raises(agentstream.InternalError):
            if client == "async":
                async with Client(target) as aclient:
                    async for message in aclient.streaming_run("hi"):
                        received.append(message.seq)
            else:

                def consume() -> None:
                    with SyncClient(target) as sclient:
                        received.extend(m.seq for m in sclient.streaming_run("hi"))

                await asyncio.to_thread(consume)
    assert received == [1, 2, 3]


@pytest.mark.parametrize("client", CLIENTS)
async def test_an_unreachable_server_is_a_transport_error(client: str) -> None:
    with pytest.raises(TransportError) as caught:
        await CLIENTS[client]("127.0.0.1:1")  # type: ignore[misc]
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


async def test_a_client_side_deadline_is_a_transport_error() -> None:
    async with scripted_server(ScriptedRunner(hang=True)) as target, grpc.aio.insecure_channel(target) as channel:
        call = rpb_grpc.RunnerServiceStub(channel).StreamingRun(rpb.StreamingRunRequest(input="hi"), timeout=0.05)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
    error = from_rpc_error(caught.value)
    assert type(error) is TransportError
    assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED
