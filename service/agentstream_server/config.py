"""Server settings, read once from the environment (and command-line overrides); no grpc, no openai."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_MAX_UNREAD_EVENTS = 10_000
DEFAULT_MAX_RETAINED_EVENTS = 100_000
MIN_REDIS_CONNECTIONS = 4


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server can be configured with. Environment variable names are in ENV_VARS."""

    host: str = "127.0.0.1"
    port: int = 50051
    agents_file: Path | None = None
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    model: str = DEFAULT_MODEL
    max_concurrent_runs: int = 256
    max_input_bytes: int = 1024 * 1024
    run_timeout_s: float = 600.0
    llm_timeout_s: float = 60.0
    llm_max_retries: int = 2
    llm_turn_timeout_s: float = 120.0
    llm_max_tokens: int | None = 4096
    shutdown_grace_s: float = 10.0
    completed_run_ttl_s: float = 300.0
    max_unread_events: int = DEFAULT_MAX_UNREAD_EVENTS
    max_retained_events: int = DEFAULT_MAX_RETAINED_EVENTS
    max_subscribers_per_run: int = 64
    store: str = "memory"
    lease_s: float = 10.0
    redis_max_connections: int = 64
    chunk_window_ms: int = 0
    max_agent_depth: int = 3
    max_handoffs: int = 10
    demo_token_delay_s: float = 0.02
    max_finished_runs: int = 10_000
    max_finished_bytes: int = 256 * 1024 * 1024
    max_runs_per_peer: int = 64
    max_runs_per_tenant: int = 0
    max_run_starts_per_minute: int = 0
    max_loop_lag_ms: float = 250.0  # refuse new runs while the event loop runs this far behind (runs/load.py)
    max_streams_per_connection: int = 128
    max_concurrent_rpcs: int = 4096
    call_queue_timeout_s: int = 600  # how long gRPC core holds a call the server has not taken up yet
    keepalive_time_s: float = 60.0
    min_client_ping_interval_s: float = 10.0
    max_connection_idle_s: float = 300.0
    max_connection_age_s: float = 3600.0
    max_connection_age_grace_s: float = 900.0
    reuse_port: bool = False
    tool_threads: int = 32
    workers: int = 1
    workers_allow_memory: bool = False
    tls_cert: Path | None = None  # with tls_key: serve TLS (transport/tls.py checks the files at start)
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # also require client certificates issued by this CA (mTLS)
    auth_tokens_file: Path | None = None
    auth_jwks_file: Path | None = None
    auth_jwt_issuer: str | None = None
    auth_jwt_audience: str | None = None
    auth_tenant_claim: str = "tenant"
    insecure: bool = False
    mcp_lazy: bool = False  # open each MCP server on first use instead of at start-up
    session_max_turns: int = 100
    session_max_chars: int = 200_000
    session_idle_ttl_s: float = 3600.0
    session_max_count: int = 10_000
    metrics_port: int | None = None  # serve Prometheus /metrics on this port (0 picks one); None: no metrics
    metrics_host: str | None = None  # the interface /metrics listens on; None: the same as host
    log_format: str = "text"  # text (for a terminal) or json (one object per line)
    trace_content: bool = False  # record prompt, completion and tool text on spans (tracing is set by OTEL_*)

    def __post_init__(self) -> None:
        if self.log_format not in ("text", "json"):
            raise ValueError(f"AGENTSTREAM_LOG_FORMAT must be 'text' or 'json', not {self.log_format!r}")
        if self.workers < 1:
            raise ValueError(f"AGENTSTREAM_WORKERS ({self.workers}) must be at least 1")
        if self.workers > 1 and self.store == "memory" and not self.workers_allow_memory:
            raise ValueError(
                f"{self.workers} workers with the memory store: each worker would keep its own runs, so "
                "SubscribeRun, GetRun and CancelRun reaching another worker would answer NOT_FOUND. Use a "
                "redis:// store (AGENTSTREAM_STORE or --store), or set AGENTSTREAM_WORKERS_ALLOW_MEMORY=1 "
                "(--workers-allow-memory) if your clients only use StreamingRun"
            )
        if self.store != "memory" and not self.store.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"AGENTSTREAM_STORE must be 'memory' or a redis:// URL, not {self.store!r}")
        if not 0 < self.max_unread_events < self.max_retained_events:
            raise ValueError(
                f"AGENTSTREAM_MAX_UNREAD ({self.max_unread_events}) must be below "
                f"AGENTSTREAM_MAX_RETAINED ({self.max_retained_events})"
            )
        if self.redis_max_connections < MIN_REDIS_CONNECTIONS:
            raise ValueError(
                f"AGENTSTREAM_REDIS_MAX_CONNECTIONS ({self.redis_max_connections}) must be at least "
                f"{MIN_REDIS_CONNECTIONS}: two are held by each replica's blocking stream readers"
            )

    @property
    def auth_configured(self) -> bool:
        """True when callers must present a token (a tokens file, a JWKS file, or both)."""
        return self.auth_tokens_file is not None or self.auth_jwks_file is not None

    @property
    def offline(self) -> bool:
        """True when no LLM endpoint is configured: the embedded demo model answers."""
        return not self.openai_base_url and not self.openai_api_key

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given non-None fields replaced (command-line flags win over the environment)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from the environment; a malformed value raises ValueError naming the variable.

        Non-None `overrides` (command-line flags) replace environment values before the settings are checked
        together: `AGENTSTREAM_WORKERS=4` in the environment and `--store redis://...` on the command line
        make valid settings, though the environment alone (memory store) would not.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        known = {f.name for f in fields(cls)}
        for var, (name, parse) in ENV_VARS.items():
            assert name in known
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                raise ValueError(f"environment variable {var}={raw!r} is invalid: {exc}") from None
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or more")
    return value


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number of seconds")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError("must be zero or more seconds")
    return value


ENV_VARS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "AGENTSTREAM_HOST": ("host", str),
    "AGENTSTREAM_PORT": ("port", _non_negative_int),
    "AGENTSTREAM_AGENTS": ("agents_file", Path),
    "OPENAI_BASE_URL": ("openai_base_url", str),
    "OPENAI_API_KEY": ("openai_api_key", str),
    "AGENTSTREAM_MODEL": ("model", str),
    "AGENTSTREAM_MAX_RUNS": ("max_concurrent_runs", _positive_int),
    "AGENTSTREAM_MAX_INPUT_BYTES": ("max_input_bytes", _positive_int),
    "AGENTSTREAM_RUN_TIMEOUT": ("run_timeout_s", _positive_float),
    "AGENTSTREAM_LLM_TIMEOUT": ("llm_timeout_s", _positive_float),
    "AGENTSTREAM_LLM_MAX_RETRIES": ("llm_max_retries", _non_negative_int),
    "AGENTSTREAM_LLM_TURN_TIMEOUT": ("llm_turn_timeout_s", _positive_float),
    "AGENTSTREAM_LLM_MAX_TOKENS": ("llm_max_tokens", _non_negative_int),
    "AGENTSTREAM_SHUTDOWN_GRACE": ("shutdown_grace_s", _non_negative_float),
    "AGENTSTREAM_COMPLETED_RUN_TTL": ("completed_run_ttl_s", _non_negative_float),
    "AGENTSTREAM_MAX_UNREAD": ("max_unread_events", _positive_int),
    "AGENTSTREAM_MAX_RETAINED": ("max_retained_events", _positive_int),
    "AGENTSTREAM_MAX_SUBSCRIBERS": ("max_subscribers_per_run", _positive_int),
    "AGENTSTREAM_STORE": ("store", str),
    "AGENTSTREAM_LEASE": ("lease_s", _positive_float),
    "AGENTSTREAM_REDIS_MAX_CONNECTIONS": ("redis_max_connections", _positive_int),
    "AGENTSTREAM_CHUNK_WINDOW_MS": ("chunk_window_ms", _non_negative_int),
    "AGENTSTREAM_MAX_AGENT_DEPTH": ("max_agent_depth", _positive_int),
    "AGENTSTREAM_MAX_HANDOFFS": ("max_handoffs", _non_negative_int),
    "AGENTSTREAM_DEMO_TOKEN_DELAY": ("demo_token_delay_s", _non_negative_float),
    "AGENTSTREAM_MAX_FINISHED_RUNS": ("max_finished_runs", _non_negative_int),
    "AGENTSTREAM_MAX_FINISHED_BYTES": ("max_finished_bytes", _non_negative_int),
    "AGENTSTREAM_MAX_RUNS_PER_PEER": ("max_runs_per_peer", _non_negative_int),
    "AGENTSTREAM_MAX_RUNS_PER_TENANT": ("max_runs_per_tenant", _non_negative_int),
    "AGENTSTREAM_MAX_RUN_STARTS_PER_MINUTE": ("max_run_starts_per_minute", _non_negative_int),
    "AGENTSTREAM_MAX_LOOP_LAG_MS": ("max_loop_lag_ms", _non_negative_float),
    "AGENTSTREAM_MAX_STREAMS_PER_CONNECTION": ("max_streams_per_connection", _positive_int),
    "AGENTSTREAM_MAX_CONCURRENT_RPCS": ("max_concurrent_rpcs", _positive_int),
    "AGENTSTREAM_CALL_QUEUE_TIMEOUT": ("call_queue_timeout_s", _positive_int),
    "AGENTSTREAM_KEEPALIVE_TIME": ("keepalive_time_s", _positive_float),
    "AGENTSTREAM_MIN_CLIENT_PING_INTERVAL": ("min_client_ping_interval_s", _non_negative_float),
    "AGENTSTREAM_MAX_CONNECTION_IDLE": ("max_connection_idle_s", _positive_float),
    "AGENTSTREAM_MAX_CONNECTION_AGE": ("max_connection_age_s", _positive_float),
    "AGENTSTREAM_MAX_CONNECTION_AGE_GRACE": ("max_connection_age_grace_s", _non_negative_float),
    "AGENTSTREAM_REUSE_PORT": ("reuse_port", _boolean),
    "AGENTSTREAM_TOOL_THREADS": ("tool_threads", _positive_int),
    "AGENTSTREAM_WORKERS": ("workers", _positive_int),
    "AGENTSTREAM_WORKERS_ALLOW_MEMORY": ("workers_allow_memory", _boolean),
    "AGENTSTREAM_TLS_CERT": ("tls_cert", Path),
    "AGENTSTREAM_TLS_KEY": ("tls_key", Path),
    "AGENTSTREAM_TLS_CLIENT_CA": ("tls_client_ca", Path),
    "AGENTSTREAM_AUTH_TOKENS": ("auth_tokens_file", Path),
    "AGENTSTREAM_AUTH_JWKS": ("auth_jwks_file", Path),
    "AGENTSTREAM_AUTH_JWT_ISSUER": ("auth_jwt_issuer", str),
    "AGENTSTREAM_AUTH_JWT_AUDIENCE": ("auth_jwt_audience", str),
    "AGENTSTREAM_AUTH_TENANT_CLAIM": ("auth_tenant_claim", str),
    "AGENTSTREAM_INSECURE": ("insecure", _boolean),
    "AGENTSTREAM_MCP_LAZY": ("mcp_lazy", _boolean),
    "AGENTSTREAM_SESSION_MAX_TURNS": ("session_max_turns", _positive_int),
    "AGENTSTREAM_SESSION_MAX_CHARS": ("session_max_chars", _positive_int),
    "AGENTSTREAM_SESSION_TTL": ("session_idle_ttl_s", _positive_float),
    "AGENTSTREAM_SESSION_MAX_COUNT": ("session_max_count", _positive_int),
    "AGENTSTREAM_METRICS_PORT": ("metrics_port", _non_negative_int),
    "AGENTSTREAM_METRICS_HOST": ("metrics_host", str),
    "AGENTSTREAM_LOG_FORMAT": ("log_format", str),
    "AGENTSTREAM_TRACE_CONTENT": ("trace_content", _boolean),
}
"""Environment variable -> (settings field, parser)."""
