"""`agentstream run / attach / cancel / approve`: talk to a server through the SDK; write to the terminal or JSON."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from rich.console import Console

from agentstream import (
    AgentStreamError,
    ChunkMessage,
    Client,
    InterruptMessage,
    Message,
    StreamingMode,
    TaskMessage,
    TransportError,
)
from agentstream.cli.approvals import Ask, OnInterrupt, ask_stdin, hinter, prompter
from agentstream.cli.render import render, terminal_safe, to_json

Stream = Callable[[Client], AsyncIterator[Message]]
Interrupts = Callable[[Client], OnInterrupt]
"""What to do with a stream's pending interrupts, given the client streaming it."""


def interrupt_policy(*, json_lines: bool, ask: Ask | None = None) -> Interrupts:
    """Prompt (with ``ask``, else on stdin when it is a terminal), else print how to resolve each interrupt."""
    if ask is None and sys.stdin.isatty():
        ask = ask_stdin
    if ask is None:
        return lambda client: hinter(stderr=json_lines)
    answer = ask
    return lambda client: prompter(client, answer)


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """The client commands' --tls, --ca, --cert and --key; --ca, --cert or --key alone also turn TLS on."""

    tls: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @property
    def secure(self) -> bool:
        return self.tls or self.ca is not None or self.cert is not None or self.key is not None

    def client(self, target: str | None, token: str | None = None) -> Client:
        """A Client on target with these options (ValueError for a lone --cert or --key, or an unreadable file)."""
        if (self.cert is None) != (self.key is None):
            raise ValueError("--cert and --key go together (mTLS needs both)")
        return Client(target, token=token, tls=self.tls, root_ca=self.ca, client_cert=self.cert, client_key=self.key)


PLAINTEXT = TLSOptions()


async def stream_run(
    prompt: str,
    *,
    agent: str | None,
    mode: str,
    target: str | None,
    json_lines: bool,
    session_id: str | None,
    timeout: float | None,
    tls: TLSOptions = PLAINTEXT,
    token: str | None = None,
    exclude_reasoning: bool = False,
    ask: Ask | None = None,
) -> int:
    """Stream and render a new run; returns the process exit status.

    A pending interrupt is answered at the prompt (``ask``, else stdin when it is a terminal); otherwise the
    CLI prints how to resolve it (`agentstream approve`) and keeps streaming.
    """
    streaming_mode = StreamingMode[mode.upper()]
    return await _render_stream(
        lambda client: client.streaming_run(
            prompt,
            agent=agent,
            streaming_mode=streaming_mode,
            session_id=session_id,
            timeout=timeout,
            exclude_reasoning=exclude_reasoning,
        ),
        target=target,
        tls=tls,
        token=token,
        json_lines=json_lines,
        show_steps=streaming_mode == StreamingMode.ALL,
        interrupts=interrupt_policy(json_lines=json_lines, ask=ask),
    )


async def attach_run(
    run_id: str,
    *,
    after_seq: int,
    mode: str,
    target: str | None,
    json_lines: bool,
    tls: TLSOptions = PLAINTEXT,
    token: str | None = None,
    exclude_reasoning: bool = False,
) -> int:
    """Follow an existing run from after_seq (resuming across transport failures); returns the exit status."""
    streaming_mode = StreamingMode[mode.upper()]
    return await _render_stream(
        lambda client: client.subscribe_run(
            run_id,
            after_seq=after_seq,
            streaming_mode=streaming_mode,
            resume=True,
            exclude_reasoning=exclude_reasoning,
        ),
        target=target,
        tls=tls,
        token=token,
        json_lines=json_lines,
        show_steps=streaming_mode == StreamingMode.ALL,
        interrupts=lambda client: hinter(stderr=json_lines),  # a replay shows interrupts resolved long ago
    )


async def cancel_run(
    run_id: str, *, reason: str, target: str | None, tls: TLSOptions = PLAINTEXT, token: str | None = None
) -> int:
    """Cancel a run and print what happened; returns the exit status."""
    try:
        async with tls.client(target, token=token) as client:
            result = await client.cancel_run(run_id, reason)
    except AgentStreamError as error:
        report(error, tls)
        return 2
    except ValueError as error:
        report_usage(error)
        return 2
    state = "had already finished" if result.already_finished else "cancelled"
    print(terminal_safe(f"run {run_id} {state}: {result.status.name}"))
    return 0


async def approve_interrupt(
    run_id: str,
    interrupt_id: str,
    *,
    reject: bool,
    message: str,
    target: str | None,
    tls: TLSOptions = PLAINTEXT,
    token: str | None = None,
) -> int:
    """Resolve a run's interrupt (approve, or reject with --reject) and print the run's status; the exit status."""
    try:
        async with tls.client(target, token=token) as client:
            status = await client.resolve_interrupt(run_id, interrupt_id, approve=not reject, message=message)
    except AgentStreamError as error:
        report(error, tls)
        return 2
    except ValueError as error:
        report_usage(error)
        return 2
    decision = "rejected" if reject else "approved"
    print(terminal_safe(f"interrupt {interrupt_id} of run {run_id} {decision}: {status.name}"))
    return 0


async def _render_stream(
    stream: Stream,
    *,
    target: str | None,
    tls: TLSOptions,
    token: str | None,
    json_lines: bool,
    show_steps: bool,
    interrupts: Interrupts,
) -> int:
    try:
        client = tls.client(target, token=token)
    except ValueError as error:
        report_usage(error)
        return 2
    async with client:
        return await render_messages(
            stream(client), tls=tls, json_lines=json_lines, show_steps=show_steps, on_interrupt=interrupts(client)
        )


async def render_messages(
    messages: AsyncIterator[Message],
    *,
    tls: TLSOptions,
    json_lines: bool,
    show_steps: bool,
    on_interrupt: OnInterrupt | None = None,
) -> int:
    """Write a run's messages to the terminal (or as JSON lines); the exit status: 0 succeeded, 1 failed, 2 error.

    ``on_interrupt`` is called with each pending interrupt once it is shown (the stream waits meanwhile).
    """
    console = Console(highlight=False, soft_wrap=True)
    inline = False
    answer_shown = False
    success = False
    try:
        async for message in messages:
            if isinstance(message, TaskMessage) and message.is_terminal:
                success = message.payload.success
            waiting = message if isinstance(message, InterruptMessage) and message.is_pending else None
            if json_lines:
                sys.stdout.write(to_json(message) + "\n")
                sys.stdout.flush()
                if waiting and on_interrupt:
                    await on_interrupt(waiting)
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
            if waiting and on_interrupt:  # its line was just shown: nothing is left inline
                await on_interrupt(waiting)
    except AgentStreamError as error:
        if inline:
            console.out("")
        report(error, tls)
        return 2
    return 0 if success else 1


def report_usage(error: ValueError) -> None:
    """A usage error on stderr."""
    Console(stderr=True, highlight=False).out(terminal_safe(f"error: {error}"))


def report(error: AgentStreamError, tls: TLSOptions) -> None:
    """An error status on stderr: code, reason, message (and a TLS hint for a plaintext call that could not connect)."""
    console = Console(stderr=True, highlight=False)
    console.out(terminal_safe(f"error: {error.code.name} {error.reason or ''}: {error.message}".replace("  ", " ")))
    if isinstance(error, TransportError) and error.code == grpc.StatusCode.UNAVAILABLE and not tls.secure:
        console.out("hint: if the server serves TLS, add --tls or --ca FILE (and --cert/--key for mTLS)")
