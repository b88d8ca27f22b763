"""The CLI as users run it: `agentstream run` against a live server; exit statuses and --json."""

from __future__ import annotations

import asyncio
import json
import sys

from agentstream_server.transport.server import RunningServer
from tests.conftest import StartServer
from tests.support.certs import Pki
from tests.support.fakellm import FakeLLM, HTTPError, default_responder


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentstream_server",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_run_renders_tokens_tool_calls_results_and_the_outcome(fake_llm: FakeLLM, server: RunningServer) -> None:
    fake_llm.responder = default_responder
    code, out, err = await cli("run", "What is 12 * (3 + 4)?", "--target", f"127.0.0.1:{server.port}")
    assert code == 0, err
    assert '→ calculator({"expression": "12 * (3 + 4)"})' in out
    assert "← calculator: 84" in out
    assert "The answer is 84." in out
    assert "✔ succeeded" in out


async def test_run_json_prints_one_object_per_message_ending_with_the_task_response(
    fake_llm: FakeLLM, server: RunningServer
) -> None:
    fake_llm.responder = default_responder
    code, out, _ = await cli("run", "hello there", "--json", "--mode", "all", "--target", f"127.0.0.1:{server.port}")
    assert code == 0
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["seq"] for o in objects] == list(range(1, len(objects) + 1))
    assert objects[-1]["topic"] == "__task_response"
    assert objects[-1]["type"] == "TaskMessage"
    assert objects[-1]["payload"]["answer"] == "You said: hello there"
    assert "MemoryMessage" in {o["type"] for o in objects}


async def test_a_failed_run_exits_one(fake_llm: FakeLLM, server: RunningServer) -> None:
    fake_llm.responder = lambda body: HTTPError(500)
    code, out, _ = await cli("run", "hi", "--target", f"127.0.0.1:{server.port}")
    assert code == 1
    assert "FAILED [LLM_UPSTREAM_ERROR]" in out


async def test_an_error_status_exits_two_with_the_reason_on_stderr(server: RunningServer) -> None:
    code, _, err = await cli("run", "hi", "--agent", "ghost", "--target", f"127.0.0.1:{server.port}")
    assert code == 2
    assert "NOT_FOUND AGENT_NOT_FOUND" in err
    assert "known agents: assistant,careful,team,tester" in err


async def test_an_unknown_mode_is_rejected_before_calling() -> None:
    code, _, err = await cli("run", "hi", "--mode", "loud", "--target", "127.0.0.1:1")
    assert code == 2
    assert "--mode must be one of" in err


async def test_serve_refuses_to_start_on_a_malformed_setting() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentstream_server", "serve", "--port", "0",
        env={"AGENTSTREAM_MAX_RUNS": "none", "PATH": ""},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 1
    assert "AGENTSTREAM_MAX_RUNS" in out.decode()


async def test_attach_replays_a_run_and_cancel_stops_one(fake_llm: FakeLLM, server: RunningServer) -> None:
    from agentstream import Client
    from tests.support.fakellm import Stall, Text

    target = f"127.0.0.1:{server.port}"
    fake_llm.script(Text(["done ", "here"]), Stall(["Hel"]))
    async with Client(target) as client:
        finished_id = await client.start_run("first")
        async for _ in client.subscribe_run(finished_id):
            pass
        code, out, _ = await cli("attach", finished_id, "--target", target)
        assert code == 0
        assert "done here" in out
        live_id = await client.start_run("second")
        assert await fake_llm.wait_requests(2, 5)
        code, out, _ = await cli("cancel", live_id, "--reason", "enough", "--target", target)
        assert code == 0
        assert f"run {live_id} cancelled: CANCELLED" in out
        code, out, _ = await cli("attach", live_id, "--target", target)
        assert code == 1
        assert "enough" in out
        code, _, err = await cli("cancel", "ghost", "--target", target)
        assert code == 2
        assert "RUN_NOT_FOUND" in err


async def test_the_agents_option_says_the_file_is_trusted_code() -> None:
    code, out, _ = await cli("serve", "--help")
    assert code == 0
    assert "Trusted configuration: its tool import paths are imported and run." in " ".join(
        line.strip("│ ") for line in out.splitlines()
    )


async def test_run_attach_and_cancel_over_mtls(start: StartServer, fake_llm: FakeLLM, pki: Pki) -> None:
    from agentstream import Client
    from tests.support.fakellm import Stall, Text

    server = await start(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca)
    target = f"127.0.0.1:{server.port}"
    tls = ("--ca", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key))
    fake_llm.script(Text(["over ", "mtls"]), Stall(["Hel"]))
    code, out, err = await cli("run", "hi", "--target", target, "--tls", *tls)
    assert code == 0, err
    assert "over mtls" in out
    async with Client(target, root_ca=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key) as client:
        live_id = await client.start_run("second")
    assert await fake_llm.wait_requests(2, 5)
    code, out, err = await cli("cancel", live_id, "--reason", "enough", "--target", target, *tls)
    assert code == 0, err
    code, out, err = await cli("attach", live_id, "--target", target, *tls)
    assert code == 1, err
    assert "enough" in out


async def test_run_without_tls_against_a_tls_server_fails_with_a_hint(start: StartServer, pki: Pki) -> None:
    server = await start(tls_cert=pki.server_cert, tls_key=pki.server_key)
    code, _, err = await cli("run", "hi", "--target", f"127.0.0.1:{server.port}")
    assert code == 2
    assert "error: UNAVAILABLE" in err
    assert "hint: if the server serves TLS, add --tls or --ca FILE" in err


async def test_run_with_a_client_certificate_but_no_key_is_a_usage_error(pki: Pki) -> None:
    code, _, err = await cli(
        "run", "hi", "--target", "127.0.0.1:1", "--ca", str(pki.ca), "--cert", str(pki.client_cert)
    )
    assert code == 2
    assert "error: --cert and --key go together" in err


async def test_run_with_session_continues_the_conversation(fake_llm: FakeLLM, server: RunningServer) -> None:
    fake_llm.responder = default_responder
    target = ("--target", f"127.0.0.1:{server.port}")
    code, _, err = await cli("run", "my name is Ada", "--session", "cli-1", *target)
    assert code == 0, err
    code, out, err = await cli("run", "What did I just ask?", "--session", "cli-1", *target)
    assert code == 0, err
    assert "You asked: my name is Ada" in out
    code, out, _ = await cli("run", "What did I just ask?", *target)
    assert "You asked nothing before." in out  # without --session, a run starts afresh


async def test_chat_keeps_one_session_across_lines(fake_llm: FakeLLM, server: RunningServer) -> None:
    fake_llm.responder = default_responder
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentstream_server", "chat", "--session", "repl-1", "--target",
        f"127.0.0.1:{server.port}", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    lines = "my name is Ada\nWhat did I just ask?\n/history\n/forget\nWhat did I just ask?\n"
    out, err = await process.communicate(lines.encode())
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert "session repl-1" in text
    assert "You asked: my name is Ada" in text
    assert "user: What did I just ask?" in text and "(4 turns, 2 runs)" in text
    assert "forgot 4 turns" in text
    assert text.index("forgot 4 turns") < text.index("You asked nothing before.")
