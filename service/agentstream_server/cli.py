"""`agentstream serve`: the server's process lifecycle (the client commands live in the SDK, `agentstream.cli`)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer


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
    reuse_port: Annotated[
        bool | None,
        typer.Option(
            "--reuse-port/--no-reuse-port",
            help="Share the port with other processes (SO_REUSEPORT); off by default, so a taken port fails.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Server processes sharing the port (SO_REUSEPORT), restarted if they die; more than 1 needs a "
            "redis:// store unless --workers-allow-memory [default: 1].",
        ),
    ] = None,
    workers_allow_memory: Annotated[
        bool | None,
        typer.Option(
            "--workers-allow-memory",
            help="Allow --workers above 1 with the memory store: a run is then visible only to the worker "
            "executing it (SubscribeRun, GetRun, CancelRun elsewhere answer NOT_FOUND).",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Serve TLS with this PEM certificate (chain) [default: $AGENTSTREAM_TLS_CERT].")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="The PEM private key of --tls-cert [default: $AGENTSTREAM_TLS_KEY].")
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            help="Require client certificates issued by this PEM CA (mTLS) [default: $AGENTSTREAM_TLS_CLIENT_CA]."
        ),
    ] = None,
    auth_tokens: Annotated[
        Path | None,
        typer.Option(help="TOML file of [[tokens]] (tenant, sha256, roles) callers must present; SIGHUP re-reads it."),
    ] = None,
    auth_jwks: Annotated[
        Path | None, typer.Option(help="JWKS file of the public keys that sign accepted JWTs; SIGHUP re-reads it.")
    ] = None,
    auth_jwt_issuer: Annotated[str | None, typer.Option(help="Required 'iss' of accepted JWTs.")] = None,
    auth_jwt_audience: Annotated[str | None, typer.Option(help="Required 'aud' of accepted JWTs.")] = None,
    auth_tenant_claim: Annotated[
        str | None, typer.Option(help="JWT claim naming the caller's tenant [default: tenant].")
    ] = None,
    insecure: Annotated[
        bool | None, typer.Option("--insecure", help="Allow a non-loopback --host without authentication or TLS.")
    ] = None,
    mcp_lazy: Annotated[
        bool | None,
        typer.Option(
            "--mcp-lazy",
            help="Open each MCP server of the agents file on first use instead of at start-up "
            "[default: $AGENTSTREAM_MCP_LAZY].",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Serve Prometheus /metrics on this port (with --workers N, worker K uses PORT + K - 1) "
            "[default: $AGENTSTREAM_METRICS_PORT, else no metrics].",
        ),
    ] = None,
    metrics_host: Annotated[
        str | None, typer.Option(help="Interface /metrics listens on [default: the --host].")
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="Log lines as 'text' or 'json' (one object per line) [default: text].")
    ] = None,
    trace_content: Annotated[
        bool | None,
        typer.Option("--trace-content", help="Record prompt, completion and tool text on spans (off by default)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
    worker_id: Annotated[int | None, typer.Option(hidden=True, help="Set by the supervisor.")] = None,
    ready_fd: Annotated[int | None, typer.Option(hidden=True, help="Set by the supervisor.")] = None,
) -> None:
    """Start the gRPC server; SIGTERM/SIGINT drain it gracefully."""
    from agentstream_server.config import Settings
    from agentstream_server.observability.logs import configure_logging
    from agentstream_server.store.redis import RedisUnavailable
    from agentstream_server.transport.server import serve as run_server
    from agentstream_server.workers import run_workers, tell_supervisor

    configure_logging(log_level, worker=worker_id, pid=os.getpid())  # text until the settings are read
    try:
        settings = Settings.from_env(
            host=host,
            port=port,
            agents_file=agents,
            shutdown_grace_s=grace,
            store=store,
            reuse_port=reuse_port,
            workers=workers,
            workers_allow_memory=workers_allow_memory,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_client_ca=tls_client_ca,
            auth_tokens_file=auth_tokens,
            auth_jwks_file=auth_jwks,
            auth_jwt_issuer=auth_jwt_issuer,
            auth_jwt_audience=auth_jwt_audience,
            auth_tenant_claim=auth_tenant_claim,
            insecure=insecure,
            mcp_lazy=mcp_lazy,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            log_format=log_format,
            trace_content=trace_content,
        )
        configure_logging(log_level, settings.log_format, worker=worker_id, pid=os.getpid())
        if settings.workers > 1:
            given = {"--host": host, "--agents": agents, "--grace": grace, "--store": store}
            given |= {"--tls-cert": tls_cert, "--tls-key": tls_key, "--tls-client-ca": tls_client_ca}
            given |= {"--auth-tokens": auth_tokens, "--auth-jwks": auth_jwks, "--auth-jwt-issuer": auth_jwt_issuer}
            given |= {"--auth-jwt-audience": auth_jwt_audience, "--auth-tenant-claim": auth_tenant_claim}
            given |= {"--metrics-port": metrics_port, "--metrics-host": metrics_host, "--log-format": log_format}
            child_args = [arg for flag, value in given.items() if value is not None for arg in (flag, str(value))]
            child_args += ["--insecure"] if insecure else []
            child_args += ["--mcp-lazy"] if mcp_lazy else []
            child_args += ["--trace-content"] if trace_content else []
            raise typer.Exit(run_workers(settings, [*child_args, "--log-level", log_level]))
        ready = tell_supervisor(ready_fd, worker_id or 0, settings.host) if ready_fd is not None else None
        if worker_id is not None and settings.metrics_port:  # one /metrics per worker: PORT, PORT + 1 ...
            settings = settings.with_overrides(metrics_port=settings.metrics_port + worker_id - 1)
        run_event_loop(run_server(settings, ready))
    except (ValueError, OSError, RedisUnavailable) as exc:
        logging.getLogger("agentstream").error("cannot start: %s", exc)
        raise typer.Exit(1) from None


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the server's main coroutine on uvloop (about 20% less CPU per streamed event here), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def register(app: typer.Typer) -> None:
    """Add `serve` to the SDK's `agentstream` command (called by agentstream.cli when the server is installed)."""
    app.command()(serve)


def main() -> None:
    """`python -m agentstream_server`: the `agentstream` command with `serve`."""
    from agentstream.cli import main as agentstream_main

    agentstream_main()
