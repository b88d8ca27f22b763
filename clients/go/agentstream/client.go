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

// Dial connects to an agentstream server at target (host:port) over plaintext HTTP/2, or over TLS with
// WithTLS among opts (a later grpc.WithTransportCredentials replaces the plaintext default too). Every call
// carries the trace context of its ctx (see TraceContext), and the connection keeps quiet streams alive with
// keepalive pings (KeepaliveTime, KeepaliveTimeout):
//
//	config, err := agentstream.TLSConfig("ca.pem", "client.pem", "client.key") // "", "" without mTLS
//	client, err := agentstream.Dial("agents.example.com:443", agentstream.WithTLS(config))
func Dial(target string, opts ...grpc.DialOption) (*Client, error) {
	defaults := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, defaultDialOptions()...)
	opts = append(defaults, opts...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, stub: pb.NewRunnerServiceClient(conn)}, nil
}

// WithToken sends "authorization: Bearer <token>" on every call of the client (pass it to Dial). It is
// allowed over plaintext, as Dial's default transport is; add TLS credentials to keep the token private.
func WithToken(token string) grpc.DialOption { return grpc.WithPerRPCCredentials(bearerToken(token)) }

type bearerToken string

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return false }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Raw returns the generated stub, for RPCs this SDK does not wrap.
func (c *Client) Raw() pb.RunnerServiceClient { return c.stub }

// RunOptions are the optional fields of a run request.
type RunOptions struct {
	Agent         string            // empty: the server's default agent
	Mode          pb.StreamingMode  // zero: CORE
	SessionID     string            // runs sharing it continue one conversation (one live run at a time); echoed on every message
	RunID         string            // empty: the server makes one
	Metadata      map[string]string // echoed in the first message's headers
	Timeout       time.Duration     // the run's server-side time limit; zero: the server's
	ChunkWindowMs *uint32           // chunk coalescing window; nil: the server's default
	// OnDisconnect says what happens to a StreamingRun's run when its call ends early (context
	// cancelled, connection lost): zero or ON_DISCONNECT_CANCEL cancels it, ON_DISCONNECT_CONTINUE lets it
	// go on (follow it with SubscribeRun). StartRun ignores it: such a run never depends on a caller.
	OnDisconnect pb.OnDisconnect
	// ExcludeReasoning leaves a reasoning model's reasoning text out of this stream (the run keeps it).
	ExcludeReasoning bool
}

// Stream is a streaming run; iterate it with All or Each. Cancelling the context cancels the run.
type Stream struct {
	call grpc.ServerStreamingClient[pb.Message]

	// Set by SubscribeRun with WithResume: reopen subscribes again after position.
	ctx      context.Context
	reopen   func(afterSeq uint64) (grpc.ServerStreamingClient[pb.Message], error)
	policy   ResumePolicy
	position uint64 // the seq of the last message yielded
	failures int    // consecutive failed attempts
}

// StreamingRun starts a run of an agent on input and streams its messages.
func (c *Client) StreamingRun(ctx context.Context, input string, opts RunOptions) (*Stream, error) {
	req := &pb.StreamingRunRequest{
		Input:            input,
		Agent:            opts.Agent,
		StreamingMode:    opts.Mode,
		SessionId:        opts.SessionID,
		RunId:            opts.RunID,
		Metadata:         opts.Metadata,
		ChunkWindowMs:    opts.ChunkWindowMs,
		OnDisconnect:     opts.OnDisconnect,
		ExcludeReasoning: opts.ExcludeReasoning,
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
// A stream from SubscribeRun with WithResume re-subscribes after transport errors (see ResumePolicy).
func (s *Stream) All() iter.Seq2[*pb.Message, error] {
	return func(yield func(*pb.Message, error) bool) {
		for {
			msg, err := s.call.Recv()
			if err != nil {
				if isEOF(err) {
					return
				}
				if err := s.resubscribe(err); err != nil {
					yield(nil, err)
					return
				}
				continue
			}
			s.failures = 0
			s.position = msg.GetSeq()
			if !yield(msg, nil) || msg.GetTopic() == TaskResponseTopic {
				return
			}
		}
	}
}

// resubscribe opens a new call after position once err ended the last one, when the stream resumes and
// err is resumable, pausing before each attempt; it returns the typed error when it gives up.
func (s *Stream) resubscribe(err error) error {
	for {
		if s.reopen == nil || !IsResumable(err) || s.ctx.Err() != nil || s.failures >= s.policy.maxAttempts() {
			return FromStatus(err)
		}
		pause := time.NewTimer(s.policy.backoff(s.failures))
		select {
		case <-s.ctx.Done():
			pause.Stop()
			return FromStatus(err)
		case <-pause.C:
		}
		s.failures++
		call, openErr := s.reopen(s.position)
		if openErr == nil {
			s.call = call
			return nil
		}
		err = openErr
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

// ResumePolicy says how a resuming subscription re-subscribes after a transport error: after a pause
// that starts at InitialBackoff and doubles up to MaxBackoff, at most MaxAttempts times in a row (a
// message received resets the count). Zero fields take the defaults: 5 attempts, 100 ms, 2 s.
type ResumePolicy struct {
	MaxAttempts    int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
}

func (p ResumePolicy) maxAttempts() int {
	if p.MaxAttempts <= 0 {
		return 5
	}
	return p.MaxAttempts
}

func (p ResumePolicy) backoff(failures int) time.Duration {
	pause, limit := p.InitialBackoff, p.MaxBackoff
	if pause <= 0 {
		pause = 100 * time.Millisecond
	}
	if limit <= 0 {
		limit = 2 * time.Second
	}
	for i := 0; i < failures && pause < limit; i++ {
		pause *= 2
	}
	return min(pause, limit)
}

// SubscribeOption configures SubscribeRun.
type SubscribeOption func(*subscribeConfig)

type subscribeConfig struct {
	resume           bool
	policy           ResumePolicy
	excludeReasoning bool
}

// WithoutReasoning leaves a reasoning model's reasoning text out of the subscription's stream.
func WithoutReasoning() SubscribeOption {
	return func(c *subscribeConfig) { c.excludeReasoning = true }
}

// WithResume makes SubscribeRun resume by itself, like the Python SDK's subscribe_run(resume=True): after
// a transport error (IsResumable: connection lost, server restarted) it subscribes again from the last
// seq it yielded, so the iteration sees no duplicate and no gap. Errors the server reports
// (ErrRunNotFound, ErrSeqOutOfRange, ...) and the context's end are returned at once.
func WithResume(policy ResumePolicy) SubscribeOption {
	return func(c *subscribeConfig) { c.resume, c.policy = true, policy }
}

// SubscribeRun follows a run from afterSeq: every retained event after it, then live ones, then the
// terminal message. Resume after a disconnect by subscribing again from the last seq you processed, or
// pass WithResume to have the stream do it.
func (c *Client) SubscribeRun(ctx context.Context, runID string, afterSeq uint64, mode pb.StreamingMode, opts ...SubscribeOption) (*Stream, error) {
	var config subscribeConfig
	for _, opt := range opts {
		opt(&config)
	}
	open := func(after uint64) (grpc.ServerStreamingClient[pb.Message], error) {
		return c.stub.SubscribeRun(ctx, &pb.SubscribeRunRequest{
			RunId: runID, AfterSeq: after, StreamingMode: mode, ExcludeReasoning: config.excludeReasoning,
		})
	}
	s := &Stream{ctx: ctx, policy: config.policy, position: afterSeq}
	if config.resume {
		s.reopen = open
	}
	call, err := open(afterSeq)
	if err != nil {
		if err := s.resubscribe(err); err != nil {
			return nil, err
		}
		return s, nil
	}
	s.call = call
	return s, nil
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

// GetSession describes a conversation: its turns (oldest first, within the server's bounds), the runs that
// made them, its times and its live run, if any. An unknown session is a *Error with reason SESSION_NOT_FOUND.
func (c *Client) GetSession(ctx context.Context, sessionID string) (*pb.Session, error) {
	session, err := c.stub.GetSession(ctx, &pb.GetSessionRequest{SessionId: sessionID})
	if err != nil {
		return nil, FromStatus(err)
	}
	return session, nil
}

// DeleteSession forgets a conversation's history and returns how many turns it held. A session with a live
// run is a *Error with reason SESSION_BUSY (Metadata["run_id"] names the run); an unknown one SESSION_NOT_FOUND.
func (c *Client) DeleteSession(ctx context.Context, sessionID string) (uint32, error) {
	resp, err := c.stub.DeleteSession(ctx, &pb.DeleteSessionRequest{SessionId: sessionID})
	if err != nil {
		return 0, FromStatus(err)
	}
	return resp.GetDeletedTurns(), nil
}

// ResolveInterrupt answers a run waiting for a person (a message with topic "interrupt", or GetRun's
// PendingInterrupts while its status is INPUT_REQUIRED). For a TOOL_APPROVAL interrupt, approve runs the
// calls; rejecting makes each a failed tool result carrying message, and the model goes on. For an INPUT
// interrupt, message is the answer. Any caller of the run's tenant may answer, through any replica. It returns
// the run's status after the decision (RUNNING, or INPUT_REQUIRED while other interrupts wait). Errors are
// typed: ErrInterruptNotFound (unknown run or interrupt), ErrInterruptAlreadyResolved (answered before, or
// its approval timeout passed); match them with errors.Is.
func (c *Client) ResolveInterrupt(ctx context.Context, runID, interruptID string, approve bool, message string) (pb.TaskStatus, error) {
	resp, err := c.stub.ResolveInterrupt(ctx, &pb.ResolveInterruptRequest{
		RunId: runID, InterruptId: interruptID, Approve: approve, Message: message,
	})
	if err != nil {
		return pb.TaskStatus_TASK_STATUS_UNSPECIFIED, FromStatus(err)
	}
	return resp.GetStatus(), nil
}
