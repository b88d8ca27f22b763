/**
 * What every call and connection of the SDK carries: the caller's trace context, and HTTP/2 keepalive.
 *
 * Trace context: W3C `traceparent`/`tracestate` and baggage of the active OpenTelemetry context (a span the
 * caller started, with an SDK such as `@opentelemetry/sdk-node` registered) go out as headers of each call,
 * so the server's spans join the caller's trace. Nothing is added when no span is active.
 *
 * Keepalive (the default transport from `baseUrl`): while a call is open, even one on which nothing moves for
 * minutes (a run waiting on a slow tool or an approval), the client pings every 30 s and drops a connection
 * that does not answer within 20 s, so proxies with an idle timeout of a minute or more keep the stream and a
 * dead peer is noticed. The server accepts pings every 10 s or slower (AGENTSTREAM_MIN_CLIENT_PING_INTERVAL).
 * Pass your own `transport` (`createGrpcTransport({ pingIntervalMs, ... })`) to change them.
 */
import { context, defaultTextMapSetter } from "@opentelemetry/api";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";

/** HTTP/2 keepalive of the default transport (connect-node's Http2SessionOptions). */
export const KEEPALIVE = { pingIntervalMs: 30_000, pingTimeoutMs: 20_000 } as const;

const propagator = new CompositePropagator({
  propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
});

/** The active trace context as headers (empty without an active span). */
export function traceHeaders(): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagator.inject(context.active(), carrier, defaultTextMapSetter);
  return carrier;
}
