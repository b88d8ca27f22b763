"""`agentstream run / attach / cancel`: talk to a server through the SDK and write to the terminal or JSON lines."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable

from rich.console import Console

from agentstream import AgentStreamError, ChunkMessage, Client, Message, StreamingMode, TaskMessage
from agentstream.cli.render import render, terminal_safe, to_json

Stream = Callable[[Client], AsyncIterator[Message]]


async def stream_run(
    prompt: str,
    *,
    agent: str | None,
    mode: str,
    target: str | None,
    json_lines: bool,
    session_id: str | None,
    timeout: float | None,
) -> int:
    """Stream and render a new run; returns the process exit status."""
    streaming_mode = StreamingMode[mode.upper()]
    return await _render_stream(
        lambda client: client.streaming_run(
            prompt, agent=agent, streaming_mode=streaming_mode, session_id=session_id, timeout=timeout
        ),
        target=target,
        json_lines=json_lines,
        show_steps=streaming_mode == StreamingMode.ALL,
    )


async def attach_run(run_id: str, *, after_seq: int, mode: str, target: str | None, json_lines: bool) -> int:
    """Follow an existing run from after_seq (resuming across transport failures); returns the exit status."""
    streaming_mode = StreamingMode[mode.upper()]
    return await _render_stream(
        lambda client: client.subscribe_run(run_id, after_seq=after_seq, streaming_mode=streaming_mode, resume=True),
        target=target,
        json_lines=json_lines,
        show_steps=streaming_mode == StreamingMode.ALL,
    )


async def cancel_run(run_id: str, *, reason: str, target: str | None) -> int:
    """Cancel a run and print what happened; returns the exit status."""
    try:
        async with Client(target) as client:
            result = await client.cancel_run(run_id, reason)
    except AgentStreamError as error:
        _report(error)
        return 2
    state = "had already finished" if result.already_finished else "cancelled"
    print(terminal_safe(f"run {run_id} {state}: {result.status.name}"))
    return 0


async def _render_stream(stream: Stream, *, target: str | None, json_lines: bool, show_steps: bool) -> int:
    console = Console(highlight=False, soft_wrap=True)
    inline = False
    answer_shown = False
    success = False
    try:
        async with Client(target) as client:
            async for message in stream(client):
                if isinstance(message, TaskMessage) and message.is_terminal:
                    success = message.payload.success
                if json_lines:
                    sys.stdout.write(to_json(message) + "\n")
                    sys.stdout.flush()
                    continue
                if isinstance(message, ChunkMessage):
                    answer_shown = True
                for line in render(message, show_steps=show_steps, answer_shown=answer_shown):
                    if line.inline:
                        console.out(line.text, end="", style=line.style or None)
                        inline = True
                        continue
                    if inline:
                        console.out("")
                        inline = False
                    console.out(line.text, style=line.style or None)
    except AgentStreamError as error:
        if inline:
            console.out("")
        _report(error)
        return 2
    return 0 if success else 1


def _report(error: AgentStreamError) -> None:
    Console(stderr=True, highlight=False).out(
        terminal_safe(f"error: {error.code.name} {error.reason or ''}: {error.message}".replace("  ", " "))
    )
