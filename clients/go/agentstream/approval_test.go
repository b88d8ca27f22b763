package agentstream_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/agentstream/agentstream/clients/go/agentstream"
	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

// approvalSpec is the `approval` key of a scenario: a run whose tool call waits for a person.
type approvalSpec struct {
	Interrupt struct {
		Kind      string           `json:"kind"`
		ToolCalls []map[string]any `json:"tool_calls"`
	} `json:"interrupt"`
	WaitingStatus  string    `json:"waiting_status"`
	ResolvedStatus string    `json:"resolved_status"`
	Twice          wantError `json:"twice"`
	Unknown        wantError `json:"unknown"`
	Variants       []struct {
		Name    string `json:"name"`
		Approve bool   `json:"approve"`
		Message string `json:"message"`
		Expect  struct {
			Topics   []string `json:"topics"`
			Resolved struct {
				Approved bool   `json:"approved"`
				Message  string `json:"message"`
			} `json:"resolved"`
			ToolResults []map[string]any `json:"tool_results"`
			Terminal    wantTerminal     `json:"terminal"`
		} `json:"expect"`
	} `json:"variants"`
}

// runApprovalScenario streams each variant's run on one connection and, at its interrupt, resolves it from a
// second connection to address (dialled with opts): the resolution, the tool result and the terminal follow;
// resolving twice, or an unknown interrupt, is a typed error.
func runApprovalScenario(t *testing.T, address string, s scenario, opts ...grpc.DialOption) {
	for _, variant := range s.Approval.Variants {
		t.Run(variant.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			streaming, deciding := dial(t, address, opts...), dial(t, address, opts...)
			stream, err := streaming.StreamingRun(ctx, s.Input, agentstream.RunOptions{Agent: s.Agent, Mode: modeOf(t, s.Mode)})
			if err != nil {
				t.Fatal(err)
			}
			var messages []*pb.Message
			var waiting *pb.InterruptPayload
			for msg, err := range stream.All() {
				if err != nil {
					t.Fatalf("after %d messages: %v", len(messages), err)
				}
				messages = append(messages, msg)
				if msg.GetTopic() == "interrupt" {
					waiting = msg.GetInterrupt()
					checkInterrupt(t, s.Approval, msg)
					decide(t, ctx, deciding, s.Approval, msg.GetRunId(), waiting.GetInterruptId(), variant.Approve, variant.Message)
				}
			}
			want := variant.Expect
			var topics []string
			var resolved *pb.InterruptPayload
			for _, m := range messages {
				if m.GetTopic() != "chunk" {
					topics = append(topics, m.GetTopic())
				}
				if m.GetTopic() == "interrupt_resolved" {
					resolved = m.GetInterrupt()
				}
			}
			if !reflect.DeepEqual(topics, want.Topics) {
				t.Fatalf("topics %v, want %v", topics, want.Topics)
			}
			if resolved.GetInterruptId() != waiting.GetInterruptId() || !resolved.GetResolved() ||
				resolved.GetApproved() != want.Resolved.Approved || resolved.GetMessage() != want.Resolved.Message {
				t.Fatalf("resolved %v, want %+v for %s", resolved, want.Resolved, waiting.GetInterruptId())
			}
			// The tool results, the terminal and seq order, checked as for every other scenario.
			var expected scenario
			expected.Expect.ToolResults = want.ToolResults
			expected.Expect.Terminal = &want.Terminal
			checkStream(t, expected, messages)
		})
	}
}

func dial(t *testing.T, address string, opts ...grpc.DialOption) *agentstream.Client {
	t.Helper()
	client, err := agentstream.Dial(address, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func checkInterrupt(t *testing.T, spec *approvalSpec, msg *pb.Message) {
	t.Helper()
	interrupt := msg.GetInterrupt()
	if msg.GetCategory() != "task" || interrupt.GetResolved() || interrupt.GetInterruptId() == "" ||
		strings.TrimPrefix(interrupt.GetKind().String(), "INTERRUPT_KIND_") != spec.Interrupt.Kind {
		t.Fatalf("interrupt %v (category %q), want a pending %s", interrupt, msg.GetCategory(), spec.Interrupt.Kind)
	}
	var calls []map[string]any
	for _, a := range interrupt.GetToolCalls() {
		calls = append(calls, map[string]any{"tool_name": a.GetToolName(), "params": a.GetParams().AsMap()})
	}
	if !reflect.DeepEqual(calls, spec.Interrupt.ToolCalls) {
		t.Fatalf("calls awaiting approval %v, want %v", calls, spec.Interrupt.ToolCalls)
	}
}

// decide checks GetRun while the run waits, resolves the interrupt, then resolves it again and an unknown one.
func decide(t *testing.T, ctx context.Context, client *agentstream.Client, spec *approvalSpec, runID, interruptID string, approve bool, message string) {
	t.Helper()
	run, err := client.GetRun(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimPrefix(run.GetStatus().String(), "TASK_STATUS_"); got != spec.WaitingStatus ||
		len(run.GetPendingInterrupts()) != 1 || run.GetPendingInterrupts()[0].GetInterruptId() != interruptID {
		t.Fatalf("GetRun while waiting: %s %v, want %s with %s pending", got, run.GetPendingInterrupts(), spec.WaitingStatus, interruptID)
	}
	status, err := client.ResolveInterrupt(ctx, runID, interruptID, approve, message)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimPrefix(status.String(), "TASK_STATUS_"); got != spec.ResolvedStatus {
		t.Fatalf("ResolveInterrupt: status %s, want %s", got, spec.ResolvedStatus)
	}
	_, err = client.ResolveInterrupt(ctx, runID, interruptID, true, "")
	checkWantError(t, err, spec.Twice)
	if !errors.Is(err, agentstream.ErrInterruptAlreadyResolved) {
		t.Fatalf("errors.Is(%v, ErrInterruptAlreadyResolved) is false", err)
	}
	_, err = client.ResolveInterrupt(ctx, runID, interruptID+"-nope", true, "")
	checkWantError(t, err, spec.Unknown)
}
