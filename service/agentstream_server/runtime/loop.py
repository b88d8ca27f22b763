"""The agent loop: LLM turn -> chunks -> tool calls -> tools (concurrently) -> ... -> final output, with handoffs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentstream_server.errors import MaxStepsExceeded
from agentstream_server.observability import spans
from agentstream_server.runtime.agents import AgentSpec
from agentstream_server.runtime.approvals import Consultation, Gate, ask_user_tool, consult
from agentstream_server.runtime.arguments import parse_arguments
from agentstream_server.runtime.coalesce import coalesce
from agentstream_server.runtime.events import (
    Action,
    AgentStep,
    Chunk,
    Event,
    GroupEvent,
    GroupKind,
    MemoryAppended,
    Nested,
    Output,
    ToolCall,
    ToolResult,
    Usage,
)
from agentstream_server.runtime.model import ChatModel, Finish, TextDelta, ToolCallDelta, UsageReport
from agentstream_server.runtime.team import AgentTools, Team
from agentstream_server.runtime.tool_calls import Caller, run_tools
from agentstream_server.runtime.tools import openai_tool_spec
from agentstream_server.runtime.toolsets import current_tools


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
    team: Team | None = None,
    depth: int = 0,
    gate: Gate | None = None,
) -> AsyncGenerator[Event | Nested, None]:
    """Run an agent on an input, yielding its events as they happen; the last one is its Output.

    Raises MaxStepsExceeded when max_steps turns pass without a final answer, and lets LLMUpstreamError
    through. Closing the generator (or cancelling its consumer) closes the LLM stream and cancels tools.
    With chunk_window_s > 0, text deltas arriving within the window become one Chunk (see coalesce).
    ``history``: earlier turns of the conversation as OpenAI chat messages, sent between the system prompt and
    the input (not re-emitted as events).

    With a ``team``, the agent may hand the run over (``transfer_to_<agent>``: the new agent goes on with the
    conversation so far, its events name it) and call agents as tools: their events are yielded wrapped in
    ``Nested`` with their scope; this agent's own events are yielded bare. ``depth`` is this run's nesting depth.
    Calls of tools in the agent's ``approval`` list, and ask_user calls, wait for a person through ``gate``.
    """
    messages: list[dict[str, Any]] = []
    if spec.instructions:
        messages.append({"role": "system", "content": spec.instructions})
        yield MemoryAppended(role="system", content=spec.instructions, agent_name=spec.name)
    messages.extend(dict(turn) for turn in history)
    messages.append({"role": "user", "content": user_input})
    yield MemoryAppended(role="user", content=user_input, agent_name=spec.name)

    handoffs = 0
    step = 0
    while True:
        extra = AgentTools.of(spec, team)
        own = await current_tools(spec.name, spec.tools, spec.toolsets)  # MCP tools as their servers list them
        tools = {tool.name: tool for tool in own}
        offered = (*own, *extra.specs, *((ask_user_tool(),) if spec.ask_user else ()))
        tool_specs = [openai_tool_spec(tool) for tool in offered]
        caller = Caller(spec, depth, team, chunk_window_s, extra.agents, gate)
        handed_to: AgentSpec | None = None
        for _ in range(spec.max_steps):
            step += 1
            with spans.agent_step(spec.name, step):  # invoke_agent {agent}: its LLM call and tools nest in it
                text: list[str] = []
                reasoning: list[str] = []
                pending: dict[int, _PendingCall] = {}
                finish_reason = ""
                usage: Usage | None = None
                label = model.label
                async with (
                    spans.LLMCall(label, spec.name, messages, spec.temperature) as llm,  # chat {model}, its metrics
                    contextlib.aclosing(model.stream(messages, tool_specs, temperature=spec.temperature)) as raw,
                    contextlib.aclosing(coalesce(raw, chunk_window_s) if chunk_window_s > 0 else raw) as deltas,
                ):
                    async for delta in deltas:
                        llm.first_token()
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
                    llm.finished(
                        finish_reason,
                        usage.prompt_tokens if usage else 0,
                        usage.completion_tokens if usage else 0,
                        text,
                    )
                content = "".join(text)
                step_reasoning = "".join(reasoning)
                actions, bad_arguments = _actions(spec.name, step, pending)
                yield AgentStep(spec.name, step, content, actions, finish_reason, usage, step_reasoning)
                assistant: dict[str, Any] = {"role": "assistant", "content": content or None}
                if step_reasoning:
                    assistant["reasoning_content"] = step_reasoning  # models that reason want it back
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
                asked = Consultation()
                if spec.approval or spec.ask_user:
                    async with contextlib.aclosing(consult(gate, spec, actions, bad_arguments, asked)) as answers:
                        async for answer in answers:
                            if type(answer) is ToolResult:
                                results[answer.tool_call_id] = answer
                            yield answer
                transfers = [
                    a for a in actions if a.tool_name in extra.handoffs and a.tool_call_id not in asked.rejected
                ]
                calls = tuple(
                    a for a in actions if a.tool_name not in extra.handoffs and a.tool_call_id not in asked.rejected
                )
                async with contextlib.aclosing(run_tools(caller, tools, calls, bad_arguments)) as finished:
                    async for item in finished:
                        if type(item) is ToolResult:
                            results[item.tool_call_id] = item
                        yield item
                for index, transfer in enumerate(transfers):
                    target = extra.handoffs[transfer.tool_name]
                    if index == 0:
                        note, is_error = f"transferred to {target}", False
                    else:  # the first transfer of a turn wins
                        first = extra.handoffs[transfers[0].tool_name]
                        note, is_error = f"not transferred: the conversation was already transferred to {first}", True
                    results[transfer.tool_call_id] = result = ToolResult(
                        transfer.tool_call_id, transfer.tool_name, note, is_error, 0.0, spec.name
                    )
                    yield result
                    if index == 0:
                        assert team is not None
                        handed_to = team.agents[target]
                        reason = transfer.params.get("reason")
                        yield GroupEvent(
                            group_id=transfer.tool_call_id,
                            members=(spec.name, target),
                            content=reason if isinstance(reason, str) else "",
                            kind=GroupKind.HANDOFF,
                            from_agent=spec.name,
                            to_agent=target,
                            tool_call_id=transfer.tool_call_id,
                            depth=depth,
                        )
                for action in actions:  # tool messages in call order, whatever order the tools finished in
                    result = results[action.tool_call_id]
                    messages.append({"role": "tool", "tool_call_id": action.tool_call_id, "content": result.content})
                    yield MemoryAppended(role="tool", content=result.content, agent_name=spec.name)
                if handed_to is not None:
                    break
        if handed_to is None:
            raise MaxStepsExceeded(
                f"agent {spec.name!r} used all {spec.max_steps} steps without a final answer",
                metadata={"max_steps": str(spec.max_steps)},
            )
        assert team is not None
        handoffs += 1
        if handoffs > team.max_handoffs:
            raise MaxStepsExceeded(
                f"the run handed over {handoffs} times, more than the limit of {team.max_handoffs}",
                metadata={"max_handoffs": str(team.max_handoffs)},
            )
        spec, model = handed_to, team.model_for(handed_to)
        if messages and messages[0].get("role") == "system":
            messages.pop(0)
        if spec.instructions:
            messages.insert(0, {"role": "system", "content": spec.instructions})
            yield MemoryAppended(role="system", content=spec.instructions, agent_name=spec.name)


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


MAX_TOOL_ARGUMENTS_CHARS = 256 * 1024
"""The longest arguments a tool call may have: they travel in events, which must stay well under 4 MiB."""
