"""What every call and channel of the SDK carries: the caller's trace context, and HTTP/2 keepalive.

Trace context: the current OpenTelemetry context (W3C ``traceparent``/``tracestate`` and baggage, through the
globally configured propagator) is added to each call's metadata, so the server's spans join the caller's
trace. Without an active span nothing is added.

Keepalive: the client pings the server every 30 s while a call is open (even one on which nothing moves for
minutes, such as a run waiting on a slow tool or an approval), and drops a connection that does not answer
within 20 s, so proxies and load balancers with an idle timeout of a minute or more keep the stream open and a
dead peer is noticed. The server accepts pings every 10 s or slower (``AGENTSTREAM_MIN_CLIENT_PING_INTERVAL``);
pass ``channel_options`` to change any of these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import propagate

KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 20_000
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 0),  # no pings on a connection without calls
    ("grpc.http2.max_pings_without_data", 0),  # keep pinging however long a stream stays quiet
)


def with_keepalive(options: Sequence[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    """The caller's channel options plus the keepalive defaults it does not set itself."""
    given = list(options or ())
    names = {name for name, _ in given}
    return given + [option for option in KEEPALIVE_OPTIONS if option[0] not in names]


def traced(metadata: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """A call's metadata with the current trace context added (unchanged when there is none)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return metadata
    return (*((key, value) for key, value in metadata if key not in carrier), *carrier.items())
