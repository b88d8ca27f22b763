"""The embedded offline demo model: a ChatModel that needs no endpoint, used when none is configured."""

from __future__ import annotations

import ast
import asyncio
import json
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from agentstream_server.runtime.events import Usage
from agentstream_server.runtime.model import Finish, LLMDelta, TextDelta, ToolCallDelta, UsageReport

DEMO_LABEL = "agentstream-demo (offline)"
HANDOFF_PREFIX = "transfer_to_"
SCAN_CHARS = 1024
"""How much of a prompt the demo reads: inputs may be 1 MiB, and the event loop must not pay for all of it
(a longer expression would be over the calculator's MAX_EXPRESSION_LENGTH anyway)."""
_LEXEME = re.compile(r"(\d+(?:\.\d+)?)|([-+])|(\*\*|//|[*/%])|(\()|(\))|(\s+)|.", re.DOTALL)
_NUMBER_TOKEN, _SIGN, _OPERATOR, _OPEN, _CLOSE, _SPACE, _OTHER = range(1, 8)
_TOKEN = re.compile(r"\S+\s*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
_RECALL = re.compile(r"what did i (?:just )?ask\??", re.IGNORECASE)


class DemoChatModel:
    """Streams a real answer word by word; calls `calculator` when the prompt holds arithmetic, and hands off to
    (or calls as a tool) an agent the prompt names, so multi-agent files run offline too.

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
        offered = {str(t.get("function", {}).get("name")): t.get("function", {}) for t in tools}
        tool_results = _results_of_offered_tools(messages[last_user + 1 :], offered)
        expression = _expression(prompt)
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
        call = None if tool_results else _call_for(prompt, expression, offered)
        if call is not None:
            name, arguments = call[0], json.dumps(call[1])
            yield ToolCallDelta(index=0, id="call_demo_1", name=name, arguments="")
            for start in range(0, len(arguments), 8):
                await self._pause()
                yield ToolCallDelta(index=0, id=None, name=None, arguments=arguments[start : start + 8])
            yield Finish("tool_calls")
            completion_tokens = len(arguments.split())
            yield UsageReport(Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens))
            return
        answer = _answer(prompt, expression, tool_results)
        if _RECALL.fullmatch(prompt[:SCAN_CHARS].strip()):  # a conversation (session) shows its memory
            earlier = [str(m.get("content") or "") for m in messages[:last_user] if m.get("role") == "user"]
            answer = f"You asked: {earlier[-1][:SCAN_CHARS]}" if earlier else "You have not asked anything before."
        words = _TOKEN.findall(answer)
        for word in words:
            await self._pause()
            yield TextDelta(word)
        yield Finish("stop")
        yield UsageReport(Usage(prompt_tokens, len(words), prompt_tokens + len(words)))

    async def _pause(self) -> None:
        if self._delay:
            await asyncio.sleep(self._delay)


def _call_for(prompt: str, expression: str | None, offered: Mapping[str, Any]) -> tuple[str, dict[str, str]] | None:
    """The tool call the demo makes for a prompt: a handoff or an agent tool the prompt names, else the calculator."""
    words = set(re.findall(r"[a-z0-9_-]+", prompt[:SCAN_CHARS].lower()))
    for name in offered:
        if name.startswith(HANDOFF_PREFIX) and name[len(HANDOFF_PREFIX) :].lower() in words:
            return name, {"reason": f"the request mentions {name[len(HANDOFF_PREFIX) :]}"}
    for name, function in offered.items():
        if name.lower() in words and set(function.get("parameters", {}).get("properties", {})) == {"input"}:
            return name, {"input": prompt[:SCAN_CHARS]}  # an agent offered as a tool
    if expression and "calculator" in offered:
        return "calculator", {"expression": expression}
    return None


def _results_of_offered_tools(turn: Sequence[Mapping[str, Any]], offered: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The tool messages since the user's input, but those answering a call of a tool not offered now (a handoff
    made by the agent before this one)."""
    names = {
        call.get("id"): call.get("function", {}).get("name")
        for message in turn
        if message.get("role") == "assistant"
        for call in message.get("tool_calls") or ()
    }
    results = []
    for message in turn:
        if message.get("role") == "tool":
            name = names.get(message.get("tool_call_id"))
            if name is None or name in offered:
                results.append(message)
    return results


def _expression(prompt: str) -> str | None:
    """The first arithmetic expression in the prompt's first SCAN_CHARS characters, if well-formed; else None.

    A tokenizer and one left-to-right scan, no backtracking regex: every token is read at most three
    times, so the work is linear in SCAN_CHARS whatever the prompt holds.
    """
    tokens = _tokens(prompt[:SCAN_CHARS])
    i = 0
    while i < len(tokens):
        if tokens[i][0] not in (_NUMBER_TOKEN, _SIGN, _OPEN):
            i += 1
            continue
        end, depth, binary, stop = _scan(tokens, i, len(tokens))
        if not binary:  # a lone number such as "7 apples": look further on
            i = stop if stop > i else i + 1
            continue
        opening = 0
        while opening < depth and tokens[i + opening][0] == _OPEN:
            opening += 1  # "(2 + 3 ..." whose ")" never comes: drop the unmatched leading "("
        if opening:
            i += opening
            whole = end
            end, depth, binary, _ = _scan(tokens, i, whole + 1)
            if end != whole:  # "(1 + 2) * (3": what remains does not read to the end either
                return None
        if depth or not binary:
            return None
        expression = prompt[tokens[i][1] : tokens[end][2]]
        try:  # parsed, never evaluated: only what Python reads as arithmetic is worth a calculator call
            ast.parse(expression, mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError):  # e.g. 07 + 1, or nesting too deep to parse
            return None
        return expression
    return None


def _tokens(text: str) -> list[tuple[int, int, int]]:
    """(kind, start, end) of each number, sign, operator, parenthesis and other character; whitespace left out."""
    tokens = []
    for match in _LEXEME.finditer(text):
        kind = match.lastindex or _OTHER
        if kind != _SPACE:
            tokens.append((kind, match.start(), match.end()))
    return tokens


def _scan(tokens: list[tuple[int, int, int]], i: int, stop: int) -> tuple[int, int, bool, int]:
    """Read tokens[i:stop] as operands and operators for as long as they fit.

    Returns the index of the last token that completes an operand (-1 if none), the parenthesis depth and
    whether a binary operator had been read at that token, and the index of the first token that did not fit.
    """
    expect_operand, depth, binary_ops = True, 0, 0
    end, end_depth, end_binary = -1, 0, False
    j = i
    while j < stop:
        kind = tokens[j][0]
        if expect_operand:
            if kind == _NUMBER_TOKEN:
                expect_operand = False
            elif kind not in (_OPEN, _SIGN):
                break
            depth += kind == _OPEN
        elif kind in (_SIGN, _OPERATOR):
            expect_operand = True
            binary_ops += 1
        elif kind == _CLOSE and depth > 0:
            depth -= 1
        else:
            break
        if not expect_operand:
            end, end_depth, end_binary = j, depth, binary_ops > 0
        j += 1
    return end, end_depth, end_binary, j


def _answer(prompt: str, expression: str | None, tool_results: Sequence[Mapping[str, Any]]) -> str:
    if tool_results:
        result = str(tool_results[-1].get("content") or "")
        if not expression:
            return f"The tool returned: {result}."
        if _NUMBER.fullmatch(result):
            return f"{expression} = {result}."
        return f"The calculator could not evaluate {expression}: {result}."
    topic = " ".join(prompt[:SCAN_CHARS].split()[:12]).rstrip("?.!") or "your request"
    return (
        f"This is the offline demo model of agentstream, answering without an LLM endpoint. "
        f"You asked about: {topic}. Set OPENAI_BASE_URL and OPENAI_API_KEY to stream a real model's answer; "
        f"ask for arithmetic such as 12 * (3 + 4) to watch a tool call stream by."
    )
