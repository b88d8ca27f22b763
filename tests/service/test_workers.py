"""`serve --workers N` as real processes: one port, N servers, any worker answers for any run (Redis).

Which worker took a connection is read from /proc: the server side of each TCP connection is a socket
inode held open by exactly one worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentstream import Client, StreamingMode, TaskMessage, TransportError
from agentstream.v1 import message_pb2 as pb
from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from tests.service.helpers import error_details, terminal_of
from tests.service.test_run_outcomes import read_rest
from tests.support.certs import Pki
from tests.support.fakellm import FakeLLM, Stall, ToolCalls, default_responder
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; SO_REUSEPORT as on Linux")


class Group:
    """A `serve --workers N` supervisor process whose output is read (and kept) as it is written."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new_line = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.target = ""

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode())
            self._new_line.set()
        self._new_line.set()

    async def wait_for(self, pattern: str, timeout: float = 20, start: int = 0) -> re.Match[str]:
        """The first line from index `start` on that matches `pattern`."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines[start:]:
                    if match := re.search(pattern, line):
                        return match
                if self._reader.done():
                    raise AssertionError("the supervisor exited first:\n" + "".join(self.lines))
                self._new_line.clear()
                await self._new_line.wait()

    def output(self) -> str:
        return "".join(self.lines)

    def workers(self) -> list[int]:
        """The supervisor's live child processes."""
        return children_of(self.process.pid)

    async def exit_status(self, timeout: float = 20) -> int:
        async with asyncio.timeout(timeout):
            status = await self.process.wait()
            await self._reader
        return status

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()


def children_of(pid: int) -> list[int]:
    """Processes whose parent is pid (zombies excluded), from /proc/*/stat."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(entry))
    return sorted(found)


def is_running(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def accepted_connections(pid: int, port: int) -> set[int]:
    """Remote (client) ports of the established connections to `port` that process pid holds."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    remotes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows)
            for row in rows:
                cols = row.split()
                local, remote, state, inode = cols[1], cols[2], cols[3], cols[9]
                if state == "01" and inode in inodes and int(local.rsplit(":", 1)[1], 16) == port:
                    remotes.add(int(remote.rsplit(":", 1)[1], 16))
    return remotes


async def spawn_group(fake_llm: FakeLLM, *args: str, wait: bool = True, **settings: str) -> Group:
    """`serve --port 0 ARGS` with the given AGENTSTREAM_* environment; waits for `listening on` unless told."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")}
    env.update(OPENAI_BASE_URL=fake_llm.base_url, OPENAI_API_KEY="test-key", **settings)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentstream_server", "serve", "--port", "0", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    group = Group(process)
    if wait:
        group.target = (await group.wait_for(r"agentstream\.workers: listening on (\S+:\d+)")).group(1)
    return group


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url


@pytest.fixture
async def groups() -> AsyncIterator[list[Group]]:
    """Supervisors started by a test; any still running afterwards is killed, with its workers."""
    started: list[Group] = []
    yield started
    for group in started:
        workers = group.workers()
        await group.kill()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def channel_to(target: str) -> grpc.aio.Channel:
    """A channel with its own connection (channels otherwise share one per target in this process)."""
    return grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


async def channels_on_each_worker(group: Group, want: int = 2, tries: int = 40) -> dict[int, grpc.aio.Channel]:
    """Open channels one by one until `want` workers each hold one: worker pid -> a channel connected to it."""
    port = int(group.target.rsplit(":", 1)[1])
    by_worker: dict[int, grpc.aio.Channel] = {}
    for _ in range(tries):
        before = {pid: accepted_connections(pid, port) for pid in group.workers()}
        channel = channel_to(group.target)
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        owners = [pid for pid in before if accepted_connections(pid, port) - before[pid]]
        assert len(owners) == 1, f"a new connection should land on exactly one worker, not {owners}"
        if owners[0] in by_worker:
            await channel.close()
        else:
            by_worker[owners[0]] = channel
        if len(by_worker) == want:
            return by_worker
    raise AssertionError(f"{tries} connections all landed on workers {sorted(by_worker)}")


async def test_two_workers_share_the_port_and_each_answers_for_runs_started_on_the_other(
    fake_llm: FakeLLM, clean_redis: str, groups: list[Group]
) -> None:
    group = await spawn_group(fake_llm, "--workers", "2", "--store", clean_redis, "--grace", "0.5")
    groups.append(group)
    assert len(group.workers()) == 2
    assert len(re.findall(r"\] agentstream\.workers: worker \d ready on", group.output())) == 2
    assert "listening on" not in "".join(line for line in group.lines if "[worker" in line)
    on_worker = await channels_on_each_worker(group)
    (a_pid, a), (b_pid, b) = on_worker.items()
    try:
        for starter_pid, starter, follower in ((a_pid, a, b), (b_pid, b, a)):
            fake_llm.script(Stall(["Hel"]))
            started = await rpb_grpc.RunnerServiceStub(starter).StartRun(rpb.StartRunRequest(input="hi"))
            other = rpb_grpc.RunnerServiceStub(follower)
            subscription = other.SubscribeRun(rpb.SubscribeRunRequest(run_id=started.run_id))
            assert (await subscription.read()).seq == 1
            run = await other.GetRun(rpb.GetRunRequest(run_id=started.run_id))
            assert run.status == pb.TASK_STATUS_RUNNING
            cancelled = await other.CancelRun(rpb.CancelRunRequest(run_id=started.run_id, reason="from the other"))
            assert cancelled.status == pb.TASK_STATUS_CANCELLED and not cancelled.already_finished
            task = terminal_of(await read_rest(subscription))
            assert task.status == pb.TASK_STATUS_CANCELLED
            assert "from the other" in task.msg
            # The run's one INFO line, written when it ends by the worker that executed it: the one it started on.
            ended = await group.wait_for(rf"\[worker \d pid (\d+)\] agentstream\.runs: run {started.run_id} ended")
            assert int(ended.group(1)) == starter_pid, "each run executes on the worker it started on"
    finally:
        await a.close()
        await b.close()


async def test_sigterm_drains_every_worker_then_the_supervisor_exits_zero_leaving_no_process(
    fake_llm: FakeLLM, clean_redis: str, groups: list[Group]
) -> None:
    group = await spawn_group(
        fake_llm, AGENTSTREAM_WORKERS="2", AGENTSTREAM_STORE=clean_redis, AGENTSTREAM_SHUTDOWN_GRACE="0.5"
    )  # configured through the environment, which the workers inherit
    groups.append(group)
    workers = group.workers()
    on_worker = await channels_on_each_worker(group)
    calls = []
    for channel in on_worker.values():  # a live run on each worker
        fake_llm.script(Stall(["Hel"]))
        call = rpb_grpc.RunnerServiceStub(channel).StreamingRun(rpb.StreamingRunRequest(input="hi"))
        await call.read()
        calls.append(call)
    group.process.send_signal(signal.SIGTERM)
    for call in calls:
        assert terminal_of(await read_rest(call)).status == pb.TASK_STATUS_CANCELLED
    assert await group.exit_status() == 0, group.output()
    assert not [pid for pid in workers if is_running(pid)]
    assert group.output().count("agentstream.server: stopped") == 2
    assert "all workers stopped" in group.output()
    for channel in on_worker.values():
        await channel.close()


async def test_a_killed_worker_is_restarted_on_the_same_port(
    fake_llm: FakeLLM, clean_redis: str, groups: list[Group]
) -> None:
    group = await spawn_group(fake_llm, "--workers", "2", "--store", clean_redis, "--grace", "0.5")
    groups.append(group)
    victim, survivor = group.workers()
    seen = len(group.lines)
    os.kill(victim, signal.SIGKILL)
    await group.wait_for(rf"worker \d \(pid {victim}\) exited with signal SIGKILL: restarting in 1\.0s", start=seen)
    replacement = int((await group.wait_for(r"worker \d restarted \(pid (\d+)\)", start=seen)).group(1))
    assert sorted(group.workers()) == sorted([survivor, replacement])
    on_worker = await channels_on_each_worker(group)  # the replacement listens on the same port
    assert set(on_worker) == {survivor, replacement}
    for channel in on_worker.values():
        await channel.close()
    group.process.send_signal(signal.SIGTERM)
    assert await group.exit_status() == 0, group.output()


STUCK_AGENTS_TOML = """
[agents.stuck]
tools = ["tests.support.tools:block_forever"]
"""


async def test_a_second_sigterm_stops_the_workers_at_once(
    fake_llm: FakeLLM, clean_redis: str, groups: list[Group], tmp_path: Path
) -> None:
    agents = tmp_path / "stuck.toml"
    agents.write_text(STUCK_AGENTS_TOML)
    group = await spawn_group(
        fake_llm, "--workers", "2", "--store", clean_redis, "--grace", "120", "--agents", str(agents)
    )
    groups.append(group)
    workers = group.workers()
    fake_llm.script(ToolCalls(calls=[("block_forever", {"label": "x"})]))
    async with channel_to(group.target) as channel:
        call = rpb_grpc.RunnerServiceStub(channel).StreamingRun(rpb.StreamingRunRequest(input="x", agent="stuck"))
        while (message := await call.read()).topic != "tool_call":
            assert message is not grpc.aio.EOF
        group.process.send_signal(signal.SIGTERM)
        await group.wait_for(r"shutting down: 1 live runs, grace 120")  # the run would have 120 s to finish
        group.process.send_signal(signal.SIGTERM)
        assert await group.exit_status(timeout=10) == 128 + signal.SIGTERM
    assert "SIGTERM during shutdown: stopping the workers now" in group.output()
    assert not [pid for pid in workers if is_running(pid)]


async def test_a_worker_that_cannot_start_stops_the_group_with_status_one(
    fake_llm: FakeLLM, groups: list[Group]
) -> None:
    group = await spawn_group(fake_llm, "--workers", "2", "--store", f"redis://127.0.0.1:{free_port()}/0", wait=False)
    groups.append(group)
    assert await group.exit_status() == 1
    output = group.output()
    assert "cannot start" in output
    assert "before the group was up: stopping" in output
    assert "listening on" not in output


async def test_a_port_taken_by_another_program_is_refused_before_any_worker_starts(
    fake_llm: FakeLLM, clean_redis: str, groups: list[Group]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        group = await spawn_group(
            fake_llm, "--workers", "2", "--store", clean_redis, "--port", str(port), wait=False
        )  # the last --port wins
        groups.append(group)
        assert await group.exit_status() == 1
    assert f"cannot start: cannot listen on 127.0.0.1:{port}" in group.output()
    assert "starting 2 workers" not in group.output()


async def test_the_supervisor_dying_stops_its_workers(fake_llm: FakeLLM, clean_redis: str, groups: list[Group]) -> None:
    group = await spawn_group(fake_llm, "--workers", "2", "--store", clean_redis, "--grace", "0.5")
    groups.append(group)
    workers = group.workers()
    group.process.kill()  # SIGKILL: nothing forwards anything; the kernel's parent-death signal does
    async with asyncio.timeout(15):
        while [pid for pid in workers if is_running(pid)]:
            await asyncio.sleep(0.1)


async def test_several_workers_refuse_the_memory_store_by_default(fake_llm: FakeLLM, groups: list[Group]) -> None:
    group = await spawn_group(fake_llm, "--workers", "2", wait=False)
    groups.append(group)
    assert await group.exit_status() == 1
    assert "AGENTSTREAM_WORKERS_ALLOW_MEMORY" in group.output()
    assert not group.workers()


async def test_with_the_memory_store_allowed_a_run_is_unknown_to_the_other_worker(
    fake_llm: FakeLLM, groups: list[Group]
) -> None:
    group = await spawn_group(fake_llm, "--workers", "2", "--workers-allow-memory", "--grace", "0.5")
    groups.append(group)
    assert "2 workers with the memory store" in group.output()
    on_worker = await channels_on_each_worker(group)
    a, b = on_worker.values()
    fake_llm.script(Stall(["Hel"]))
    started = await rpb_grpc.RunnerServiceStub(a).StartRun(rpb.StartRunRequest(input="hi"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await rpb_grpc.RunnerServiceStub(b).GetRun(rpb.GetRunRequest(run_id=started.run_id))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(raised.value)[0].reason == "RUN_NOT_FOUND"
    run = await rpb_grpc.RunnerServiceStub(a).GetRun(rpb.GetRunRequest(run_id=started.run_id))
    assert run.status == pb.TASK_STATUS_RUNNING
    for channel in (a, b):
        await channel.close()
    group.process.send_signal(signal.SIGTERM)
    assert await group.exit_status() == 0, group.output()


async def test_tls_flags_reach_every_worker(fake_llm: FakeLLM, groups: list[Group], pki: Pki) -> None:
    tls = ("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), "--tls-client-ca", str(pki.ca))
    group = await spawn_group(fake_llm, "--workers", "2", "--workers-allow-memory", "--grace", "0.5", *tls)
    groups.append(group)
    assert group.output().count("transport: mTLS on") == 2
    fake_llm.responder = default_responder
    async with Client(group.target, root_ca=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key) as client:
        answers = [m async for m in client.streaming_run("hi", streaming_mode=StreamingMode.CHUNK)]
    assert isinstance(answers[-1], TaskMessage) and answers[-1].payload.answer == "You said: hi"
    async with Client(group.target) as plaintext:
        with pytest.raises(TransportError):
            [m async for m in plaintext.streaming_run("hi")]
