"""Builds and runs the grpc.aio server: RunnerService, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agentstream.v1 import runner_service_pb2 as rpb
from agentstream.v1 import runner_service_pb2_grpc as rpb_grpc
from service.config import Settings
from service.redis_store import RedisStore
from service.runs import RunLimits, RunManager
from service.runtime.agents import AgentCatalog, default_agents, load_agents
from service.runtime.provider import ModelProvider
from service.servicer import RunnerServicer

logger = logging.getLogger("agentstream.server")

SERVICE_NAME = rpb.DESCRIPTOR.services_by_name["RunnerService"].full_name
STREAM_FLUSH_GRACE_S = 2.0
"""After runs are drained, how long in-flight calls get to deliver their terminal messages."""


@dataclass
class RunningServer:
    """A started server: its bound port and the parts shutdown needs."""

    server: grpc.aio.Server
    port: int
    runs: RunManager
    health: health.aio.HealthServicer
    models: ModelProvider
    store: RedisStore | None = None
    watcher: asyncio.Task[None] | None = None

    async def shutdown(self, grace_s: float) -> None:
        """Graceful stop: NOT_SERVING, refuse new runs, let live runs finish for grace_s, cancel the rest."""
        logger.info("shutting down: %d live runs, grace %.1fs", self.runs.live_runs, grace_s)
        await self.health.enter_graceful_shutdown()
        self.runs.begin_drain()
        await self.runs.drain(grace_s)
        await self.server.stop(STREAM_FLUSH_GRACE_S)
        if self.watcher is not None:
            self.watcher.cancel()
        if self.store is not None:
            await self.store.close()
        await self.models.aclose()
        logger.info("stopped")


def load_catalog(settings: Settings) -> AgentCatalog:
    """The agents to serve: from the agents file when one is set, else the built-in default agent."""
    return load_agents(settings.agents_file) if settings.agents_file else default_agents()


async def start_server(settings: Settings) -> RunningServer:
    """Start a server on settings.host:settings.port (port 0 picks a free one) and return it running."""
    catalog = load_catalog(settings)
    store = None
    if settings.store != "memory":
        store = RedisStore(
            settings.store,
            lease_s=settings.lease_s,
            ttl_s=settings.completed_run_ttl_s,
            max_retained=settings.max_retained_events,
            run_timeout_s=settings.run_timeout_s,
            max_connections=settings.redis_max_connections,
            max_subscribers=settings.max_subscribers_per_run,
        )
        await store.connect()  # refuses to start, with the URL, when Redis does not answer
    models = ModelProvider(settings)
    runs = RunManager(
        catalog.agents,
        catalog.default,
        models.model_for,
        RunLimits(
            max_concurrent_runs=settings.max_concurrent_runs,
            run_timeout_s=settings.run_timeout_s,
            completed_run_ttl_s=settings.completed_run_ttl_s,
            max_unread_events=settings.max_unread_events,
            max_retained_events=settings.max_retained_events,
            max_subscribers_per_run=settings.max_subscribers_per_run,
            chunk_window_ms=settings.chunk_window_ms,
        ),
        store,
    )
    server = grpc.aio.server()
    rpb_grpc.add_RunnerServiceServicer_to_server(RunnerServicer(runs, max_input_bytes=settings.max_input_bytes), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise OSError(f"cannot listen on {settings.host}:{settings.port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    logger.info(
        "model: %s; agents: %s (default %s)",
        models.description,
        ", ".join(sorted(catalog.agents)),
        catalog.default,
    )
    watcher = asyncio.create_task(_watch_store(store, health_servicer)) if store is not None else None
    logger.info("run store: %s", "memory (this process)" if store is None else f"redis, replica {store.replica_id}")
    logger.info("listening on %s:%d", settings.host, port)
    return RunningServer(server, port, runs, health_servicer, models, store, watcher)


async def _watch_store(store: RedisStore, health_servicer: health.aio.HealthServicer) -> None:
    """Health follows the run store: NOT_SERVING while Redis is unreachable, SERVING once it is back."""
    serving = True
    while True:
        await asyncio.sleep(0.5)
        if store.healthy != serving:
            serving = store.healthy
            status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in ("", SERVICE_NAME):
                await health_servicer.set(name, status)


async def serve(settings: Settings) -> None:
    """Run a server until SIGTERM or SIGINT, then shut down gracefully."""
    running = await start_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.shutdown(settings.shutdown_grace_s)
