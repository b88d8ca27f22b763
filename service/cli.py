"""The command line: `agentstream serve` (process lifecycle) and `agentstream run` (stream through the SDK)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Run LLM agents and stream their events.")

MODES = ("core", "chunk", "output", "chunk_output", "all")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port; 0 picks a free one [default: 50051].")] = None,
    agents: Annotated[
        Path | None,
        typer.Option(
            help="Agents TOML file. Trusted configuration: its tool import paths are imported and run.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    grace: Annotated[float | None, typer.Option(help="Seconds live runs get on shutdown [default: 10].")] = None,
    store: Annotated[
        str | None, typer.Option(help="Run store: 'memory' or redis://HOST:PORT/DB [default: $AGENTSTREAM_STORE].")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
) -> None:
    """Start the gRPC server; SIGTERM/SIGINT drain it gracefully."""
    from service.config import Settings
    from service.redis_store import RedisUnavailable
    from service.server import serve as run_server

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    try:
        settings = Settings.from_env().with_overrides(
            host=host, port=port, agents_file=agents, shutdown_grace_s=grace, store=store
        )
        run_event_loop(run_server(settings))
    except (ValueError, OSError, RedisUnavailable) as exc:
        logging.getLogger("agentstream").error("cannot start: %s", exc)
        raise typer.Exit(1) from None


@app.command()
def run(
    prompt: Annotated[str, typer.Argument(help="The input for the agent.")],
    agent: Annotated[str | None, typer.Option(help="Agent name (default: the server's).")] = None,
    mode: Annotated[str, typer.Option(help=f"Streaming mode: {', '.join(MODES)}.")] = "core",
    target: Annotated[str | None, typer.Option(help="HOST:PORT (default: $AGENTSTREAM_TARGET).")] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per message.")] = False,
    session_id: Annotated[str | None, typer.Option(help="Session id to tag the run with.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Run time limit in seconds.")] = None,
) -> None:
    """Stream one run and render it; exit 0 on success, 1 on a failed run, 2 on an error status."""
    from service.cli_run import stream_run

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
        )
    )
    raise typer.Exit(code)


@app.command()
def attach(
    run_id: Annotated[str, typer.Argument(help="The run to follow.")],
    after_seq: Annotated[int, typer.Option(help="Replay events after this seq (0: from the start).")] = 0,
    mode: Annotated[str, typer.Option(help=f"Streaming mode: {', '.join(MODES)}.")] = "core",
    target: Annotated[str | None, typer.Option(help="HOST:PORT (default: $AGENTSTREAM_TARGET).")] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per message.")] = False,
) -> None:
    """Follow an existing run (replay, then live); exit status as for run."""
    from service.cli_run import attach_run

    _check_mode(mode)
    raise typer.Exit(
        asyncio.run(attach_run(run_id, after_seq=after_seq, mode=mode.lower(), target=target, json_lines=json_lines))
    )


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run to cancel.")],
    reason: Annotated[str, typer.Option(help="Why; shown in the run's terminal message.")] = "cancelled from the CLI",
    target: Annotated[str | None, typer.Option(help="HOST:PORT (default: $AGENTSTREAM_TARGET).")] = None,
) -> None:
    """Cancel a run; exit 0 when it is cancelled or had already finished, 2 on an error status."""
    from service.cli_run import cancel_run

    raise typer.Exit(asyncio.run(cancel_run(run_id, reason=reason, target=target)))


def _check_mode(mode: str) -> None:
    if mode.lower() not in MODES:
        typer.echo(f"error: --mode must be one of {', '.join(MODES)}", err=True)
        raise typer.Exit(2)


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the server's main coroutine on uvloop (about 20% less CPU per streamed event here), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def main() -> None:
    """Console-script entry point."""
    app()
