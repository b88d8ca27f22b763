package agentstream

import (
	"context"
	"errors"
	"net"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

type deciding struct {
	pb.UnimplementedRunnerServiceServer
	requests []*pb.ResolveInterruptRequest
	headers  []metadata.MD
}

func (d *deciding) ResolveInterrupt(ctx context.Context, req *pb.ResolveInterruptRequest) (*pb.ResolveInterruptResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	d.requests, d.headers = append(d.requests, req), append(d.headers, md)
	if len(d.requests) > 1 {
		st, _ := status.New(codes.FailedPrecondition, "interrupt int-1 of run r1 was already resolved").
			WithDetails(&errdetails.ErrorInfo{Reason: "INTERRUPT_ALREADY_RESOLVED", Domain: ErrorDomain})
		return nil, st.Err()
	}
	return &pb.ResolveInterruptResponse{Status: pb.TaskStatus_TASK_STATUS_INPUT_REQUIRED}, nil
}

// ResolveInterrupt sends its fields with the per-call metadata of every call (token, trace context), returns
// the run's status, and turns the server's error into the typed one.
func TestResolveInterruptSendsTheDecisionWithTheCallMetadata(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server, recorder := grpc.NewServer(), &deciding{}
	pb.RegisterRunnerServiceServer(server, recorder)
	go func() { _ = server.Serve(listener) }()
	defer server.Stop()
	client, err := Dial(listener.Addr().String(), WithToken("secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	traceID, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	spanID, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled}))

	got, err := client.ResolveInterrupt(ctx, "r1", "int-1", false, "not now")
	if err != nil || got != pb.TaskStatus_TASK_STATUS_INPUT_REQUIRED {
		t.Fatalf("ResolveInterrupt: %v, %v", got, err)
	}
	want := &pb.ResolveInterruptRequest{RunId: "r1", InterruptId: "int-1", Approve: false, Message: "not now"}
	if !proto.Equal(recorder.requests[0], want) {
		t.Fatalf("request %v, want %v", recorder.requests[0], want)
	}
	md := recorder.headers[0]
	if md.Get("authorization")[0] != "Bearer secret" || md.Get("traceparent")[0] != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
		t.Fatalf("call metadata %v", md)
	}
	_, err = client.ResolveInterrupt(ctx, "r1", "int-1", true, "")
	var typed *Error
	if !errors.Is(err, ErrInterruptAlreadyResolved) || !errors.As(err, &typed) || typed.Code != codes.FailedPrecondition {
		t.Fatalf("second decision: %v, want ErrInterruptAlreadyResolved", err)
	}
}
