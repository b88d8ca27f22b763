"""`agentstream run`: streams one run through the SDK and writes it to the terminal or as JSON lines."""

from __future__ import annotations

import sys

from rich.console import Console

from agentstream import AgentStreamError, ChunkMessage, Client, StreamingMode, TaskMessage
from service.render import render, to_json


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
    """Stream and render a run; returns the process exit status."""
    streaming_mode = StreamingMode[mode.upper()]
    console = Console(highlight=False, soft_wrap=True)
    errors = Console(stderr=True, highlight=False)
    inline = False
    answer_shown = False
    success = False
    try:
        async with Client(target) as client:
            async for message in client.streaming_run(
                prompt, agent=agent, streaming_mode=streaming_mode, session_id=session_id, timeout=timeout
            ):
                if isinstance(message, TaskMessage) and message.is_terminal:
                    success = message.payload.success
                if json_lines:
                    sys.stdout.write(to_json(message) + "\n")
                    sys.stdout.flush()
                    continue
                if isinstance(message, ChunkMessage):
                    answer_shown = True
                lines = render(message, show_steps=streaming_mode == StreamingMode.ALL, answer_shown=answer_shown)
                for line in lines:
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
        errors.out(f"error: {error.code.name} {error.reason or ''}: {error.message}".replace("  ", " "))
        return 2
    return 0 if success else 1
