"""Running one turn's tool calls concurrently: plain tools, and agents called as tools (nested runs)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field

from agentstream_server.errors import AgentDepthExceeded, AgentStreamError
from agentstream_server.observability import spans
from agentstream_server.runtime.agents import AgentSpec
from agentstream_server.runtime.approvals import Gate
from agentstream_server.runtime.events import (
    Action,
    AgentStep,
    Event,
    GroupEvent,
    GroupKind,
    Nested,
    Output,
    Scope,
    ToolResult,
    Usage,
)
from agentstream_server.runtime.team import AGENT_TOOL_INPUT, Team
from agentstream_server.runtime.tools import Tool, ToolFailure
from agentstream_server.runtime.utf8 import utf8_safe

MAX_TOOL_RESULT_CHARS = 256 * 1024
"""The most of a tool's result the model and the stream get: a result is one event, and events must stay
well under gRPC's 4 MiB message limit on every client."""
_QUEUE_SIZE = 64
"""Events of a turn's tool calls waiting for the loop: bounded, so a chatty nested agent waits for its reader."""

Item = Event | Nested
"""What a turn's tool calls produce: their results and nested agents' events (own events bare, deeper ones wrapped)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The agent whose turn the calls belong to, and where it runs."""

    spec: AgentSpec
    depth: int
    team: Team | None
    chunk_window_s: float = 0.0
    agent_tools: Mapping[str, str] = field(default_factory=dict)
    """Tool name -> agent name for the agents this one may call as tools."""
    gate: Gate | None = None
    """Where nested agents wait for people (the run's)."""


async def run_tools(
    caller: Caller,
    tools: Mapping[str, Tool],
    actions: tuple[Action, ...],
    bad_arguments: Mapping[str, str],
) -> AsyncGenerator[Item, None]:
    """Run the calls concurrently, yielding each result as it completes (and nested agents' events as they happen).

    Closing or cancelling this generator cancels every call. A call that takes longer than its tool's timeout
    ends as an error result telling the model so. AgentDepthExceeded from a nested call ends the whole run.

    The TaskGroup runs in a task of its own and hands items over a bounded queue ended by a sentinel, so
    this generator never yields from inside the group: closing it at a yield (GeneratorExit) cannot be
    mistaken by the group for a failure, and the group never cancels the consumer's task.
    """
    queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=max(_QUEUE_SIZE, len(actions) + 1))

    async def run_all() -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for action in actions:
                    bad = bad_arguments.get(action.tool_call_id)
                    group.create_task(_run_one(caller, tools, action, bad, queue))
        except* AgentDepthExceeded as failures:
            raise failures.exceptions[0] from None  # the run fails with the error itself, not a group of it
        finally:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                with contextlib.suppress(asyncio.QueueFull):  # the reader is gone: never wait for it
                    queue.put_nowait(None)
            else:
                await queue.put(None)

    runner = asyncio.create_task(run_all())
    try:
        while (item := await queue.get()) is not None:
            yield item
        await runner  # re-raises a failure of the runner itself
    finally:
        if not runner.done():
            runner.cancel()
            await asyncio.wait([runner])  # the tools are cancelled and awaited; our own cancellation passes through


@dataclass
class _NestedRun:
    usage: Usage = field(default_factory=Usage)


async def _run_one(
    caller: Caller,
    tools: Mapping[str, Tool],
    action: Action,
    bad_arguments: str | None,
    queue: asyncio.Queue[Item | None],
) -> None:
    known = action.tool_name in tools or action.tool_name in caller.agent_tools
    with spans.ToolCall(action.tool_name, action.tool_call_id, known=known, arguments=action.params) as observed:
        await _call_one(caller, tools, action, bad_arguments, queue, observed)  # a nested agent's spans nest here


async def _call_one(
    caller: Caller,
    tools: Mapping[str, Tool],
    action: Action,
    bad_arguments: str | None,
    queue: asyncio.Queue[Item | None],
    observed: spans.ToolCall,
) -> None:
    started = time.monotonic()
    tool = tools.get(action.tool_name)
    agent_name = caller.agent_tools.get(action.tool_name)
    nested: _NestedRun | None = None
    is_error = True
    timeout_s: float | None = caller.spec.timeout_for(action.tool_name)
    if agent_name is not None and action.tool_name not in caller.spec.tool_timeouts:
        timeout_s = None  # a nested agent is bounded by the run's time limit, which pauses while people decide
    if tool is None and agent_name is None:
        offered = sorted([*tools, *caller.agent_tools])
        content = f"unknown tool {action.tool_name!r}; available tools: {', '.join(offered) or 'none'}"
    elif bad_arguments is not None:
        content = f"the arguments for {action.tool_name} were not usable ({bad_arguments}); call it again"
    else:
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                if agent_name is not None:
                    nested = _NestedRun()
                    content = _bounded(await _call_agent(caller, agent_name, action, nested, queue))
                else:
                    assert tool is not None
                    content = _bounded(await tool.call(action.params))
            is_error = False
        except AgentDepthExceeded:
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                content = f"tool {action.tool_name} did not finish within {timeout_s or 0:g} s"
            elif isinstance(exc, AgentStreamError):
                content = _bounded(f"agent {agent_name} failed: {exc.message}")
            elif isinstance(exc, ToolFailure):  # the tool's own error result (an MCP isError): told as it is
                content = _bounded(_describe(exc))
            else:
                content = _bounded(f"{type(exc).__name__}: {_describe(exc)}")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the run is being cancelled: never swallowed
            content = "CancelledError: the tool cancelled itself"  # raised by the tool, not by us
    observed.finished(is_error, content)
    if nested is not None:
        await queue.put(
            GroupEvent(
                group_id=action.tool_call_id,
                members=(caller.spec.name, action.tool_name),
                content=content,
                kind=GroupKind.AGENT_END,
                from_agent=caller.spec.name,
                to_agent=action.tool_name,
                tool_call_id=action.tool_call_id,
                depth=caller.depth + 1,
                usage=nested.usage,
                success=not is_error,
            )
        )
    await queue.put(
        ToolResult(
            tool_call_id=action.tool_call_id,
            tool_name=action.tool_name,
            content=content,
            is_error=is_error,
            duration_s=time.monotonic() - started,
            agent_name=action.agent_name,
            mcp_server=tool.mcp_server if tool is not None else "",
        )
    )


async def _call_agent(
    caller: Caller, agent_name: str, action: Action, nested: _NestedRun, queue: asyncio.Queue[Item | None]
) -> str:
    """Run an agent nested in this call, streaming its events into the turn; its answer is the result."""
    from agentstream_server.runtime.loop import run_agent  # the loop runs tools, and tools may run the loop

    team = caller.team
    assert team is not None  # agent tools are only offered with a team
    depth = caller.depth + 1
    if depth > team.max_depth:
        raise AgentDepthExceeded(
            f"agent {caller.spec.name!r} called agent {agent_name!r} at nesting depth {depth}, past the limit "
            f"of {team.max_depth}",
            metadata={"max_depth": str(team.max_depth), "agent": agent_name},
        )
    request = action.params.get(AGENT_TOOL_INPUT)
    if not isinstance(request, str) or not request.strip():
        raise ValueError(f"call {agent_name} with a non-empty string parameter {AGENT_TOOL_INPUT!r}")
    spec = team.agents[agent_name]
    scope = Scope(agent=agent_name, caller=caller.spec.name, parent_tool_call_id=action.tool_call_id, depth=depth)
    await queue.put(
        GroupEvent(
            group_id=action.tool_call_id,
            members=(caller.spec.name, agent_name),
            content=request,
            kind=GroupKind.AGENT_START,
            from_agent=caller.spec.name,
            to_agent=agent_name,
            tool_call_id=action.tool_call_id,
            depth=depth,
        )
    )
    answer = ""
    events = run_agent(
        spec,
        request,
        team.model_for(spec),
        chunk_window_s=caller.chunk_window_s,
        team=team,
        depth=depth,
        gate=caller.gate,
    )
    async with contextlib.aclosing(events):
        async for item in events:
            if isinstance(item, Nested):
                if type(item.event) is AgentStep and item.event.usage is not None:
                    nested.usage += item.event.usage
                await queue.put(item)  # a deeper agent's event: already in its own scope
                continue
            if type(item) is AgentStep and item.usage is not None:
                nested.usage += item.usage
            if type(item) is Output:
                answer = item.content
            await queue.put(Nested(item, _scope_of(item, scope)))
    return answer


def _scope_of(event: Event, scope: Scope) -> Scope:
    """The nested run's scope, naming the agent that now speaks (a nested run may hand over, too)."""
    agent = getattr(event, "agent_name", scope.agent) or scope.agent
    return scope if agent == scope.agent else Scope(agent, scope.caller, scope.parent_tool_call_id, scope.depth)


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
