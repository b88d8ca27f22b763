"""A person in the loop at the CLI, against a live server: the prompt on a (pseudo-)terminal, the hint and
`agentstream approve` without one, a question answered through an injected reader."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import sys
from pathlib import Path

import pytest

from agentstream.cli.run import stream_run
from agentstream_server.transport.server import RunningServer
from tests.conftest import StartServer
from tests.support.fakellm import FakeLLM, Text, ToolCalls, default_responder
from tests.test_cli import cli

PIPE = asyncio.subprocess.PIPE


async def run_on_a_terminal(target: str, answer: bytes) -> tuple[int, str, str, str]:
    """`agentstream run` with a pseudo-terminal as stdin: waits for the prompt on stderr, types ``answer``."""
    controller, terminal = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentstream_server", "run", "What is 2+2?", "--agent", "careful", "--target", target,
            stdin=terminal, stdout=PIPE, stderr=PIPE,
        )  # fmt: skip
        os.close(terminal)
        assert process.stderr is not None
        async with asyncio.timeout(20):
            prompt = (await process.stderr.readuntil(b"[y/N] ")).decode()
            os.write(controller, answer)
            out, err = await process.communicate()
    finally:
        os.close(controller)
    assert process.returncode is not None
    return process.returncode, prompt, out.decode(), err.decode()


async def test_run_on_a_terminal_asks_before_the_tool_runs_and_y_approves(
    fake_llm: FakeLLM, server: RunningServer
) -> None:
    fake_llm.responder = default_responder
    code, prompt, out, err = await run_on_a_terminal(f"127.0.0.1:{server.port}", b"y\n")
    assert code == 0, err
    assert prompt == 'approve calculator({"expression": "2+2"})? [y/N] '
    assert re.search(r'⏸ approval needed: calculator\({"expression": "2\+2"}\) \(interrupt int-\w+, until', out)
    assert out.index("▶ approved") < out.index("← calculator: 4") < out.index("The answer is 4.")
    assert "✔ succeeded" in out


async def test_run_on_a_terminal_rejects_on_anything_but_yes(fake_llm: FakeLLM, server: RunningServer) -> None:
    fake_llm.responder = default_responder
    code, _, out, err = await run_on_a_terminal(f"127.0.0.1:{server.port}", b"\n")  # the default: N
    assert code == 0, err
    assert "▶ rejected: rejected at the terminal" in out
    assert "← calculator: the call was rejected by a person: rejected at the terminal" in out
    assert "← calculator: 4" not in out


async def test_without_a_terminal_run_says_how_and_approve_resolves_from_another_process(
    fake_llm: FakeLLM, server: RunningServer
) -> None:
    fake_llm.responder = default_responder
    target = f"127.0.0.1:{server.port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentstream_server", "run", "What is 6*7?", "--agent", "careful", "--target", target,
        stdin=asyncio.subprocess.DEVNULL, stdout=PIPE, stderr=PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    async with asyncio.timeout(20):
        shown = (await process.stdout.readuntil(b"[--reject] [--message TEXT]\n")).decode()
        hint = re.search(r"resolve with: agentstream approve (\S+) (int-\w+) \[--reject\]", shown)
        assert hint, shown
        run_id, interrupt_id = hint.groups()
        code, said, err = await cli(
            "approve", run_id, interrupt_id, "--reject", "--message", "not now", "--target", target
        )
        assert (code, said.strip()) == (0, f"interrupt {interrupt_id} of run {run_id} rejected: RUNNING"), err
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert "▶ rejected: not now" in out.decode()
    assert "← calculator: the call was rejected by a person: not now" in out.decode()
    code, _, err = await cli("approve", run_id, interrupt_id, "--target", target)
    assert code == 2 and "FAILED_PRECONDITION INTERRUPT_ALREADY_RESOLVED" in err
    code, _, err = await cli("approve", run_id, "int-nope", "--target", target)
    assert code == 2 and "NOT_FOUND INTERRUPT_NOT_FOUND" in err


@pytest.fixture
async def asker(start: StartServer, tmp_path: Path) -> str:
    agents = tmp_path / "asker.toml"
    agents.write_text("[agents.asker]\nask_user = true\n")
    server = await start(agents_file=agents)
    return f"127.0.0.1:{server.port}"


@pytest.mark.parametrize(("typed", "shown", "result"), [
    ("Paris", "▶ answered: Paris", "← ask_user: Paris"),
    (None, "▶ not answered: no answer (end of input)", "← ask_user: the user did not answer: no answer (end of input)"),
])  # fmt: skip
async def test_a_question_shows_and_the_line_typed_is_the_answer(
    fake_llm: FakeLLM, asker: str, capsys: pytest.CaptureFixture[str], typed: str | None, shown: str, result: str
) -> None:
    fake_llm.script(ToolCalls([("ask_user", {"question": "Which city?"})]), Text(["Noted."]))
    prompts: list[str] = []

    async def ask(prompt: str) -> str | None:
        prompts.append(prompt)
        return typed

    code = await stream_run(
        "plan my trip",
        agent="asker",
        mode="core",
        target=asker,
        json_lines=False,
        session_id=None,
        timeout=None,
        ask=ask,
    )
    out = capsys.readouterr().out
    assert (code, prompts) == (0, ["Which city?\nanswer: "])
    assert out.index("⏸ asker asks: Which city? (interrupt int-") < out.index(shown) < out.index(result)


async def test_json_lines_stay_json_while_the_prompt_answers(
    fake_llm: FakeLLM, asker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_llm.script(ToolCalls([("ask_user", {"question": "Which city?"})]), Text(["Noted."]))

    async def ask(prompt: str) -> str | None:
        return "Rome"

    code = await stream_run(
        "plan my trip",
        agent="asker",
        mode="core",
        target=asker,
        json_lines=True,
        session_id=None,
        timeout=None,
        ask=ask,
    )
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    interrupts = [o for o in objects if o["type"] == "InterruptMessage"]
    assert [(o["topic"], o["payload"]["message"]) for o in interrupts] == [
        ("interrupt", ""),
        ("interrupt_resolved", "Rome"),
    ]
