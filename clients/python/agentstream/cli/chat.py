"""`agentstream chat`: a REPL that keeps one session, so each line continues the same conversation."""

from __future__ import annotations

import asyncio
import uuid

from agentstream import AgentStreamError, Client, StreamingMode
from agentstream.cli.render import terminal_safe
from agentstream.cli.run import PLAINTEXT, TLSOptions, interrupt_policy, render_messages, report, report_usage

HELP = "/history shows the conversation, /forget deletes it, /exit (or Ctrl-D) leaves"


async def chat(
    *,
    agent: str | None,
    target: str | None,
    session_id: str | None,
    timeout: float | None,
    tls: TLSOptions = PLAINTEXT,
    token: str | None = None,
) -> int:
    """Read lines from stdin and run each in one session; returns the exit status (0, or 2 for bad options)."""
    session_id = session_id or f"chat-{uuid.uuid4().hex[:12]}"
    try:
        client = tls.client(target, token=token)
    except ValueError as error:
        report_usage(error)
        return 2
    print(terminal_safe(f"session {session_id} ({HELP})"), flush=True)
    on_interrupt = interrupt_policy(json_lines=False)(client)  # the REPL's stdin answers, or how to resolve
    async with client:
        while (line := await _read_line()) is not None:
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            try:
                if text == "/history":
                    await _history(client, session_id)
                elif text == "/forget":
                    print(f"forgot {await client.delete_session(session_id)} turns", flush=True)
                elif text.startswith("/"):
                    print(HELP, flush=True)
                else:
                    stream = client.streaming_run(
                        text, agent=agent, streaming_mode=StreamingMode.CORE, session_id=session_id, timeout=timeout
                    )
                    await render_messages(
                        stream, tls=tls, json_lines=False, show_steps=False, on_interrupt=on_interrupt
                    )
            except AgentStreamError as error:  # e.g. SESSION_BUSY, or the server went away: say so, keep going
                report(error, tls)
    return 0


async def _read_line() -> str | None:
    """The next line of stdin (read in a thread, so the event loop keeps serving the client), None at its end."""
    try:
        return await asyncio.to_thread(input, "> ")
    except EOFError:
        print(flush=True)
        return None


async def _history(client: Client, session_id: str) -> None:
    session = await client.get_session(session_id)
    for turn in session.turns:
        if turn.role == "tool":
            print(terminal_safe(f"  tool  ← {turn.content}"))
        elif turn.tool_calls:
            calls = ", ".join(call.tool_name for call in turn.tool_calls)
            print(terminal_safe(f"  {turn.role} → {calls}{': ' + turn.content if turn.content else ''}"))
        else:
            print(terminal_safe(f"  {turn.role}: {turn.content}"))
    print(f"  ({len(session.turns)} turns, {len(session.run_ids)} runs)", flush=True)
