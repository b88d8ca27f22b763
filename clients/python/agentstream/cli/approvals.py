"""A person in the loop at the CLI: answer a run's interrupts at the terminal, or say how to, and `approve`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from rich.console import Console

from agentstream import AgentStreamError, Client, InterruptAlreadyResolved, InterruptKind, InterruptMessage
from agentstream.cli.render import calls_text, terminal_safe

Ask = Callable[[str], Awaitable[str | None]]
"""Shows a prompt and returns the line typed (without its newline), or None at the end of input."""

OnInterrupt = Callable[[InterruptMessage], Awaitable[None]]
"""What the CLI does with a pending interrupt of the run it streams."""


async def ask_stdin(prompt: str) -> str | None:
    """The prompt on stderr (stdout may be JSON lines), the answer from stdin (read in a thread, so the event
    loop keeps serving the call); None at the end of input."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = await asyncio.to_thread(sys.stdin.readline)
    return line.rstrip("\r\n") if line else None


def prompter(client: Client, ask: Ask = ask_stdin) -> OnInterrupt:
    """Answers interrupts at the terminal: TOOL_APPROVAL asks ``approve calculator({...})? [y/N]`` (anything but
    y/yes rejects), INPUT shows the question and sends the line typed; then calls ResolveInterrupt."""

    async def on_interrupt(message: InterruptMessage) -> None:
        interrupt = message.payload
        if interrupt.kind is InterruptKind.INPUT:
            answer = await ask(terminal_safe(f"{interrupt.question}\nanswer: "))
            approve, text = (True, answer) if answer is not None else (False, "no answer (end of input)")
        else:
            answer = await ask(terminal_safe(f"approve {calls_text(interrupt.tool_calls)}? [y/N] "))
            approve = (answer or "").strip().lower() in ("y", "yes")
            text = "" if approve else "rejected at the terminal"
        try:
            await client.resolve_interrupt(message.run_id, interrupt.interrupt_id, approve=approve, message=text)
        except InterruptAlreadyResolved:
            _err("the interrupt was already resolved (by another caller, or its approval timeout)")
        except AgentStreamError as error:  # the stream goes on: the run waits, `agentstream approve` can answer
            _err(f"error: {error.code.name} {error.reason}: {error.message}")

    return on_interrupt


def approve_hint(message: InterruptMessage) -> str:
    """How another caller resolves this interrupt with the CLI."""
    run_id, interrupt_id = message.run_id, message.payload.interrupt_id
    if message.payload.kind is InterruptKind.INPUT:
        return f"answer with: agentstream approve {run_id} {interrupt_id} --message 'ANSWER'"
    return f"resolve with: agentstream approve {run_id} {interrupt_id} [--reject] [--message TEXT]"


def hinter(*, stderr: bool = False) -> OnInterrupt:
    """Not on a terminal: say how to resolve each interrupt (on stdout, or stderr when stdout carries JSON
    lines); the stream goes on until someone does."""

    async def on_interrupt(message: InterruptMessage) -> None:
        _say(approve_hint(message), stderr=stderr)

    return on_interrupt


def _err(text: str) -> None:
    _say(text, stderr=True)


def _say(text: str, *, stderr: bool) -> None:
    Console(stderr=stderr, highlight=False, soft_wrap=True).out(terminal_safe(text), style="yellow")
