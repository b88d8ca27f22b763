package agentstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/agentstream/agentstream/clients/go/agentstream"
	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

// TestThroughput streams 20,000 tokens (one event each) and reports this SDK's events/s; `make interop` prints it.
func TestThroughput(t *testing.T) {
	client, err := agentstream.Dial(target(t))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	stream, err := client.StreamingRun(ctx, "bench: tokens=20000", agentstream.RunOptions{Mode: pb.StreamingMode_STREAMING_MODE_CHUNK})
	if err != nil {
		t.Fatal(err)
	}
	events := 0
	if err := stream.Each(func(m *pb.Message) error { events++; return nil }); err != nil {
		t.Fatal(err)
	}
	if events != 20001 {
		t.Fatalf("got %d events, want 20,000 chunks and the terminal message", events)
	}
	t.Logf("go sdk: %.0f events/s", float64(events)/time.Since(start).Seconds())
}
