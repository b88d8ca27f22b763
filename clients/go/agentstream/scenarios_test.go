package agentstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream/clients/go/agentstream"
	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

// wantTerminal is a scenario's expected terminal message (an unset answer is not checked).
type wantTerminal struct {
	Status  string  `json:"status"`
	Success bool    `json:"success"`
	Answer  *string `json:"answer"`
}

type scenario struct {
	Name              string          `json:"name"`
	Input             string          `json:"input"`
	Agent             string          `json:"agent"`
	Mode              json.RawMessage `json:"mode"`
	CancelAfterChunks int             `json:"cancel_after_chunks"`
	Resume            *struct {
		CutAfterEvents int `json:"cut_after_events"`
	} `json:"resume"`
	Terminals []json.RawMessage `json:"terminals"`
	Approval  *approvalSpec     `json:"approval"`
	Session   *struct {
		Runs      []string `json:"runs"`
		BusyInput string   `json:"busy_input"`
	} `json:"session"`
	Expect struct {
		Session *struct {
			Answers      []string    `json:"answers"`
			Turns        [][2]string `json:"turns"`
			Busy         wantError   `json:"busy"`
			DeletedTurns uint32      `json:"deleted_turns"`
			Unknown      wantError   `json:"unknown"`
		} `json:"session"`
		Chunks      *int             `json:"chunks"`
		Categories  []string         `json:"categories"`
		ChunkText   *string          `json:"chunk_text"`
		ToolCalls   []map[string]any `json:"tool_calls"`
		ToolResults []map[string]any `json:"tool_results"`
		Nesting     *struct {
			Depths []uint32 `json:"depths"`
			Caller string   `json:"caller"`
			Sender string   `json:"sender"`
			Groups []string `json:"groups"`
		} `json:"nesting"`
		Terminal *wantTerminal `json:"terminal"`
		Error    *struct {
			Code   string `json:"code"`
			Reason string `json:"reason"`
			Field  string `json:"field"`
		} `json:"error"`
	} `json:"expect"`
}

func target(t *testing.T) string {
	t.Helper()
	value := os.Getenv("AGENTSTREAM_TARGET")
	if value == "" {
		t.Fatal("AGENTSTREAM_TARGET is not set: run these tests with `make interop`, which starts a server")
	}
	return value
}

func loadScenarios(t *testing.T) []scenario {
	t.Helper()
	paths, err := filepath.Glob("../../../tests/scenarios/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no scenarios found: %v", err)
	}
	sort.Strings(paths)
	var out []scenario
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var s scenario
		if err := json.Unmarshal(data, &s); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, s)
	}
	return out
}

func modeOf(t *testing.T, raw json.RawMessage) pb.StreamingMode {
	var name string
	if json.Unmarshal(raw, &name) == nil {
		value, ok := pb.StreamingMode_value["STREAMING_MODE_"+name]
		if !ok {
			t.Fatalf("unknown mode %q", name)
		}
		return pb.StreamingMode(value)
	}
	var number int32
	if err := json.Unmarshal(raw, &number); err != nil {
		t.Fatalf("bad mode %s", raw)
	}
	return pb.StreamingMode(number)
}

func TestScenarios(t *testing.T) {
	client, err := agentstream.Dial(target(t))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, s := range loadScenarios(t) {
		t.Run(s.Name, func(t *testing.T) {
			switch {
			case s.Resume != nil:
				runResumeScenario(t, client, target(t), s)
			case s.Terminals != nil:
				checkTerminalMapping(t, s)
			case s.Session != nil:
				runSessionScenario(t, client, s)
			case s.Approval != nil:
				runApprovalScenario(t, target(t), s)
			default:
				runScenario(t, client, s)
			}
		})
	}
}

func runScenario(t *testing.T, client *agentstream.Client, s scenario) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	stream, err := client.StreamingRun(runCtx, s.Input, agentstream.RunOptions{Agent: s.Agent, Mode: modeOf(t, s.Mode)})
	if err != nil {
		t.Fatal(err)
	}
	var messages []*pb.Message
	chunks := 0
	for msg, err := range stream.All() {
		if err != nil {
			checkError(t, s, err)
			return
		}
		messages = append(messages, msg)
		if msg.GetChunk() != nil {
			chunks++
		}
		if s.CancelAfterChunks > 0 && chunks == s.CancelAfterChunks {
			cancelRun()
			waitCancelled(t, ctx, client, msg.GetRunId(), s.Expect.Terminal.Status)
			return
		}
	}
	if s.Expect.Error != nil {
		t.Fatalf("expected error %s, got a stream", s.Expect.Error.Reason)
	}
	checkStream(t, s, messages)
}

func waitCancelled(t *testing.T, ctx context.Context, client *agentstream.Client, runID, want string) {
	for {
		run, err := client.GetRun(ctx, runID)
		if err != nil {
			t.Fatal(err)
		}
		if run.GetStatus() != pb.TaskStatus_TASK_STATUS_RUNNING {
			if got := strings.TrimPrefix(run.GetStatus().String(), "TASK_STATUS_"); got != want {
				t.Fatalf("run status %s, want %s", got, want)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("run still running after the call was cancelled")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func checkError(t *testing.T, s scenario, err error) {
	want := s.Expect.Error
	if want == nil {
		t.Fatalf("unexpected error: %v", err)
	}
	var typed *agentstream.Error
	if !errors.As(err, &typed) {
		t.Fatalf("error is not an *agentstream.Error: %v", err)
	}
	if typed.Code.String() != codeName(want.Code) || typed.Reason != want.Reason {
		t.Fatalf("got %s %s, want %s %s", typed.Code, typed.Reason, want.Code, want.Reason)
	}
	if want.Field != "" {
		found := false
		for _, v := range typed.FieldViolations {
			found = found || v.Field == want.Field
		}
		if !found {
			t.Fatalf("field %s not in violations %v", want.Field, typed.FieldViolations)
		}
	}
}

// codeName converts "NOT_FOUND" to grpc-go's "NotFound".
func codeName(code string) string {
	parts := strings.Split(strings.ToLower(code), "_")
	for i, p := range parts {
		parts[i] = strings.ToUpper(p[:1]) + p[1:]
	}
	return strings.Join(parts, "")
}

func checkStream(t *testing.T, s scenario, messages []*pb.Message) {
	if want := s.Expect.Categories; want != nil {
		var got []string
		for _, m := range messages {
			got = append(got, m.GetCategory())
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("categories %v, want %v", got, want)
		}
	}
	var text strings.Builder
	var calls, results []map[string]any
	for _, m := range messages {
		text.WriteString(m.GetChunk().GetContent())
		for _, a := range m.GetTool().GetActions() {
			calls = append(calls, map[string]any{"tool_name": a.GetToolName(), "params": a.GetParams().AsMap()})
		}
		if r := m.GetToolResult(); r != nil {
			results = append(results, map[string]any{"tool_name": r.GetToolName(), "content": r.GetContent(), "is_error": r.GetIsError()})
		}
	}
	if s.Expect.ChunkText != nil && text.String() != *s.Expect.ChunkText {
		t.Fatalf("chunk text %q, want %q", text.String(), *s.Expect.ChunkText)
	}
	if s.Expect.ToolCalls != nil && !reflect.DeepEqual(calls, s.Expect.ToolCalls) {
		t.Fatalf("tool calls %v, want %v", calls, s.Expect.ToolCalls)
	}
	if s.Expect.ToolResults != nil && !reflect.DeepEqual(results, s.Expect.ToolResults) {
		t.Fatalf("tool results %v, want %v", results, s.Expect.ToolResults)
	}
	if s.Expect.Nesting != nil {
		checkNesting(t, s, messages)
	}
	last := messages[len(messages)-1]
	if last.GetTopic() != agentstream.TaskResponseTopic {
		t.Fatalf("last message topic %q, want the terminal %q", last.GetTopic(), agentstream.TaskResponseTopic)
	}
	task := last.GetTask()
	if got := strings.TrimPrefix(task.GetStatus().String(), "TASK_STATUS_"); got != s.Expect.Terminal.Status {
		t.Fatalf("terminal status %s, want %s", got, s.Expect.Terminal.Status)
	}
	if task.GetSuccess() != s.Expect.Terminal.Success {
		t.Fatalf("terminal success %v", task.GetSuccess())
	}
	if s.Expect.Terminal.Answer != nil && task.GetAnswer() != *s.Expect.Terminal.Answer {
		t.Fatalf("answer %q, want %q", task.GetAnswer(), *s.Expect.Terminal.Answer)
	}
	for i := 1; i < len(messages); i++ {
		if messages[i].GetSeq() <= messages[i-1].GetSeq() {
			t.Fatalf("seq not increasing at %d", i)
		}
	}
}

func TestErrorsIsMatchesTheReason(t *testing.T) {
	err := error(&agentstream.Error{Reason: "AGENT_NOT_FOUND", Message: "x"})
	if !errors.Is(err, agentstream.ErrAgentNotFound) || errors.Is(err, agentstream.ErrRunNotFound) {
		t.Fatal("errors.Is must match by reason")
	}
}

// checkNesting: the depth of every message; nested ones name their caller, sender and the tool call that
// started them; the group events open and close the nested run.
func checkNesting(t *testing.T, s scenario, messages []*pb.Message) {
	want := s.Expect.Nesting
	var depths []uint32
	var groups []string
	callID := ""
	for _, m := range messages {
		depths = append(depths, m.GetDepth())
		if callID == "" && len(m.GetTool().GetActions()) > 0 {
			callID = m.GetTool().GetActions()[0].GetToolCallId()
		}
		if g := m.GetGroup(); g != nil {
			groups = append(groups, m.GetTopic())
			if g.GetToolCallId() != callID {
				t.Fatalf("group event names tool call %q, want %q", g.GetToolCallId(), callID)
			}
		}
	}
	if !reflect.DeepEqual(depths, want.Depths) {
		t.Fatalf("depths %v, want %v", depths, want.Depths)
	}
	if !reflect.DeepEqual(groups, want.Groups) {
		t.Fatalf("group topics %v, want %v", groups, want.Groups)
	}
	for _, m := range messages {
		if m.GetDepth() == 0 {
			continue
		}
		if m.GetCaller() != want.Caller || m.GetParentToolCallId() != callID {
			t.Fatalf("nested message %d: caller %q parent %q, want %q %q", m.GetSeq(), m.GetCaller(), m.GetParentToolCallId(), want.Caller, callID)
		}
		if (m.GetCategory() == "chunk" || m.GetCategory() == "agent") && m.GetSender() != want.Sender {
			t.Fatalf("nested message %d: sender %q, want %q", m.GetSeq(), m.GetSender(), want.Sender)
		}
	}
}
