"""Builds and runs the grpc.aio server: RunnerService, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from agentstream_server.config import Settings
from agentstream_server.observability import metrics, tracing
from agentstream_server.runs.manager import RunLimits, RunManager
from agentstream_server.runtime.agents import AgentCatalog, default_agents, load_agents
from agentstream_server.runtime.mcp_servers import McpServers
from agentstream_server.runtime.provider import ModelProvider
from agentstream_server.runtime.tool_threads import TOOL_THREADS
from agentstream_server.store.base import RunStore
from agentstream_server.store.factory import open_store
from agentstream_server.transport.auth import Authenticator, open_auth
from agentstream_server.transport.decoding import TolerantDecoding
from agentstream_server.transport.servicer import RunnerServicer
from agentstream_server.transport.telemetry import TelemetryInterceptor
from agentstream_server.transport.tls import describe as describe_tls
from agentstream_server.transport.tls import server_credentials

logger = logging.getLogger("agentstream.server")

SERVICE_NAME = rpb.DESCRIPTOR.services_by_name["RunnerService"].full_name
STREAM_FLUSH_GRACE_S = 2.0
"""After runs are drained, how long in-flight calls get to deliver their terminal messages."""
EXIT_SLACK_S = 5.0
"""Beyond the grace and flush periods, how long shutdown may take before the process exits regardless."""


@dataclass
class RunningServer:
    """A started server: its bound port and the parts shutdown needs."""

    server: grpc.aio.Server
    port: int
    runs: RunManager
    health: health.aio.HealthServicer
    models: ModelProvider
    store: RunStore
    watcher: asyncio.Task[None]
    auth: Authenticator
    mcp: McpServers
    metrics_port: int | None = None
    """Where /metrics is served (None: metrics off)."""
    stop_metrics: Callable[[], None] = lambda: None

    async def shutdown(self, grace_s: float) -> None:
        """Graceful stop: NOT_SERVING, refuse new runs, let live runs finish for grace_s, cancel the rest."""
        logger.info("shutting down: %d live runs, grace %.1fs", self.runs.live_runs, grace_s)
        await self.health.enter_graceful_shutdown()
        self.runs.begin_drain()
        await self.runs.drain(grace_s)
        await self.server.stop(STREAM_FLUSH_GRACE_S)
        self.watcher.cancel()
        await self.mcp.aclose()  # after the runs: no MCP call is left; stdio servers' processes are stopped
        await self.store.close()
        await self.models.aclose()
        self.stop_metrics()
        logger.info("stopped")


def load_catalog(settings: Settings) -> AgentCatalog:
    """The agents to serve: from the agents file when one is set, else the built-in default agent."""
    return load_agents(settings.agents_file) if settings.agents_file else default_agents()


async def start_server(settings: Settings, *, announce: bool = True) -> RunningServer:
    """Start a server on settings.host:settings.port (port 0 picks a free one) and return it running.

    It logs `listening on HOST:PORT` (the line tooling waits for) unless `announce` is False.
    """
    catalog = load_catalog(settings)
    credentials = server_credentials(settings)  # None: plaintext; a bad TLS file stops us here, named
    auth = open_auth(settings)  # refuses to start on a bad tokens/JWKS file or an exposed, unauthenticated address
    TOOL_THREADS.max_workers = settings.tool_threads
    mcp = McpServers(catalog)
    catalog = await mcp.start(lazy=settings.mcp_lazy)  # refuses to start, naming an MCP server that does not open
    try:
        store = await open_store(settings)  # refuses to start, naming the store, when it does not answer
    except BaseException:
        await mcp.aclose()
        raise
    try:
        models = ModelProvider(settings)
        runs = RunManager(catalog.agents, catalog.default, models.model_for, RunLimits.from_settings(settings), store)
        metrics_port, stop_metrics = _serve_metrics(settings)
        observed = metrics_port is not None or tracing.tracer() is not None  # else no per-call cost at all
        telemetry = [TelemetryInterceptor(SERVICE_NAME, metrics_on=metrics_port is not None)] if observed else []
        server = grpc.aio.server(
            interceptors=[*telemetry, *auth.interceptors(SERVICE_NAME), TolerantDecoding(SERVICE_NAME)],
            options=server_options(settings),
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        rpb_grpc.add_RunnerServiceServicer_to_server(
            RunnerServicer(runs, max_input_bytes=settings.max_input_bytes, tenant_of=auth.tenant_of), server
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        try:
            address = f"{settings.host}:{settings.port}"
            port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        except RuntimeError:  # grpc's "Failed to bind": the port is taken (we never share it unless reuse_port)
            port = 0
        if port == 0:
            raise OSError(
                f"cannot listen on {settings.host}:{settings.port}: the address is in use or not available "
                "(to share a port between processes on purpose, set AGENTSTREAM_REUSE_PORT=1 on each)"
            )
        await server.start()
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        logger.info(
            "model: %s; agents: %s (default %s)",
            models.description,
            ", ".join(sorted(catalog.agents)),
            catalog.default,
        )
        watcher = asyncio.create_task(_watch_store(store, health_servicer))
        logger.info("run store: %s", store.description)
        logger.info("transport: %s", describe_tls(settings))
        if metrics_port is not None:
            logger.info("metrics: http://%s:%d/metrics", settings.metrics_host or settings.host, metrics_port)
        if announce:
            logger.info("listening on %s:%d", settings.host, port)
    except BaseException:
        await store.close()
        await mcp.aclose()
        raise
    return RunningServer(
        server, port, runs, health_servicer, models, store, watcher, auth, mcp, metrics_port, stop_metrics
    )


def _serve_metrics(settings: Settings) -> tuple[int | None, Callable[[], None]]:
    """Start /metrics when settings.metrics_port is set: (the bound port, how to stop it); (None, no-op) otherwise."""
    if settings.metrics_port is None:
        return None, lambda: None
    host = settings.metrics_host or settings.host
    try:
        http, _ = metrics.serve_metrics(host, settings.metrics_port)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {host}:{settings.metrics_port}: {exc.strerror or exc}") from None

    def stop() -> None:
        http.shutdown()
        http.server_close()

    return int(http.server_port), stop


GC_THRESHOLDS = (50_000, 20, 100)
"""The cyclic collector's thresholds (CPython's default: 700, 10, 10). Every token allocates a handful of objects,
so with the default, collections of the older generations, which walk every live object of every run, came
often enough to be the stream's p99 (1,000 streams x 10 tokens/s: p99 266 -> 89 ms, CPU -6%, RSS +3%)."""

REQUEST_ENVELOPE_BYTES = 64 * 1024
"""Room for a request's other fields (metadata is at most 16 KiB) on top of the largest accepted input."""


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """grpc channel arguments that bound what one connection or caller can take (see the README's limits)."""
    ms = 1000
    return [
        ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
        ("grpc.max_receive_message_length", settings.max_input_bytes + REQUEST_ENVELOPE_BYTES),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * ms)),
        ("grpc.keepalive_timeout_ms", 20 * ms),
        ("grpc.http2.min_ping_interval_without_data_ms", int(settings.min_client_ping_interval_s * ms)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.http2.max_pings_without_data", 0),  # keep pinging a stream that stays quiet for minutes
        ("grpc.max_connection_idle_ms", int(settings.max_connection_idle_s * ms)),
        ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * ms)),
        ("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_grace_s * ms)),
        ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
        # Calls the event loop has not picked up yet wait in gRPC core, which drops them with a bare CANCELLED
        # past 1,000 (at random) or 3,000 pending. Let them wait instead: once picked up, a call over a limit
        # gets a clear RESOURCE_EXHAUSTED (TOO_MANY_RUNS, or the concurrent-RPC bound) it can act on.
        ("grpc.server.max_pending_requests", settings.max_concurrent_rpcs * 4),
        ("grpc.server.max_pending_requests_hard_limit", settings.max_concurrent_rpcs * 8),
        # Core also cancels, with a bare CANCELLED, a call it has held unclaimed for 30 s (the default): under a
        # burst the event loop takes calls up more slowly than they come. Held longer, each one is taken up and
        # gets an answer: its run, or TOO_MANY_RUNS with a retry hint while the server is overloaded.
        ("grpc.server_max_unrequested_time_in_server", settings.call_queue_timeout_s),
    ]


async def _watch_store(store: RunStore, health_servicer: health.aio.HealthServicer) -> None:
    """Health follows the run store: NOT_SERVING while Redis is unreachable, SERVING once it is back."""
    serving = True
    while True:
        await asyncio.sleep(0.5)
        if store.healthy != serving:
            serving = store.healthy
            status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in ("", SERVICE_NAME):
                await health_servicer.set(name, status)


async def serve(settings: Settings, ready: Callable[[int], None] | None = None) -> None:
    """Run a server until SIGTERM or SIGINT, then shut down gracefully.

    With `ready`, the server does not log `listening on`: once it listens and handles the signals, it calls
    ready(port) instead (a worker tells its supervisor, which announces the whole group).

    A second SIGTERM or SIGINT during shutdown exits at once (status 128 + the signal's number); and once
    shutdown starts, the process exits within grace + STREAM_FLUSH_GRACE_S + EXIT_SLACK_S seconds (status 1)
    even if something, such as a task that ignores cancellation, would hold it up.
    """
    described = tracing.configure_from_env(content=settings.trace_content)
    logger.info("tracing: %s", described or "off (no OTEL_* exporter configured)")
    running = await start_server(settings, announce=ready is None)
    gc.freeze()  # what start-up built lives as long as the process: keep it out of every later collection
    gc.set_threshold(*GC_THRESHOLDS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            logger.warning("%s during shutdown: exiting now, without waiting for live runs", sig.name)
            os._exit(128 + sig.value)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, running.auth.reload)  # re-read the tokens/JWKS files; live runs go on
    if ready is not None:
        ready(running.port)
    await stop.wait()
    _exit_unless_done_within(settings.shutdown_grace_s + STREAM_FLUSH_GRACE_S + EXIT_SLACK_S)
    await running.shutdown(settings.shutdown_grace_s)
    tracing.shutdown()  # export the spans still batched


def _exit_unless_done_within(seconds: float) -> None:
    """Arm a daemon timer that ends the process if it is still running after `seconds`."""

    def expire() -> None:
        logger.error("shutdown did not finish within %.1fs: exiting anyway", seconds)
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
