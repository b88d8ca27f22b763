package agentstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agentstream/agentstream/clients/go/agentstream"
	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

// cuttingProxy is a TCP proxy to upstream whose cut drops every connection it carries; it keeps
// accepting new ones.
type cuttingProxy struct {
	listener    net.Listener
	upstream    string
	mu          sync.Mutex
	conns       []net.Conn
	connections int
}

func startProxy(t *testing.T, upstream string) *cuttingProxy {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{listener: listener, upstream: upstream}
	go p.serve()
	t.Cleanup(func() { listener.Close(); p.cut() })
	return p
}

func (p *cuttingProxy) serve() {
	for {
		down, err := p.listener.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, down, up)
		p.connections++
		p.mu.Unlock()
		go func() { io.Copy(up, down); up.Close() }()
		go func() { io.Copy(down, up); down.Close() }()
	}
}

func (p *cuttingProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if tcp, ok := c.(*net.TCPConn); ok {
			tcp.SetLinger(0) // a reset, not a graceful close
		}
		c.Close()
	}
	p.conns = nil
}

func (p *cuttingProxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connections
}

// runResumeScenario subscribes with resume through a proxy and cuts it mid-run: every event exactly once.
// The proxy forwards to upstream; opts are the dial options (TLS) of the proxied client.
func runResumeScenario(t *testing.T, direct *agentstream.Client, upstream string, s scenario, opts ...grpc.DialOption) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	proxy := startProxy(t, upstream)
	proxied, err := agentstream.Dial(proxy.listener.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer proxied.Close()
	runID, err := direct.StartRun(ctx, s.Input, agentstream.RunOptions{Agent: s.Agent})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := proxied.SubscribeRun(ctx, runID, 0, modeOf(t, s.Mode), agentstream.WithResume(agentstream.ResumePolicy{}))
	if err != nil {
		t.Fatal(err)
	}
	var messages []*pb.Message
	chunks := 0
	for msg, err := range stream.All() {
		if err != nil {
			t.Fatalf("after %d messages: %v", len(messages), err)
		}
		messages = append(messages, msg)
		if msg.GetChunk() != nil {
			chunks++
		}
		if len(messages) == s.Resume.CutAfterEvents {
			proxy.cut()
			if run, err := direct.GetRun(ctx, runID); err != nil || run.GetStatus() != pb.TaskStatus_TASK_STATUS_RUNNING {
				t.Fatalf("the run ended before the cut: %v %v", run.GetStatus(), err)
			}
		}
	}
	if proxy.count() < 2 {
		t.Fatalf("the SDK did not re-subscribe (%d connections)", proxy.count())
	}
	for i, m := range messages {
		if m.GetSeq() != uint64(i+1) {
			t.Fatalf("duplicate or gap at %d: seq %d", i, m.GetSeq())
		}
	}
	if s.Expect.Chunks != nil && chunks != *s.Expect.Chunks {
		t.Fatalf("%d chunks, want %d", chunks, *s.Expect.Chunks)
	}
	run, err := direct.GetRun(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	if last := messages[len(messages)-1].GetSeq(); run.GetLastSeq() != last {
		t.Fatalf("GetRun last seq %d, received up to %d", run.GetLastSeq(), last)
	}
	checkStream(t, s, messages)
}

// checkTerminalMapping decodes each terminal message of the scenario and maps it with ErrorForTask.
func checkTerminalMapping(t *testing.T, s scenario) {
	for _, raw := range s.Terminals {
		msg := &pb.Message{}
		if err := protojson.Unmarshal(raw, msg); err != nil {
			t.Fatal(err)
		}
		task := msg.GetTask()
		if msg.GetTopic() != agentstream.TaskResponseTopic || task == nil {
			t.Fatalf("not a terminal message: %v", msg)
		}
		if got := strings.TrimPrefix(task.GetStatus().String(), "TASK_STATUS_"); got != s.Expect.Terminal.Status || task.GetSuccess() != s.Expect.Terminal.Success {
			t.Fatalf("terminal %s success=%v, want %s %v", got, task.GetSuccess(), s.Expect.Terminal.Status, s.Expect.Terminal.Success)
		}
		var typed *agentstream.Error
		err := agentstream.ErrorForTask(task)
		if !errors.As(err, &typed) || typed.Code.String() != codeName(s.Expect.Error.Code) || typed.Reason != s.Expect.Error.Reason {
			t.Fatalf("ErrorForTask: %v, want %s %s", err, s.Expect.Error.Code, s.Expect.Error.Reason)
		}
	}
}

// wantError is an expected error: gRPC code name and reason.
type wantError struct {
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

func checkWantError(t *testing.T, err error, want wantError) *agentstream.Error {
	t.Helper()
	var typed *agentstream.Error
	if !errors.As(err, &typed) {
		t.Fatalf("error is not an *agentstream.Error: %v", err)
	}
	if typed.Code.String() != codeName(want.Code) || typed.Reason != want.Reason {
		t.Fatalf("got %s %s, want %s %s", typed.Code, typed.Reason, want.Code, want.Reason)
	}
	return typed
}

// runSessionScenario holds a conversation across runs, then checks GetSession, a busy session,
// DeleteSession and an unknown session.
func runSessionScenario(t *testing.T, client *agentstream.Client, s scenario) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := s.Expect.Session
	sessionID := fmt.Sprintf("scenario-go-%d", time.Now().UnixNano())
	for i, input := range s.Session.Runs {
		stream, err := client.StreamingRun(ctx, input, agentstream.RunOptions{SessionID: sessionID})
		if err != nil {
			t.Fatal(err)
		}
		var last *pb.Message
		for msg, err := range stream.All() {
			if err != nil {
				t.Fatal(err)
			}
			last = msg
		}
		if got := last.GetTask().GetAnswer(); got != want.Answers[i] {
			t.Fatalf("run %d answered %q, want %q", i+1, got, want.Answers[i])
		}
	}
	session, err := client.GetSession(ctx, sessionID)
	if err != nil {
		t.Fatal(err)
	}
	var turns [][2]string
	for _, turn := range session.GetTurns() {
		turns = append(turns, [2]string{turn.GetRole(), turn.GetContent()})
	}
	if !reflect.DeepEqual(turns, want.Turns) {
		t.Fatalf("turns %v, want %v", turns, want.Turns)
	}
	if len(session.GetRunIds()) != len(s.Session.Runs) || session.GetLiveRunId() != "" {
		t.Fatalf("run ids %v, live run %q", session.GetRunIds(), session.GetLiveRunId())
	}
	live, err := client.StartRun(ctx, s.Session.BusyInput, agentstream.RunOptions{SessionID: sessionID})
	if err != nil {
		t.Fatal(err)
	}
	busyRun := func() error {
		stream, err := client.StreamingRun(ctx, "again", agentstream.RunOptions{SessionID: sessionID})
		if err != nil {
			return err
		}
		for _, err := range stream.All() {
			if err != nil {
				return err
			}
		}
		return nil
	}
	busyDelete := func() error { _, err := client.DeleteSession(ctx, sessionID); return err }
	for _, call := range []func() error{busyRun, busyDelete} {
		if typed := checkWantError(t, call(), want.Busy); typed.Metadata["run_id"] != live {
			t.Fatalf("metadata run_id %q, want %q", typed.Metadata["run_id"], live)
		}
	}
	if _, err := client.CancelRun(ctx, live, "scenario"); err != nil {
		t.Fatal(err)
	}
	deleted, err := client.DeleteSession(ctx, sessionID)
	if err != nil || deleted != want.DeletedTurns {
		t.Fatalf("DeleteSession: %d, %v; want %d", deleted, err, want.DeletedTurns)
	}
	_, err = client.GetSession(ctx, sessionID)
	checkWantError(t, err, want.Unknown)
	_, err = client.DeleteSession(ctx, sessionID)
	checkWantError(t, err, want.Unknown)
}
