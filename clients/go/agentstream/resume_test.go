package agentstream_test

import (
	"context"
	"errors"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentstream/agentstream/clients/go/agentstream"
	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

// fakeRunner is an in-process RunnerService whose SubscribeRun serves seq after_seq+1..total and fails
// as scripted per call; it records every request.
type fakeRunner struct {
	pb.UnimplementedRunnerServiceServer
	total     uint64
	failAfter func(call int) (uint64, error) // stop after this seq with this error; nil error: no failure

	mu        sync.Mutex
	afterSeqs []uint64
	started   []*pb.StreamingRunRequest
}

func (f *fakeRunner) SubscribeRun(req *pb.SubscribeRunRequest, stream grpc.ServerStreamingServer[pb.Message]) error {
	f.mu.Lock()
	f.afterSeqs = append(f.afterSeqs, req.GetAfterSeq())
	call := len(f.afterSeqs)
	f.mu.Unlock()
	stopAt, failure := f.failAfter(call)
	for seq := req.GetAfterSeq() + 1; seq <= f.total; seq++ {
		if failure != nil && seq > stopAt {
			break
		}
		msg := &pb.Message{RunId: req.GetRunId(), Seq: seq, Category: "chunk"}
		if seq == f.total {
			msg.Category, msg.Topic = "task", agentstream.TaskResponseTopic
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return failure
}

func (f *fakeRunner) StreamingRun(req *pb.StreamingRunRequest, stream grpc.ServerStreamingServer[pb.Message]) error {
	f.mu.Lock()
	f.started = append(f.started, req)
	f.mu.Unlock()
	return stream.Send(&pb.Message{Seq: 1, Category: "task", Topic: agentstream.TaskResponseTopic})
}

func serveFake(t *testing.T, f *fakeRunner) *agentstream.Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	pb.RegisterRunnerServiceServer(server, f)
	go server.Serve(lis)
	t.Cleanup(server.Stop)
	client, err := agentstream.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func serverError(code codes.Code, reason string) error {
	st, err := status.New(code, "it went wrong").WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: agentstream.ErrorDomain})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func seqsOf(stream *agentstream.Stream) ([]uint64, error) {
	var seqs []uint64
	err := stream.Each(func(m *pb.Message) error { seqs = append(seqs, m.GetSeq()); return nil })
	return seqs, err
}

var fast = agentstream.WithResume(agentstream.ResumePolicy{InitialBackoff: time.Millisecond})

func TestResumeResubscribesFromTheLastSeqYielded(t *testing.T) {
	cuts := map[int]uint64{1: 3, 2: 3, 3: 7} // the second call fails before sending anything
	f := &fakeRunner{total: 10, failAfter: func(call int) (uint64, error) {
		if at, ok := cuts[call]; ok {
			return at, status.Error(codes.Unavailable, "connection reset")
		}
		return 0, nil
	}}
	client := serveFake(t, f)
	stream, err := client.SubscribeRun(context.Background(), "r", 0, pb.StreamingMode_STREAMING_MODE_ALL, fast)
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := seqsOf(stream)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}; !reflect.DeepEqual(seqs, want) {
		t.Fatalf("seqs %v, want %v", seqs, want)
	}
	if want := []uint64{0, 3, 3, 7}; !reflect.DeepEqual(f.afterSeqs, want) {
		t.Fatalf("after_seqs %v, want %v", f.afterSeqs, want)
	}
}

func TestResumeReturnsServerErrorsAndGivesUp(t *testing.T) {
	cases := []struct {
		name      string
		failure   error
		resume    []agentstream.SubscribeOption
		wantCalls int
		check     func(error) bool
	}{
		{"without resume", status.Error(codes.Unavailable, "reset"), nil, 1, agentstream.IsResumable},
		{"RUN_NOT_FOUND", serverError(codes.NotFound, "RUN_NOT_FOUND"), []agentstream.SubscribeOption{fast}, 1,
			func(err error) bool { return errors.Is(err, agentstream.ErrRunNotFound) }},
		{"SEQ_OUT_OF_RANGE", serverError(codes.OutOfRange, "SEQ_OUT_OF_RANGE"), []agentstream.SubscribeOption{fast}, 1,
			func(err error) bool { return errors.Is(err, agentstream.ErrSeqOutOfRange) }},
		{"a server reason on UNAVAILABLE", serverError(codes.Unavailable, "SERVER_DRAINING"), []agentstream.SubscribeOption{fast}, 1,
			func(err error) bool { return errors.Is(err, agentstream.ErrServerDraining) }},
		{"a detail-less INVALID_ARGUMENT", status.Error(codes.InvalidArgument, "no"), []agentstream.SubscribeOption{fast}, 1,
			func(err error) bool { return !agentstream.IsResumable(err) }},
		{"three attempts", status.Error(codes.Unavailable, "down"),
			[]agentstream.SubscribeOption{agentstream.WithResume(agentstream.ResumePolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond})}, 4,
			agentstream.IsResumable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeRunner{total: 10, failAfter: func(int) (uint64, error) { return 2, c.failure }}
			client := serveFake(t, f)
			stream, err := client.SubscribeRun(context.Background(), "r", 0, pb.StreamingMode_STREAMING_MODE_ALL, c.resume...)
			if err == nil {
				_, err = seqsOf(stream)
			}
			var typed *agentstream.Error
			if !errors.As(err, &typed) || !c.check(err) {
				t.Fatalf("error %v", err)
			}
			if len(f.afterSeqs) != c.wantCalls {
				t.Fatalf("%d calls, want %d", len(f.afterSeqs), c.wantCalls)
			}
		})
	}
}

func TestResumeStopsWhenTheContextEnds(t *testing.T) {
	f := &fakeRunner{total: 10, failAfter: func(int) (uint64, error) { return 0, status.Error(codes.Unavailable, "down") }}
	client := serveFake(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	stream, err := client.SubscribeRun(ctx, "r", 0, pb.StreamingMode_STREAMING_MODE_ALL,
		agentstream.WithResume(agentstream.ResumePolicy{InitialBackoff: 10 * time.Second}))
	if err == nil {
		_, err = seqsOf(stream)
	}
	if !agentstream.IsResumable(err) || time.Since(start) > 5*time.Second || len(f.afterSeqs) != 1 {
		t.Fatalf("err %v after %v and %d calls", err, time.Since(start), len(f.afterSeqs))
	}
}

func TestRunOptionsOnDisconnectIsSent(t *testing.T) {
	f := &fakeRunner{}
	client := serveFake(t, f)
	for _, want := range []pb.OnDisconnect{pb.OnDisconnect_ON_DISCONNECT_UNSPECIFIED, pb.OnDisconnect_ON_DISCONNECT_CONTINUE} {
		stream, err := client.StreamingRun(context.Background(), "hi", agentstream.RunOptions{OnDisconnect: want})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := seqsOf(stream); err != nil {
			t.Fatal(err)
		}
		if got := f.started[len(f.started)-1].GetOnDisconnect(); got != want {
			t.Fatalf("on_disconnect %v, want %v", got, want)
		}
	}
}
