package agentstream

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
)

// KeepaliveTime and KeepaliveTimeout are Dial's HTTP/2 keepalive defaults: while a call is open (even one on
// which nothing moves for minutes, such as a run waiting on a slow tool or an approval) the client pings the
// server every KeepaliveTime and drops a connection that does not answer within KeepaliveTimeout, so proxies
// with an idle timeout of a minute or more keep the stream and a dead peer is noticed. The server accepts pings
// every 10 s or slower (AGENTSTREAM_MIN_CLIENT_PING_INTERVAL). A later grpc.WithKeepaliveParams replaces them.
const (
	KeepaliveTime    = 30 * time.Second
	KeepaliveTimeout = 20 * time.Second
)

// TraceContext is how Dial's clients put the caller's trace context into each call's metadata: W3C
// traceparent/tracestate and baggage, read from the call's context.Context (an OpenTelemetry span started on
// it, or a context extracted from an incoming request). Nothing is added when the context carries none.
var TraceContext propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{}, propagation.Baggage{},
)

func defaultDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout}),
		grpc.WithChainUnaryInterceptor(propagateUnary),
		grpc.WithChainStreamInterceptor(propagateStream),
	}
}

func withTraceContext(ctx context.Context) context.Context {
	carrier := propagation.MapCarrier{}
	TraceContext.Inject(ctx, carrier)
	for key, value := range carrier {
		ctx = metadata.AppendToOutgoingContext(ctx, key, value)
	}
	return ctx
}

func propagateUnary(
	ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption,
) error {
	return invoker(withTraceContext(ctx), method, req, reply, cc, opts...)
}

func propagateStream(
	ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption,
) (grpc.ClientStream, error) {
	return streamer(withTraceContext(ctx), desc, cc, method, opts...)
}
