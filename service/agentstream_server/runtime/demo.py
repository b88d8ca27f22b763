"""The embedded offline demo model: a ChatModel that needs no endpoint, used when none is configured."""

from __future__ import annotations

import ast
import asyncio
import json
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from agentstream_server.runtime.events import Usage
from agentstream_server.runtime.llm import Finish, LLMDelta, TextDelta, ToolCallDelta, UsageReport

DEMO_LABEL = "agentstream-demo (offline)"
_ARITHMETIC = re.compile(r"[-+(]*\s*\d+(?:\.\d+)?(?:\s*(?:\*\*|//|[-+*/%])\s*[-+(]*\s*\d+(?:\.\d+)?\s*\)*)+\)*")
_TOKEN = re.compile(r"\S+\s*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


class DemoChatModel:
    """Streams a real answer word by word, and calls `calculator` when the prompt holds arithmetic.

    Deterministic and offline: it is the product's default without an LLM endpoint, not a test double.
    """

    def __init__(self, token_delay_s: float = 0.02) -> None:
        self._delay = token_delay_s

    @property
    def label(self) -> str:
        """The model name shown on chunks."""
        return DEMO_LABEL

    async def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        *,
        temperature: float | None = None,
    ) -> AsyncGenerator[LLMDelta, None]:
        """Stream one turn."""
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        prompt = str(messages[last_user].get("content") or "") if last_user >= 0 else ""
        tool_results = [m for m in messages[last_user + 1 :] if m.get("role") == "tool"]
        offers_calculator = any(t.get("function", {}).get("name") == "calculator" for t in tools)
        expression = _expression(prompt)
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
        if expression and offers_calculator and not tool_results:
            arguments = json.dumps({"expression": expression})
            yield ToolCallDelta(index=0, id="call_demo_1", name="calculator", arguments="")
            for start in range(0, len(arguments), 8):
                await self._pause()
                yield ToolCallDelta(index=0, id=None, name=None, arguments=arguments[start : start + 8])
            yield Finish("tool_calls")
            completion_tokens = len(arguments.split())
            yield UsageReport(Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens))
            return
        answer = _answer(prompt, expression, tool_results)
        words = _TOKEN.findall(answer)
        for word in words:
            await self._pause()
            yield TextDelta(word)
        yield Finish("stop")
        yield UsageReport(Usage(prompt_tokens, len(words), prompt_tokens + len(words)))

    async def _pause(self) -> None:
        if self._delay:
            await asyncio.sleep(self._delay)


def _expression(prompt: str) -> str | None:
    match = _ARITHMETIC.search(prompt)
    if match is None:
        return None
    expression = match.group(0).strip()
    while expression.count("(") > expression.count(")") and expression.startswith("("):
        expression = expression[1:].strip()
    while expression.count(")") > expression.count("(") and expression.endswith(")"):
        expression = expression[:-1].strip()
    try:  # parsed, never evaluated: only well-formed arithmetic is worth a calculator call
        ast.parse(expression, mode="eval")
    except SyntaxError:
        return None
    return expression


def _answer(prompt: str, expression: str | None, tool_results: Sequence[Mapping[str, Any]]) -> str:
    if tool_results:
        result = str(tool_results[-1].get("content") or "")
        if not expression:
            return f"The tool returned: {result}."
        if _NUMBER.fullmatch(result):
            return f"{expression} = {result}."
        return f"The calculator could not evaluate {expression}: {result}."
    topic = " ".join(prompt.split()[:12]).rstrip("?.!") or "your request"
    return (
        f"This is the offline demo model of agentstream, answering without an LLM endpoint. "
        f"You asked about: {topic}. Set OPENAI_BASE_URL and OPENAI_API_KEY to stream a real model's answer; "
        f"ask for arithmetic such as 12 * (3 + 4) to watch a tool call stream by."
    )
