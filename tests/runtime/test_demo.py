"""The offline demo model: a calculator round trip for arithmetic, a streamed answer otherwise."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from agentstream_server.runtime import demo
from agentstream_server.runtime.agents import AgentSpec, default_agents
from agentstream_server.runtime.builtin_tools import BUILTIN_TOOLS
from agentstream_server.runtime.demo import DEMO_LABEL, DemoChatModel
from agentstream_server.runtime.events import AgentStep, Chunk, Output, ToolCall, ToolResult
from agentstream_server.runtime.loop import run_agent
from agentstream_server.runtime.model import Finish, LLMDelta, TextDelta, ToolCallDelta, UsageReport
from agentstream_server.runtime.tools import openai_tool_spec

CALCULATOR = [openai_tool_spec(BUILTIN_TOOLS["calculator"])]


async def turn(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] = CALCULATOR
) -> list[LLMDelta]:
    return [delta async for delta in DemoChatModel(token_delay_s=0).stream(messages, tools)]


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def text_of(deltas: list[LLMDelta]) -> str:
    return "".join(d.content for d in deltas if isinstance(d, TextDelta))


def test_the_label_says_it_is_the_offline_demo() -> None:
    assert DemoChatModel().label == DEMO_LABEL == "agentstream-demo (offline)"


async def test_arithmetic_streams_a_calculator_call_in_fragments() -> None:
    deltas = await turn([{"role": "system", "content": "be brief"}, user("What is 12 * (3 + 4)?")])
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert len(calls) > 2
    assert {(d.index, d.id, d.name) for d in calls[:1]} == {(0, "call_demo_1", "calculator")}
    assert json.loads("".join(d.arguments for d in calls)) == {"expression": "12 * (3 + 4)"}
    assert not text_of(deltas)
    assert deltas[-2] == Finish("tool_calls")
    usage = deltas[-1]
    assert isinstance(usage, UsageReport)
    assert usage.usage.prompt_tokens == 9  # words in the messages
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + usage.usage.completion_tokens


async def test_after_the_tool_result_it_answers_with_it() -> None:
    messages = [user("What is 12 * (3 + 4)?"), {"role": "assistant", "content": None}]
    deltas = await turn([*messages, {"role": "tool", "tool_call_id": "call_demo_1", "content": "84"}])
    assert text_of(deltas) == "12 * (3 + 4) = 84."
    assert len([d for d in deltas if isinstance(d, TextDelta)]) == 7  # word by word
    assert deltas[-2] == Finish("stop")
    assert isinstance(deltas[-1], UsageReport)
    assert deltas[-1].usage.completion_tokens == 7


async def test_a_calculator_error_is_reported_not_presented_as_the_answer() -> None:
    result = {"role": "tool", "tool_call_id": "call_demo_1", "content": "ValueError: division by zero"}
    deltas = await turn([user("What is 1 / 0?"), {"role": "assistant", "content": None}, result])
    assert text_of(deltas) == "The calculator could not evaluate 1 / 0: ValueError: division by zero."


@pytest.mark.parametrize(
    ("prompt", "tools"),
    [
        ("What is 2 + 2?", []),  # no calculator offered
        ("Tell me about gRPC", CALCULATOR),  # no arithmetic
        ("Is 7 a lucky number?", CALCULATOR),  # a number, but no expression
        ("What is (1 + 2) * (3?", CALCULATOR),  # not well-formed arithmetic
    ],
)
async def test_without_arithmetic_and_a_calculator_it_streams_a_text_answer(
    prompt: str, tools: list[dict[str, Any]]
) -> None:
    deltas = await turn([user(prompt)], tools)
    assert not [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert prompt.rstrip("?") in text_of(deltas)
    assert Finish("stop") in deltas


async def test_a_tool_result_from_an_earlier_question_does_not_stop_a_new_calculation() -> None:
    earlier = [user("What is 1 + 1?"), {"role": "assistant", "content": None}, {"role": "tool", "content": "2"}]
    deltas = await turn([*earlier, {"role": "assistant", "content": "1 + 1 = 2."}, user("And 3 * 3?")])
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert json.loads("".join(d.arguments for d in calls)) == {"expression": "3 * 3"}


async def test_the_demo_is_deterministic() -> None:
    messages = [user("Tell me about streaming")]
    assert await turn(messages) == await turn(messages)


async def test_a_run_with_the_default_agent_does_a_calculator_round_trip() -> None:
    agent = default_agents().agents["assistant"]
    events = [e async for e in run_agent(agent, "What is 12 * (3 + 4)?", DemoChatModel(token_delay_s=0))]
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert [(a.tool_name, dict(a.params)) for a in call.actions] == [("calculator", {"expression": "12 * (3 + 4)"})]
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert (result.tool_name, result.content, result.is_error) == ("calculator", "84", False)
    assert events[-1] == Output(content="12 * (3 + 4) = 84.", agent_name="assistant")
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert {c.model for c in chunks} == {DEMO_LABEL}
    assert [s.finish_reason for s in events if isinstance(s, AgentStep)] == ["tool_calls", "stop"]


async def test_other_prompts_stream_an_answer_token_by_token() -> None:
    agent = AgentSpec(name="plain", instructions="")
    events = [e async for e in run_agent(agent, "Tell me about gRPC", DemoChatModel(token_delay_s=0))]
    assert not [e for e in events if isinstance(e, ToolResult)]
    chunks = [e.content for e in events if isinstance(e, Chunk)]
    assert len(chunks) > 10
    assert "Tell me about gRPC" in "".join(chunks)
    assert events[-1] == Output(content="".join(chunks), agent_name="plain")


HOSTILE_PROMPTS = [
    "x " + "1" * 1_000_000,  # stalled the event loop ~7 s at 10,000 digits with the backtracking regex
    "1+" * 500_000,  # 500,000 terms: RecursionError from ast.parse before
    "(" * 1_000_000 + "1",
    "-" * 1_000_000 + "1 + 1",
    "(1+" * 300_000,
    "1.1." * 250_000,
]


@pytest.mark.parametrize("prompt", HOSTILE_PROMPTS, ids=lambda p: f"{p[:6]!r}x{len(p)}")
def test_regression_digit_run_prompt_does_not_block_the_event_loop(
    prompt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan reads a bounded prefix, and reads each of its tokens a bounded number of times."""
    tokenized: list[int] = []
    tokens_read: list[int] = []
    real_tokens, real_scan = demo._tokens, demo._scan

    def counting_tokens(text: str) -> list[tuple[int, int, int]]:
        tokenized.append(len(text))
        found = real_tokens(text)
        tokenized.append(len(found))
        return found

    def counting_scan(tokens: list[tuple[int, int, int]], i: int, stop: int) -> tuple[int, int, bool, int]:
        result = real_scan(tokens, i, stop)
        tokens_read.append(result[3] - i + 1)
        return result

    monkeypatch.setattr(demo, "_tokens", counting_tokens)
    monkeypatch.setattr(demo, "_scan", counting_scan)
    expression = demo._expression(prompt)
    text_length, token_count = tokenized
    assert text_length == demo.SCAN_CHARS < len(prompt)
    assert sum(tokens_read) <= 3 * token_count
    assert expression is None or len(expression) <= demo.SCAN_CHARS


def test_arithmetic_past_the_scanned_prefix_is_not_looked_for() -> None:
    filler = "words " * (demo.SCAN_CHARS // 6 + 1)
    assert demo._expression("2 + 3 " + filler) == "2 + 3"
    assert demo._expression(filler + "2 + 3") is None


@pytest.mark.parametrize(
    ("prompt", "expression"),
    [
        ("What is 12 * (3 + 4)?", "12 * (3 + 4)"),
        ("(what is 2+3)", "2+3"),
        ("((2 + 3 is what?", "2 + 3"),
        ("What is (1 + 2) * (3?", None),
        ("Between 7 - 3 5 apples", "7 - 3"),
        ("x 7 ) 1 + 2", "1 + 2"),
        ("1 + * 2 + 3", "2 + 3"),
        ("1 + 2 + ?", "1 + 2"),
        ("2 ** -1 and -(4) // 3", "2 ** -1"),
        ("(-2) ** 2 % 5", "(-2) ** 2 % 5"),
        ("07 + 1", None),  # Python rejects leading zeros: no calculator call for it
        ("-" * 2000 + "1 + 1", None),  # the arithmetic starts past SCAN_CHARS
        ("7 apples", None),
    ],
)
def test_the_expression_scanner_finds_the_first_well_formed_arithmetic(prompt: str, expression: str | None) -> None:
    assert demo._expression(prompt) == expression


async def test_a_long_prompt_gets_an_answer_about_its_first_words_only() -> None:
    deltas = await turn([user("Tell me about gRPC " + "a" * 1_000_000)], [])
    text = text_of(deltas)
    assert "You asked about: Tell me about gRPC" in text
    assert len(text) < demo.SCAN_CHARS + 1000


async def test_the_demo_model_recalls_the_previous_question_of_a_conversation() -> None:
    model = DemoChatModel(token_delay_s=0)

    async def answer(messages: list[dict[str, str]]) -> str:
        return "".join([d.content async for d in model.stream(messages, []) if isinstance(d, TextDelta)])

    history = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello."}]
    assert await answer([*history, {"role": "user", "content": "What did I just ask?"}]) == "You asked: My name is Ada."
    assert await answer([{"role": "user", "content": "what did i ask"}]) == "You have not asked anything before."
