package agentstream

import (
	"context"
	"net"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

type recordingServer struct {
	pb.UnimplementedRunnerServiceServer
	seen chan metadata.MD
}

func (s *recordingServer) GetRun(ctx context.Context, _ *pb.GetRunRequest) (*pb.Run, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.seen <- md
	return &pb.Run{RunId: "r1"}, nil
}

func (s *recordingServer) SubscribeRun(_ *pb.SubscribeRunRequest, stream grpc.ServerStreamingServer[pb.Message]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	s.seen <- md
	return stream.Send(&pb.Message{RunId: "r1", Seq: 1, Topic: TaskResponseTopic})
}

func TestEveryCallCarriesTheCallersTraceContext(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	recorder := &recordingServer{seen: make(chan metadata.MD, 4)}
	server := grpc.NewServer()
	pb.RegisterRunnerServiceServer(server, recorder)
	go func() { _ = server.Serve(listener) }()
	defer server.Stop()

	client, err := Dial(listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	traceID, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	spanID, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	caller := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), caller)
	want := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

	if _, err := client.Raw().GetRun(ctx, &pb.GetRunRequest{RunId: "r1"}); err != nil {
		t.Fatal(err)
	}
	if got := (<-recorder.seen).Get("traceparent"); len(got) != 1 || got[0] != want {
		t.Fatalf("unary call: traceparent %v, want %s", got, want)
	}
	stream, err := client.Raw().SubscribeRun(ctx, &pb.SubscribeRunRequest{RunId: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if got := (<-recorder.seen).Get("traceparent"); len(got) != 1 || got[0] != want {
		t.Fatalf("streaming call: traceparent %v, want %s", got, want)
	}
	if _, err := client.Raw().GetRun(context.Background(), &pb.GetRunRequest{RunId: "r1"}); err != nil {
		t.Fatal(err)
	}
	if got := (<-recorder.seen).Get("traceparent"); len(got) != 0 {
		t.Fatalf("a call without a trace sent traceparent %v", got)
	}
}
