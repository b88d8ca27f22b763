"""agentstream.cli.render (and the CLI run loop over it) on a scripted stream: plain text, exit statuses, JSON."""

from __future__ import annotations

import json

import pytest

from agentstream import Message, ToolResultMessage
from agentstream.cli.render import Line, render, terminal_safe, to_json
from agentstream.cli.run import stream_run
from agentstream.messages import from_proto
from agentstream.v1 import message_pb2 as pb
from tests.sdk import ScriptedRunner, action, calculator_run, rich_status, scripted_server, terminal, wire

CORE_OUTPUT = """\
Let me check.
→ calculator({"expression": "2+2"})
← calculator: 4
It is 4.
✔ succeeded in 1.50 s, 15 tokens
"""

ALL_OUTPUT = """\
Let me check.
→ calculator({"expression": "2+2"})
← calculator: 4
[step 1 of assistant: tool_calls]
It is 4.
[output] It is 4.
✔ succeeded in 1.50 s, 15 tokens
"""


def messages() -> list[Message]:
    return [from_proto(m) for m in calculator_run()]


def plain(lines: list[Line]) -> str:
    """Lines as the CLI writes them without a terminal: inline pieces joined, a newline before the next line."""
    out, inline = [], False
    for line in lines:
        if line.inline:
            out.append(line.text)
        else:
            out.append(("\n" if inline else "") + line.text + "\n")
        inline = line.inline
    return "".join(out)


def rendered(stream: list[Message], *, show_steps: bool) -> str:
    lines: list[Line] = []
    answer_shown = False
    for message in stream:
        answer_shown = answer_shown or message.category == "chunk"
        lines += render(message, show_steps=show_steps, answer_shown=answer_shown)
    return plain(lines)


def test_core_rendering_shows_tokens_inline_tool_calls_results_and_the_outcome() -> None:
    assert rendered(messages(), show_steps=False) == CORE_OUTPUT


def test_all_mode_rendering_adds_agent_steps_and_the_output() -> None:
    assert rendered(messages(), show_steps=True) == ALL_OUTPUT
    (step,) = [line for m in messages() if m.category == "agent" for line in render(m, show_steps=True)]
    assert step.style == "dim"


def test_a_failing_tool_result_is_red() -> None:
    result = pb.ToolResultPayload(tool_call_id="c1", tool_name="calculator", content="bad input", is_error=True)
    message = from_proto(wire(5, "tool", "tool_result", tool_result=result))
    assert isinstance(message, ToolResultMessage)
    assert render(message) == [Line("← calculator: bad input", "red")]


def test_without_streamed_chunks_the_outcome_line_carries_the_answer() -> None:
    (line,) = render(from_proto(calculator_run()[-1]))
    assert line.text == "✔ It is 4.\n  (succeeded in 1.50 s, 15 tokens)"


def test_a_failed_run_shows_its_status_reason_and_message() -> None:
    error = pb.TaskError(reason="LLM_UPSTREAM_ERROR", code="UNAVAILABLE")
    (line,) = render(from_proto(terminal(3, success=False, msg="upstream returned 503", error=error)))
    assert (line.text, line.style) == ("✘ FAILED [LLM_UPSTREAM_ERROR]: upstream returned 503", "bold red")


def test_to_json_is_the_envelope_the_class_and_a_plain_payload() -> None:
    objects = [json.loads(to_json(m)) for m in messages()]
    assert [o["seq"] for o in objects] == list(range(1, 12))
    tool = objects[3]
    assert (tool["type"], tool["category"], tool["topic"], tool["run_id"]) == (
        "ToolMessage",
        "tool",
        "tool_call",
        "run-1",
    )
    assert tool["payload"] == [
        {
            "tool_name": "calculator",
            "action_name": "calculator",
            "tool_call_id": "c1",
            "agent_name": "assistant",
            "params": {"expression": "2+2"},
        }
    ]
    assert objects[0]["timestamp"] == "2023-11-14T22:13:20.001000+00:00"
    assert objects[0]["headers"] == {"h": "v"}
    last = objects[-1]
    assert last["type"] == "TaskMessage"
    assert last["payload"]["status"] == "SUCCEEDED"
    assert last["payload"]["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "reasoning_tokens": 0,
    }
    assert last["payload"]["time_cost"] == 1.5


async def run_cli(runner: ScriptedRunner, *, mode: str = "core", json_lines: bool = False) -> int:
    async with scripted_server(runner) as target:
        return await stream_run(
            "What is 2+2?", agent=None, mode=mode, target=target, json_lines=json_lines, session_id=None, timeout=None
        )


@pytest.fixture(autouse=True)
def no_forced_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("mode", "expected"), [("core", CORE_OUTPUT), ("all", ALL_OUTPUT)])
async def test_the_cli_run_loop_prints_plain_text_without_a_terminal_and_exits_zero(
    mode: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_cli(ScriptedRunner(script=calculator_run()), mode=mode) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (expected, "")


async def test_the_cli_run_loop_with_json_prints_one_object_per_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_cli(ScriptedRunner(script=calculator_run()), json_lines=True) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [to_json(m) for m in messages()]


async def test_a_failed_run_exits_one(capsys: pytest.CaptureFixture[str]) -> None:
    error = pb.TaskError(reason="RUN_TIMED_OUT", code="DEADLINE_EXCEEDED")
    end = terminal(3, success=False, msg="the run took longer than 1 s", status=pb.TASK_STATUS_TIMED_OUT, error=error)
    assert await run_cli(ScriptedRunner(script=[*calculator_run()[1:3], end])) == 1
    assert capsys.readouterr().out == "Let me check.\n✘ TIMED_OUT [RUN_TIMED_OUT]: the run took longer than 1 s\n"


async def test_an_error_status_exits_two_with_code_reason_and_message_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = rich_status("NOT_FOUND", "no agent 'ghost'", reason="AGENT_NOT_FOUND", metadata={"known_agents": "a"})
    assert await run_cli(ScriptedRunner(abort=status)) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "error: NOT_FOUND AGENT_NOT_FOUND: no agent 'ghost'\n")


HOSTILE_TEXT = "\x1b[2J\x1b]0;pwned\x07red\x1b[31m\x9b31m\rX\x08\x00\x7f\x1bP+q\x1b\\ ok\tend\n"
"""Clear screen, set the window title, a colour (7- and 8-bit CSI), carriage return, backspace, NUL, DEL, DCS."""


def test_terminal_safe_strips_escape_sequences_and_controls_but_keeps_newlines_and_tabs() -> None:
    assert terminal_safe(HOSTILE_TEXT) == "red31mX ok\tend\n"
    assert terminal_safe("plain ünïcødé → ✔") == "plain ünïcødé → ✔"
    assert terminal_safe("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link"  # OSC 8 hyperlinks
    assert terminal_safe("\x1b]0;unterminated title") == ""


def test_regression_cli_does_not_print_model_supplied_escape_codes() -> None:
    stream = [
        wire(1, "chunk", "chunk", chunk=pb.ChunkPayload(content=HOSTILE_TEXT, model="m", agent_name="a")),
        wire(2, "tool", "tool_call", tool=pb.ToolCallPayload(actions=[action("calc\x1b[8m", "c1", {"x": "\x9b2J"})])),
        wire(
            3,
            "tool",
            "tool_result",
            tool_result=pb.ToolResultPayload(
                tool_call_id="c1",
                tool_name="calc",
                content=HOSTILE_TEXT,
                is_error=False,
            ),
        ),
        terminal(4, success=False, msg=HOSTILE_TEXT, error=pb.TaskError(reason="X\x1b[1m", code="UNKNOWN")),
    ]
    lines = [line for m in stream for line in render(from_proto(m), show_steps=True)]
    assert len(lines) == 4
    for line in lines:
        assert not set(line.text) & {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]} - {"\n", "\t"}, line


def test_regression_json_lines_escape_every_control_character_and_round_trip() -> None:
    message = from_proto(wire(1, "chunk", "chunk", chunk=pb.ChunkPayload(content=HOSTILE_TEXT, model="m")))
    line = to_json(message)
    assert line.isprintable()
    assert json.loads(line)["payload"]["content"] == HOSTILE_TEXT


async def test_regression_error_status_message_is_printed_without_escape_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = rich_status("NOT_FOUND", "no agent \x1b]0;title\x07'ghost'\x1b[2J", reason="AGENT_NOT_FOUND")
    assert await run_cli(ScriptedRunner(abort=status)) == 2
    assert capsys.readouterr().err == "error: NOT_FOUND AGENT_NOT_FOUND: no agent 'ghost'\n"


def test_handoffs_and_nested_agents_are_drawn_and_nested_lines_indented() -> None:
    handoff = pb.Message(id="r:2", run_id="r", seq=2, category="group", topic="handoff")
    handoff.group.kind, handoff.group.from_agent, handoff.group.to_agent = pb.GROUP_EVENT_KIND_HANDOFF, "a", "b"
    handoff.group.content = "billing"
    assert [line.text for line in render(from_proto(handoff))] == ["⇢ a hands over to b (billing)"]
    start = pb.Message(id="r:3", run_id="r", seq=3, category="group", topic="agent_start", depth=1)
    start.group.kind, start.group.from_agent, start.group.to_agent = pb.GROUP_EVENT_KIND_AGENT_START, "b", "c"
    assert [line.text for line in render(from_proto(start))] == ["  ┌ c (asked by b)"]
    nested = pb.Message(id="r:4", run_id="r", seq=4, category="chunk", topic="chunk", depth=1)
    nested.chunk.content, nested.chunk.reasoning_content = "hi", "hmm"
    assert render(from_proto(nested)) == [Line("hmm", "dim italic", inline=True), Line("hi", "dim", inline=True)]


def interrupt_wire(topic: str, kind: int, **fields: object) -> pb.Message:
    message = pb.Message(id="r:5", run_id="r", seq=5, category="task", topic=topic)
    message.interrupt.interrupt_id, message.interrupt.kind, message.interrupt.agent_name = "int-1", kind, "careful"
    message.interrupt.tool_calls.add(tool_name="calculator", tool_call_id="c1").params.update({"expression": "2+2"})
    message.interrupt.expires_at.seconds = 1_700_000_000
    for name, value in fields.items():
        setattr(message.interrupt, name, value)
    return message


def test_interrupts_and_their_resolutions_are_drawn_without_escape_codes() -> None:
    approval, question = pb.INTERRUPT_KIND_TOOL_APPROVAL, pb.INTERRUPT_KIND_INPUT
    cases = [
        (
            interrupt_wire("interrupt", approval),
            '⏸ approval needed: calculator({"expression": "2+2"}) (interrupt int-1, until 22:13:20 UTC)',
        ),
        (
            interrupt_wire("interrupt", question, question="Which \x1b[2Jcity?"),
            "⏸ careful asks: Which city? (interrupt int-1, until 22:13:20 UTC)",
        ),
        (interrupt_wire("interrupt_resolved", approval, resolved=True, approved=True), "▶ approved"),
        (interrupt_wire("interrupt_resolved", approval, resolved=True, message="no"), "▶ rejected: no"),
        (interrupt_wire("interrupt_resolved", approval, resolved=True), "▶ rejected: no reason given"),
        (
            interrupt_wire("interrupt_resolved", question, resolved=True, approved=True, message="Paris"),
            "▶ answered: Paris",
        ),
        (interrupt_wire("interrupt_resolved", question, resolved=True, message="timeout"), "▶ not answered: timeout"),
    ]
    for wire_message, text in cases:
        assert [line.text for line in render(from_proto(wire_message))] == [text]
