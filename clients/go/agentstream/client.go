// Package agentstream is the Go SDK for the agentstream gRPC service: stream LLM agent runs.
package agentstream

import (
	"context"
	"iter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

// TaskResponseTopic is the topic of the terminal message, the last message of every stream.
const TaskResponseTopic = "__task_response"

// Client is a connection to an agentstream server.
type Client struct {
	conn *grpc.ClientConn
	stub pb.RunnerServiceClient
}

// Dial connects to an agentstream server at target (host:port) over plaintext HTTP/2.
func Dial(target string, opts ...grpc.DialOption) (*Client, error) {
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, stub: pb.NewRunnerServiceClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Raw returns the generated stub, for RPCs this SDK does not wrap.
func (c *Client) Raw() pb.RunnerServiceClient { return c.stub }

// RunOptions are the optional fields of a run request.
type RunOptions struct {
	Agent         string            // empty: the server's default agent
	Mode          pb.StreamingMode  // zero: CORE
	SessionID     string            // echoed on every message
	RunID         string            // empty: the server makes one
	Metadata      map[string]string // echoed in the first message's headers
	Timeout       time.Duration     // the run's server-side time limit; zero: the server's
	ChunkWindowMs *uint32           // chunk coalescing window; nil: the server's default
}

// Stream is a streaming run; iterate it with All or Each. Cancelling the context cancels the run.
type Stream struct {
	call grpc.ServerStreamingClient[pb.Message]
}

// StreamingRun starts a run of an agent on input and streams its messages.
func (c *Client) StreamingRun(ctx context.Context, input string, opts RunOptions) (*Stream, error) {
	req := &pb.StreamingRunRequest{
		Input:         input,
		Agent:         opts.Agent,
		StreamingMode: opts.Mode,
		SessionId:     opts.SessionID,
		RunId:         opts.RunID,
		Metadata:      opts.Metadata,
		ChunkWindowMs: opts.ChunkWindowMs,
	}
	if opts.Timeout > 0 {
		req.Timeout = durationpb.New(opts.Timeout)
	}
	call, err := c.stub.StreamingRun(ctx, req)
	if err != nil {
		return nil, FromStatus(err)
	}
	return &Stream{call: call}, nil
}

// All yields every message, then stops after the terminal one; a failed call yields one typed error.
func (s *Stream) All() iter.Seq2[*pb.Message, error] {
	return func(yield func(*pb.Message, error) bool) {
		for {
			msg, err := s.call.Recv()
			if err != nil {
				if !isEOF(err) {
					yield(nil, FromStatus(err))
				}
				return
			}
			if !yield(msg, nil) || msg.GetTopic() == TaskResponseTopic {
				return
			}
		}
	}
}

// Each calls fn for every message until the terminal one, fn's first error, or the call's typed error.
func (s *Stream) Each(fn func(*pb.Message) error) error {
	for msg, err := range s.All() {
		if err != nil {
			return err
		}
		if err := fn(msg); err != nil {
			return err
		}
	}
	return nil
}

// StartRun starts a run without streaming it and returns its id (follow it with SubscribeRun).
func (c *Client) StartRun(ctx context.Context, input string, opts RunOptions) (string, error) {
	req := &pb.StartRunRequest{
		Input:         input,
		Agent:         opts.Agent,
		SessionId:     opts.SessionID,
		RunId:         opts.RunID,
		Metadata:      opts.Metadata,
		ChunkWindowMs: opts.ChunkWindowMs,
	}
	if opts.Timeout > 0 {
		req.Timeout = durationpb.New(opts.Timeout)
	}
	resp, err := c.stub.StartRun(ctx, req)
	if err != nil {
		return "", FromStatus(err)
	}
	return resp.GetRunId(), nil
}

// SubscribeRun follows a run from afterSeq: every retained event after it, then live ones, then the
// terminal message. Resume after a disconnect by subscribing again from the last seq you processed.
func (c *Client) SubscribeRun(ctx context.Context, runID string, afterSeq uint64, mode pb.StreamingMode) (*Stream, error) {
	call, err := c.stub.SubscribeRun(ctx, &pb.SubscribeRunRequest{RunId: runID, AfterSeq: afterSeq, StreamingMode: mode})
	if err != nil {
		return nil, FromStatus(err)
	}
	return &Stream{call: call}, nil
}

// GetRun describes a run.
func (c *Client) GetRun(ctx context.Context, runID string) (*pb.Run, error) {
	run, err := c.stub.GetRun(ctx, &pb.GetRunRequest{RunId: runID})
	if err != nil {
		return nil, FromStatus(err)
	}
	return run, nil
}

// CancelRun cancels a run; every subscriber receives its terminal message with status CANCELLED.
func (c *Client) CancelRun(ctx context.Context, runID, reason string) (*pb.CancelRunResponse, error) {
	resp, err := c.stub.CancelRun(ctx, &pb.CancelRunRequest{RunId: runID, Reason: reason})
	if err != nil {
		return nil, FromStatus(err)
	}
	return resp, nil
}
