"""The `agentstream` command: run, chat, attach, cancel and approve against any server (plus `serve` when installed).

Needs the `cli` extra (`pip install 'agentstream[cli]'`: typer and rich).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Run LLM agents and stream their events.")

if TYPE_CHECKING:
    from agentstream.cli.run import TLSOptions

MODES = ("core", "chunk", "output", "chunk_output", "all")

TLSFlag = Annotated[bool, typer.Option("--tls", help="Connect with TLS (system CAs unless --ca).")]
CAFile = Annotated[
    Path | None, typer.Option("--ca", help="PEM CA to verify the server with (implies --tls).", dir_okay=False)
]
CertFile = Annotated[
    Path | None, typer.Option("--cert", help="PEM client certificate, for mTLS (with --key).", dir_okay=False)
]
KeyFile = Annotated[Path | None, typer.Option("--key", help="PEM private key of --cert.", dir_okay=False)]
Token = Annotated[
    str | None, typer.Option(help="Bearer token for the server (default: $AGENTSTREAM_TOKEN).", show_default=False)
]
Target = Annotated[str | None, typer.Option(help="HOST:PORT (default: $AGENTSTREAM_TARGET).")]
ModeName = Annotated[str, typer.Option("--mode", help=f"Streaming mode: {', '.join(MODES)}.")]
JsonLines = Annotated[bool, typer.Option("--json", help="One JSON object per message.")]
NoReasoning = Annotated[
    bool, typer.Option("--no-reasoning", help="Leave a reasoning model's reasoning text out of the stream.")
]


@app.command()
def run(
    prompt: Annotated[str, typer.Argument(help="The input for the agent.")],
    agent: Annotated[str | None, typer.Option(help="Agent name (default: the server's).")] = None,
    mode: ModeName = "core",
    target: Target = None,
    json_lines: JsonLines = False,
    session_id: Annotated[
        str | None,
        typer.Option("--session", "--session-id", help="Continue this conversation (runs sharing it share history)."),
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Run time limit in seconds.")] = None,
    tls: TLSFlag = False,
    ca: CAFile = None,
    cert: CertFile = None,
    key: KeyFile = None,
    token: Token = None,
    no_reasoning: NoReasoning = False,
) -> None:
    """Stream one run and render it; exit 0 on success, 1 on a failed run, 2 on an error status.

    On a terminal, a tool call that needs approval asks "approve TOOL(...)? [y/N]" and a question from the agent
    waits for your answer; otherwise the CLI prints how to resolve them with `agentstream approve`.
    """
    from agentstream.cli.run import stream_run

    _check_mode(mode)
    code = asyncio.run(
        stream_run(
            prompt,
            agent=agent,
            mode=mode.lower(),
            target=target,
            json_lines=json_lines,
            session_id=session_id,
            timeout=timeout,
            tls=_tls_options(tls, ca, cert, key),
            token=token,
            exclude_reasoning=no_reasoning,
        )
    )
    raise typer.Exit(code)


@app.command()
def chat(
    agent: Annotated[str | None, typer.Option(help="Agent name (default: the server's).")] = None,
    session_id: Annotated[
        str | None, typer.Option("--session", help="Continue this conversation (default: a new one).")
    ] = None,
    target: Target = None,
    timeout: Annotated[float | None, typer.Option(help="Time limit of each run in seconds.")] = None,
    tls: TLSFlag = False,
    ca: CAFile = None,
    cert: CertFile = None,
    key: KeyFile = None,
    token: Token = None,
) -> None:
    """Talk to an agent line by line in one session: each line is a run that remembers the earlier ones."""
    from agentstream.cli.chat import chat as chat_loop

    options = _tls_options(tls, ca, cert, key)
    raise typer.Exit(
        asyncio.run(
            chat_loop(agent=agent, target=target, session_id=session_id, timeout=timeout, tls=options, token=token)
        )
    )


@app.command()
def attach(
    run_id: Annotated[str, typer.Argument(help="The run to follow.")],
    after_seq: Annotated[int, typer.Option(help="Replay events after this seq (0: from the start).")] = 0,
    mode: ModeName = "core",
    target: Target = None,
    json_lines: JsonLines = False,
    tls: TLSFlag = False,
    ca: CAFile = None,
    cert: CertFile = None,
    key: KeyFile = None,
    token: Token = None,
    no_reasoning: NoReasoning = False,
) -> None:
    """Follow an existing run (replay, then live); exit status as for run."""
    from agentstream.cli.run import attach_run

    _check_mode(mode)
    options = _tls_options(tls, ca, cert, key)
    raise typer.Exit(
        asyncio.run(
            attach_run(
                run_id,
                after_seq=after_seq,
                mode=mode.lower(),
                target=target,
                json_lines=json_lines,
                tls=options,
                token=token,
                exclude_reasoning=no_reasoning,
            )
        )
    )


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run to cancel.")],
    reason: Annotated[str, typer.Option(help="Why; shown in the run's terminal message.")] = "cancelled from the CLI",
    target: Target = None,
    tls: TLSFlag = False,
    ca: CAFile = None,
    cert: CertFile = None,
    key: KeyFile = None,
    token: Token = None,
) -> None:
    """Cancel a run; exit 0 when it is cancelled or had already finished, 2 on an error status."""
    from agentstream.cli.run import cancel_run

    raise typer.Exit(
        asyncio.run(cancel_run(run_id, reason=reason, target=target, tls=_tls_options(tls, ca, cert, key), token=token))
    )


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="The run waiting for a person.")],
    interrupt_id: Annotated[str, typer.Argument(help="The interrupt to resolve (shown by `run`, or GetRun).")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject the tool calls instead of approving them.")] = False,
    message: Annotated[
        str, typer.Option(help="The answer to a question, or why the calls are rejected (the model reads it).")
    ] = "",
    target: Target = None,
    tls: TLSFlag = False,
    ca: CAFile = None,
    cert: CertFile = None,
    key: KeyFile = None,
    token: Token = None,
) -> None:
    """Approve (or --reject) a run's tool calls, or answer its question with --message; from any caller of the
    run's tenant. Exit 0 when resolved, 2 on an error status (e.g. INTERRUPT_ALREADY_RESOLVED)."""
    from agentstream.cli.run import approve_interrupt

    options = _tls_options(tls, ca, cert, key)
    raise typer.Exit(
        asyncio.run(
            approve_interrupt(
                run_id, interrupt_id, reject=reject, message=message, target=target, tls=options, token=token
            )
        )
    )


def _tls_options(tls: bool, ca: Path | None, cert: Path | None, key: Path | None) -> TLSOptions:
    from agentstream.cli.run import TLSOptions

    return TLSOptions(tls=tls, ca=ca, cert=cert, key=key)


def _check_mode(mode: str) -> None:
    if mode.lower() not in MODES:
        typer.echo(f"error: --mode must be one of {', '.join(MODES)}", err=True)
        raise typer.Exit(2)


def _register_server_commands() -> None:
    try:
        from agentstream_server.cli import register
    except ImportError:  # the SDK alone: client commands only
        return
    register(app)


def main() -> None:
    """Console-script entry point."""
    _register_server_commands()
    app()
