"""The agent loop: LLM turn -> chunks -> tool calls -> tools (concurrently) -> ... -> final output."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentstream_server.errors import MaxStepsExceeded
from agentstream_server.runtime.agents import AgentSpec
from agentstream_server.runtime.arguments import parse_arguments
from agentstream_server.runtime.coalesce import coalesce
from agentstream_server.runtime.events import (
    Action,
    AgentStep,
    Chunk,
    Event,
    MemoryAppended,
    Output,
    ToolCall,
    ToolResult,
    Usage,
)
from agentstream_server.runtime.model import ChatModel, Finish, TextDelta, ToolCallDelta, UsageReport
from agentstream_server.runtime.tools import Tool, openai_tool_spec
from agentstream_server.runtime.utf8 import utf8_safe


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    size: int = 0
    """Characters of arguments received; past MAX_TOOL_ARGUMENTS_CHARS the rest is dropped and the call refused."""


async def run_agent(
    spec: AgentSpec,
    user_input: str,
    model: ChatModel,
    *,
    chunk_window_s: float = 0.0,
    history: Sequence[Mapping[str, Any]] = (),
) -> AsyncGenerator[Event, None]:
    """Run an agent on an input, yielding its events as they happen; the last one is its Output.

    Raises MaxStepsExceeded when max_steps turns pass without a final answer, and lets LLMUpstreamError
    through. Closing the generator (or cancelling its consumer) closes the LLM stream and cancels tools.
    With chunk_window_s > 0, text deltas arriving within the window become one Chunk (see coalesce).
    ``history``: earlier turns of the conversation as OpenAI chat messages, sent between the system prompt and
    the input (not re-emitted as events).
    """
    tools = {tool.name: tool for tool in spec.tools}
    tool_specs = [openai_tool_spec(tool) for tool in spec.tools]
    messages: list[dict[str, Any]] = []
    if spec.instructions:
        messages.append({"role": "system", "content": spec.instructions})
        yield MemoryAppended(role="system", content=spec.instructions, agent_name=spec.name)
    messages.extend(dict(turn) for turn in history)
    messages.append({"role": "user", "content": user_input})
    yield MemoryAppended(role="user", content=user_input, agent_name=spec.name)

    for step in range(1, spec.max_steps + 1):
        text: list[str] = []
        reasoning: list[str] = []
        pending: dict[int, _PendingCall] = {}
        finish_reason = ""
        usage: Usage | None = None
        label = model.label
        async with (
            contextlib.aclosing(model.stream(messages, tool_specs, temperature=spec.temperature)) as raw,
            contextlib.aclosing(coalesce(raw, chunk_window_s) if chunk_window_s > 0 else raw) as deltas,
        ):
            async for delta in deltas:
                if type(delta) is TextDelta:
                    text.append(delta.content)
                    if delta.reasoning:
                        reasoning.append(delta.reasoning)
                    yield Chunk(delta.content, label, spec.name, step, delta.reasoning)
                elif type(delta) is ToolCallDelta:
                    call = pending.setdefault(delta.index, _PendingCall())
                    call.id = call.id or (delta.id or "")
                    call.name = call.name or (delta.name or "")
                    call.size += len(delta.arguments)
                    if call.size <= MAX_TOOL_ARGUMENTS_CHARS:
                        call.arguments.append(delta.arguments)
                elif type(delta) is Finish:
                    finish_reason = delta.reason
                elif type(delta) is UsageReport:
                    usage = delta.usage
        content = "".join(text)
        actions, bad_arguments = _actions(spec.name, step, pending)
        yield AgentStep(spec.name, step, content, actions, finish_reason, usage, "".join(reasoning))
        assistant: dict[str, Any] = {"role": "assistant", "content": content or None}
        if actions:
            assistant["tool_calls"] = [
                {
                    "id": a.tool_call_id,
                    "type": "function",
                    "function": {"name": a.tool_name, "arguments": "".join(pending[i].arguments)},
                }
                for i, a in zip(sorted(pending), actions, strict=True)
            ]
        messages.append(assistant)
        yield MemoryAppended(role="assistant", content=content, agent_name=spec.name)
        if not actions:
            yield Output(content=content, agent_name=spec.name)
            return
        yield ToolCall(actions=actions)
        results: dict[str, ToolResult] = {}
        async with contextlib.aclosing(_run_tools(tools, actions, bad_arguments, spec.timeout_for)) as finished:
            async for result in finished:
                results[result.tool_call_id] = result
                yield result
        for action in actions:  # tool messages in call order, whatever order the tools finished in
            result = results[action.tool_call_id]
            messages.append({"role": "tool", "tool_call_id": action.tool_call_id, "content": result.content})
            yield MemoryAppended(role="tool", content=result.content, agent_name=spec.name)
    raise MaxStepsExceeded(
        f"agent {spec.name!r} used all {spec.max_steps} steps without a final answer",
        metadata={"max_steps": str(spec.max_steps)},
    )


def _actions(agent_name: str, step: int, pending: dict[int, _PendingCall]) -> tuple[tuple[Action, ...], dict[str, str]]:
    """The turn's calls as actions (ids made unique), and what is wrong with the arguments of each unusable one."""
    actions = []
    bad_arguments: dict[str, str] = {}
    seen: set[str] = set()
    for index in sorted(pending):
        call = pending[index]
        call_id = call.id or f"call_{step}_{index}"
        if call_id in seen:  # a model that repeats an id would otherwise get one tool message for two calls
            call_id = f"{call_id}_{index}"
        seen.add(call_id)
        params: dict[str, Any]
        problem: str | None
        if call.size > MAX_TOOL_ARGUMENTS_CHARS:
            params, problem = {}, f"the arguments are longer than {MAX_TOOL_ARGUMENTS_CHARS} characters"
        else:
            params, problem = parse_arguments("".join(call.arguments))
        if problem is not None:
            bad_arguments[call_id] = problem
        actions.append(Action(tool_name=call.name, tool_call_id=call_id, agent_name=agent_name, params=params))
    return tuple(actions), bad_arguments


async def _run_tools(
    tools: dict[str, Tool],
    actions: tuple[Action, ...],
    bad_arguments: dict[str, str],
    timeout_for: Callable[[str], float],
) -> AsyncGenerator[ToolResult, None]:
    """Run the calls concurrently, yielding each result as it completes; closing or cancelling cancels them all.

    A call that takes longer than timeout_for(its tool) ends as an error result telling the model so.

    The TaskGroup runs in a task of its own and hands results over a bounded queue ended by a sentinel, so
    this generator never yields from inside the group: closing it at a yield (GeneratorExit) cannot be
    mistaken by the group for a failure, and the group never cancels the consumer's task.
    """
    queue: asyncio.Queue[ToolResult | None] = asyncio.Queue(maxsize=len(actions) + 1)

    async def run_all() -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for action in actions:
                    bad = bad_arguments.get(action.tool_call_id)
                    group.create_task(_run_one(tools, action, bad, timeout_for(action.tool_name), queue))
        finally:
            queue.put_nowait(None)  # never blocks: one slot per call plus this one

    runner = asyncio.create_task(run_all())
    try:
        while (result := await queue.get()) is not None:
            yield result
        await runner  # re-raises a failure of the runner itself
    finally:
        if not runner.done():
            runner.cancel()
            await asyncio.wait([runner])  # the tools are cancelled and awaited; our own cancellation passes through


async def _run_one(
    tools: dict[str, Tool],
    action: Action,
    bad_arguments: str | None,
    timeout_s: float,
    queue: asyncio.Queue[ToolResult | None],
) -> None:
    started = time.monotonic()
    tool = tools.get(action.tool_name)
    is_error = True
    if tool is None:
        content = f"unknown tool {action.tool_name!r}; available tools: {', '.join(sorted(tools)) or 'none'}"
    elif bad_arguments is not None:
        content = f"the arguments for {action.tool_name} were not usable ({bad_arguments}); call it again"
    else:
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                content = _bounded(await tool.call(action.params))
            is_error = False
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                content = f"tool {action.tool_name} did not finish within {timeout_s:g} s"
            else:
                content = _bounded(f"{type(exc).__name__}: {_describe(exc)}")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the run is being cancelled: never swallowed
            content = "CancelledError: the tool cancelled itself"  # raised by the tool, not by us
    queue.put_nowait(
        ToolResult(
            tool_call_id=action.tool_call_id,
            tool_name=action.tool_name,
            content=content,
            is_error=is_error,
            duration_s=time.monotonic() - started,
            agent_name=action.agent_name,
        )
    )


MAX_TOOL_ARGUMENTS_CHARS = 256 * 1024
"""The longest arguments a tool call may have: they travel in events, which must stay well under 4 MiB."""
MAX_TOOL_RESULT_CHARS = 256 * 1024
"""The most of a tool's result the model and the stream get: a result is one event, and events must stay
well under gRPC's 4 MiB message limit on every client."""


def _bounded(content: str) -> str:
    """A tool's result made safe for the stream: UTF-8-encodable, and cut (saying so) past the bound."""
    content = utf8_safe(content)  # protobuf strings must be encodable as UTF-8
    if len(content) <= MAX_TOOL_RESULT_CHARS:
        return content
    return f"{content[:MAX_TOOL_RESULT_CHARS]}\n[truncated: the result was {len(content)} characters]"


def _describe(exc: Exception) -> str:
    try:
        return str(exc)
    except Exception:  # an exception whose __str__ itself fails
        return "(its message could not be read)"
